//! The `StateStore` queries: each one pipeline (two for a refresh token, whose family and
//! watermarks are known only once it is read), checked against the ready marker, judged by
//! the domain's rules.

use async_trait::async_trait;
use std::collections::HashMap;
use tokend_domain::model::{
    Client, CodeStatus, RefreshStatus, RevocationQuery, RevocationState, User, code_status,
    refresh_status,
};

use tokend_domain::{Applied, Key, Record, RevocationKeys, StateStore, StoreError};
use tokend_events::Event;

use crate::RedisStore;
use crate::bulk::{read_from_shard, shard_of};
use crate::keys::{decode, record_key};
use crate::store::cmd;
use redis::Value;

impl RedisStore {
    /// Reads records by key in one round trip: a `MGET` of the base slot's, a `GET` of each
    /// one in a shard, with its shard's marker (a shard that lost its data fails closed). A
    /// family is read from its copy in the base slot (there while it is revoked: all the
    /// revocation check needs); with `whole_families` from its shard as well, for its
    /// presence (a refresh token whose family is gone is revoked).
    pub(crate) async fn records(
        &self,
        keys: &[Key],
        whole_families: bool,
    ) -> Result<Vec<Option<Record>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // Keys' indexes, the base slot's reads first, then the shards': the first value found
        // wins.
        let mut reads: Vec<usize> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            if !read_from_shard(key) {
                reads.push(i);
            }
        }
        let base_reads = reads.len();
        for (i, key) in keys.iter().enumerate() {
            if read_from_shard(key) || (whole_families && matches!(key, Key::Family(_))) {
                reads.push(i);
            }
        }
        let mut shards: Vec<u8> = reads[base_reads..]
            .iter()
            .map(|i| shard_of(&keys[*i]))
            .collect();
        shards.sort_unstable();
        shards.dedup();
        let reply: Vec<Value> = self
            .read(|generation, batch| {
                if base_reads > 0 {
                    let prefix = self.prefix_of(generation);
                    let names: Vec<String> = reads[..base_reads]
                        .iter()
                        .map(|i| record_key(&prefix, &keys[*i]))
                        .collect();
                    batch.add(&prefix, cmd("MGET", names));
                }
                for i in &reads[base_reads..] {
                    let name = self.key_name(generation, &keys[*i]);
                    batch.add(&name, cmd("GET", &name));
                }
                for shard in &shards {
                    let marker = self.shard_marker(generation, *shard);
                    batch.add(&marker, cmd("EXISTS", &marker));
                }
            })
            .await?;
        let parse = |e: redis::ParsingError| StoreError::Unavailable(e.to_string());
        let mut reply = reply.into_iter();
        let mut next = || reply.next().unwrap_or(Value::Nil);
        let mut values: Vec<Option<String>> = match base_reads {
            0 => Vec::new(),
            _ => redis::from_redis_value(next()).map_err(parse)?,
        };
        for _ in base_reads..reads.len() {
            values.push(redis::from_redis_value(next()).map_err(parse)?);
        }
        for _ in &shards {
            let marked: bool = redis::from_redis_value(next()).map_err(parse)?;
            if !marked && self.pinned.is_none() {
                return Err(StoreError::NotReady);
            }
        }
        let mut found: Vec<Option<String>> = vec![None; keys.len()];
        for (i, value) in reads.iter().zip(values) {
            if found[*i].is_none() {
                found[*i] = value;
            }
        }
        keys.iter()
            .zip(found)
            .map(|(k, v)| v.map(|v| decode(k, &v)).transpose())
            .collect()
    }

    async fn record(&self, key: Key) -> Result<Option<Record>, StoreError> {
        Ok(self.records(&[key], false).await?.pop().flatten())
    }

    /// What the revocation rule needs, in one round trip (`whole_families`: see `records`).
    async fn revocation_state(
        &self,
        q: RevocationKeys<'_>,
        whole_families: bool,
    ) -> Result<RevocationState, StoreError> {
        let keys = q.keys();
        let records = self.records(&keys, whole_families).await?;
        let found: HashMap<&Key, Record> = keys
            .iter()
            .zip(records)
            .filter_map(|(k, r)| Some((k, r?)))
            .collect();
        Ok(q.state(|key| found.get(key)))
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

    /// Up to where the partition is applied, its last batch's shard writes included (so a
    /// refresh token issued before it can be read).
    async fn next_offset(&self, partition: u32) -> Result<u64, StoreError> {
        let (next, pending_from): (Option<u64>, Option<u64>) = self
            .read(|generation, batch| {
                let prefix = self.prefix_of(generation);
                for hash in ["offsets", "pending_from"] {
                    let mut hget = cmd("HGET", format!("{prefix}{hash}"));
                    hget.arg(partition);
                    batch.add(&prefix, hget);
                }
            })
            .await?;
        Ok(pending_from.or(next).unwrap_or(0))
    }

    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        let cache = self.clients.as_deref();
        if let Some(client) = cache.and_then(|c| c.get(client_id)) {
            return Ok(Some(client));
        }
        let epoch = cache.map(|c| c.epoch());
        let client = match self.record(Key::Client(client_id.to_owned())).await? {
            Some(Record::Client(c)) => Some(*c),
            _ => None,
        };
        if let (Some(cache), Some(epoch), Some(client)) = (cache, epoch, &client) {
            cache.keep(epoch, client);
        }
        Ok(client)
    }

    async fn clients(&self) -> Result<Vec<Client>, StoreError> {
        let (mut ids,): (Vec<String>,) = self
            .read(|generation, batch| {
                let clients = format!("{}clients", self.prefix_of(generation));
                batch.add(&clients, cmd("SMEMBERS", &clients));
            })
            .await?;
        ids.sort_unstable();
        let keys: Vec<Key> = ids.into_iter().map(Key::Client).collect();
        Ok(self
            .records(&keys, false)
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
            .revocation_state(
                RevocationKeys::of_grant(&r.family_id, &r.sub, &r.client_id),
                true,
            )
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
        let keys = RevocationKeys::of_token(q);
        if let Some(state) = self.mirror.as_deref().and_then(|m| m.state(&keys)) {
            return Ok(state.revokes(q.auth_time_ms));
        }
        Ok(self
            .revocation_state(keys, false)
            .await?
            .revokes(q.auth_time_ms))
    }

    async fn reader_barrier(&self) -> Result<u64, StoreError> {
        RedisStore::reader_barrier(self).await
    }

    async fn readers_passed(&self, barrier: u64) -> Result<bool, StoreError> {
        RedisStore::readers_passed(self, barrier).await
    }

    /// Answers only when the projection is ready.
    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|_, _| {}).await
    }
}
