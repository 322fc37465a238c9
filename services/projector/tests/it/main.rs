//! The real loop, end to end: token nodes → Kafka → projector → Redis → validation, against
//! Apache Kafka and Redis in containers (testcontainers, host network, loopback only). Each test
//! has its own topic, consumer group and key prefix.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::disallowed_methods
)]

mod cluster;
mod faults;
mod heal;
mod keys;
mod loop_tests;
mod redis_cluster;
mod replay;

/// Every test's limit: a hang (a shutdown that waits for a Kafka that is gone) fails fast.
pub const LIMIT_SECS: u64 = 180;
