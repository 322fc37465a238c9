//! The HTTP surface: one router, thin handlers, one error type.

mod admin;
mod authorize;
mod error;
mod extract;
mod limits;
mod meta;
mod oauth;
mod pages;
mod seed;

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::{HeaderValue, Method, header};
use axum::routing::{get, post};
use tokend_domain::Clock;
use tokend_jwt::AccessClaims;
use tokend_oauth::TokenService;
use tokend_oauth::browser::BrowserKeys;
use tokend_verify::{RevocationCheck, Verifier};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

pub use error::ApiError;

use crate::Config;

#[derive(Clone)]
pub struct AppState {
    svc: Arc<TokenService>,
    verifier: Arc<Verifier>,
    keys: Arc<crate::keys::Keys>,
    admin_token_digest: Option<[u8; 32]>,
    jwks_max_age_secs: u64,
    browser: Arc<pages::Browser>,
    limits: Arc<limits::Limits>,
}

impl AppState {
    pub fn new(
        svc: Arc<TokenService>,
        verifier: Arc<Verifier>,
        keys: Arc<crate::keys::Keys>,
        admin_token: Option<String>,
        browser_keys: BrowserKeys,
        clock: Arc<dyn Clock>,
        config: &Config,
    ) -> Self {
        use sha2::{Digest, Sha256};
        Self {
            svc,
            verifier,
            keys,
            admin_token_digest: admin_token.map(|t| Sha256::digest(t.as_bytes()).into()),
            jwks_max_age_secs: config.tokens.jwks_max_age_secs,
            browser: Arc::new(pages::Browser::new(browser_keys, clock, config)),
            limits: limits_pruned(limits::Limits::new(&config.rate_limit)),
        }
    }
}

/// The limits, with a task that prunes recovered keys every minute while the node lives.
fn limits_pruned(limits: limits::Limits) -> Arc<limits::Limits> {
    let limits = Arc::new(limits);
    let weak = Arc::downgrade(&limits);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        every.tick().await;
        loop {
            every.tick().await;
            match weak.upgrade() {
                Some(l) => l.prune(),
                None => return,
            }
        }
    });
    limits
}

impl FromRef<AppState> for Arc<Verifier> {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

/// The revocation check of this node's own resource: the service's projection.
pub struct ServiceRevocation(pub Arc<TokenService>);

#[async_trait]
impl RevocationCheck for ServiceRevocation {
    async fn is_revoked(&self, claims: &AccessClaims) -> Result<bool, String> {
        self.0.is_revoked(claims).await.map_err(|e| e.to_string())
    }
}

pub fn router(state: AppState, config: &Config) -> anyhow::Result<Router> {
    let no_store = || {
        SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        )
    };
    let mut token_routes = Router::new()
        .route("/oauth/token", post(oauth::token))
        .route("/oauth/revoke", post(oauth::revoke))
        .route("/oauth/introspect", post(oauth::introspect));
    if config.seed.login_endpoint {
        token_routes = token_routes.route("/login", post(seed::login));
    }
    let mut app = Router::new()
        .merge(token_routes.layer(no_store()))
        .route(
            "/.well-known/oauth-authorization-server",
            get(meta::metadata),
        )
        .route("/.well-known/jwks.json", get(meta::jwks))
        .route("/oauth/authorize", get(authorize::start))
        .route("/oauth/authorize/login", post(authorize::login))
        .route("/oauth/authorize/consent", post(authorize::consent))
        .route("/oauth/logout", post(authorize::logout))
        .route("/healthz", get(meta::healthz))
        .route("/readyz", get(meta::readyz))
        .nest("/admin", admin::routes().layer(no_store()));
    if config.seed.sample_api {
        app = app.route("/api/data", get(seed::api_data));
    }
    let mut app = app
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(config.server.max_body_bytes))
        .with_state(state);
    if let Some(cors) = cors(&config.server.cors_allowed_origins)? {
        app = app.layer(cors);
    }
    Ok(tokend_telemetry::http::traced(
        tokend_telemetry::http::measured(app),
    ))
}

fn cors(origins: &[String]) -> anyhow::Result<Option<CorsLayer>> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let list = origins
            .iter()
            .map(|o| HeaderValue::from_str(o))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| anyhow::anyhow!("server.cors_allowed_origins holds an invalid origin"))?;
        AllowOrigin::list(list)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
    ))
}
