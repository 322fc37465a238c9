//! The projector: Kafka event log → Redis projection.
//!
//! [`run`] is one member of the consumer group. A worker per assigned partition applies
//! records in batches (each one read of the records it touches, the domain's projection code,
//! one offset-checked write), then stores the consumer offset, so a crash at any point
//! redelivers and never loses. The store's per-partition offsets are the authority: records
//! already applied are passed over, and a batch past the store's offset makes the worker seek
//! back to it. A check every `heal_interval_ms` heals the projection without waiting for a
//! record (Redis lost data, a rollback, a new generation) and marks partitions complete, which
//! makes the projection ready for readers. Shutdown is bounded even with Kafka gone. Unknown
//! event types and versions are passed over with a warning and a metric; records that do not
//! decode go to the dead-letter topic.
//!
//! [`rebuild`] replays the whole log into a fresh generation, catches up with the live one and
//! switches readers to it atomically, rolling nothing back.

mod batch;
pub mod config;
mod heal;
mod metrics;
mod rebuild;
mod run;
mod trace;
mod worker;

pub use config::Config;
pub use metrics::Metrics;
pub use rebuild::{RebuildReport, rebuild};
pub use run::run;
