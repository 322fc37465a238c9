//! Record framing and crash recovery.

use std::fs::File;
use std::io::Read;
use std::path::Path;

pub(crate) const HEADER: usize = 8;

pub(crate) fn encode(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("event log I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "event log is damaged at byte {at} (record {index}), before its tail; refusing to start"
    )]
    Corrupt { at: u64, index: u64 },
}

/// What was read back from a log file.
#[derive(Debug)]
pub struct Recovered {
    pub records: Vec<Vec<u8>>,
    /// Length of the valid prefix; the file is cut there.
    pub valid_len: u64,
    /// Bytes of a torn tail that were dropped.
    pub torn_bytes: u64,
}

/// Reads every record of `path` (missing file: none).
pub fn recover(path: &Path) -> Result<Recovered, FrameError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let Some((len, crc)) = header(rest) else {
            break; // a header cut short: torn tail
        };
        let end = HEADER + len;
        if rest.len() < end {
            break; // a payload cut short: torn tail
        }
        let payload = &rest[HEADER..end];
        if crc32fast::hash(payload) != crc {
            if rest.len() == end {
                break; // the last record is damaged: torn tail
            }
            return Err(FrameError::Corrupt {
                at: at as u64,
                index: records.len() as u64,
            });
        }
        records.push(payload.to_vec());
        at += end;
    }
    Ok(Recovered {
        records,
        valid_len: at as u64,
        torn_bytes: (bytes.len() - at) as u64,
    })
}

fn header(rest: &[u8]) -> Option<(usize, u32)> {
    let len = u32::from_le_bytes(rest.get(0..4)?.try_into().ok()?);
    let crc = u32::from_le_bytes(rest.get(4..8)?.try_into().ok()?);
    Some((len as usize, crc))
}
