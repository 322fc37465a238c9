//! The near-cache of client records on a token node: issuance, introspection and revocation
//! authenticate a client on every request, and without it each of those costs a Redis round
//! trip and a decode.
//!
//! What keeps it current: the projector publishes the id of every client record it writes
//! to the live generation on `{prefix}:active:changes`, in the same script as the write, and
//! `*` when the live generation changes (a rebuild's switch, a projection started afresh).
//! A node subscribes, and on a message drops the entry (or all of them).
//!
//! When it is not current it is not used: until the subscription is confirmed, and from the
//! moment it breaks until it is back (every entry dropped both times), reads go to Redis as
//! before. A read that raced with a change is not kept: every message bumps an epoch, and a
//! record read from Redis is cached only if no message came while it was read. Entries also
//! expire after [`MAX_AGE`], a bound on staleness should a subscription die silently.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokend_domain::model::Client;

/// The longest an entry is served without being read again.
pub const MAX_AGE: Duration = Duration::from_secs(30);

/// The message that drops every entry.
pub(crate) const FLUSH: &str = "*";

pub(crate) fn channel(base: &str) -> String {
    format!("{base}:active:changes")
}

pub struct ClientCache {
    entries: quick_cache::sync::Cache<String, (Arc<Client>, Instant)>,
    epoch: AtomicU64,
    live: AtomicBool,
    breaks: AtomicU64,
}

impl std::fmt::Debug for ClientCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCache")
            .field("len", &self.entries.len())
            .field("live", &self.live.load(Ordering::Relaxed))
            .finish()
    }
}

impl ClientCache {
    fn new(capacity: usize) -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(capacity.max(1)),
            epoch: AtomicU64::new(0),
            live: AtomicBool::new(false),
            breaks: AtomicU64::new(0),
        }
    }

    /// Whether the subscription is up (entries are served only then).
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    #[allow(clippy::disallowed_methods, reason = "an entry's age, not domain time")]
    pub(crate) fn get(&self, id: &str) -> Option<Client> {
        if !self.is_live() {
            return None;
        }
        let (client, at) = self.entries.get(id)?;
        (at.elapsed() < MAX_AGE).then(|| Client::clone(&client))
    }

    /// How many times the change stream broke (the cache stepped aside each time).
    pub fn breaks(&self) -> u64 {
        self.breaks.load(Ordering::Relaxed)
    }

    /// The epoch to hand back to [`ClientCache::keep`] after reading from Redis.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Keeps what was read, unless a change came (or the subscription broke) since `epoch`.
    #[allow(clippy::disallowed_methods, reason = "an entry's age, not domain time")]
    pub(crate) fn keep(&self, epoch: u64, client: &Client) {
        if self.is_live() && self.epoch() == epoch {
            self.entries.insert(
                client.client_id.clone(),
                (Arc::new(client.clone()), Instant::now()),
            );
            // A message that came during the insert bumped the epoch after it: drop again.
            if self.epoch() != epoch {
                self.entries.remove(&client.client_id);
            }
        }
    }

    fn changed(&self, id: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if id == FLUSH {
            self.entries.clear();
        } else {
            self.entries.remove(id);
        }
    }

    fn set_live(&self, live: bool) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.clear();
        self.live.store(live, Ordering::Release);
    }
}

/// A cache of at most `capacity` clients, kept current by a task subscribed to `channel`
/// (it ends when the cache is dropped).
pub(crate) fn start(client: redis::Client, channel: String, capacity: usize) -> Arc<ClientCache> {
    let cache = Arc::new(ClientCache::new(capacity));
    tokio::spawn(follow(client, channel, Arc::downgrade(&cache)));
    cache
}

async fn follow(client: redis::Client, channel: String, cache: Weak<ClientCache>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match subscribe(&client, &channel, &cache).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(error) => {
                tracing::warn!(%error, "Client cache: no change stream from Redis; clients are read from Redis until it is back.");
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        let Some(c) = cache.upgrade() else { return };
        if c.is_live() {
            c.breaks.fetch_add(1, Ordering::Relaxed);
        }
        c.set_live(false);
        drop(c);
        tokio::time::sleep(backoff).await;
    }
}

/// How often a subscription is checked (a ping; a dropped cache ends it too). A connection
/// Redis closed shows only this way, so a change lost with it is served from memory at most
/// about this long, plus [`PING_LIMIT`] for a connection gone silent.
const CHECK_EVERY: Duration = Duration::from_millis(250);
const PING_LIMIT: Duration = Duration::from_secs(1);

/// One subscription, until it breaks (or the cache is dropped).
async fn subscribe(
    client: &redis::Client,
    channel: &str,
    cache: &Weak<ClientCache>,
) -> redis::RedisResult<()> {
    let subscribed = tokio::time::timeout(PING_LIMIT, async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        redis::RedisResult::Ok(pubsub)
    });
    let Ok(pubsub) = subscribed.await else {
        return Ok(()); // no answer (a frozen Redis): try again after the backoff
    };
    let pubsub = pubsub?;
    let (mut sink, mut messages) = pubsub.split();
    match cache.upgrade() {
        Some(c) => c.set_live(true),
        None => return Ok(()),
    }
    let mut check = tokio::time::interval(CHECK_EVERY);
    loop {
        let message = tokio::select! {
            message = messages.next() => message,
            _ = check.tick() => {
                if cache.strong_count() == 0 {
                    return Ok(());
                }
                match tokio::time::timeout(PING_LIMIT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => continue,
                    Ok(Err(error)) => return Err(error),
                    Err(_) => return Ok(()), // silent: subscribe afresh
                }
            }
        };
        let Some(message) = message else {
            return Ok(()); // the connection is gone
        };
        let Some(c) = cache.upgrade() else {
            return Ok(());
        };
        match message.get_payload::<String>() {
            Ok(id) => c.changed(&id),
            Err(_) => c.changed(FLUSH),
        }
    }
}
