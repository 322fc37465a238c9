//! `resource-server`: the example resource server. Settings from the environment:
//! `RS_ISSUER` (the token service's issuer URL), `RS_AUDIENCE` (default `api`), `RS_REDIS_URL`,
//! `RS_REDIS_KEY_PREFIX` (default `tokend`), `RS_LISTEN_ADDR` (default `127.0.0.1:8090`),
//! `RS_REVOCATION_MIRROR` (revocation records kept in memory, default 1,000,000; 0 for none),
//! `RS_VERIFIED_TOKENS` (tokens whose signature was checked before, kept: default 10,000; 0
//! for none).

use anyhow::Context;
use tokend_resource_server::{ResourceServer, Settings};

/// How long open connections get to finish once a stop is asked for.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

fn env(name: &str, default: Option<&str>) -> anyhow::Result<String> {
    match (std::env::var(name), default) {
        (Ok(v), _) => Ok(v),
        (Err(_), Some(d)) => Ok(d.to_owned()),
        (Err(_), None) => anyhow::bail!("{name} must be set"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().init();
    let settings = Settings {
        issuer: env("RS_ISSUER", None)?,
        audience: env("RS_AUDIENCE", Some("api"))?,
        redis_url: env("RS_REDIS_URL", Some("redis://127.0.0.1:6379"))?,
        redis_cluster: env("RS_REDIS_CLUSTER", Some("false"))?
            .parse()
            .context("RS_REDIS_CLUSTER must be true or false")?,
        redis_key_prefix: env("RS_REDIS_KEY_PREFIX", Some("tokend"))?,
        revocation_mirror: env("RS_REVOCATION_MIRROR", Some("1000000"))?
            .parse()
            .context("RS_REVOCATION_MIRROR must be a number")?,
        verified_tokens: env("RS_VERIFIED_TOKENS", Some("10000"))?
            .parse()
            .context("RS_VERIFIED_TOKENS must be a number")?,
    };
    let addr = env("RS_LISTEN_ADDR", Some("127.0.0.1:8090"))?;
    let server = ResourceServer::connect(&settings).await?;
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(%addr, issuer = %settings.issuer, "Resource server listening.");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokend_telemetry::stop_signal().await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let served = axum::serve(listener, server.router())
        .with_graceful_shutdown(until_stopped(stopped.clone()));
    // Graceful, but bounded: a connection that never finishes does not hold the stop (and the
    // mirror's lease) until the process is killed.
    let drained = async move {
        until_stopped(stopped).await;
        tokio::time::sleep(DRAIN).await;
    };
    let served = tokio::select! {
        result = served => result,
        () = drained => {
            tracing::warn!(limit = ?DRAIN, "Connections still open at shutdown were closed.");
            Ok(())
        }
    };
    server.stopped().await;
    served?;
    Ok(())
}
