//! The revocation mirror: every record the revocation check reads, in a node's (or a
//! resource server's) memory, so that validating a token costs no Redis round trip.
//!
//! **What it holds.** Revoked tokens, revoked families, subject and client watermarks and
//! revoked signing keys of the live generation: the revocations, not the tokens, so its size
//! is bounded by the revocations still within their tokens' lifetimes (at most
//! `redis.revocation_mirror` entries; past that it steps aside). Each generation keeps an
//! index of them by expiry (`P:G:revocations`, written by `write.lua`); the mirror loads it
//! once subscribed to the change stream ([`crate::changes`]), then applies the `r` messages
//! the projector publishes with each write. Every one of these records only grows (a family
//! is never un-revoked, a watermark only rises), so a message and the snapshot merge to the
//! same state in either order.
//!
//! **When it answers.** Only while it holds a lease. Every 250 ms it renews a lease in Redis
//! (a script that also checks that the generation it loaded is still live and ready), *then*
//! pings its subscription and applies everything queued before the answer (the ping proves
//! that everything published before it is queued), and only then answers, for [`SERVE`]
//! after the moment it sent the renewal. So a revoker that found no lease, or a lapsed one,
//! published its revocation before a renewal that the mirror only acts on once it has read
//! what came before. Otherwise (not yet loaded, stream broken, generation switched, Redis
//! lost its data, too many entries) the check goes to Redis as before, which fails closed.
//!
//! **Strict revocation keeps its zero window.** Once the projection has applied a strict
//! revocation, the revoking node takes a barrier ([`RedisStore::reader_barrier`]): a number
//! from `P:mirrors:sync`, published on the stream after the revocation's own message. Every
//! mirror acknowledges the barriers it has read (`P:mirrors:acks`), and the node answers
//! only when every mirror whose lease is current has acknowledged it
//! ([`RedisStore::readers_passed`]). A mirror that cannot acknowledge (cut off, frozen) is
//! waited for until its lease lapses ([`LEASE`], twice [`SERVE`]: by then it has stopped
//! answering by itself), or until the revocation's own time limit. For [`LEASE`] after the
//! lease table began (`P:mirrors:since`: a first start, or Redis lost its data and with it the
//! leases of mirrors that may still be answering) no mirror is excused at all.
//!
//! Assumed: Redis's clock does not step forward by more than `LEASE - SERVE` (1 s) at once,
//! and a failover loses less than that much of the lease table's writes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::connection::Con;
use redis::Script;
use tokend_domain::model::RevocationState;
use tokend_domain::{Key, Record, RevocationKeys, StoreError};

use crate::RedisStore;
use crate::keys::{decode, parse_name};
use crate::store::unavailable;

/// How long a mirror answers after the ping that preceded its last lease renewal.
pub const SERVE: Duration = Duration::from_secs(1);
/// How long revokers wait for a mirror that stopped renewing its lease.
pub const LEASE: Duration = Duration::from_secs(2);
/// After overflowing, how long a mirror waits before loading again.
const OVERFLOW_PAUSE: Duration = Duration::from_secs(60);
/// Values read per `MGET` while loading.
const LOAD_CHUNK: usize = 1000;
/// After a failed load, how long a mirror waits before loading again.
const LOAD_RETRY: Duration = Duration::from_secs(5);

/// Whether the mirror holds `record` (the records the revocation check reads, when they
/// revoke something).
pub(crate) fn mirrored(record: &Record) -> bool {
    match record {
        Record::RevokedToken(_) | Record::Watermark(_) | Record::RevokedKey(_) => true,
        Record::Family(f) => f.revoked,
        Record::Client(_) | Record::User(_) | Record::Refresh(_) | Record::Code(_) => false,
    }
}

/// Two versions of a record, in either order: the one that revokes more.
pub(crate) fn merge(old: &Record, new: Record) -> Record {
    match (old, new) {
        (Record::Watermark(a), Record::Watermark(b)) => Record::Watermark((*a).max(b)),
        (Record::Family(a), Record::Family(mut b)) => {
            b.revoked |= a.revoked;
            b.until = b.until.max(a.until);
            Record::Family(b)
        }
        (_, new) => new,
    }
}

fn sync_key(base: &str) -> String {
    format!("{base}:mirrors:sync")
}
fn leases_key(base: &str) -> String {
    format!("{base}:mirrors:leases")
}
fn acks_key(base: &str) -> String {
    format!("{base}:mirrors:acks")
}
fn since_key(base: &str) -> String {
    format!("{base}:mirrors:since")
}

/// Renews (or gives up) a mirror's lease, records an acknowledgement, and says where the
/// live generation stands. KEYS: pointer, leases, acks, since, sync counter. ARGV: base prefix "P:", mirror
/// id, the generation the mirror holds ("" none), the highest barrier it has read ("" none),
/// the run id of the node its subscription is on.
/// Returns {now ms, live generation or "", ready, indexed, renewed, elsewhere}: `elsewhere`
/// (nothing done) when this node is not the one subscribed to (a failover moved the slot, or
/// Redis restarted), since only the node that publishes orders its messages before a ping.
///
/// The acknowledgement is never above the barrier counter: a counter that went back (Redis
/// lost data, or failed over to a replica that missed the last barriers) must not find the
/// mirror's older, higher acknowledgement standing for barriers it has not read. One mirror's
/// calls are made one after another (one task), so a plain write keeps the latest. A mirror
/// that holds a generation which is no longer live keeps its lease: it answers until it reads
/// this reply, and only its next call, holding nothing, gives the lease up.
const LEASE_SCRIPT: &str = "
local here = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') or ''
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('SET', KEYS[4], now, 'NX')
local live = redis.call('GET', KEYS[1]) or ''
local ready, index = 0, 0
if live ~= '' then
  ready = redis.call('EXISTS', ARGV[1] .. live .. ':ready')
  index = redis.call('EXISTS', ARGV[1] .. live .. ':index')
end
if here ~= ARGV[5] then return {now, live, ready, index, 0, 1} end
if ARGV[4] ~= '' then
  local ack = math.min(tonumber(ARGV[4]), tonumber(redis.call('GET', KEYS[5]) or '0'))
  redis.call('HSET', KEYS[3], ARGV[2], ack)
end
local renewed = 0
if ARGV[3] ~= '' and ARGV[3] == live and ready == 1 then
  redis.call('HSET', KEYS[2], ARGV[2], now)
  renewed = 1
elseif ARGV[3] == '' then
  redis.call('HDEL', KEYS[2], ARGV[2])
end
return {now, live, ready, index, renewed, 0}";

/// What a mirror loads, read at one instant. KEYS: pointer, sync counter. ARGV: base prefix
/// "P:", capacity. Returns {live generation, barrier reached, names...}, or {live, -1}
/// when the generation is not ready or not indexed, or {live, -2, count} when it holds
/// more than the capacity.
const SNAPSHOT_SCRIPT: &str = "
local live = redis.call('GET', KEYS[1])
if not live then return {'', -1} end
local prefix = ARGV[1] .. live .. ':'
if redis.call('EXISTS', prefix .. 'ready') == 0 or redis.call('EXISTS', prefix .. 'index') == 0 then
  return {live, -1}
end
local now = redis.call('TIME')[1]
local count = redis.call('ZCOUNT', prefix .. 'revocations', now, '+inf')
if count > tonumber(ARGV[2]) then return {live, -2, count} end
local reply = {live, tonumber(redis.call('GET', KEYS[2]) or '0')}
for _, name in ipairs(redis.call('ZRANGEBYSCORE', prefix .. 'revocations', now, '+inf')) do
  reply[#reply + 1] = name
end
return reply";

/// A strict revocation's barrier: published on the change stream. KEYS: sync counter,
/// since. ARGV: channel.
const BARRIER_SCRIPT: &str = "
local t = redis.call('TIME')
redis.call('SET', KEYS[2], t[1] * 1000 + math.floor(t[2] / 1000), 'NX')
local n = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], '? ' .. n)
return n";

/// How many mirrors with a current lease have not acknowledged barrier ARGV[1] (plus one
/// while the lease table is younger than a lease: a mirror whose lease was lost with Redis's
/// data may still answer); forgets mirrors whose lease lapsed a minute ago. KEYS: leases,
/// acks, since. ARGV: barrier, lease ms.
const PASSED_SCRIPT: &str = "
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local barrier = tonumber(ARGV[1])
local leases = redis.call('HGETALL', KEYS[1])
local pending = 0
if now < tonumber(redis.call('GET', KEYS[3]) or now) + tonumber(ARGV[2]) then pending = 1 end
for i = 1, #leases, 2 do
  local id, at = leases[i], tonumber(leases[i + 1])
  if at + tonumber(ARGV[2]) < now then
    if at + 60000 < now then
      redis.call('HDEL', KEYS[1], id)
      redis.call('HDEL', KEYS[2], id)
    end
  elseif tonumber(redis.call('HGET', KEYS[2], id) or '0') < barrier then
    pending = pending + 1
  end
end
return pending";

type Entries = HashMap<Key, (Record, i64)>;

/// What readers see, changed only under the write lock (so an answer is computed from
/// entries that belong to the serving window it checked).
#[derive(Default)]
struct Held {
    entries: Entries,
    /// The generation the entries are of (`None`: not loaded).
    generation: Option<String>,
    /// Answers until this many nanoseconds after `Mirror::started` (0: not answering).
    serve_until: u64,
    /// Bumped by every step aside: a lease taken before one does not start serving.
    epoch: u64,
}

pub struct Mirror {
    id: String,
    base: String,
    con: Con,
    capacity: usize,
    held: RwLock<Held>,
    started: Instant,
    /// No loading before this many nanoseconds after `started` (after an overflow or a
    /// failed load).
    paused_until: AtomicU64,
    /// The highest barrier read since the last load (which sets it to the snapshot's), sent
    /// again with every renewal (a lost acknowledgement heals).
    acked: AtomicU64,
    /// Given up for good ([`Mirror::release`]): takes no new lease.
    released: AtomicBool,
    /// The run id of the node the change stream is subscribed on ("" none).
    node: RwLock<String>,
    /// The last lease call ran on another node than that: subscribe again.
    elsewhere: AtomicBool,
    checks: AtomicU64,
    step_asides: AtomicU64,
    fallbacks: AtomicU64,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("id", &self.id)
            .field("len", &self.len())
            .field("answering", &self.is_current())
            .finish_non_exhaustive()
    }
}

/// A lease renewed at a known moment, before the ping that lets it start serving.
pub(crate) struct Renewed {
    sent: Instant,
    epoch: u64,
}

impl Mirror {
    #[allow(
        clippy::disallowed_methods,
        reason = "leases are durations, not domain time"
    )]
    pub(crate) fn new(base: &str, con: Con, capacity: usize) -> Self {
        Self {
            id: uuid::Uuid::new_v4().simple().to_string(),
            base: base.to_owned(),
            con,
            capacity,
            held: RwLock::new(Held::default()),
            started: Instant::now(),
            paused_until: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            released: AtomicBool::new(false),
            node: RwLock::new(String::new()),
            elsewhere: AtomicBool::new(false),
            checks: AtomicU64::new(0),
            step_asides: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.started).as_nanos()).unwrap_or(u64::MAX)
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "leases are durations, not domain time"
    )]
    fn now(&self) -> u64 {
        self.nanos(Instant::now())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Held> {
        self.held.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Held> {
        self.held.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether it answers now (loaded, and within its lease).
    pub fn is_current(&self) -> bool {
        self.now() < self.read().serve_until
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many times it stopped answering (stream broken, generation changed, overflow).
    pub fn step_asides(&self) -> u64 {
        self.step_asides.load(Ordering::Relaxed)
    }

    /// How many revocation checks went to Redis because it could not answer.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// What the revocation rule needs, when the mirror may answer (else the caller reads
    /// Redis, counted in [`Mirror::fallbacks`]).
    pub(crate) fn state(&self, q: &RevocationKeys<'_>) -> Option<RevocationState> {
        let held = self.read();
        if self.now() >= held.serve_until {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(q.state(|key| held.entries.get(key).map(|(r, _)| r)))
    }

    /// Stops answering and drops everything; the next check loads again.
    pub(crate) fn step_aside(&self) {
        let mut held = self.write();
        if held.serve_until != 0 || held.generation.is_some() {
            self.step_asides.fetch_add(1, Ordering::Relaxed);
        }
        held.serve_until = 0;
        held.generation = None;
        held.epoch += 1;
        let dropped = std::mem::take(&mut held.entries);
        drop(held);
        drop(dropped); // a large map is freed outside the lock
    }

    /// A record the projector wrote (from the stream); ignored while not loaded (the load
    /// that follows reads it).
    pub(crate) fn record(&self, name: &str, value: &str, expires_at: i64) {
        if self.read().generation.is_none() {
            return; // not loaded: the load that follows reads it (checked again below)
        }
        let Some((key, record)) =
            parse_name(name).and_then(|k| decode(&k, value).ok().map(|r| (k, r)))
        else {
            // A record this build cannot read: it must not be taken for "not revoked".
            tracing::warn!(
                name,
                "Revocation mirror: a record it cannot decode; stepping aside."
            );
            self.step_aside();
            return;
        };
        let overflow = {
            let mut held = self.write();
            if held.generation.is_none() {
                return;
            }
            insert(&mut held.entries, key, record, expires_at);
            held.entries.len() > self.capacity
        };
        if overflow {
            self.overflowed();
        }
    }

    fn overflowed(&self) {
        tracing::warn!(
            capacity = self.capacity,
            "Revocation mirror: more revocations than redis.revocation_mirror allows; the revocation check reads Redis (raise the setting)."
        );
        self.step_aside();
        self.pause(OVERFLOW_PAUSE);
    }

    fn pause(&self, pause: Duration) {
        self.paused_until
            .store(self.now() + nanos(pause), Ordering::Release);
    }

    /// The change stream is now subscribed on the node with this run id ("" none).
    pub(crate) fn subscribed_on(&self, node: &str) {
        node.clone_into(&mut self.node.write().unwrap_or_else(PoisonError::into_inner));
        self.elsewhere.store(false, Ordering::Release);
    }

    /// Whether the projection's scripts run on another node than the one subscribed on.
    pub(crate) fn elsewhere(&self) -> bool {
        self.elsewhere.load(Ordering::Acquire)
    }

    /// Acknowledges a strict revocation's barrier (best effort: a mirror that cannot is
    /// waited for until its lease lapses).
    pub(crate) async fn acknowledge(&self, barrier: Option<u64>) {
        let Some(barrier) = barrier else { return };
        self.acked.fetch_max(barrier, Ordering::AcqRel);
        let generation = self.read().generation.clone();
        let Some(generation) = generation else { return }; // it holds no lease to answer for
        match tokio::time::timeout(LEASE, self.lease(&generation)).await {
            Ok(Ok(lease)) if !lease.renewed => self.step_aside(),
            Ok(Err(error)) => {
                tracing::debug!(%error, "Revocation mirror: an acknowledgement failed.");
            }
            _ => {}
        }
    }

    /// The first half of the periodic check: renew the lease (or give it up and step aside),
    /// loading first when not loaded. The mirror answers on the lease only once
    /// [`Mirror::serve`] is called with it, after the ping and the messages before it.
    pub(crate) async fn renew(&self) -> Option<Renewed> {
        if self.released.load(Ordering::Acquire) {
            return None;
        }
        let (loaded, epoch) = {
            let held = self.read();
            (held.generation.clone(), held.epoch)
        };
        #[allow(
            clippy::disallowed_methods,
            reason = "a lease's start, not domain time"
        )]
        let sent = Instant::now();
        let lease = match self.lease(loaded.as_deref().unwrap_or("")).await {
            Ok(lease) => lease,
            Err(error) => {
                tracing::debug!(%error, "Revocation mirror: lease not renewed.");
                self.step_aside();
                return None;
            }
        };
        if self.elsewhere() {
            self.step_aside(); // the stream is subscribed on the wrong node: not current
            return None;
        }
        if lease.renewed {
            if self
                .checks
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(64)
            {
                self.prune(lease.now_ms / 1000);
            }
            return Some(Renewed { sent, epoch });
        }
        if loaded.is_some() {
            self.step_aside(); // the generation moved, or lost its ready marker
        }
        let paused = self.now() < self.paused_until.load(Ordering::Acquire);
        if !lease.ready || !lease.indexed || paused {
            return None;
        }
        match self.load().await {
            Ok(renewed) => renewed,
            Err(error) => {
                tracing::warn!(%error, "Revocation mirror: loading failed; the revocation check reads Redis.");
                self.step_aside();
                self.pause(LOAD_RETRY);
                None
            }
        }
    }

    /// The second half: everything published before the ping that followed the renewal has
    /// been applied; answer until [`SERVE`] after the renewal was sent, unless the mirror
    /// stepped aside meanwhile.
    pub(crate) fn serve(&self, renewed: Renewed) {
        let until = self.nanos(renewed.sent) + nanos(SERVE);
        let mut held = self.write();
        if held.epoch == renewed.epoch
            && held.generation.is_some()
            && !self.released.load(Ordering::Acquire)
        {
            held.serve_until = held.serve_until.max(until);
        }
    }

    fn prune(&self, now_secs: i64) {
        self.write().entries.retain(|_, (_, at)| *at >= now_secs);
    }

    async fn lease(&self, generation: &str) -> Result<Lease, StoreError> {
        // Checked here, where every lease is taken (a renewal or load already under way when
        // the mirror was released must not put its lease back).
        if self.released.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable(
                "the revocation mirror was released".into(),
            ));
        }
        let acked = self.acked.load(Ordering::Acquire);
        let node = self
            .node
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let (now_ms, _live, ready, indexed, renewed, elsewhere): (i64, String, i64, i64, i64, i64) =
            Script::new(LEASE_SCRIPT)
                .key(crate::store::pointer_key(&self.base))
                .key(leases_key(&self.base))
                .key(acks_key(&self.base))
                .key(since_key(&self.base))
                .key(sync_key(&self.base))
                .arg(format!("{}:", self.base))
                .arg(&self.id)
                .arg(generation)
                .arg(if acked == 0 {
                    String::new()
                } else {
                    acked.to_string()
                })
                .arg(node)
                .invoke_async(&mut self.con.clone())
                .await
                .map_err(unavailable)?;
        if elsewhere == 1 {
            self.elsewhere.store(true, Ordering::Release);
        }
        Ok(Lease {
            now_ms,
            ready: ready == 1,
            indexed: indexed == 1,
            renewed: renewed == 1,
        })
    }

    /// Loads the live generation's revocations and takes a lease on them (not yet serving:
    /// see [`Mirror::renew`]).
    async fn load(&self) -> Result<Option<Renewed>, StoreError> {
        let mut con = self.con.clone();
        let reply: Vec<redis::Value> = Script::new(SNAPSHOT_SCRIPT)
            .key(crate::store::pointer_key(&self.base))
            .key(sync_key(&self.base))
            .arg(format!("{}:", self.base))
            .arg(self.capacity)
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        let parse = |e: redis::ParsingError| StoreError::Unavailable(e.to_string());
        let mut reply = reply.into_iter();
        let generation: String =
            redis::from_redis_value(reply.next().unwrap_or(redis::Value::Nil)).map_err(parse)?;
        let barrier: i64 =
            redis::from_redis_value(reply.next().unwrap_or(redis::Value::Nil)).map_err(parse)?;
        match barrier {
            -1 => return Ok(None), // not ready (or not indexed) after all
            -2 => {
                self.overflowed();
                return Ok(None);
            }
            _ => {}
        }
        let names: Vec<String> = reply
            .map(redis::from_redis_value)
            .collect::<Result<_, _>>()
            .map_err(parse)?;
        let prefix = format!("{}:{generation}:", self.base);
        let mut entries = Entries::with_capacity(names.len());
        for chunk in names.chunks(LOAD_CHUNK) {
            let keys: Vec<String> = chunk.iter().map(|n| format!("{prefix}{n}")).collect();
            let values: Vec<Option<String>> = redis::cmd("MGET")
                .arg(keys)
                .query_async(&mut con)
                .await
                .map_err(unavailable)?;
            for (name, value) in chunk.iter().zip(values) {
                let Some(value) = value else { continue }; // expired meanwhile
                let key = parse_name(name).ok_or_else(|| {
                    StoreError::Unavailable(format!("an unknown record kind in the index: {name}"))
                })?;
                let record = decode(&key, &value)?;
                // Its expiry is not needed exactly: pruning only frees memory.
                let expires_at = record.until().map_or(i64::MAX, |u| u + 86_400);
                insert(&mut entries, key, record, expires_at);
            }
        }
        let count = entries.len();
        let epoch = {
            let mut held = self.write();
            // From here the stream's records are applied to these entries.
            held.entries = entries;
            held.generation = Some(generation.clone());
            held.epoch
        };
        #[allow(
            clippy::disallowed_methods,
            reason = "a lease's start, not domain time"
        )]
        let sent = Instant::now();
        // Acknowledges the barrier read with the snapshot: the revocations before it are in.
        // Stored, not raised: what was read before the load does not carry over (the counter
        // may have gone back with Redis's data).
        self.acked
            .store(u64::try_from(barrier).unwrap_or(0), Ordering::Release);
        let lease = self.lease(&generation).await?;
        if !lease.renewed {
            self.step_aside(); // the generation moved meanwhile: the next check loads again
            return Ok(None);
        }
        tracing::info!(%generation, revocations = count, "Revocation mirror loaded.");
        Ok(Some(Renewed { sent, epoch }))
    }

    /// Gives up the lease, so strict revocations stop waiting for this mirror at once (a
    /// graceful stop; a mirror that just vanishes is waited for until its lease lapses).
    pub async fn release(&self) {
        self.released.store(true, Ordering::Release);
        self.step_aside();
        let mut con = self.con.clone();
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            self.release_pipe().query_async::<()>(&mut con),
        )
        .await;
    }

    fn release_pipe(&self) -> redis::Pipeline {
        redis::pipe()
            .hdel(leases_key(&self.base), &self.id)
            .hdel(acks_key(&self.base), &self.id)
            .to_owned()
    }
}

impl Drop for Mirror {
    /// Gives up the lease if a runtime is still there to send it (see [`Mirror::release`]).
    fn drop(&mut self) {
        if self.released.load(Ordering::Acquire) {
            return; // given up already
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut con = self.con.clone();
        let release = self.release_pipe();
        runtime.spawn(async move {
            let _ = tokio::time::timeout(LEASE, release.query_async::<()>(&mut con)).await;
        });
    }
}

struct Lease {
    now_ms: i64,
    ready: bool,
    indexed: bool,
    renewed: bool,
}

fn insert(entries: &mut Entries, key: Key, record: Record, expires_at: i64) {
    let expires_at = if expires_at == 0 {
        i64::MAX
    } else {
        expires_at
    };
    match entries.get_mut(&key) {
        Some((held, at)) => {
            *held = merge(held, record);
            *at = (*at).max(expires_at);
        }
        None => {
            entries.insert(key, (record, expires_at));
        }
    }
}

/// Records the time from a revocation's write in Redis (`written_us`, Redis's clock) to its
/// arrival in this process's mirror (this host's clock: keep clocks synchronised).
#[allow(clippy::disallowed_methods, reason = "a measurement, not domain time")]
pub(crate) fn observe_delay(written_us: i64) {
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    let delay = (now_us - written_us).max(0);
    tokend_telemetry::seconds_histogram!(
        "tokend",
        "tokend.revocation_mirror.delay",
        "from a revocation's write in Redis to its arrival in a node's or SDK's revocation mirror"
    )
    .record(delay as f64 / 1e6, &[]);
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl RedisStore {
    /// Keeps the revocation records in memory (at most `capacity`; 0 keeps none) and
    /// answers revocation checks from there while it can prove it is current. For token
    /// nodes and resource servers.
    #[must_use]
    pub fn with_revocation_mirror(self, capacity: usize) -> Self {
        self.with_near_caches(0, capacity)
    }

    /// The revocation mirror, when this handle has one.
    pub fn revocation_mirror(&self) -> Option<&Mirror> {
        self.mirror.as_deref()
    }

    /// The revocation mirror, held weakly (for metrics that must not keep it alive).
    pub fn revocation_mirror_weak(&self) -> Option<std::sync::Weak<Mirror>> {
        self.mirror.as_ref().map(std::sync::Arc::downgrade)
    }

    /// A barrier for strict revocation, taken once the projection applied it: see
    /// [`RedisStore::readers_passed`].
    pub async fn reader_barrier(&self) -> Result<u64, StoreError> {
        Script::new(BARRIER_SCRIPT)
            .key(sync_key(&self.base))
            .key(since_key(&self.base))
            .arg(crate::changes::channel(&self.base))
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(unavailable)
    }

    /// Whether every mirror that may be answering has read everything published before
    /// `barrier` (it acknowledged it, or its lease lapsed).
    pub async fn readers_passed(&self, barrier: u64) -> Result<bool, StoreError> {
        let pending: i64 = Script::new(PASSED_SCRIPT)
            .key(leases_key(&self.base))
            .key(acks_key(&self.base))
            .key(since_key(&self.base))
            .arg(barrier)
            .arg(u64::try_from(LEASE.as_millis()).unwrap_or(u64::MAX))
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(unavailable)?;
        Ok(pending == 0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokend_domain::model::FamilyRecord;

    #[test]
    fn versions_merge_to_the_one_that_revokes_more_in_either_order() {
        let family = |revoked, until| Record::Family(FamilyRecord { revoked, until });
        let cases = [
            (
                Record::Watermark(5),
                Record::Watermark(3),
                Record::Watermark(5),
            ),
            (family(true, 10), family(false, 20), family(true, 20)),
            (
                Record::RevokedToken(7),
                Record::RevokedToken(7),
                Record::RevokedToken(7),
            ),
        ];
        for (a, b, both) in cases {
            assert_eq!(merge(&a, b.clone()), both);
            assert_eq!(merge(&b, a), both);
        }
    }

    #[test]
    fn the_mirror_holds_what_revokes() {
        assert!(mirrored(&Record::Watermark(1)));
        assert!(mirrored(&Record::RevokedToken(1)));
        assert!(mirrored(&Record::RevokedKey(1)));
        let family = |revoked| Record::Family(FamilyRecord { revoked, until: 1 });
        assert!(mirrored(&family(true)));
        assert!(!mirrored(&family(false)));
    }
}
