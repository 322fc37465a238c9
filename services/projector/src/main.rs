//! `projector [--config FILE] [run|rebuild|check-config]` (config also from
//! `PROJECTOR_CONFIG`); `check-config` loads the configuration (file and `PROJECTOR_*`
//! environment) and exits.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use tokend_projector::{Config, Metrics, rebuild, run};
use tokend_redis::RedisStore;

enum Command {
    Run,
    Rebuild,
    CheckConfig,
}

fn args() -> anyhow::Result<(Option<PathBuf>, Command)> {
    let mut config = std::env::var_os("PROJECTOR_CONFIG").map(PathBuf::from);
    let mut command = Command::Run;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => match args.next() {
                Some(path) => config = Some(PathBuf::from(path)),
                None => bail!("--config needs a file"),
            },
            "run" => command = Command::Run,
            "rebuild" => command = Command::Rebuild,
            "check-config" => command = Command::CheckConfig,
            _ => bail!("usage: projector [--config FILE] [run|rebuild|check-config]"),
        }
    }
    Ok((config, command))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (file, command) = args()?;
    let config = Config::load(file.as_deref())?;
    let telemetry = tokend_telemetry::init(
        "tokend-projector",
        env!("CARGO_PKG_VERSION"),
        &config.telemetry,
    )?;
    let done = async {
        if let Command::CheckConfig = command {
            #[allow(clippy::print_stdout, reason = "the command's answer")]
            {
                println!("configuration OK");
            }
            return Ok(());
        }
        let store = RedisStore::connect_with(&config.redis).await?;
        match command {
            Command::Run => {
                let metrics = Arc::new(Metrics::default());
                if let Some(addr) = config.metrics_addr {
                    tokio::spawn(serve_metrics(addr, telemetry.prometheus()));
                }
                run(
                    &config,
                    Arc::new(store),
                    metrics,
                    tokend_telemetry::stop_signal(),
                )
                .await
            }
            Command::Rebuild => {
                let report = rebuild(&config, &store, true).await?;
                show(&report);
                Ok(())
            }
            Command::CheckConfig => Ok(()),
        }
    }
    .await;
    telemetry.shutdown();
    done
}

/// Serves `GET /metrics` (Prometheus text) until the process ends.
async fn serve_metrics(
    addr: std::net::SocketAddr,
    metrics: tokend_telemetry::PrometheusText,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, tokend_telemetry::http::metrics_router(metrics)).await?;
    Ok(())
}

#[allow(clippy::print_stdout)]
fn show(report: &tokend_projector::RebuildReport) {
    println!(
        "Rebuilt generation {}: {} events in {:.2} s ({:.0} events/s); readers switched.",
        report.generation,
        report.events,
        report.seconds,
        report.events_per_sec()
    );
}
