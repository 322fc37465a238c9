//! Keys for a resource server that is not a token node: discovered through the RFC 8414
//! metadata document, fetched from the JWKS, cached as its `Cache-Control: max-age` allows
//! (refreshed in the background once expired), and refetched (at most once per
//! `min_refetch_interval`) when a token names an unknown `kid`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use tokend_jwt::{AccessClaims, PublicKeySet, VerifyError, VerifyPolicy};
use tokio::sync::watch;
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

/// A JWKS cache that never makes a request wait on the issuer for keys it already has: an
/// expired set is refreshed in the background while the cached one keeps serving, and
/// concurrent refreshes are one fetch (single flight). Only a token naming an unknown `kid`
/// waits, at most `timeout`, for the one fetch in flight.
#[derive(Clone)]
pub struct RemoteKeys {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    jwks_uri: String,
    options: RemoteOptions,
    cached: RwLock<Cached>,
    /// When the last fetch started; the single-flight flag and the rate limit live under it.
    flight: std::sync::Mutex<Flight>,
    /// Bumped when a fetch ends (either way): what waiters wait for.
    done: watch::Sender<u64>,
}

#[derive(Default)]
struct Flight {
    in_flight: bool,
    last_start: Option<Instant>,
}

impl std::fmt::Debug for RemoteKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKeys")
            .field("jwks_uri", &self.inner.jwks_uri)
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
        let inner = Inner {
            http,
            jwks_uri,
            options,
            cached: RwLock::new(Cached {
                keys: PublicKeySet::default(),
                expires: Instant::now(),
            }),
            flight: std::sync::Mutex::default(),
            done: watch::Sender::new(0),
        };
        inner.fetch().await?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Starts a fetch unless one is in flight (then joins it) or one started within
    /// `min_interval`; returns what to wait on, if anything runs.
    fn start_fetch(&self, min_interval: Duration) -> Option<watch::Receiver<u64>> {
        let done = self.inner.done.subscribe();
        {
            let mut flight = self
                .inner
                .flight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if flight.in_flight {
                return Some(done);
            }
            if flight
                .last_start
                .is_some_and(|at| at.elapsed() < min_interval)
            {
                return None;
            }
            *flight = Flight {
                in_flight: true,
                last_start: Some(Instant::now()),
            };
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            if let Err(error) = inner.fetch().await {
                tracing::warn!(%error, "JWKS refetch failed; keeping the cached keys.");
            }
            inner
                .flight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .in_flight = false;
            inner.done.send_modify(|n| *n += 1);
        });
        Some(done)
    }
}

impl Inner {
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
            .inner
            .cached
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        policy.verify(&cached.keys, token, now_secs)
    }

    fn knows(&self, kid: &str) -> bool {
        self.inner
            .cached
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys
            .contains(kid)
    }

    fn refresh_if_stale(&self) {
        let stale = {
            let cached = self
                .inner
                .cached
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Instant::now() >= cached.expires
        };
        if stale {
            let _ = self.start_fetch(Duration::from_secs(1)); // in the background
        }
    }

    async fn refresh_for_unknown_kid(&self) -> bool {
        let Some(mut done) = self.start_fetch(self.inner.options.min_refetch_interval) else {
            return false;
        };
        matches!(
            tokio::time::timeout(self.inner.options.timeout, done.changed()).await,
            Ok(Ok(()))
        )
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
