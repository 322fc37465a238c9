//! The consumer side: a consumer-group member for the projector (offsets stored only after the
//! projection has applied a record), and a group-less replay consumer for `rebuild`.

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokend_domain::LogError;

use crate::KafkaSettings;

fn base(settings: &KafkaSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &settings.bootstrap_servers)
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000");
    c
}

fn unavailable(e: rdkafka::error::KafkaError) -> LogError {
    LogError::Unavailable(format!("kafka consumer: {e}"))
}

/// A member of `group_id` subscribed to the event topic. Offsets are committed automatically
/// but only once stored, and the projector stores an offset only after Redis has it
/// (`enable.auto.offset.store=false`), so a crash redelivers rather than loses.
pub fn group_consumer(
    settings: &KafkaSettings,
    group_id: &str,
) -> Result<StreamConsumer, LogError> {
    let consumer: StreamConsumer = base(settings)
        .set("group.id", group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .create()
        .map_err(unavailable)?;
    consumer
        .subscribe(&[&settings.topic])
        .map_err(unavailable)?;
    Ok(consumer)
}

/// A consumer that reads every partition of the event topic from the beginning, outside any
/// group and without committing (for `rebuild`).
pub fn replay_consumer(
    settings: &KafkaSettings,
    partitions: &[i32],
) -> Result<StreamConsumer, LogError> {
    let consumer: StreamConsumer = base(settings)
        .set("group.id", "tokend-rebuild")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(unavailable)?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(&settings.topic, *p, Offset::Beginning)
            .map_err(unavailable)?;
    }
    consumer.assign(&tpl).map_err(unavailable)?;
    Ok(consumer)
}

/// The partitions of the event topic and, for each, the offset after its last record.
pub async fn end_offsets(settings: &KafkaSettings) -> Result<Vec<(i32, i64)>, LogError> {
    let settings = settings.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: StreamConsumer = base(&settings)
            .set("group.id", "tokend-watermarks")
            .create()
            .map_err(unavailable)?;
        let timeout = Duration::from_secs(10);
        let metadata = consumer
            .fetch_metadata(Some(&settings.topic), timeout)
            .map_err(unavailable)?;
        let mut out = Vec::new();
        for topic in metadata.topics() {
            for p in topic.partitions() {
                let (_, high) = consumer
                    .fetch_watermarks(&settings.topic, p.id(), timeout)
                    .map_err(unavailable)?;
                out.push((p.id(), high));
            }
        }
        out.sort_unstable();
        Ok(out)
    })
    .await
    .map_err(|e| LogError::Unavailable(e.to_string()))?
}
