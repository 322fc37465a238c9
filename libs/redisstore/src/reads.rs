//! The `StateStore` queries: each one pipeline (two for a refresh token, whose family and
//! watermarks are known only once it is read), checked against the ready marker, judged by
//! the domain's rules.

use async_trait::async_trait;
use tokend_domain::model::{
    Client, CodeStatus, FamilyRecord, RefreshStatus, RevocationQuery, RevocationState, User,
    code_status, refresh_status,
};
use tokend_domain::{Applied, Key, Record, StateStore, StoreError};
use tokend_events::Event;

use crate::RedisStore;
use crate::keys::{decode, record_key};

impl RedisStore {
    /// Reads records by key in one round trip.
    pub(crate) async fn records(&self, keys: &[Key]) -> Result<Vec<Option<Record>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: (Vec<Option<String>>,) = self
            .read(|prefix, pipe| {
                let names: Vec<String> = keys.iter().map(|k| record_key(prefix, k)).collect();
                pipe.cmd("MGET").arg(names);
            })
            .await?;
        keys.iter()
            .zip(values.0)
            .map(|(k, v)| v.map(|v| decode(k, &v)).transpose())
            .collect()
    }

    async fn record(&self, key: Key) -> Result<Option<Record>, StoreError> {
        Ok(self.records(&[key]).await?.pop().flatten())
    }

    /// What the revocation rule needs, in one round trip.
    async fn revocation_state(
        &self,
        jti: Option<&str>,
        family_id: &str,
        sub: Option<&str>,
        client_id: &str,
    ) -> Result<RevocationState, StoreError> {
        let mut keys = vec![
            Key::Family(family_id.to_owned()),
            Key::ClientWatermark(client_id.to_owned()),
        ];
        keys.extend(jti.map(|j| Key::RevokedToken(j.to_owned())));
        // Read last, so its absence shifts nothing before it.
        keys.extend(sub.map(|s| Key::SubjectWatermark(s.to_owned())));
        let mut records = self.records(&keys).await?.into_iter();
        let mut next = || records.next().flatten();
        let family = match next() {
            Some(Record::Family(f)) => Some(f),
            _ => None::<FamilyRecord>,
        };
        let watermark = |r: Option<Record>| match r {
            Some(Record::Watermark(w)) => Some(w),
            _ => None,
        };
        let client_watermark = watermark(next());
        let token_revoked = jti.is_some() && next().is_some();
        Ok(RevocationState {
            token_revoked,
            family,
            subject_watermark: watermark(next()),
            client_watermark,
        })
    }
}

#[async_trait]
impl StateStore for RedisStore {
    async fn apply_batch(
        &self,
        partition: u32,
        first: u64,
        events: &[Option<&Event>],
    ) -> Result<Applied, StoreError> {
        self.apply_records(partition, first, events)
            .await
            .map(|(applied, _)| applied)
    }

    async fn next_offset(&self, partition: u32) -> Result<u64, StoreError> {
        let (next,): (Option<u64>,) = self
            .read(|prefix, pipe| {
                pipe.hget(format!("{prefix}offsets"), partition);
            })
            .await?;
        Ok(next.unwrap_or(0))
    }

    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        Ok(
            match self.record(Key::Client(client_id.to_owned())).await? {
                Some(Record::Client(c)) => Some(*c),
                _ => None,
            },
        )
    }

    async fn clients(&self) -> Result<Vec<Client>, StoreError> {
        let (mut ids,): (Vec<String>,) = self
            .read(|prefix, pipe| {
                pipe.smembers(format!("{prefix}clients"));
            })
            .await?;
        ids.sort_unstable();
        let keys: Vec<Key> = ids.into_iter().map(Key::Client).collect();
        Ok(self
            .records(&keys)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                Some(Record::Client(c)) => Some(*c),
                _ => None,
            })
            .collect())
    }

    async fn user(&self, username: &str) -> Result<Option<User>, StoreError> {
        Ok(match self.record(Key::User(username.to_owned())).await? {
            Some(Record::User(u)) => Some(u),
            _ => None,
        })
    }

    async fn refresh_status(
        &self,
        digest: &str,
        now_secs: i64,
    ) -> Result<RefreshStatus, StoreError> {
        let Some(Record::Refresh(r)) = self.record(Key::Refresh(digest.to_owned())).await? else {
            return Ok(RefreshStatus::Unknown);
        };
        let revocation = self
            .revocation_state(None, &r.family_id, Some(&r.sub), &r.client_id)
            .await?;
        Ok(refresh_status(Some(*r), &revocation, now_secs))
    }

    async fn code_status(&self, digest: &str, now_secs: i64) -> Result<CodeStatus, StoreError> {
        let record = match self.record(Key::Code(digest.to_owned())).await? {
            Some(Record::Code(c)) => Some(*c),
            _ => None,
        };
        Ok(code_status(record, now_secs))
    }

    async fn is_revoked(&self, q: &RevocationQuery) -> Result<bool, StoreError> {
        Ok(self
            .revocation_state(Some(&q.jti), &q.family_id, q.sub.as_deref(), &q.client_id)
            .await?
            .revokes(q.auth_time_ms))
    }

    /// Answers only when the projection is ready.
    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|_, _| {}).await
    }
}
