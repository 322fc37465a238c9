//! The embedded backends: the file log, and the in-memory store fed in log order by an
//! in-process projector (first the replay of the file, then each durable append).

use std::path::Path;
use std::sync::Arc;

use tokend_domain::LogPosition;
use tokend_events::{Decoded, Envelope};
use tokend_filelog::{FileLog, FileLogOptions};
use tokend_memstore::MemoryStore;

pub fn open(data_dir: &Path, fsync: bool) -> anyhow::Result<(Arc<FileLog>, Arc<MemoryStore>)> {
    let store = Arc::new(MemoryStore::default());
    let sink_store = store.clone();
    let log = FileLog::open(
        &data_dir.join("events.log"),
        FileLogOptions { fsync },
        Box::new(move |pos, bytes| project(&sink_store, pos, bytes)),
    )?;
    Ok((Arc::new(log), store))
}

/// Decodes one record and applies it; unknown and undecodable records are skipped with a
/// warning (a newer writer's events must not stop an older reader).
fn project(store: &MemoryStore, pos: LogPosition, bytes: &[u8]) {
    let event = match Envelope::from_bytes(bytes).and_then(|e| e.decode()) {
        Ok(Decoded::Known(event)) => Some(event),
        Ok(Decoded::Unknown { kind, version }) => {
            tracing::warn!(
                offset = pos.offset,
                kind,
                version,
                "Skipped an unknown event type."
            );
            None
        }
        Err(error) => {
            tracing::error!(offset = pos.offset, %error, "Skipped an undecodable record.");
            None
        }
    };
    store.apply_now(pos, event.as_ref());
}
