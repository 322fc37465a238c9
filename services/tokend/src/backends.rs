//! The backends: embedded (the file log, and the in-memory store fed in log order by an
//! in-process projector: first the replay of the file, then each durable append) or cluster
//! (Kafka and Redis).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokend_domain::{EventLog, LogPosition, StateStore};
use tokend_kafka::KafkaEventLog;
use tokend_redis::RedisStore;

use crate::config::{Backend, Config};
use tokend_events::{Decoded, Envelope};
use tokend_filelog::{FileLog, FileLogOptions};
use tokend_memstore::MemoryStore;

/// The log and the store a node runs on.
pub struct Backends {
    pub log: Arc<dyn EventLog>,
    pub store: Arc<dyn StateStore>,
    /// The embedded store, which the node prunes itself.
    pub memory: Option<Arc<MemoryStore>>,
    /// The revocation mirror of a cluster node (for its metrics, and to release it on stop).
    pub mirror: Option<std::sync::Weak<tokend_redis::mirror::Mirror>>,
}

pub async fn open(config: &Config) -> anyhow::Result<Backends> {
    match config.storage.backend {
        Backend::Embedded => {
            let (log, store) = open_embedded(&config.storage.data_dir, config.storage.fsync)?;
            Ok(Backends {
                log,
                store: store.clone(),
                memory: Some(store),
                mirror: None,
            })
        }
        Backend::Cluster => {
            let log = KafkaEventLog::connect(&config.kafka)
                .await
                .context("connecting to Kafka")?;
            let store = RedisStore::connect_with(&config.redis)
                .await
                .context("connecting to Redis")?
                .with_near_caches(config.redis.client_cache, config.redis.revocation_mirror);
            Ok(Backends {
                log: Arc::new(log),
                mirror: store.revocation_mirror_weak(),
                store: Arc::new(store),
                memory: None,
            })
        }
    }
}

fn open_embedded(data_dir: &Path, fsync: bool) -> anyhow::Result<(Arc<FileLog>, Arc<MemoryStore>)> {
    let store = Arc::new(MemoryStore::default());
    let sink_store = store.clone();
    let log = FileLog::open(
        &data_dir.join(crate::EVENT_LOG_FILE),
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
