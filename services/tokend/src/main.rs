//! `tokend`: one token node. `tokend [--config FILE]` (or `TOKEND_CONFIG=FILE`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokend::{Config, Node, SystemClock};
use tracing_subscriber::EnvFilter;

fn config_path() -> anyhow::Result<Option<PathBuf>> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (None, _) => Ok(std::env::var_os("TOKEND_CONFIG").map(PathBuf::from)),
        (Some("--config"), Some(path)) => Ok(Some(PathBuf::from(path))),
        _ => bail!("usage: tokend [--config FILE]"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = Config::load(config_path()?.as_deref())?;
    let node = Node::start(&config, Arc::new(SystemClock)).await?;
    if let Some(demo) = &node.demo {
        show_once(demo);
    }
    let listener = tokio::net::TcpListener::bind(config.server.listen_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen_addr))?;
    tracing::info!(
        addr = %config.server.listen_addr,
        issuer = %config.tokens.issuer,
        data_dir = %config.storage.data_dir.display(),
        "Token node listening."
    );
    tokio::spawn(node.pruner());
    axum::serve(listener, node.router)
        .with_graceful_shutdown(shutdown())
        .await?;
    tracing::info!("Token node stopped.");
    Ok(())
}

/// The demo secrets go to the terminal once, never to the log.
#[allow(clippy::print_stdout)]
fn show_once(demo: &tokend::DemoSecrets) {
    println!(
        "\nDemo client and user created. Their secrets are shown this once only:\n\
         \n  client_id     {}\n  client_secret {}\n  username      {}\n  password      {}\n",
        demo.client_id, demo.client_secret, demo.username, demo.password
    );
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}
