//! The production [`EventLog`](tokend_domain::EventLog): Apache Kafka through `rdkafka`.
//!
//! - The producer is idempotent with `acks=all` and at most 5 requests in flight (the most
//!   idempotence allows while keeping order), LZ4-compressed, with a 1 ms linger so concurrent
//!   appends share a request. `append` resolves only when the broker has acknowledged the
//!   record; a record not acknowledged within `append_timeout_ms` fails, and the caller answers
//!   503 with `Retry-After`. librdkafka reconnects by itself when the broker returns.
//! - Records are keyed by [`Event::partition_key`](tokend_events::Event::partition_key) (see
//!   `tokend-events` for the rule) and carry the envelope's `type` and `version`, and the W3C
//!   `traceparent`/`tracestate` when present, as headers.
//! - [`ensure_topics`] creates missing topics with the configured partitions, replication
//!   factor and `min.insync.replicas`; a compacted topic (for the signing keys) is one more
//!   [`TopicSpec`].

mod consumer;
mod producer;
mod settings;
mod topics;

pub use consumer::{
    Detached, GroupConsumer, Reader, Rebalanced, close_within, end_offsets, group_consumer,
    replay_consumer, topic_reader,
};
pub use producer::KafkaEventLog;
pub use rdkafka;
pub use settings::KafkaSettings;
pub use topics::{TopicSpec, ensure_topics};
