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
    /// The signing keys (sealed), compacted, one partition.
    pub keys_topic: String,
    pub partitions: i32,
    /// Copies of each record (production: 3, so `acks=all` means something); a single-broker
    /// stack (tests, the local stack) sets 1.
    pub replication_factor: i32,
    /// Copies that must have a record before it is acknowledged (production: 2).
    pub min_insync_replicas: u32,
    /// How long an append may wait for the broker's acknowledgement.
    pub append_timeout_ms: u64,
    pub compression: String,
    /// How long the producer waits to fill a batch (`linger.ms`): longer means fewer, larger
    /// produce requests (the broker's cost is per request and per partition batch, not per
    /// record) at the price of that much latency on each issue.
    pub linger_ms: u32,
}

impl KafkaSettings {
    /// For a single broker (tests, the local stack): one copy, one in sync.
    pub fn single_broker(mut self) -> Self {
        self.replication_factor = 1;
        self.min_insync_replicas = 1;
        self
    }
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topic: "tokend.events".into(),
            dead_letter_topic: "tokend.events.dlq".into(),
            keys_topic: "tokend.keys".into(),
            partitions: 6,
            replication_factor: 3,
            min_insync_replicas: 2,
            append_timeout_ms: 5000,
            compression: "lz4".into(),
            linger_ms: 1,
        }
    }
}
