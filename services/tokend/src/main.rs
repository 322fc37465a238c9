//! `tokend`: one token node. `tokend [--config FILE]` (or `TOKEND_CONFIG=FILE`) serves;
//! `tokend log verify` and `tokend log repair --to N` check and repair the embedded event log;
//! `tokend check-config` checks the configuration (file and environment) and exits.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use clap::{Parser, Subcommand};
use tokend::{Config, Node, SystemClock};

#[derive(Parser)]
#[command(name = "tokend", about = "An event-sourced OAuth 2.0 token service.")]
struct Cli {
    /// The configuration file (TOML).
    #[arg(long, global = true, env = "TOKEND_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (the default).
    Serve,
    /// Load and check the configuration (file and `TOKEND_*` environment), then exit.
    CheckConfig,
    /// The embedded event log (`storage.data_dir/events.log`).
    Log {
        #[command(subcommand)]
        action: LogAction,
    },
}

#[derive(Subcommand)]
enum LogAction {
    /// Reads the whole log and reports intact records, a torn tail, or damage (exit 1).
    Verify,
    /// Keeps records 0..N and drops the rest (after damage; back the file up first).
    Repair {
        /// How many records to keep: the `record` number `verify` reports as damaged.
        #[arg(long)]
        to: u64,
        /// Cut even where the log is not damaged (drops acknowledged events).
        #[arg(long)]
        force: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    let telemetry = tokend_telemetry::init("tokend", env!("CARGO_PKG_VERSION"), &config.telemetry)?;
    let done = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config, telemetry.prometheus()).await,
        Command::CheckConfig => {
            #[allow(clippy::print_stdout, reason = "the command's answer")]
            {
                println!("configuration OK (backend {:?})", config.storage.backend);
            }
            Ok(())
        }
        Command::Log { action } => log(&config, action),
    };
    telemetry.shutdown();
    done
}

async fn serve(config: Config, metrics: tokend_telemetry::PrometheusText) -> anyhow::Result<()> {
    let node = Node::start(&config, Arc::new(SystemClock)).await?;
    // `/metrics` on the main listener: restrict it at the proxy, like `/admin`.
    let router = node
        .router
        .clone()
        .merge(tokend_telemetry::http::metrics_router(metrics));
    if let Some(demo) = &node.demo {
        show_once(demo);
    }
    let listeners = tokend::Listeners::bind(&config)?;
    tracing::info!(
        addr = %config.server.listen_addr,
        tls = config.server.tls.is_some(),
        plain = ?config.server.plain_listen_addr,
        issuer = %config.tokens.issuer,
        data_dir = %config.storage.data_dir.display(),
        "Token node listening."
    );
    tokio::spawn(node.pruner());
    let served = tokend::serve(listeners, &config, router, tokend_telemetry::stop_signal()).await;
    node.stopped().await; // also when serving failed: the mirror gives up its lease
    served?;
    tracing::info!("Token node stopped.");
    Ok(())
}

#[allow(clippy::print_stdout)]
fn log(config: &Config, action: LogAction) -> anyhow::Result<()> {
    let path = config.storage.data_dir.join(tokend::EVENT_LOG_FILE);
    match action {
        LogAction::Verify => {
            let recovered = tokend_filelog::recover(&path)?;
            println!(
                "{}: {} intact records ({} bytes){}",
                path.display(),
                recovered.records.len(),
                recovered.valid_len,
                if recovered.torn_bytes > 0 {
                    format!(
                        ", then a torn tail of {} bytes that opening the log will cut",
                        recovered.torn_bytes
                    )
                } else {
                    String::new()
                }
            );
            Ok(())
        }
        LogAction::Repair { to, force } => {
            if !path.exists() {
                bail!("{} does not exist", path.display());
            }
            let damaged_at = match tokend_filelog::recover(&path) {
                Err(tokend_filelog::FrameError::Corrupt { index, .. }) => Some(index),
                _ => None,
            };
            if damaged_at != Some(to) && !force {
                bail!(
                    "the log is {} at record {to}: nothing to repair there (--force cuts anyway, \
                     dropping acknowledged events)",
                    if damaged_at.is_some() {
                        "not damaged"
                    } else {
                        "intact or only torn"
                    }
                );
            }
            let dropped = tokend_filelog::truncate_to(&path, to)?;
            println!(
                "{}: kept records 0..{to}, dropped {dropped} bytes",
                path.display()
            );
            Ok(())
        }
    }
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
