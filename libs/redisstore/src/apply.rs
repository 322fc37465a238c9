//! Applying a batch: read the records the batch touches and the partition's next offset
//! (one round trip), apply the events with the domain's own code (`tokend_domain::State`),
//! then write the changed records and the new offset with `write.lua`, which refuses if the
//! partition or the live generation moved meanwhile (then the batch is read again). The
//! offset acts as the partition's version: only events of that partition write its records,
//! so a write that finds the offset it read also finds the records it read. Refresh tokens
//! and codes go to their shards after that write ([`crate::bulk`]).

use redis::Value;
use tokend_domain::{Alignment, Applied, Key, Record, State, StoreError, align, keys};
use tokend_events::Event;

use crate::RedisStore;
use crate::bulk::{Write, is_bulk, pending, shard_of};
use crate::connection::Batch;
use crate::keys::{decode, encode, record_key};
use crate::store::{cmd, unavailable};

/// How often a batch is read again when another writer moved the partition meanwhile.
const MAX_ATTEMPTS: usize = 8;

/// Records outlive what they describe by this much, so a validator that accepts a token
/// `leeway_secs` past its `exp` still sees its revocation.
pub(crate) const EXPIRY_MARGIN_SECS: i64 = 300;

/// Records that later events of the log refer to (refresh tokens, codes, families) live at
/// least this long past their writing, whatever their own expiry: a replay writes them long
/// after they expired and must still find them when the rotation or redemption that follows
/// them in the log is applied (else a replayed reuse would go undetected).
pub(crate) const REPLAY_FLOOR_SECS: i64 = 86_400;

/// The expire-at argument of a record or a deletion.
fn at_of(record: Option<&Record>) -> String {
    record.map_or_else(|| "0".to_owned(), expire_at)
}

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
            let bulk: Vec<Write> = changes
                .iter()
                .filter(|(key, _)| is_bulk(key))
                .map(|(key, record)| Write::of(key, record.as_ref(), at_of(record.as_ref())))
                .collect();
            let pending = if bulk.is_empty() {
                String::new()
            } else {
                pending(next, end, &bulk)
            };
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
                .arg(end)
                .arg(REPLAY_FLOOR_SECS)
                .arg(&pending);
            // The base slot's part, with a copy of every revoked family (see `crate::bulk`).
            let revoked_family =
                |r: &Option<Record>| matches!(r, Some(Record::Family(f)) if f.revoked);
            for (key, record) in changes
                .iter()
                .filter(|(key, record)| !is_bulk(key) || revoked_family(record))
            {
                invocation.arg(record_key(&prefix, key));
                match record {
                    // A family's copy here is for readers only: no replay floor.
                    Some(r @ Record::Family(f)) => invocation
                        .arg(encode(r))
                        .arg((f.until + EXPIRY_MARGIN_SECS).max(1))
                        .arg(kind(r)),
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
                    if !pending.is_empty() && !self.stops_before_shards {
                        self.flush(&generation, partition, &pending).await?;
                    }
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
    /// that is no longer the live generation (for a handle that follows it). A pending bulk
    /// write of the partition (its writer stopped before writing it) is written first.
    async fn load(
        &self,
        generation: &str,
        partition: u32,
        touched: &[Key],
    ) -> Result<Option<(u64, State)>, StoreError> {
        let prefix = &self.prefix_of(generation);
        let (bulk, base): (Vec<&Key>, Vec<&Key>) = touched.iter().partition(|k| is_bulk(k));
        let mut shards: Vec<u8> = bulk.iter().map(|k| shard_of(k)).collect();
        shards.sort_unstable();
        shards.dedup();
        for _ in 0..MAX_ATTEMPTS {
            let mut batch = Batch::default();
            let offsets = format!("{prefix}offsets");
            let pending = format!("{prefix}pending");
            let hget = |key: &str| {
                let mut c = cmd("HGET", key);
                c.arg(partition);
                c
            };
            batch
                .add(prefix, cmd("GET", self.pointer_key()))
                .add(prefix, hget(&offsets))
                .add(prefix, hget(&pending));
            // Several slots: a MGET of the base slot's records, a GET per shard's record.
            // With the base slot's copy of each family (there if it is revoked: it stands even
            // where the shard lost the family or went back).
            let families = bulk.iter().filter(|k| matches!(k, Key::Family(_)));
            let names: Vec<String> = base
                .iter()
                .chain(families.clone())
                .map(|k| record_key(prefix, k))
                .collect();
            if !names.is_empty() {
                batch.add(prefix, cmd("MGET", &names));
            }
            // After the offset: a shard record read is never older than the offset read with
            // it (a writer that moved on meanwhile then fails the offset check, not this one).
            batch.then();
            for key in &bulk {
                let name = self.key_name(generation, key);
                batch.add(&name, cmd("GET", &name));
            }
            for shard in &shards {
                let marker = self.shard_marker(generation, *shard);
                batch.add(&marker, cmd("EXISTS", &marker));
            }
            let reply = batch.run(&self.con).await.map_err(unavailable)?;
            let mut reply = reply.into_iter();
            let mut next_value = || reply.next().unwrap_or(Value::Nil);
            let parse = |e: redis::ParsingError| StoreError::Unavailable(e.to_string());
            let live: Option<String> = redis::from_redis_value(next_value()).map_err(parse)?;
            let next: Option<u64> = redis::from_redis_value(next_value()).map_err(parse)?;
            let waiting: Option<String> = redis::from_redis_value(next_value()).map_err(parse)?;
            let mut values: Vec<Option<String>> = if names.is_empty() {
                Vec::new()
            } else {
                redis::from_redis_value(next_value()).map_err(parse)?
            };
            let copies: Vec<Option<String>> = values.split_off(base.len());
            for _ in &bulk {
                values.push(redis::from_redis_value(next_value()).map_err(parse)?);
            }
            let mut markers = true;
            for _ in &shards {
                markers &= redis::from_redis_value::<bool>(next_value()).map_err(parse)?;
            }
            if self.pinned.is_none() && live.as_deref() != Some(generation) {
                return Ok(None);
            }
            if let Some(waiting) = waiting {
                self.flush(generation, partition, &waiting).await?;
                continue;
            }
            if !markers && self.pinned.is_none() {
                return Err(StoreError::Unavailable(
                    "a shard of refresh tokens and codes lost its data; the projector's check sets it again".into(),
                ));
            }
            let mut copies = families.zip(copies);
            let mut state = State::tracking();
            for (key, value) in base.iter().chain(&bulk).zip(values) {
                let mut record = value.map(|v| decode(key, &v)).transpose()?;
                if matches!(key, Key::Family(_))
                    && let Some((_, Some(copy))) = copies.next()
                {
                    // The shard's family, with the base slot's copy of its revocation.
                    let copy = decode(key, &copy)?;
                    record = Some(match record {
                        Some(shard) => crate::mirror::merge(&copy, shard),
                        None => copy,
                    });
                }
                if let Some(record) = record {
                    state.load((*key).clone(), record);
                }
            }
            return Ok(Some((next.unwrap_or(0), state)));
        }
        Err(StoreError::Unavailable(format!(
            "partition {partition}'s pending bulk write keeps coming back"
        )))
    }
}
