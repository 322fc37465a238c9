//! The token node as a library: [`Node::start`] wires configuration, keys, the event log, the
//! state store and the HTTP router; `main` only adds the listener. Tests build nodes the same
//! way.

mod backends;
pub mod config;
pub mod http;
pub mod keys;
pub mod metrics;
mod seed;
mod serve;

use std::sync::Arc;

use anyhow::Context;
use tokend_domain::Clock;
use tokend_jwt::VerifyPolicy;
use tokend_memstore::MemoryStore;
use tokend_oauth::browser::BrowserKeys;
use tokend_oauth::secrets::SecretHasher;
use tokend_oauth::{Settings, TokenService};
use tokend_verify::Verifier;

pub use config::Config;
pub use seed::DemoSecrets;
pub use serve::{Listeners, serve};
pub use tokend_verify::SystemClock;

/// The embedded event log, under `storage.data_dir`.
pub const EVENT_LOG_FILE: &str = "events.log";

/// How often a node moves its keys along the schedule (and proposes due ones).
const KEY_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// A wired node.
pub struct Node {
    pub router: axum::Router,
    pub service: Arc<TokenService>,
    memory: Option<Arc<MemoryStore>>,
    clock: Arc<dyn Clock>,
    /// Secrets of the demo client and user when this start created them (show once).
    pub demo: Option<DemoSecrets>,
    /// The signing keys and their log (the rotation task holds them weakly: it ends with the
    /// node).
    pub keys: Arc<keys::Keys>,
    /// A cluster node's revocation mirror, given up on a graceful stop.
    mirror: Option<std::sync::Weak<tokend_redis::mirror::Mirror>>,
}

impl Node {
    pub async fn start(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.storage.data_dir).with_context(|| {
            format!(
                "cannot create data dir {}",
                config.storage.data_dir.display()
            )
        })?;
        config.validate()?;
        let signing_keys = keys::start(config, keys::keks(config)?, clock.clone()).await?;
        let root = signing_keys.root();
        tokio::spawn(keys::rotate(Arc::downgrade(&signing_keys), KEY_CHECK));
        metrics::watch_keys(Arc::downgrade(&signing_keys.manager));
        let keyring = signing_keys.manager.keyring();
        let backends = backends::open(config).await?;
        let mirror = backends.mirror.clone();
        if let Some(mirror) = &mirror {
            metrics::watch_mirror(mirror.clone());
        }
        let settings = Settings {
            issuer: config.tokens.issuer.clone(),
            access_ttl_secs: config.tokens.access_ttl_secs,
            refresh_ttl_secs: config.tokens.refresh_ttl_secs,
            password_grant: config.grants.password,
            leeway_secs: config.tokens.leeway_secs,
            login_client_id: Some(config.seed.login_client_id.clone()),
            revocation_consistency: config.revocation.consistency,
            applied_timeout: std::time::Duration::from_millis(config.revocation.applied_timeout_ms),
            code_ttl_secs: config.tokens.code_ttl_secs,
            refresh_reuse_grace_secs: config.tokens.refresh_reuse_grace_secs,
            password_checks: config.grants.password_checks(),
            password_check_queue: config.grants.password_check_queue,
            verified_tokens: config.tokens.verified_tokens,
        };
        let service = Arc::new(TokenService::new(
            backends.log,
            backends.store,
            keyring.clone(),
            clock.clone(),
            SecretHasher::new(root.derive("client-secret-digest")),
            settings,
        ));
        let demo = if config.seed.demo {
            seed::demo(&service, &config.seed.login_client_id).await?
        } else {
            None
        };
        let verifier = Arc::new(
            Verifier::new(
                keyring.clone(),
                Arc::new(http::ServiceRevocation(service.clone())),
                VerifyPolicy {
                    issuer: config.tokens.issuer.clone(),
                    audiences: vec![config.tokens.resource_audience.clone()],
                    leeway_secs: config.tokens.leeway_secs,
                },
                clock.clone(),
            )
            .with_verified_tokens(config.tokens.verified_tokens),
        );
        let admin_token = config::secret(
            config.admin.token.as_deref(),
            config.admin.token_file.as_deref(),
            "admin.token",
        )?;
        let router = http::router(
            http::AppState::new(
                service.clone(),
                verifier,
                signing_keys.clone(),
                admin_token,
                BrowserKeys::new(root.derive("session"), root.derive("csrf")),
                clock.clone(),
                config,
            ),
            config,
        )?;
        Ok(Self {
            router,
            service,
            memory: backends.memory,
            clock,
            demo,
            keys: signing_keys,
            mirror,
        })
    }

    /// After the last request: gives up the revocation mirror's lease, so strict revocations
    /// elsewhere stop waiting for this node at once (bounded: 1 s).
    pub async fn stopped(&self) {
        if let Some(mirror) = self.mirror.as_ref().and_then(std::sync::Weak::upgrade) {
            mirror.release().await;
        }
    }

    /// Drops embedded projection records of expired tokens, forever (spawn it). Redis
    /// expires its keys by itself.
    pub fn pruner(&self) -> impl std::future::Future<Output = ()> + use<> {
        let (memory, clock) = (self.memory.clone(), self.clock.clone());
        async move {
            let Some(store) = memory else { return };
            let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                every.tick().await;
                store.prune(clock.now_secs());
            }
        }
    }
}
