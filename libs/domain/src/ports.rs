//! The ports: what the application needs from the log and from the projection store.
//! Adapters: the embedded file log and in-memory store; later Kafka and Redis.

use async_trait::async_trait;
use tokend_events::{Envelope, Event};

use crate::model::{Client, CodeStatus, RefreshStatus, RevocationQuery, User};

/// What applying one record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Applied (or, with no event, passed over) and its offset recorded.
    Applied,
    /// The offset was applied before: nothing changed.
    Duplicate,
    /// Earlier records of the partition are missing (a wiped or new generation of the
    /// projection): nothing changed; resume reading the partition at `next`.
    Gap { next: u64 },
}

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
    /// Applies the record at `position` and records its offset, atomically. `None` records the
    /// offset of a record with no effect (unknown type, undecodable). Per partition, only the
    /// next expected offset applies: a redelivered offset is [`Applied::Duplicate`] and a
    /// later one is [`Applied::Gap`] (the caller seeks back to `next`); neither changes state.
    async fn apply(
        &self,
        position: LogPosition,
        event: Option<&Event>,
    ) -> Result<Applied, StoreError>;

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

    /// The state of an authorization code by its digest, at `now_secs`.
    async fn code_status(&self, digest: &str, now_secs: i64) -> Result<CodeStatus, StoreError>;

    /// Whether the token is revoked (by `jti`, family, subject or client). One round trip.
    async fn is_revoked(&self, query: &RevocationQuery) -> Result<bool, StoreError>;

    /// Whether the store answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
}
