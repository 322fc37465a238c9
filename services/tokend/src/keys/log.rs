//! Where the key records live: a file in the embedded mode (the file log's framing and crash
//! recovery), a compacted one-partition Kafka topic in cluster mode. Both feed every record,
//! in log order, to the [`KeyManager`]: first the ones already there, then each new one.

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use tokend_filelog::{FileLog, FileLogOptions};
use tokend_jwt::KeyRecord;
use tokend_kafka::rdkafka::message::{Message, OwnedHeaders};
use tokend_kafka::{KafkaEventLog, KafkaSettings};

use super::KeyManager;

/// Appends key records; applying them is the log's reader's job.
#[async_trait]
pub trait KeyLog: Send + Sync {
    async fn append(&self, record: &KeyRecord) -> anyhow::Result<()>;
}

fn encode(record: &KeyRecord) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec(record)?)
}

/// The embedded key log: `keys.log` next to the event log. Appending applies the record to
/// the manager before it returns (the file log's sink).
pub struct FileKeyLog(FileLog);

impl FileKeyLog {
    /// Opens the file and applies what it holds.
    pub fn open(path: &Path, fsync: bool, manager: &Arc<KeyManager>) -> anyhow::Result<Self> {
        let weak = Arc::downgrade(manager);
        let sink = Box::new(move |_, bytes: &[u8]| {
            if let Some(m) = weak.upgrade() {
                m.apply_bytes(bytes);
            }
        });
        let log = FileLog::open(path, FileLogOptions { fsync }, sink)
            .with_context(|| format!("key log {}", path.display()))?;
        Ok(Self(log))
    }
}

#[async_trait]
impl KeyLog for FileKeyLog {
    async fn append(&self, record: &KeyRecord) -> anyhow::Result<()> {
        self.0.append_bytes(encode(record)?).await?;
        Ok(())
    }
}

/// The cluster key log: the `kafka.keys_topic` topic.
pub struct KafkaKeyLog {
    producer: KafkaEventLog,
    topic: String,
}

impl KafkaKeyLog {
    /// Makes sure the topic exists, applies every record in it, then follows it in the
    /// background for as long as the manager lives.
    pub async fn open(settings: &KafkaSettings, manager: &Arc<KeyManager>) -> anyhow::Result<Self> {
        tokend_kafka::ensure_topics(settings, &[settings.keys_topic_spec()]).await?;
        let producer = KafkaEventLog::connect(settings).await?;
        let (reader, end) = tokend_kafka::topic_reader(settings, &settings.keys_topic, 0).await?;
        let mut next = 0;
        while next < end {
            let message = tokio::time::timeout(Duration::from_secs(30), reader.recv())
                .await
                .context("reading the key log took longer than 30 s")??;
            manager.apply_bytes(message.payload().unwrap_or_default());
            next = message.offset() + 1;
        }
        tokio::spawn(follow(reader, Arc::downgrade(manager)));
        Ok(Self {
            producer,
            topic: settings.keys_topic.clone(),
        })
    }
}

/// Applies new key records until the manager is dropped.
async fn follow(reader: tokend_kafka::Reader, manager: Weak<KeyManager>) {
    loop {
        let received = tokio::time::timeout(Duration::from_secs(1), reader.recv()).await;
        let Some(m) = manager.upgrade() else { return };
        match received {
            Ok(Ok(message)) => m.apply_bytes(message.payload().unwrap_or_default()),
            Ok(Err(error)) => {
                tracing::warn!(%error, "Key log read failed; retrying.");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(_) => {} // nothing new; check the manager still lives
        }
    }
}

#[async_trait]
impl KeyLog for KafkaKeyLog {
    async fn append(&self, record: &KeyRecord) -> anyhow::Result<()> {
        let key = record.log_key();
        self.producer
            .send_raw(
                &self.topic,
                Some(key.as_bytes()),
                &encode(record)?,
                OwnedHeaders::new(),
            )
            .await?;
        Ok(())
    }
}
