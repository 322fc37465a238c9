//! An example resource server that is not a token node. It discovers the issuer's JWKS through
//! the RFC 8414 metadata document (cached as `Cache-Control` allows, refetched on an unknown
//! `kid`), and checks revocation against a mirror of the projection's revocations kept in
//! memory (`tokend_redis::mirror`), or in Redis with one round trip while the mirror cannot
//! prove it is current.

use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use tokend_jwt::VerifyPolicy;
use tokend_redis::{RedisRevocation, RedisSettings, RedisStore};
use tokend_verify::{Bearer, RemoteKeys, RemoteOptions, SystemClock, Verifier};

/// What the resource server needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    pub issuer: String,
    pub audience: String,
    /// A single Redis's URL, or (with `redis_cluster`) seed nodes separated by commas.
    pub redis_url: String,
    pub redis_cluster: bool,
    pub redis_key_prefix: String,
    /// Revocation records kept in memory (0: every check reads Redis).
    pub revocation_mirror: usize,
    /// Tokens whose signature was checked before, kept (0: every token is verified).
    pub verified_tokens: usize,
}

/// The verifier and the store behind its revocation checks.
pub struct ResourceServer {
    pub verifier: Arc<Verifier>,
    store: RedisStore,
}

impl ResourceServer {
    /// Discovers the issuer's keys and connects to Redis (with the revocation mirror).
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let keys = RemoteKeys::discover(&settings.issuer, RemoteOptions::default()).await?;
        let store = RedisStore::connect_with(&RedisSettings {
            url: settings.redis_url.clone(),
            cluster: settings.redis_cluster,
            key_prefix: settings.redis_key_prefix.clone(),
            ..RedisSettings::default()
        })
        .await?
        .with_revocation_mirror(settings.revocation_mirror);
        let verifier = Verifier::new(
            Arc::new(keys),
            Arc::new(RedisRevocation(store.clone())),
            VerifyPolicy {
                issuer: settings.issuer.clone(),
                audiences: vec![settings.audience.clone()],
                leeway_secs: 30,
            },
            Arc::new(SystemClock),
        )
        .with_verified_tokens(settings.verified_tokens);
        Ok(Self {
            verifier: Arc::new(verifier),
            store,
        })
    }

    pub fn router(&self) -> Router {
        router(self.verifier.clone())
    }

    /// After the last request: gives up the revocation mirror's lease, so strict revocations
    /// stop waiting for this server at once (bounded: 1 s).
    pub async fn stopped(&self) {
        if let Some(mirror) = self.store.revocation_mirror() {
            mirror.release().await;
        }
    }
}

/// `GET /data`: the caller's subject and scope, for a valid, unrevoked token. `GET /readyz`:
/// 200 (it serves only once it has discovered the issuer's keys and reached Redis).
pub fn router(verifier: Arc<Verifier>) -> Router {
    Router::new()
        .route("/readyz", get(|| async { "ready" }))
        .route(
            "/data",
            get(|Bearer(claims): Bearer| async move {
                Json(serde_json::json!({
                    "data": "resource-server data",
                    "sub": claims.sub,
                    "scope": claims.scope,
                }))
            }),
        )
        .with_state(verifier)
}
