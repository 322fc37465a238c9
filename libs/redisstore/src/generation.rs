//! Generations of the projection: a pinned handle for `rebuild`, the atomic switch, removal,
//! and a digest of a whole generation for comparing projections.

use std::sync::Arc;

use redis::AsyncCommands;
use sha2::{Digest, Sha256};
use tokend_domain::StoreError;

use crate::RedisStore;
use crate::store::{default_generation, unavailable};

impl RedisStore {
    /// The live generation, read from the pointer now.
    pub async fn active_generation(&self) -> Result<String, StoreError> {
        let g: Option<String> = self
            .con
            .clone()
            .get(self.pointer_key())
            .await
            .map_err(unavailable)?;
        Ok(g.unwrap_or_else(default_generation))
    }

    /// A handle that reads and writes generation `generation` only.
    pub fn generation(&self, generation: &str) -> RedisStore {
        let mut pinned = self.clone();
        pinned.pinned = Some(Arc::from(generation));
        pinned
    }

    /// Switches every reader to `generation` (one `SET`; readers follow within a second).
    pub async fn activate(&self, generation: &str) -> Result<(), StoreError> {
        self.con
            .clone()
            .set(self.pointer_key(), generation)
            .await
            .map_err(unavailable)
    }

    async fn keys_of(&self, generation: &str) -> Result<Vec<String>, StoreError> {
        let pattern = format!("{}:{generation}:*", self.base);
        let mut con = self.con.clone();
        let mut iter: redis::AsyncIter<String> =
            con.scan_match(&pattern).await.map_err(unavailable)?;
        let mut keys = Vec::new();
        while let Some(item) = iter.next_item().await {
            keys.push(item.map_err(unavailable)?);
        }
        keys.sort_unstable();
        Ok(keys)
    }

    /// Removes every key of `generation`.
    pub async fn delete_generation(&self, generation: &str) -> Result<(), StoreError> {
        let keys = self.keys_of(generation).await?;
        for chunk in keys.chunks(500) {
            let _: () = self.con.clone().unlink(chunk).await.map_err(unavailable)?;
        }
        Ok(())
    }

    /// SHA-256 (hex) of the whole current generation: every key (relative to the generation)
    /// with its value in canonical form (hash fields and set members sorted); TTLs left out.
    pub async fn digest(&self) -> Result<String, StoreError> {
        let generation = self.current_generation().await?;
        let prefix = format!("{}:{generation}:", self.base);
        let mut hasher = Sha256::new();
        let mut con = self.con.clone();
        for key in self.keys_of(&generation).await? {
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
            hasher.update(key.trim_start_matches(&prefix).as_bytes());
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
