//! The ports: what the application needs from the log and from the projection store.
//! Adapters: the embedded file log and in-memory store; later Kafka and Redis.

use async_trait::async_trait;
use tokend_events::{Envelope, Event};

use crate::model::{Client, RefreshStatus, RevocationQuery, User};

/// Where a record sits in the log: the partition and its offset there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition {
    pub partition: u32,
    pub offset: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log did not take the event in time: the caller answers 503 with `Retry-After`.
    #[error("the event log is unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the state store is unavailable: {0}")]
    Unavailable(String),
}

/// The append-only source of truth.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Appends one event and returns once it is durable. `key` is the partition key.
    async fn append(&self, envelope: &Envelope, key: &str) -> Result<LogPosition, LogError>;

    /// Whether the log can take events now (readiness).
    async fn ping(&self) -> Result<(), LogError>;
}

/// The projection of the log that reads are served from.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Applies one event at its log position. Applying a position at or below the partition's
    /// applied offset is a no-op, so redelivery is harmless.
    async fn apply(&self, position: LogPosition, event: &Event) -> Result<(), StoreError>;

    /// The next offset to apply on `partition` (0 when nothing was applied).
    async fn next_offset(&self, partition: u32) -> Result<u64, StoreError>;

    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError>;
    async fn clients(&self) -> Result<Vec<Client>, StoreError>;
    async fn user(&self, username: &str) -> Result<Option<User>, StoreError>;

    /// The state of a refresh token by its digest, at `now_secs`.
    async fn refresh_status(
        &self,
        digest: &str,
        now_secs: i64,
    ) -> Result<RefreshStatus, StoreError>;

    /// Whether the token is revoked (by `jti`, family, subject or client). One round trip.
    async fn is_revoked(&self, query: &RevocationQuery) -> Result<bool, StoreError>;

    /// Whether the store answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
}
