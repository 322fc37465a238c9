//! The store handle: connection, the live generation, and reads that fail closed.
//!
//! Every read is one pipeline that also reads the generation pointer and the generation's
//! `ready` marker, so a reader never takes the absence of a record in a lost, reset or
//! half-rebuilt projection for "not revoked": it gets [`StoreError::NotReady`] instead. When
//! the pointer names another generation than the one the handle used, the read is repeated
//! there (a rebuild just switched readers).

use std::sync::{Arc, PoisonError, RwLock};

use redis::{Cmd, FromRedisValue, Script};
use tokend_domain::StoreError;

use crate::RedisSettings;
use crate::connection::{Batch, Con, Origin};

pub(crate) fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

#[derive(Clone)]
pub struct RedisStore {
    pub(crate) con: Con,
    pub(crate) base: Arc<str>,
    /// The key prefix itself (`base` without its braces): the shards' tags start with it.
    pub(crate) prefix: Arc<str>,
    /// A handle pinned to one generation (rebuild, tests) instead of following `P:live`;
    /// its reads do not require the generation to be ready.
    pub(crate) pinned: Option<Arc<str>>,
    /// The live generation as last seen.
    seen: Arc<RwLock<Option<String>>>,
    pub(crate) write_script: Arc<Script>,
    pub(crate) bulk_script: Arc<Script>,
    /// Where the near-caches subscribe.
    origin: Origin,
    /// A token node's near-cache of client records (none for other users of the store).
    pub(crate) clients: Option<Arc<crate::clients::ClientCache>>,
    /// The revocation mirror of a node or resource server.
    pub(crate) mirror: Option<Arc<crate::mirror::Mirror>>,
    /// Tests: a writer that stops after a batch's write, before its shard writes.
    pub(crate) stops_before_shards: bool,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("base", &self.base)
            .field("pinned", &self.pinned)
            .finish_non_exhaustive()
    }
}

/// What a read found besides its data.
pub(crate) enum Resolved<T> {
    Data(T),
    /// The pointer names another generation: read again there.
    Moved,
}

impl RedisStore {
    /// Connects (multiplexed, reconnecting by itself) to the projection under `base_prefix`.
    /// Commands that get no answer within `response_timeout` fail, so a frozen Redis makes
    /// callers answer 503 rather than wait.
    pub async fn connect(url: &str, base_prefix: &str) -> Result<Self, StoreError> {
        Self::connect_with(&RedisSettings {
            url: url.to_owned(),
            key_prefix: base_prefix.to_owned(),
            ..RedisSettings::default()
        })
        .await
    }

    pub async fn connect_with(settings: &RedisSettings) -> Result<Self, StoreError> {
        let (con, origin) = crate::connection::connect(settings)
            .await
            .map_err(unavailable)?;
        Ok(Self {
            origin,
            clients: None,
            mirror: None,
            stops_before_shards: false,
            con,
            base: base_key(&settings.key_prefix).into(),
            prefix: settings.key_prefix.as_str().into(),
            pinned: None,
            seen: Arc::new(RwLock::new(None)),
            write_script: Arc::new(Script::new(include_str!("write.lua"))),
            bulk_script: Arc::new(Script::new(include_str!("bulk.lua"))),
        })
    }

    /// Keeps up to `clients` client records and up to `revocations` revocation records in
    /// memory, current through the projector's change stream (see [`crate::clients`] and
    /// [`crate::mirror`]); 0 keeps none. For token nodes (both) and resource servers
    /// (revocations). One subscription serves both.
    #[must_use]
    pub fn with_near_caches(mut self, clients: usize, revocations: usize) -> Self {
        self.clients = (clients > 0).then(|| Arc::new(crate::clients::ClientCache::new(clients)));
        self.mirror = (revocations > 0).then(|| {
            Arc::new(crate::mirror::Mirror::new(
                &self.base,
                self.con.clone(),
                revocations,
            ))
        });
        if self.clients.is_some() || self.mirror.is_some() {
            crate::changes::start(
                self.origin.clone(),
                crate::changes::channel(&self.base),
                crate::changes::Followers {
                    clients: self.clients.as_ref().map(Arc::downgrade),
                    mirror: self.mirror.as_ref().map(Arc::downgrade),
                },
            );
        }
        self
    }

    /// Keeps up to `capacity` client records in memory (see [`RedisStore::with_near_caches`]).
    #[must_use]
    pub fn with_client_cache(self, capacity: usize) -> Self {
        self.with_near_caches(capacity, 0)
    }

    /// For tests: a handle whose writes stop after each batch's write, leaving its shard
    /// writes pending (as a projector that stopped there would).
    #[doc(hidden)]
    #[must_use]
    pub fn stopping_before_shard_writes(mut self) -> Self {
        self.stops_before_shards = true;
        self
    }

    /// The client cache, when this handle has one.
    pub fn client_cache(&self) -> Option<&crate::clients::ClientCache> {
        self.clients.as_deref()
    }

    pub(crate) fn pointer_key(&self) -> String {
        pointer_key(&self.base)
    }

    pub(crate) fn prefix_of(&self, generation: &str) -> String {
        format!("{}:{generation}:", self.base)
    }

    /// The generation this handle last used (the pinned one, or the live one as last seen;
    /// empty before the first read).
    pub(crate) fn generation_guess(&self) -> String {
        if let Some(g) = &self.pinned {
            return g.to_string();
        }
        self.seen
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_default()
    }

    pub(crate) fn saw_generation(&self, generation: Option<String>) {
        *self.seen.write().unwrap_or_else(PoisonError::into_inner) = generation;
    }

    /// Runs `build`'s commands against the live generation (`build` gets its name) in one
    /// round trip, with the pointer and the ready marker; fails closed when the projection is
    /// not ready.
    pub(crate) async fn read<T: FromRedisValue>(
        &self,
        build: impl Fn(&str, &mut Batch),
    ) -> Result<T, StoreError> {
        for _ in 0..3 {
            let generation = self.generation_guess();
            match self.read_at(&generation, &build).await? {
                Resolved::Data(data) => return Ok(data),
                Resolved::Moved => continue,
            }
        }
        Err(StoreError::Unavailable(
            "the projection's generation keeps changing".into(),
        ))
    }

    async fn read_at<T: FromRedisValue>(
        &self,
        generation: &str,
        build: &impl Fn(&str, &mut Batch),
    ) -> Result<Resolved<T>, StoreError> {
        let prefix = self.prefix_of(generation);
        let mut batch = Batch::default();
        batch
            .add(&prefix, cmd("GET", self.pointer_key()))
            .add(&prefix, cmd("EXISTS", format!("{prefix}ready")));
        build(generation, &mut batch);
        let mut values = batch.run(&self.con).await.map_err(unavailable)?;
        if values.len() < 2 {
            return Err(StoreError::Unavailable("short reply from redis".into()));
        }
        let rest = values.split_off(2);
        let live: Option<String> = redis::from_redis_value(values.swap_remove(0))
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let ready: bool = redis::from_redis_value(values.swap_remove(0))
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        if self.pinned.is_none() {
            match live {
                None => return Err(StoreError::NotReady),
                Some(live) if live != generation => {
                    self.saw_generation(Some(live));
                    return Ok(Resolved::Moved);
                }
                Some(_) if !ready => return Err(StoreError::NotReady),
                Some(_) => {}
            }
        }
        let data = redis::from_redis_value(redis::Value::Array(rest))
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Resolved::Data(data))
    }
}

/// `P:live`, the name of the live generation. (Named `P:active` before refresh tokens, codes
/// and families moved to shards: a build of this layout fills a generation of its own.)
pub(crate) fn pointer_key(base: &str) -> String {
    format!("{base}:live")
}

/// A command on one key.
pub(crate) fn cmd(name: &str, key: impl redis::ToRedisArgs) -> Cmd {
    let mut cmd = redis::cmd(name);
    cmd.arg(key);
    cmd
}

/// The base of every key of the projection under `prefix`: `{prefix}`, a hash tag, so that
/// all of it is one slot of a Redis Cluster (on a single Redis the braces are just part of the
/// name).
pub fn base_key(prefix: &str) -> String {
    format!("{{{prefix}}}")
}
