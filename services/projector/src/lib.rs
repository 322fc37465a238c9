//! The projector: Kafka event log → Redis projection.
//!
//! [`run`] is one member of the consumer group: it applies each record to the store (an
//! atomic, offset-checked script), then stores the record's offset for commit, so a crash at
//! any point redelivers and never loses. The store's per-partition offsets are the authority:
//! a redelivered record is a no-op, and a record past the store's next offset (the projection
//! was wiped, or `rebuild` switched readers to a new generation) makes the projector seek the
//! partition back to where the store is. Unknown event types and versions are passed over with
//! a warning and a metric; records that do not decode go to the dead-letter topic.
//!
//! [`rebuild`] replays the whole log into a fresh generation of the projection and switches
//! readers to it atomically.

mod batch;
pub mod config;
mod metrics;
mod rebuild;
mod run;
mod worker;

pub use config::Config;
pub use metrics::Metrics;
pub use rebuild::{RebuildReport, rebuild};
pub use run::run;
