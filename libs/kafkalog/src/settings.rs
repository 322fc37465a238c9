//! Kafka settings shared by the token nodes and the projector.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    /// The event topic: the source of truth.
    pub topic: String,
    /// Where the projector puts records it cannot decode.
    pub dead_letter_topic: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub min_insync_replicas: u32,
    /// How long an append may wait for the broker's acknowledgement.
    pub append_timeout_ms: u64,
    pub compression: String,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topic: "tokend.events".into(),
            dead_letter_topic: "tokend.events.dlq".into(),
            partitions: 6,
            replication_factor: 1,
            min_insync_replicas: 1,
            append_timeout_ms: 5000,
            compression: "lz4".into(),
        }
    }
}
