//! The writer thread: group commit, then the sink, then the callers' answers.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use async_trait::async_trait;
use tokend_domain::{EventLog, LogError, LogPosition};
use tokend_events::Envelope;
use tokio::sync::oneshot;

use crate::frame::{self, FrameError};

/// Receives every record in log order: first the ones already in the file, then each append
/// once it is durable.
pub type Sink = Box<dyn FnMut(LogPosition, &[u8]) + Send>;

#[derive(Debug, Clone, Copy)]
pub struct FileLogOptions {
    /// fsync after every group of appends (default). Off only for throwaway test data.
    pub fsync: bool,
}

impl Default for FileLogOptions {
    fn default() -> Self {
        Self { fsync: true }
    }
}

type Reply = oneshot::Sender<Result<LogPosition, String>>;

pub struct FileLog {
    tx: mpsc::Sender<(Vec<u8>, Reply)>,
    healthy: Arc<AtomicBool>,
}

impl std::fmt::Debug for FileLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileLog").finish_non_exhaustive()
    }
}

const MAX_BATCH: usize = 4096;

impl FileLog {
    /// Opens (or creates) the log at `path`, replays it into `sink`, and starts the writer.
    pub fn open(path: &Path, options: FileLogOptions, mut sink: Sink) -> Result<Self, FrameError> {
        let recovered = frame::recover(path)?;
        if recovered.torn_bytes > 0 {
            tracing::warn!(
                path = %path.display(),
                torn_bytes = recovered.torn_bytes,
                kept_records = recovered.records.len(),
                "Event log had a torn tail; truncated it."
            );
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        file.set_len(recovered.valid_len)?;
        file.seek(SeekFrom::End(0))?;
        if recovered.torn_bytes > 0 {
            file.sync_all()?;
        }
        let mut next = 0u64;
        for record in &recovered.records {
            sink(position(next), record);
            next += 1;
        }
        let (tx, rx) = mpsc::channel();
        let healthy = Arc::new(AtomicBool::new(true));
        let writer = Writer {
            file,
            len: recovered.valid_len,
            next,
            options,
            sink,
            healthy: healthy.clone(),
        };
        std::thread::Builder::new()
            .name("tokend-filelog".into())
            .spawn(move || writer.run(rx))?;
        Ok(Self { tx, healthy })
    }

    /// Appends raw bytes (one record); returns its position once durable and sunk.
    pub async fn append_bytes(&self, payload: Vec<u8>) -> Result<LogPosition, LogError> {
        if payload.is_empty() || payload.len() > frame::MAX_RECORD {
            return Err(LogError::Unavailable(format!(
                "a record must be 1 to {} bytes",
                frame::MAX_RECORD
            )));
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((payload, reply))
            .map_err(|_| LogError::Unavailable("the log writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| LogError::Unavailable("the log writer has stopped".into()))?
            .map_err(LogError::Unavailable)
    }
}

#[async_trait]
impl EventLog for FileLog {
    async fn append(&self, envelope: &Envelope, _key: &str) -> Result<LogPosition, LogError> {
        self.append_bytes(envelope.to_bytes()).await
    }

    async fn ping(&self) -> Result<(), LogError> {
        if self.healthy.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(LogError::Unavailable(
                "the last write to the log failed".into(),
            ))
        }
    }
}

fn position(offset: u64) -> LogPosition {
    LogPosition {
        partition: 0,
        offset,
    }
}

struct Writer {
    file: File,
    len: u64,
    next: u64,
    options: FileLogOptions,
    sink: Sink,
    healthy: Arc<AtomicBool>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<(Vec<u8>, Reply)>) {
        let mut buf = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            buf.clear();
            for (payload, _) in &batch {
                frame::encode(payload, &mut buf);
            }
            if let Err(e) = self.write(&buf) {
                tracing::error!(error = %e, records = batch.len(), "Event log write failed.");
                self.healthy.store(false, Ordering::Relaxed);
                for (_, reply) in batch {
                    let _ = reply.send(Err(format!("event log write failed: {e}")));
                }
                continue;
            }
            self.healthy.store(true, Ordering::Relaxed);
            for (payload, reply) in batch {
                let pos = position(self.next);
                self.next += 1;
                (self.sink)(pos, &payload);
                let _ = reply.send(Ok(pos));
            }
        }
    }

    /// Writes and syncs one group; on failure cuts the file back so no half record stays.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let result = self.file.write_all(buf).and_then(|()| {
            if self.options.fsync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => {
                self.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                let _ = self.file.seek(SeekFrom::Start(self.len));
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests;
