//! The ports: what the application needs from the log and from the projection store.
//! Adapters: the embedded file log and in-memory store; later Kafka and Redis.

use async_trait::async_trait;
use tokend_events::{Envelope, Event};

use crate::model::{Client, CodeStatus, RefreshStatus, RevocationQuery, User};

/// What applying a batch of consecutive records of one partition did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The partition is now at `next`. The first `duplicates` records had been applied
    /// before and were passed over; the rest were applied (or, with no event, passed over)
    /// and their offsets recorded.
    Done { next: u64, duplicates: u64 },
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
    /// The store answers but holds no complete projection (lost, reset, or being rebuilt):
    /// readers must not take "not found" for an answer, and fail closed.
    #[error("the projection is missing or incomplete; the projector is restoring it")]
    NotReady,
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
    /// Applies consecutive records of `partition` from offset `first` and records the next
    /// offset, atomically. `None` records the offset of a record with no effect (unknown
    /// type, undecodable). Records applied before are passed over; a batch that starts past
    /// the next expected offset is [`Applied::Gap`] (the caller seeks back to `next`) and
    /// changes nothing.
    async fn apply_batch(
        &self,
        partition: u32,
        first: u64,
        events: &[Option<&Event>],
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

    /// A barrier for the near-caches of the store's readers, taken once a strict revocation
    /// has been applied: see [`StateStore::readers_passed`]. A store without near-caches has
    /// nothing to wait for.
    async fn reader_barrier(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// Whether every reader's near-cache that may be answering has read everything applied
    /// before `barrier` was taken.
    async fn readers_passed(&self, _barrier: u64) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// Whether the store answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
}
