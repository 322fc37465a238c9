//! Generations of the projection and the ready marker.
//!
//! `P:live` names the live generation. Writers (projectors) create one when there is none
//! (first start, or Redis lost its data): `SET NX`, so concurrent projectors agree. A
//! generation is **ready** once every partition has been applied up to the end of the log as
//! it was when the generation began ([`RedisStore::mark_complete`]); until then readers get
//! `NotReady`. `rebuild` fills a pinned generation and switches to it with
//! [`RedisStore::activate`] only once it has caught up with the live one.

use std::sync::Arc;

use redis::{AsyncCommands, Script};
use sha2::{Digest, Sha256};
use tokend_domain::StoreError;

use crate::RedisStore;
use crate::store::unavailable;

/// What a projector needs to know of one of its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    /// The generation this was read from (the live one).
    pub generation: String,
    /// The next offset to apply.
    pub next: u64,
    /// The partition has been applied up to the end of the log since the generation began.
    pub complete: bool,
}

/// Why [`RedisStore::activate`] did not switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activation {
    Switched {
        previous: Option<String>,
    },
    /// The live generation is further along on `partition`: apply up to `needed` first.
    Behind {
        partition: u32,
        needed: u64,
    },
    /// The new generation holds less than was applied to it on `partition` (Redis lost
    /// data meanwhile): it must not become live.
    Lost {
        partition: u32,
    },
}

/// Completion and its reverse, against one generation: refused (0) unless it is still the
/// live one and, when completing, the partition has really reached `min_next`.
const COMPLETION: &str = "
local live = redis.call('GET', KEYS[1])
if live ~= ARGV[1] then return 0 end
local prefix = ARGV[2]
if ARGV[5] == 'complete' then
  local next = tonumber(redis.call('HGET', prefix .. 'offsets', ARGV[3]) or '0')
  if next < tonumber(ARGV[4]) then return 0 end
  redis.call('HSET', prefix .. 'complete', ARGV[3], '1')
  if redis.call('HLEN', prefix .. 'complete') >= tonumber(ARGV[6]) then
    redis.call('SET', prefix .. 'ready', '1')
  end
  return 1 + redis.call('EXISTS', prefix .. 'ready')
end
redis.call('HDEL', prefix .. 'complete', ARGV[3])
redis.call('DEL', prefix .. 'ready')
return 1";

/// Makes a generation live when there is none, with the marker that says its revocation
/// index is whole (every write to it kept the index: the revocation mirror may load it).
const CREATE: &str = "
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('SET', ARGV[2], '1')
  return 1
end
return 0";

/// The longest a rebuild may pause writes to the live generation before switching; if the
/// rebuild dies meanwhile, writes resume by themselves after this.
pub const FENCE_MS: u64 = 10_000;

/// A fresh generation name.
pub fn new_generation_name() -> String {
    format!("g{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

impl RedisStore {
    /// The live generation, read from the pointer now (`None`: no projection).
    pub async fn active_generation(&self) -> Result<Option<String>, StoreError> {
        self.con
            .clone()
            .get(self.pointer_key())
            .await
            .map_err(unavailable)
    }

    /// The generation a writer writes: the pinned one, or the live one, created when there
    /// is none.
    pub(crate) async fn writer_generation(&self) -> Result<String, StoreError> {
        if let Some(g) = &self.pinned {
            return Ok(g.to_string());
        }
        let seen = self.generation_guess();
        if !seen.is_empty() {
            return Ok(seen);
        }
        if let Some(live) = self.active_generation().await? {
            self.saw_generation(Some(live.clone()));
            return Ok(live);
        }
        let mut con = self.con.clone();
        let name = new_generation_name();
        // Before it can become live: a live generation's shard without its marker lost its data.
        self.mark_shards(&name).await?;
        let created: bool = Script::new(CREATE)
            .key(self.pointer_key())
            .arg(&name)
            .arg(format!("{}index", self.prefix_of(&name)))
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        let live = self
            .active_generation()
            .await?
            .ok_or_else(|| StoreError::Unavailable("the generation pointer vanished".into()))?;
        if !created {
            self.unmark_shards(&name).await;
        }
        if created {
            // Readers of the layout before the shards follow `P:active`, which no projector of
            // this layout keeps current: without it they answer 503 rather than from it.
            let _: redis::RedisResult<i64> = redis::cmd("DEL")
                .arg(format!("{}:active", self.base))
                .query_async(&mut con)
                .await;
            let _: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(crate::changes::channel(&self.base))
                .arg(crate::changes::FLUSH)
                .query_async(&mut con)
                .await;
            tracing::warn!(generation = %live, "No projection in Redis (a first start, or its data was lost): started a new generation; readers get 503 until it is complete.");
        }
        self.saw_generation(Some(live.clone()));
        Ok(live)
    }

    /// A handle that reads and writes generation `generation` only.
    pub fn generation(&self, generation: &str) -> RedisStore {
        let mut pinned = self.clone();
        pinned.pinned = Some(Arc::from(generation));
        pinned
    }

    /// The generation a pinned handle reads and writes.
    pub fn pinned_generation(&self) -> Option<&str> {
        self.pinned.as_deref()
    }

    /// Where `partition` stands in the live generation (creating one when there is none);
    /// `None` when the live generation changed under the read (ask again).
    pub async fn partition_state(
        &self,
        partition: u32,
    ) -> Result<Option<PartitionState>, StoreError> {
        let generation = self.writer_generation().await?;
        let prefix = self.prefix_of(&generation);
        let (pointer, next, complete, pending): (Option<String>, Option<u64>, bool, bool) =
            redis::pipe()
                .atomic()
                .get(self.pointer_key())
                .hget(format!("{prefix}offsets"), partition)
                .hexists(format!("{prefix}complete"), partition)
                .hexists(format!("{prefix}pending_from"), partition)
                .query_async(&mut self.con.clone())
                .await
                .map_err(unavailable)?;
        if self.pinned.is_none() && pointer.as_deref() != Some(generation.as_str()) {
            self.saw_generation(None); // lost or switched: resolve it again next time
            return Ok(None);
        }
        // Shard writes left by a writer that stopped: the projector's periodic check does
        // them, so that they do not wait for the partition's next record.
        if pending {
            let payload: Option<String> = self
                .con
                .clone()
                .hget(format!("{prefix}pending"), partition)
                .await
                .map_err(unavailable)?;
            // Not done now (a shard's master away): the state is still worth having (the
            // check that uses it also notices a projection that went back).
            if let Some(payload) = payload
                && let Err(error) = self.flush(&generation, partition, &payload).await
            {
                tracing::debug!(%error, partition, "Pending shard writes not done yet.");
            }
        }
        Ok(Some(PartitionState {
            generation,
            next: next.unwrap_or(0),
            complete,
        }))
    }

    async fn completion(
        &self,
        generation: &str,
        partition: u32,
        min_next: u64,
        what: &str,
        partitions: u32,
    ) -> Result<i64, StoreError> {
        Script::new(COMPLETION)
            .key(self.pointer_key())
            .arg(generation)
            .arg(self.prefix_of(generation))
            .arg(partition)
            .arg(min_next)
            .arg(what)
            .arg(partitions)
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(unavailable)
    }

    /// Records that `partition` of the live `generation` has applied the log up to `min_next`
    /// (its end); once all `partitions` are complete the generation is ready for readers.
    /// Refused if `generation` is no longer live or the partition is not that far. Returns
    /// whether the generation is ready.
    pub async fn mark_complete(
        &self,
        generation: &str,
        partition: u32,
        min_next: u64,
        partitions: u32,
    ) -> Result<bool, StoreError> {
        let outcome = self
            .completion(generation, partition, min_next, "complete", partitions)
            .await?;
        Ok(outcome == 2)
    }

    /// The partition went back (a failover to a replica that missed writes, a restore):
    /// readers get `NotReady` until it has caught up again and is marked complete.
    pub async fn mark_incomplete(
        &self,
        generation: &str,
        partition: u32,
    ) -> Result<(), StoreError> {
        self.completion(generation, partition, 0, "incomplete", 0)
            .await
            .map(|_| ())
    }

    /// Pauses writes to the live generation `live` for at most `FENCE_MS` (the time a
    /// rebuild needs to catch up with offsets that no longer move, then switch; the switch
    /// lifts it). Writers wait meanwhile; readers are not affected.
    pub async fn fence(&self, live: &str) -> Result<(), StoreError> {
        redis::cmd("SET")
            .arg(format!("{}:fence", self.pointer_key()))
            .arg(live)
            .arg("PX")
            .arg(FENCE_MS)
            .query_async::<()>(&mut self.con.clone())
            .await
            .map_err(unavailable)
    }

    /// Switches readers and writers to `generation` if it still holds what was `applied`
    /// to it (partition → next offset) and has applied at least as far as the live one on
    /// every partition; marks it ready.
    pub async fn activate(
        &self,
        generation: &str,
        applied: &[(u32, u64)],
    ) -> Result<Activation, StoreError> {
        // Its refresh tokens and codes all in their shards, every shard marked.
        self.generation(generation).flush_all(generation).await?;
        self.mark_shards(generation).await?;
        let switch = Script::new(include_str!("switch.lua"));
        let mut script = switch.prepare_invoke();
        script
            .key(self.pointer_key())
            .arg(format!("{}:", self.base))
            .arg(generation);
        for (p, next) in applied {
            script.arg(p).arg(next);
        }
        let (outcome, a, b): (u8, String, Option<u64>) = script
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(unavailable)?;
        let partition = a.parse().unwrap_or_default();
        Ok(match outcome {
            0 => Activation::Switched {
                previous: Some(a).filter(|g| !g.is_empty()),
            },
            1 => Activation::Behind {
                partition,
                needed: b.unwrap_or_default(),
            },
            _ => Activation::Lost { partition },
        })
    }

    /// Every key of `generation`: in the base slot and in every shard (on every master).
    async fn keys_of(&self, generation: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let patterns = [
            format!("{}*", self.prefix_of(generation)),
            format!("{{{}:??}}:{generation}:*", self.prefix),
        ];
        for pattern in patterns {
            keys.append(&mut self.con.scan(&pattern).await.map_err(unavailable)?);
        }
        keys.sort_unstable();
        keys.dedup(); // SCAN may return a key twice
        Ok(keys)
    }

    /// Removes every key of `generation`.
    pub async fn delete_generation(&self, generation: &str) -> Result<(), StoreError> {
        let keys = self.keys_of(generation).await?;
        // One command per key: they are in many slots.
        for chunk in keys.chunks(500) {
            let mut batch = crate::connection::Batch::default();
            for key in chunk {
                batch.add(key, crate::store::cmd("UNLINK", key));
            }
            batch.run(&self.con).await.map_err(unavailable)?;
        }
        Ok(())
    }

    /// SHA-256 (hex) of the generation this handle reads: every record and offset (relative
    /// to the generation) with its value in canonical form; markers and TTLs left out.
    pub async fn digest(&self) -> Result<String, StoreError> {
        let generation = match &self.pinned {
            Some(g) => g.to_string(),
            None => self.active_generation().await?.unwrap_or_default(),
        };
        let infix = format!(":{generation}:");
        let mut hasher = Sha256::new();
        let mut con = self.con.clone();
        let mut keys: Vec<(String, String)> = self
            .keys_of(&generation)
            .await?
            .into_iter()
            .filter_map(|key| Some((key.split_once(&infix)?.1.to_owned(), key)))
            .collect();
        keys.sort_unstable(); // by name, wherever the shards put them
        for (name, key) in keys {
            let name = name.as_str();
            // Markers, the bulk writes in flight, and the revocation index (its scores are
            // expiry times, which differ between a replay and the live writes).
            if matches!(
                name,
                "ready" | "complete" | "index" | "revocations" | "pending" | "pending_from"
            ) {
                continue;
            }
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query_async(&mut con)
                .await
                .map_err(unavailable)?;
            let value: Vec<String> = match kind.as_str() {
                "string" => vec![con.get(&key).await.map_err(unavailable)?],
                "hash" => {
                    let mut pairs: Vec<(String, String)> =
                        con.hgetall(&key).await.map_err(unavailable)?;
                    pairs.sort_unstable();
                    pairs.into_iter().flat_map(|(k, v)| [k, v]).collect()
                }
                "set" => {
                    let mut members: Vec<String> = con.smembers(&key).await.map_err(unavailable)?;
                    members.sort_unstable();
                    members
                }
                _ => continue, // expired between SCAN and TYPE
            };
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(kind.as_bytes());
            for v in value {
                hasher.update([0]);
                hasher.update(v.as_bytes());
            }
            hasher.update([0xff]);
        }
        Ok(hex::encode(hasher.finalize()))
    }
}
