//! The store handle: connection, generation resolution, and the `StateStore` operations.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use tokend_domain::model::{
    Client, CodeRecord, CodeStatus, RefreshRecord, RefreshStatus, RevocationQuery, User,
    before_watermark,
};
use tokend_domain::{Applied, LogPosition, StateStore, StoreError};
use tokend_events::{ClientRegistered, Event};
use tokio::time::Instant;

/// How long a reader trusts its cached idea of the live generation.
const GENERATION_TTL: Duration = Duration::from_secs(1);
pub(crate) const DEFAULT_GENERATION: &str = "g0";

pub(crate) fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

#[derive(Clone)]
pub struct RedisStore {
    pub(crate) con: ConnectionManager,
    pub(crate) base: Arc<str>,
    /// A handle pinned to one generation (rebuild) instead of following `P:active`.
    pub(crate) pinned: Option<Arc<str>>,
    active: Arc<RwLock<Option<(String, Instant)>>>,
    script: Arc<Script>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("base", &self.base)
            .field("pinned", &self.pinned)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects (multiplexed, reconnecting by itself) to the projection under `base_prefix`.
    pub async fn connect(url: &str, base_prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let con = client.get_connection_manager().await.map_err(unavailable)?;
        Ok(Self {
            con,
            base: base_prefix.into(),
            pinned: None,
            active: Arc::new(RwLock::new(None)),
            script: Arc::new(Script::new(include_str!("apply.lua"))),
        })
    }

    pub(crate) fn pointer_key(&self) -> String {
        format!("{}:active", self.base)
    }

    /// The generation this handle reads and writes now.
    pub async fn current_generation(&self) -> Result<String, StoreError> {
        if let Some(g) = &self.pinned {
            return Ok(g.to_string());
        }
        if let Some((g, at)) = self
            .active
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            && at.elapsed() < GENERATION_TTL
        {
            return Ok(g.clone());
        }
        let g = self.active_generation().await?;
        *self
            .active
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((g.clone(), Instant::now()));
        Ok(g)
    }

    /// The prefix of every key of the current generation (`P:G:`).
    pub(crate) async fn prefix(&self) -> Result<String, StoreError> {
        Ok(format!(
            "{}:{}:",
            self.base,
            self.current_generation().await?
        ))
    }

    async fn hash(&self, key: &str) -> Result<HashMap<String, String>, StoreError> {
        self.con.clone().hgetall(key).await.map_err(unavailable)
    }
}

fn client_from(h: &HashMap<String, String>) -> Option<Client> {
    let e: ClientRegistered = serde_json::from_str(h.get("json")?).ok()?;
    Some(Client {
        client_id: e.client_id,
        name: e.name,
        secret_digest: e.secret_digest,
        grant_types: e.grant_types,
        scopes: e.scopes,
        default_scopes: e.default_scopes,
        audiences: e.audiences,
        redirect_uris: e.redirect_uris,
        disabled: h.get("disabled").is_some_and(|d| d == "1"),
    })
}

fn int(h: &HashMap<String, String>, field: &str) -> i64 {
    h.get(field)
        .and_then(|v| v.parse().ok())
        .unwrap_or_default()
}

fn refresh_from(h: HashMap<String, String>) -> RefreshRecord {
    let text = |f: &str| h.get(f).cloned().unwrap_or_default();
    RefreshRecord {
        family_id: text("family_id"),
        sub: text("sub"),
        client_id: text("client_id"),
        scope: text("scope"),
        aud: text("aud")
            .split(' ')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect(),
        iat: int(&h, "iat"),
        exp: int(&h, "exp"),
        used_by: h.get("used_by").cloned(),
    }
}

fn split(list: &str) -> Vec<String> {
    list.split(' ')
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

fn watermark(v: Option<String>) -> Option<i64> {
    v.and_then(|s| s.parse().ok())
}

#[async_trait]
impl StateStore for RedisStore {
    async fn apply(
        &self,
        position: LogPosition,
        event: Option<&Event>,
    ) -> Result<Applied, StoreError> {
        let prefix = self.prefix().await?;
        let (kind, payload) = match event {
            Some(e) => {
                let (kind, value) = e.to_parts();
                (kind, value.to_string())
            }
            None => ("", String::new()),
        };
        let (outcome, next): (u8, u64) = self
            .script
            .arg(&prefix)
            .arg(position.partition)
            .arg(position.offset)
            .arg(kind)
            .arg(payload)
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(unavailable)?;
        Ok(match outcome {
            0 => Applied::Applied,
            1 => Applied::Duplicate,
            _ => Applied::Gap { next },
        })
    }

    async fn next_offset(&self, partition: u32) -> Result<u64, StoreError> {
        let key = format!("{}offsets", self.prefix().await?);
        let next: Option<u64> = self
            .con
            .clone()
            .hget(key, partition)
            .await
            .map_err(unavailable)?;
        Ok(next.unwrap_or(0))
    }

    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        let h = self
            .hash(&format!("{}client:{client_id}", self.prefix().await?))
            .await?;
        Ok(client_from(&h))
    }

    async fn clients(&self) -> Result<Vec<Client>, StoreError> {
        let prefix = self.prefix().await?;
        let mut ids: Vec<String> = self
            .con
            .clone()
            .smembers(format!("{prefix}clients"))
            .await
            .map_err(unavailable)?;
        ids.sort_unstable();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(format!("{prefix}client:{id}"));
        }
        let hashes: Vec<HashMap<String, String>> = pipe
            .query_async(&mut self.con.clone())
            .await
            .map_err(unavailable)?;
        Ok(hashes.iter().filter_map(client_from).collect())
    }

    async fn user(&self, username: &str) -> Result<Option<User>, StoreError> {
        let h = self
            .hash(&format!("{}user:{username}", self.prefix().await?))
            .await?;
        Ok(h.get("password_hash").map(|hash| User {
            username: username.to_owned(),
            password_hash: hash.clone(),
            disabled: h.get("disabled").is_some_and(|d| d == "1"),
        }))
    }

    async fn refresh_status(
        &self,
        digest: &str,
        now_secs: i64,
    ) -> Result<RefreshStatus, StoreError> {
        let prefix = self.prefix().await?;
        let h = self.hash(&format!("{prefix}rt:{digest}")).await?;
        if h.is_empty() {
            return Ok(RefreshStatus::Unknown);
        }
        let r = refresh_from(h);
        let (family_revoked, wm_sub, wm_cli): (Option<String>, Option<String>, Option<String>) =
            redis::pipe()
                .hget(format!("{prefix}fam:{}", r.family_id), "revoked")
                .get(format!("{prefix}wm:sub:{}", r.sub))
                .get(format!("{prefix}wm:cli:{}", r.client_id))
                .query_async(&mut self.con.clone())
                .await
                .map_err(unavailable)?;
        let revoked = family_revoked.is_none_or(|v| v == "1")
            || before_watermark(r.iat, watermark(wm_sub))
            || before_watermark(r.iat, watermark(wm_cli));
        Ok(if revoked {
            RefreshStatus::Revoked
        } else if r.used_by.is_some() {
            RefreshStatus::Used(r)
        } else if r.exp <= now_secs {
            RefreshStatus::Expired
        } else {
            RefreshStatus::Valid(r)
        })
    }

    async fn code_status(&self, digest: &str, now_secs: i64) -> Result<CodeStatus, StoreError> {
        let h = self
            .hash(&format!("{}code:{digest}", self.prefix().await?))
            .await?;
        if h.is_empty() {
            return Ok(CodeStatus::Unknown);
        }
        let text = |f: &str| h.get(f).cloned().unwrap_or_default();
        let code = CodeRecord {
            client_id: text("client_id"),
            sub: text("sub"),
            redirect_uri: text("redirect_uri"),
            scope: text("scope"),
            aud: split(&text("aud")),
            code_challenge: text("code_challenge"),
            exp: int(&h, "exp"),
            family_id: text("family_id"),
            redeemed_by: h.get("redeemed_by").cloned(),
        };
        Ok(if code.redeemed_by.is_some() {
            CodeStatus::Redeemed(code)
        } else if code.exp <= now_secs {
            CodeStatus::Expired
        } else {
            CodeStatus::Valid(code)
        })
    }

    async fn is_revoked(&self, q: &RevocationQuery) -> Result<bool, StoreError> {
        let prefix = self.prefix().await?;
        let keys = [
            format!("{prefix}rev:{}", q.jti),
            format!("{prefix}wm:sub:{}", q.sub),
            format!("{prefix}wm:cli:{}", q.client_id),
        ];
        let (rev, wm_sub, wm_cli): (Option<String>, Option<String>, Option<String>) =
            self.con.clone().mget(&keys).await.map_err(unavailable)?;
        Ok(rev.is_some()
            || before_watermark(q.iat, watermark(wm_sub))
            || before_watermark(q.iat, watermark(wm_cli)))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.con.clone())
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

pub(crate) fn default_generation() -> String {
    DEFAULT_GENERATION.to_owned()
}
