//! Record framing and crash recovery.

use std::fs::File;
use std::io::Read;
use std::path::Path;

pub(crate) const HEADER: usize = 8;

/// The largest record the log takes (events are a few hundred bytes; requests are limited to
/// kilobytes). Bounding it also keeps the search for intact records after damage linear.
pub const MAX_RECORD: usize = 1 << 20;

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
        "event log is damaged at byte {at} (record {index}) and valid records follow it (the next at byte {next_valid_at}); refusing to start rather than drop acknowledged events. `tokend log verify` shows the damage; after a backup, `tokend log repair --to {index}` keeps records 0..{index} and drops the rest"
    )]
    Corrupt {
        at: u64,
        index: u64,
        next_valid_at: u64,
    },
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

/// Reads every record of `path` (missing file: none). Only a torn *last* record (a write cut
/// short by a crash: no complete record can follow it) is dropped; damage with a valid record
/// after it is [`FrameError::Corrupt`], whatever field it hit.
pub fn recover(path: &Path) -> Result<Recovered, FrameError> {
    let bytes = read(path)?;
    let (records, at) = valid_prefix(&bytes);
    if let Some(next) = next_frame(&bytes, at) {
        return Err(FrameError::Corrupt {
            at: at as u64,
            index: records.len() as u64,
            next_valid_at: next as u64,
        });
    }
    Ok(Recovered {
        records: records.into_iter().map(<[u8]>::to_vec).collect(),
        valid_len: at as u64,
        torn_bytes: (bytes.len() - at) as u64,
    })
}

/// Cuts the log at `path` to its first `keep` records (the operator's repair after
/// `Corrupt`); returns the bytes dropped. Refuses to cut past the valid prefix.
pub fn truncate_to(path: &Path, keep: u64) -> Result<u64, FrameError> {
    let bytes = read(path)?;
    let (records, valid) = valid_prefix(&bytes);
    if keep > records.len() as u64 {
        return Err(FrameError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "only records 0..{} are intact; cannot keep {keep}",
                records.len()
            ),
        )));
    }
    let len: usize = records[..keep as usize]
        .iter()
        .map(|r| HEADER + r.len())
        .sum();
    debug_assert!(len <= valid);
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.set_len(len as u64)?;
    file.sync_all()?;
    Ok((bytes.len() - len) as u64)
}

fn read(path: &Path) -> Result<Vec<u8>, FrameError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    Ok(bytes)
}

/// The intact records from the start, and where they end.
fn valid_prefix(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some(payload) = frame_at(bytes, at) {
        records.push(payload);
        at += HEADER + payload.len();
    }
    (records, at)
}

/// The payload of an intact record starting at `at`. Payloads are never empty (a zero-filled
/// region, which some file systems leave after a crash, is not a run of records).
fn frame_at(bytes: &[u8], at: usize) -> Option<&[u8]> {
    let rest = bytes.get(at..)?;
    let (len, crc) = header(rest)?;
    if len == 0 || len > MAX_RECORD {
        return None;
    }
    let payload = rest.get(HEADER..HEADER + len)?;
    (len > 0 && len <= MAX_RECORD && crc32fast::hash(payload) == crc).then_some(payload)
}

/// The first offset after `at` where an intact record starts (a record after damage means
/// the damage is not a torn tail).
fn next_frame(bytes: &[u8], at: usize) -> Option<usize> {
    (at + 1..bytes.len().saturating_sub(HEADER)).find(|&p| frame_at(bytes, p).is_some())
}

fn header(rest: &[u8]) -> Option<(usize, u32)> {
    let len = u32::from_le_bytes(rest.get(0..4)?.try_into().ok()?);
    let crc = u32::from_le_bytes(rest.get(4..8)?.try_into().ok()?);
    Some((len as usize, crc))
}
