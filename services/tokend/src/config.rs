//! Layered configuration: defaults, then a TOML file, then `TOKEND_SECTION__KEY` environment
//! variables. Unknown keys are rejected; secrets may come from files (`*_file`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: Server,
    pub tokens: Tokens,
    pub grants: Grants,
    pub seed: Seed,
    pub storage: Storage,
    pub keys: Keys,
    pub admin: Admin,
    pub kafka: tokend_kafka::KafkaSettings,
    pub redis: tokend_redis::RedisSettings,
    pub revocation: Revocation,
    pub rate_limit: RateLimit,
    pub telemetry: tokend_telemetry::TelemetryConfig,
}

/// Request rate limits, per node (see `http::limits`). A limit of 0 turns that one off.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimit {
    /// Off switch for all of them (load tests).
    pub enabled: bool,
    /// Token, introspection and revocation requests per second, per client id.
    pub client_per_sec: u32,
    /// How many of those may come at once above the rate.
    pub client_burst: u32,
    /// Password checks (`/login`, the password grant, the login form) per minute, per source
    /// address; burst the same.
    pub password_per_min_per_address: u32,
    /// Password checks per minute, per user name (guessing one account from many addresses).
    pub password_per_min_per_user: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            enabled: true,
            client_per_sec: 1000,
            client_burst: 2000,
            password_per_min_per_address: 60,
            password_per_min_per_user: 30,
        }
    }
}

/// Where events and the projection live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// One process: the file log under `storage.data_dir` and the projection in memory.
    #[default]
    Embedded,
    /// Many nodes: the log in Kafka (`[kafka]`), the projection in Redis (`[redis]`), kept by
    /// the separate projector service.
    Cluster,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Revocation {
    /// `durable`: a revocation answers once its event is in the log; `applied`: once the
    /// projection has applied it (requests may ask with `consistency=applied`).
    pub consistency: tokend_oauth::Consistency,
    pub applied_timeout_ms: u64,
}

impl Default for Revocation {
    fn default() -> Self {
        Self {
            consistency: tokend_oauth::Consistency::Durable,
            applied_timeout_ms: 5000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Server {
    pub listen_addr: SocketAddr,
    pub max_body_bytes: usize,
    /// Origins allowed by CORS; `["*"]` for any. Empty: no CORS headers.
    pub cors_allowed_origins: Vec<String>,
    /// HTTPS on `listen_addr` (unset: plain HTTP, e.g. behind a TLS-terminating proxy).
    pub tls: Option<Tls>,
    /// A plain-HTTP listener next to the TLS one; only with `tls`.
    pub plain_listen_addr: Option<SocketAddr>,
}

/// The certificate chain and private key (PEM files), reloaded when they change.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// How often the files are checked for a change.
    #[serde(default = "default_reload_ms")]
    pub reload_interval_ms: u64,
}

fn default_reload_ms() -> u64 {
    5000
}

impl Default for Server {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 16 * 1024,
            cors_allowed_origins: Vec::new(),
            tls: None,
            plain_listen_addr: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tokens {
    pub issuer: String,
    pub access_ttl_secs: i64,
    pub refresh_ttl_secs: i64,
    pub leeway_secs: i64,
    pub jwks_max_age_secs: u64,
    /// The audience this node's own protected resource (`/api/data`) accepts.
    pub resource_audience: String,
    /// Lifetime of an authorization code.
    pub code_ttl_secs: i64,
    /// Lifetime of a browser login session on the authorization pages.
    pub session_ttl_secs: i64,
    /// Seconds after a refresh token's rotation within which presenting it again is not
    /// theft: a retry (it is rotated again) or a lost race (`invalid_grant`, the grant lives
    /// on). 0: every second use revokes the grant.
    pub refresh_reuse_grace_secs: i64,
    /// Access tokens a node keeps verified (a token presented again costs a lookup, not a
    /// signature check; revocation is still checked every time). About 1 KB each; 0: none.
    pub verified_tokens: usize,
}

impl Default for Tokens {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:8080".into(),
            access_ttl_secs: 900,
            refresh_ttl_secs: 14 * 24 * 3600,
            leeway_secs: 30,
            jwks_max_age_secs: 300,
            resource_audience: "api".into(),
            code_ttl_secs: 60,
            session_ttl_secs: 8 * 3600,
            refresh_reuse_grace_secs: 10,
            verified_tokens: tokend_jwt::VERIFIED_TOKENS_DEFAULT,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Grants {
    /// The resource-owner password grant (and `/login`). Off unless turned on.
    pub password: bool,
    /// Password checks (argon2id, 19 MiB each) running at once; 0: one per core.
    pub password_checks: usize,
    /// Password checks that may wait for a slot; beyond that, 503 with `Retry-After`.
    pub password_check_queue: usize,
}

impl Default for Grants {
    fn default() -> Self {
        Self {
            password: false,
            password_checks: 0,
            password_check_queue: 32,
        }
    }
}

impl Grants {
    /// `password_checks`, with 0 meaning one per core.
    pub fn password_checks(&self) -> usize {
        match self.password_checks {
            0 => std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
            n => n,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Seed {
    /// `POST /login` as in the seed tutorials.
    pub login_endpoint: bool,
    /// `GET /api/data`, the sample protected resource.
    pub sample_api: bool,
    /// On first start (empty log), create a demo client and a demo user and print their
    /// secrets once.
    pub demo: bool,
    pub login_client_id: String,
}

impl Default for Seed {
    fn default() -> Self {
        Self {
            login_endpoint: true,
            sample_api: true,
            demo: false,
            login_client_id: "demo-client".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    pub backend: Backend,
    /// The embedded log, and the sealed signing keys (every backend).
    pub data_dir: PathBuf,
    /// fsync the event log on every group of appends. Turn off only for throwaway data.
    pub fsync: bool,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            backend: Backend::Embedded,
            data_dir: PathBuf::from("data"),
            fsync: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Keys {
    /// The key-encryption key (32 bytes, base64 or hex). Without one, a development KEK is
    /// made in the data directory, with a loud warning (embedded mode only).
    pub kek: Option<String>,
    pub kek_file: Option<PathBuf>,
    /// During a KEK change only: the KEK being replaced. A node opens what either KEK sealed,
    /// and seals under the one the key log is under, until `tokenctl kek rotate` re-seals
    /// everything under `kek`; then drop this.
    pub previous_kek: Option<String>,
    pub previous_kek_file: Option<PathBuf>,
    /// How long each signing key signs.
    pub rotation_period_secs: i64,
    /// How long before it signs a key is published in the JWKS (at least the JWKS cache age
    /// plus a minute).
    pub publish_lead_secs: i64,
    /// How long after it stops signing a key stays published (at least the access-token
    /// lifetime plus leeway).
    pub retire_after_secs: i64,
}

impl Default for Keys {
    fn default() -> Self {
        Self {
            kek: None,
            kek_file: None,
            previous_kek: None,
            previous_kek_file: None,
            rotation_period_secs: 24 * 3600,
            publish_lead_secs: 3600,
            retire_after_secs: 2 * 3600,
        }
    }
}

impl Keys {
    pub fn rotation(&self) -> tokend_jwt::Rotation {
        tokend_jwt::Rotation {
            period_secs: self.rotation_period_secs,
            lead_secs: self.publish_lead_secs,
            retire_after_secs: self.retire_after_secs,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Admin {
    /// The bearer token of the admin API. Without one, the admin API refuses every call.
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
}

impl Config {
    /// Loads the layers; `file` is optional.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            if !file.exists() {
                bail!("config file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(Env::prefixed("TOKEND_").split("__").ignore(&["config"]));
        let config: Config = figment.extract().context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        self.telemetry.validate()?;
        self.redis.validate().map_err(anyhow::Error::msg)?;
        let t = &self.tokens;
        if t.access_ttl_secs <= 0
            || t.refresh_ttl_secs <= 0
            || t.code_ttl_secs <= 0
            || t.session_ttl_secs <= 0
            || t.leeway_secs < 0
            || t.refresh_reuse_grace_secs < 0
        {
            bail!("token lifetimes must be positive and the leeway not negative");
        }
        if t.issuer.is_empty() {
            bail!("tokens.issuer must be set");
        }
        let jwks_max_age = i64::try_from(t.jwks_max_age_secs).unwrap_or(i64::MAX);
        self.keys
            .rotation()
            .validate(jwks_max_age, t.access_ttl_secs, t.leeway_secs)
            .context("keys: rotation settings")?;
        if self.server.plain_listen_addr.is_some() && self.server.tls.is_none() {
            bail!(
                "server.plain_listen_addr is a plain listener next to TLS; without server.tls, \
                 server.listen_addr is plain already"
            );
        }
        Ok(())
    }
}

/// A secret given inline or through a file (`*_file`), never both.
pub fn secret(
    inline: Option<&str>,
    file: Option<&Path>,
    name: &str,
) -> anyhow::Result<Option<String>> {
    match (inline, file) {
        (Some(_), Some(_)) => bail!("set {name} or {name}_file, not both"),
        (Some(v), None) => Ok(Some(v.trim().to_owned())),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map(|v| Some(v.trim().to_owned()))
            .with_context(|| format!("cannot read {name}_file {}", f.display())),
        (None, None) => Ok(None),
    }
}
