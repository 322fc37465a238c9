//! Applying a batch: read the records the batch touches and the partition's next offset
//! (one round trip), apply the events with the domain's own code (`tokend_domain::State`),
//! then write the changed records and the new offset with `write.lua`, which refuses if the
//! partition or the live generation moved meanwhile (then the batch is read again). The
//! offset acts as the partition's version: only events of that partition write its records,
//! so a write that finds the offset it read also finds the records it read.

use redis::Value;
use tokend_domain::{Alignment, Applied, Key, Record, State, StoreError, align, keys};
use tokend_events::Event;

use crate::RedisStore;
use crate::keys::{decode, encode, record_key};
use crate::store::unavailable;

/// How often a batch is read again when another writer moved the partition meanwhile.
const MAX_ATTEMPTS: usize = 8;

/// Records outlive what they describe by this much, so a validator that accepts a token
/// `leeway_secs` past its `exp` still sees its revocation.
pub(crate) const EXPIRY_MARGIN_SECS: i64 = 300;

/// The expire-at argument of `write.lua` for a record.
fn expire_at(record: &Record) -> String {
    match record.until() {
        None => "0".to_owned(),
        // Later events refer to these: `write.lua` keeps them for at least its replay floor.
        Some(until)
            if matches!(
                record,
                Record::Family(_) | Record::Refresh(_) | Record::Code(_)
            ) =>
        {
            format!("+{}", (until + EXPIRY_MARGIN_SECS).max(1))
        }
        Some(until) => (until + EXPIRY_MARGIN_SECS).max(1).to_string(),
    }
}

/// The kind argument of `write.lua`: which near-cache follows the record.
fn kind(record: &Record) -> &'static str {
    match record {
        Record::Client(_) => "c",
        r if crate::mirror::mirrored(r) => "r",
        _ => "",
    }
}

impl RedisStore {
    /// Applies consecutive records of `partition` from `first`; returns the outcome and how
    /// many records were written.
    pub async fn apply_records(
        &self,
        partition: u32,
        first: u64,
        events: &[Option<&Event>],
    ) -> Result<(Applied, usize), StoreError> {
        let mut touched: Vec<Key> = events.iter().flatten().flat_map(|e| keys(e)).collect();
        touched.sort_unstable();
        touched.dedup();
        let end = first + events.len() as u64;
        let mut attempts = 0;
        while attempts < MAX_ATTEMPTS {
            attempts += 1;
            let generation = self.writer_generation().await?;
            let prefix = self.prefix_of(&generation);
            let Some((next, mut state)) = self.load(&generation, partition, &touched).await? else {
                self.saw_generation(None); // lost or switched: resolve it again
                continue;
            };
            let skip = match align(next, first, events.len()) {
                Alignment::Gap { next } => return Ok((Applied::Gap { next }, 0)),
                Alignment::Apply { skip } if skip == events.len() => {
                    let duplicates = events.len() as u64;
                    return Ok((Applied::Done { next, duplicates }, 0));
                }
                Alignment::Apply { skip } => skip,
            };
            for event in events[skip..].iter().flatten() {
                state.apply(event);
            }
            let changes = state.take_changes();
            let mut invocation = self.write_script.prepare_invoke();
            invocation
                .key(self.pointer_key())
                .arg(if self.pinned.is_some() {
                    ""
                } else {
                    &generation
                })
                .arg(&prefix)
                .arg(partition)
                .arg(next)
                .arg(end);
            for (key, record) in &changes {
                invocation.arg(record_key(&prefix, key));
                match record {
                    Some(r) => invocation.arg(encode(r)).arg(expire_at(r)).arg(kind(r)),
                    None => invocation.arg("").arg(0).arg(""),
                };
            }
            let (outcome, now_at): (u8, u64) = invocation
                .invoke_async(&mut self.con.clone())
                .await
                .map_err(unavailable)?;
            match outcome {
                0 => {
                    let duplicates = skip as u64;
                    return Ok((
                        Applied::Done {
                            next: now_at,
                            duplicates,
                        },
                        changes.len(),
                    ));
                }
                2 => self.saw_generation(None),
                3 => {
                    // A rebuild is switching generations (a fence of at most FENCE_MS):
                    // wait for the switch, then the write goes to the new generation.
                    attempts -= 1;
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                _ => {} // another writer moved the partition: read again
            }
        }
        Err(StoreError::Unavailable(format!(
            "partition {partition} kept moving under the projector"
        )))
    }

    /// The partition's next offset and the records named, from `generation`; `None` when
    /// that is no longer the live generation (for a handle that follows it).
    async fn load(
        &self,
        generation: &str,
        partition: u32,
        touched: &[Key],
    ) -> Result<Option<(u64, State)>, StoreError> {
        let prefix = &self.prefix_of(generation);
        let mut pipe = redis::pipe();
        pipe.get(self.pointer_key());
        pipe.hget(format!("{prefix}offsets"), partition);
        if !touched.is_empty() {
            let names: Vec<String> = touched.iter().map(|k| record_key(prefix, k)).collect();
            pipe.cmd("MGET").arg(names);
        }
        let mut reply: Vec<Value> = pipe
            .query_async(&mut self.con.clone())
            .await
            .map_err(unavailable)?;
        let parse = |e: redis::ParsingError| StoreError::Unavailable(e.to_string());
        let values: Vec<Option<String>> = match reply.len() {
            3 => redis::from_redis_value(reply.pop().unwrap_or(Value::Nil)).map_err(parse)?,
            _ => Vec::new(),
        };
        let next: Option<u64> =
            redis::from_redis_value(reply.pop().unwrap_or(Value::Nil)).map_err(parse)?;
        let live: Option<String> =
            redis::from_redis_value(reply.pop().unwrap_or(Value::Nil)).map_err(parse)?;
        if self.pinned.is_none() && live.as_deref() != Some(generation) {
            return Ok(None);
        }
        let mut state = State::tracking();
        for (key, value) in touched.iter().zip(values) {
            if let Some(value) = value {
                state.load(key.clone(), decode(key, &value)?);
            }
        }
        Ok(Some((next.unwrap_or(0), state)))
    }
}
