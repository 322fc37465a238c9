//! The bare reference the token service is measured against in the same run: an axum server
//! that only signs (`POST /sign`: claims of the same shape as an access token, signed with an
//! Ed25519 key held in memory) and only verifies (`GET /verify`: the bearer token's signature
//! with the public key its header's `kid` names, held in memory, and its expiry). No client, no
//! store, no log: what a node cannot beat, since it does this and more.
//!
//! With `--jwks`, it also holds the Ed25519 keys of a token node's key set, read once at start,
//! so that it verifies the very tokens a node is measured with (same bytes, same size).
//!
//! `reference-server --listen 127.0.0.1:9090 [--jwks http://127.0.0.1:8081/.well-known/jwks.json]`
#![allow(clippy::print_stdout, reason = "it says where it listens")]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use clap::Parser;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::Deserialize;
use tokend_jwt::{KeyLookup, PublicKeySet};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: std::net::SocketAddr,
    /// A token node's key set (a loopback URL): its keys verify too.
    #[arg(long)]
    jwks: Option<String>,
}

struct Keys {
    signing: SigningKey,
    /// This server's own key (`kid` "reference").
    verifying: VerifyingKey,
    /// A token node's keys (`--jwks`), by `kid`.
    issued: PublicKeySet,
    header: String,
}

#[derive(Deserialize)]
struct Header<'a> {
    kid: &'a str,
}

/// The Ed25519 keys of the key set at `url`, a loopback URL.
async fn key_set(url: &str) -> anyhow::Result<PublicKeySet> {
    let url = reqwest::Url::parse(url)?;
    anyhow::ensure!(
        url.socket_addrs(|| None)?
            .iter()
            .all(|a| a.ip().is_loopback()),
        "--jwks must be a loopback URL"
    );
    let document: serde_json::Value = reqwest::get(url.clone())
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(PublicKeySet::from_jwks(&document))
}

#[allow(
    clippy::disallowed_methods,
    reason = "a reference server keeps no domain clock"
)]
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn sign(keys: axum::extract::State<Arc<Keys>>) -> Response {
    let iat = now_secs();
    let claims = serde_json::json!({
        "iss": "http://127.0.0.1", "sub": "demo-client", "aud": ["api"],
        "client_id": "demo-client", "scope": "read", "iat": iat, "exp": iat + 900,
        "jti": uuid::Uuid::new_v4().simple().to_string(),
    });
    let mut token = keys.header.clone();
    token.push('.');
    B64.encode_string(claims.to_string(), &mut token);
    let signature = keys.signing.sign(token.as_bytes());
    token.push('.');
    B64.encode_string(signature.to_bytes(), &mut token);
    let body = serde_json::json!({
        "access_token": token, "token_type": "Bearer", "expires_in": 900,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn verified(keys: &Keys, headers: &HeaderMap) -> Option<()> {
    let token = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    let (signed, signature) = token.rsplit_once('.')?;
    let (header, payload) = signed.split_once('.')?;
    let header = B64.decode(header).ok()?;
    let kid = serde_json::from_slice::<Header<'_>>(&header).ok()?.kid;
    let key = if kid == "reference" {
        &keys.verifying
    } else {
        keys.issued.verifying_key(kid)?
    };
    let signature = Signature::from_slice(&B64.decode(signature).ok()?).ok()?;
    key.verify(signed.as_bytes(), &signature).ok()?;
    let payload = B64.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    (claims["exp"].as_u64()? > now_secs()).then_some(())
}

async fn verify(keys: axum::extract::State<Arc<Keys>>, headers: HeaderMap) -> Response {
    match verified(&keys, &headers) {
        Some(()) => (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"ok":true}"#,
        )
            .into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.listen.ip().is_loopback(),
        "listen on a loopback address"
    );
    let signing = SigningKey::generate(&mut rand::rngs::OsRng);
    let header = B64.encode(r#"{"typ":"at+jwt","alg":"EdDSA","kid":"reference"}"#);
    let issued = match &args.jwks {
        Some(url) => key_set(url).await?,
        None => PublicKeySet::default(),
    };
    let keys = Arc::new(Keys {
        verifying: signing.verifying_key(),
        issued,
        signing,
        header,
    });
    let app = Router::new()
        .route("/sign", post(sign))
        .route("/verify", get(verify))
        .route("/readyz", get(|| async { "ok" }))
        .with_state(keys);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("reference-server listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
