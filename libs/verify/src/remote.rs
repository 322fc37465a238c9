//! Keys for a resource server that is not a token node: discovered through the RFC 8414
//! metadata document, fetched from the JWKS, cached as its `Cache-Control: max-age` allows,
//! and refetched (at most once per `min_refetch_interval`) when a token names an unknown `kid`.

use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use tokend_jwt::{AccessClaims, PublicKeySet, VerifyError, VerifyPolicy};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::KeySet;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("fetching {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("the metadata document at {0} has no jwks_uri")]
    NoJwksUri(String),
}

#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Used when the JWKS response has no `max-age`.
    pub default_max_age: Duration,
    /// Unknown `kid`s refetch the JWKS at most this often.
    pub min_refetch_interval: Duration,
    pub timeout: Duration,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            default_max_age: Duration::from_secs(300),
            min_refetch_interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        }
    }
}

struct Cached {
    keys: PublicKeySet,
    expires: Instant,
}

pub struct RemoteKeys {
    http: reqwest::Client,
    jwks_uri: String,
    options: RemoteOptions,
    cached: RwLock<Cached>,
    last_fetch: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for RemoteKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKeys")
            .field("jwks_uri", &self.jwks_uri)
            .finish_non_exhaustive()
    }
}

impl RemoteKeys {
    /// Reads `{issuer}/.well-known/oauth-authorization-server`, then the JWKS it names.
    pub async fn discover(issuer: &str, options: RemoteOptions) -> Result<Self, RemoteError> {
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .build()
            .map_err(|e| RemoteError::Fetch {
                url: issuer.to_owned(),
                reason: e.to_string(),
            })?;
        let url = format!(
            "{}/.well-known/oauth-authorization-server",
            issuer.trim_end_matches('/')
        );
        let (metadata, _) = get_json(&http, &url).await?;
        let jwks_uri = metadata["jwks_uri"]
            .as_str()
            .ok_or_else(|| RemoteError::NoJwksUri(url.clone()))?
            .to_owned();
        let remote = Self {
            http,
            jwks_uri,
            options,
            cached: RwLock::new(Cached {
                keys: PublicKeySet::default(),
                expires: Instant::now(),
            }),
            last_fetch: Mutex::new(None),
        };
        remote.fetch().await?;
        Ok(remote)
    }

    async fn fetch(&self) -> Result<(), RemoteError> {
        let (jwks, max_age) = get_json(&self.http, &self.jwks_uri).await?;
        let cached = Cached {
            keys: PublicKeySet::from_jwks(&jwks),
            expires: Instant::now() + max_age.unwrap_or(self.options.default_max_age),
        };
        *self
            .cached
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = cached;
        Ok(())
    }

    /// Fetches unless a fetch happened within `min_interval`; `true` if it fetched.
    async fn fetch_limited(&self, min_interval: Duration) -> bool {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < min_interval) {
            return false;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "JWKS refetch failed; keeping the cached keys.");
                false
            }
        }
    }
}

async fn get_json(
    http: &reqwest::Client,
    url: &str,
) -> Result<(serde_json::Value, Option<Duration>), RemoteError> {
    let fail = |reason: String| RemoteError::Fetch {
        url: url.to_owned(),
        reason,
    };
    let resp = http
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| fail(e.to_string()))?;
    let max_age = resp
        .headers()
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(max_age);
    let body = resp.json().await.map_err(|e| fail(e.to_string()))?;
    Ok((body, max_age))
}

/// `max-age` of a `Cache-Control` value (`no-store`/`no-cache` mean zero).
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').map(str::trim).find_map(|d| {
        if d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("no-cache") {
            return Some(Duration::ZERO);
        }
        let (k, v) = d.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| v.trim().parse().ok().map(Duration::from_secs))?
    })
}

#[async_trait]
impl KeySet for RemoteKeys {
    fn verify_token(
        &self,
        policy: &VerifyPolicy,
        token: &str,
        now_secs: i64,
    ) -> Result<AccessClaims, VerifyError> {
        let cached = self
            .cached
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        policy.verify(&cached.keys, token, now_secs)
    }

    async fn refresh_if_stale(&self) {
        let stale = {
            let cached = self
                .cached
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Instant::now() >= cached.expires
        };
        if stale {
            self.fetch_limited(Duration::from_secs(1)).await;
        }
    }

    async fn refresh_for_unknown_kid(&self) -> bool {
        self.fetch_limited(self.options.min_refetch_interval).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age() {
        assert_eq!(
            max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }
}
