//! The near-cache of client records on a token node: issuance, introspection and revocation
//! authenticate a client on every request, and without it each of those costs a Redis round
//! trip and a decode.
//!
//! What keeps it current: the projector's change stream ([`crate::changes`]) names every
//! client record it writes to the live generation, in the same script as the write, and says
//! when the live generation changes (a rebuild's switch, a projection started afresh). On a
//! message the entry (or every entry) is dropped.
//!
//! When it is not current it is not used: until the subscription is confirmed, and from the
//! moment it breaks until it is back (every entry dropped both times), reads go to Redis as
//! before. A read that raced with a change is not kept: every message bumps an epoch, and a
//! record read from Redis is cached only if no message came while it was read. Entries also
//! expire after [`MAX_AGE`], a bound on staleness should a subscription die silently.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokend_domain::model::Client;

/// The longest an entry is served without being read again.
pub const MAX_AGE: Duration = Duration::from_secs(30);

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
    pub(crate) fn new(capacity: usize) -> Self {
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

    /// A change of client `id`, or of every client (`None`).
    pub(crate) fn changed(&self, id: Option<&str>) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        match id {
            Some(id) => {
                self.entries.remove(id);
            }
            None => self.entries.clear(),
        }
    }

    /// The stream is up (`true`) or broke (`false`; counted once per break).
    pub(crate) fn set_live(&self, live: bool) {
        if !live && self.is_live() {
            self.breaks.fetch_add(1, Ordering::Relaxed);
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.clear();
        self.live.store(live, Ordering::Release);
    }
}
