//! The bulk tier: refresh tokens, authorization codes and token families, the records that
//! grow with the number of live grants, spread over 256 hash tags (one per value of a byte)
//! so that a Redis Cluster spreads them over its masters. The base slot keeps what does not
//! grow with live grants: revocations (a revoked family's record is copied there, for the
//! revocation check and the mirrors), watermarks, clients, users, and the control keys.
//!
//! A record's shard is the first byte of the SHA-256 of its id, so a reader finds it from
//! the digest it already holds, without knowing the token's family or Kafka partition. Each
//! shard has a marker per generation (`{P:xx}:G:ready`); a read that finds it missing (the
//! master holding that shard lost its data) fails closed.
//!
//! A batch's bulk records cannot be written in the script that writes the rest of the batch
//! and the partition's offset (another slot). That script therefore also stores them as the
//! partition's **pending** write (`P:G:pending`), atomically with the offset; they are then
//! written to their shards (`bulk.lua`) and the pending write cleared. A projector that
//! finds a pending write (its writer stopped in between) writes it before it reads anything,
//! so a batch always reads the bulk records of every batch before it. It reads the shards
//! only once the offset has answered, so what it reads there is never older than the offset
//! it read; if another writer moved on meanwhile, the offset check refuses the batch.
//!
//! Writing a pending write twice, or an older one after a newer one (two projectors during a
//! rebalance), changes nothing: a refresh token or code only ever goes from absent to issued
//! to used (`used_by`, `redeemed_by`, set once and computed the same by every writer), a
//! family's `until` only grows and `revoked` only becomes true, and `bulk.lua` never replaces
//! a record with one behind it.

use std::collections::BTreeMap;

use redis::{AsyncCommands, Script, Value};

use crate::connection::Batch;
use crate::store::cmd;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokend_domain::{Key, Record, StoreError};

use crate::RedisStore;
use crate::keys::{encode, parse_name};
use crate::store::unavailable;

/// Whether `key`'s record lives in a shard (the projector reads and writes it there).
pub(crate) fn is_bulk(key: &Key) -> bool {
    matches!(key, Key::Refresh(_) | Key::Code(_) | Key::Family(_))
}

/// Whether readers read `key` from its shard. A family's readers (the revocation check) read
/// the copy in the base slot instead, which is there only while the family is revoked.
pub(crate) fn read_from_shard(key: &Key) -> bool {
    matches!(key, Key::Refresh(_) | Key::Code(_))
}

/// The shard of a bulk record.
pub(crate) fn shard_of(key: &Key) -> u8 {
    let id = match key {
        Key::Refresh(id) | Key::Code(id) | Key::Family(id) => id,
        _ => return 0,
    };
    Sha256::digest(id.as_bytes())[0]
}

/// One record of a pending write: its name (`rt:…`), value, expire-at argument, and how
/// `bulk.lua` tells a stale value from a newer one (see there).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Write(String, String, String, String);

impl Write {
    pub(crate) fn of(key: &Key, record: Option<&Record>, at: String) -> Self {
        let name = crate::keys::record_key("", key);
        let rule = match record {
            Some(Record::Refresh(_)) => "used_by",
            Some(Record::Code(_)) => "redeemed_by",
            Some(Record::Family(_)) => "family",
            _ => "",
        };
        let value = record.map(encode).unwrap_or_default();
        Self(name, value, at, rule.to_owned())
    }
}

/// The stored form of a pending write: the batch's end offset and first offset, a newline,
/// the writes (JSON).
pub(crate) fn pending(first: u64, end: u64, writes: &[Write]) -> String {
    format!(
        "{end} {first}\n{}",
        serde_json::to_string(writes).unwrap_or_default()
    )
}

fn damaged() -> StoreError {
    StoreError::Unavailable("a pending bulk write does not decode".into())
}

fn decode_pending(payload: &str) -> Result<(&str, Vec<Write>), StoreError> {
    let (header, writes) = payload.split_once('\n').ok_or_else(damaged)?;
    let end = header.split(' ').next().unwrap_or_default();
    Ok((end, serde_json::from_str(writes).map_err(|_| damaged())?))
}

/// How long a flush waits for the shards' replicas before clearing its pending write.
const REPLICATION_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// Clears a partition's pending write if it is still the one written (by its end offset).
/// KEYS: the `pending` and `pending_from` hashes.
const CLEAR: &str = "
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and string.sub(v, 1, #ARGV[2]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return 0";

impl RedisStore {
    /// `{P:xx}`: the base of shard `shard`'s keys.
    pub(crate) fn shard_base(&self, shard: u8) -> String {
        format!("{{{}:{shard:02x}}}", self.prefix)
    }

    /// The Redis key of a record of `generation`, in the base slot or in its shard.
    pub(crate) fn key_name(&self, generation: &str, key: &Key) -> String {
        if is_bulk(key) {
            let base = self.shard_base(shard_of(key));
            crate::keys::record_key(&format!("{base}:{generation}:"), key)
        } else {
            crate::keys::record_key(&self.prefix_of(generation), key)
        }
    }

    /// The marker of shard `shard` in `generation`.
    pub(crate) fn shard_marker(&self, generation: &str, shard: u8) -> String {
        format!("{}:{generation}:ready", self.shard_base(shard))
    }

    /// Sets every shard's marker of `generation` (before it becomes live).
    pub(crate) async fn mark_shards(&self, generation: &str) -> Result<(), StoreError> {
        self.on_shards(generation, "SET", 0..=u8::MAX)
            .await
            .map(|_| ())
    }

    /// `command` (`SET` or `UNLINK`) on the markers of `shards` of `generation`.
    async fn on_shards(
        &self,
        generation: &str,
        command: &str,
        shards: impl IntoIterator<Item = u8>,
    ) -> Result<Vec<redis::Value>, StoreError> {
        let mut batch = Batch::default();
        for shard in shards {
            let marker = self.shard_marker(generation, shard);
            let mut c = cmd(command, &marker);
            if command == "SET" {
                c.arg(1);
            }
            batch.add(&marker, c);
        }
        batch.run(&self.con).await.map_err(unavailable)
    }

    /// Removes the markers of a generation that did not become live.
    pub(crate) async fn unmark_shards(&self, generation: &str) {
        let _ = self.on_shards(generation, "UNLINK", 0..=u8::MAX).await;
    }

    /// Writes every partition's pending bulk write of `generation`.
    pub(crate) async fn flush_all(&self, generation: &str) -> Result<(), StoreError> {
        let waiting: Vec<(u32, String)> = self
            .con
            .clone()
            .hgetall(format!("{}pending", self.prefix_of(generation)))
            .await
            .map_err(unavailable)?;
        for (partition, payload) in waiting {
            self.flush(generation, partition, &payload).await?;
        }
        Ok(())
    }

    /// Sets again the markers of shards that lost them (their master lost its data), so that
    /// their records read as unknown rather than the shard as unavailable; returns how many.
    /// What they held is in the log: `rebuild` brings it back.
    pub async fn repair_shards(&self) -> Result<usize, StoreError> {
        let Some(generation) = self.active_generation().await? else {
            return Ok(0);
        };
        let present = self.on_shards(&generation, "EXISTS", 0..=u8::MAX).await?;
        let lost: Vec<u8> = (0..=u8::MAX)
            .zip(present)
            .filter_map(|(shard, present)| (present == redis::Value::Int(0)).then_some(shard))
            .collect();
        if lost.is_empty() {
            return Ok(0);
        }
        // Still the live generation: a rebuild that just switched left this one behind.
        if self.active_generation().await?.as_deref() != Some(generation.as_str()) {
            return Ok(0);
        }
        tracing::error!(
            shards = lost.len(),
            %generation,
            "Shards of the refresh tokens and codes lost their data (a Redis master restarted empty): their tokens now read as unknown; `projector rebuild` restores them from the log."
        );
        self.on_shards(&generation, "SET", lost.iter().copied())
            .await?;
        Ok(lost.len())
    }

    /// Writes a partition's pending bulk write to its shards, then clears it.
    pub(crate) async fn flush(
        &self,
        generation: &str,
        partition: u32,
        payload: &str,
    ) -> Result<(), StoreError> {
        let (end, writes) = decode_pending(payload)?;
        let mut shards: BTreeMap<u8, Vec<&Write>> = BTreeMap::new();
        for write in &writes {
            let key = parse_name(&write.0).ok_or_else(|| {
                StoreError::Unavailable("a pending bulk write names no record".into())
            })?;
            shards.entry(shard_of(&key)).or_default().push(write);
        }
        // A generation being filled (a pinned handle) sets its markers as it goes; a live
        // one must find them (else its shard lost its data: see `repair_shards`).
        let create = if self.pinned.is_some() { "1" } else { "0" };
        let invocations: Vec<_> = shards
            .iter()
            .map(|(shard, writes)| {
                let base = format!("{}:{generation}:", self.shard_base(*shard));
                let mut invocation = self.bulk_script.prepare_invoke();
                invocation
                    .key(self.shard_marker(generation, *shard))
                    .arg(crate::apply::REPLAY_FLOOR_SECS)
                    .arg(create);
                for Write(name, value, at, field) in writes {
                    invocation.key(format!("{base}{name}"));
                    invocation.arg(value).arg(at).arg(field);
                }
                invocation
            })
            .collect();
        let mut con = self.con.clone();
        let mut batch = Batch::default();
        for (shard, invocation) in shards.keys().zip(&invocations) {
            // The invocation's EVALSHA (the script crate builds it only inside a pipeline).
            let mut one = redis::pipe();
            one.invoke_script(invocation);
            if let Some(evalsha) = one.cmd_iter().next() {
                batch.add(&self.shard_base(*shard), evalsha.clone());
            }
        }
        let outcomes: Vec<Value> = match batch.run(&con).await {
            Ok(outcomes) => outcomes,
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // A node that has not seen the script yet: these load it where needed.
                let mut outcomes = Vec::with_capacity(invocations.len());
                for invocation in &invocations {
                    outcomes.push(
                        invocation
                            .invoke_async(&mut con)
                            .await
                            .map_err(unavailable)?,
                    );
                }
                outcomes
            }
            Err(e) => return Err(unavailable(e)),
        };
        if outcomes.contains(&Value::Int(1)) {
            return Err(StoreError::Unavailable(
                "a shard of refresh tokens and codes lost its data; the projector's check sets it again".into(),
            ));
        }
        // The pending write is the only other copy: keep it until the shards' replicas have
        // these writes, so a failover right after cannot lose them (bounded: a replica that
        // does not answer only delays this).
        // (A Redis that refuses `ROLE` or `WAIT`, as some managed services do, is not waited
        // for.)
        match self.con.replicated(REPLICATION_WAIT).await {
            Ok(true) => {}
            Ok(false) => tracing::debug!("A replica did not acknowledge the shard writes in time."),
            Err(error) => tracing::debug!(%error, "Could not wait for the shards' replicas."),
        }
        let prefix = self.prefix_of(generation);
        static CLEAR_SCRIPT: std::sync::LazyLock<Script> =
            std::sync::LazyLock::new(|| Script::new(CLEAR));
        CLEAR_SCRIPT
            .key(format!("{prefix}pending"))
            .key(format!("{prefix}pending_from"))
            .arg(partition)
            .arg(format!("{end} "))
            .invoke_async::<()>(&mut con)
            .await
            .map_err(unavailable)
    }
}
