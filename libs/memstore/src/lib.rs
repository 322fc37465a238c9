//! The embedded [`StateStore`]: the pure [`Projection`] behind a read-write lock. Rebuilt on
//! start by replaying the file log; also the fake for unit tests of the application layer.

use std::sync::{PoisonError, RwLock};

use async_trait::async_trait;
use tokend_domain::model::{Client, CodeStatus, RefreshStatus, RevocationQuery, User};
use tokend_domain::{Applied, LogPosition, Projection, StateStore, StoreError};
use tokend_events::Event;

#[derive(Debug, Default)]
pub struct MemoryStore {
    projection: RwLock<Projection>,
}

impl MemoryStore {
    /// Applies synchronously (the in-process projector calls this in log order).
    pub fn apply_now(&self, position: LogPosition, event: Option<&Event>) -> Applied {
        self.projection
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .apply(position, event)
    }

    /// The records held (for memory figures).
    pub fn records(&self) -> usize {
        self.projection
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .state()
            .len()
    }

    /// Drops records of tokens that expired before `now_secs`.
    pub fn prune(&self, now_secs: i64) {
        self.projection
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .prune(now_secs);
    }

    fn read<T>(&self, f: impl FnOnce(&Projection) -> T) -> Result<T, StoreError> {
        Ok(f(&self
            .projection
            .read()
            .unwrap_or_else(PoisonError::into_inner)))
    }
}

#[async_trait]
impl StateStore for MemoryStore {
    async fn apply_batch(
        &self,
        partition: u32,
        first: u64,
        events: &[Option<&Event>],
    ) -> Result<Applied, StoreError> {
        Ok(self
            .projection
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .apply_batch(partition, first, events))
    }

    async fn next_offset(&self, partition: u32) -> Result<u64, StoreError> {
        self.read(|p| p.next_offset(partition))
    }

    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        self.read(|p| p.client(client_id).cloned())
    }

    async fn clients(&self) -> Result<Vec<Client>, StoreError> {
        self.read(Projection::clients)
    }

    async fn user(&self, username: &str) -> Result<Option<User>, StoreError> {
        self.read(|p| p.user(username).cloned())
    }

    async fn refresh_status(
        &self,
        digest: &str,
        now_secs: i64,
    ) -> Result<RefreshStatus, StoreError> {
        self.read(|p| p.refresh_status(digest, now_secs))
    }

    async fn code_status(&self, digest: &str, now_secs: i64) -> Result<CodeStatus, StoreError> {
        self.read(|p| p.code_status(digest, now_secs))
    }

    async fn is_revoked(&self, query: &RevocationQuery) -> Result<bool, StoreError> {
        self.read(|p| p.is_revoked(query))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
