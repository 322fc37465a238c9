//! `loadgen`: the load generator for the heavy scenarios, and the report.
//!
//! k6 spends about a third of a core per thousand requests a second here, so on a two-core
//! machine it cannot drive the tens of thousands a second the speed targets are about; this
//! generator drives them over HTTP/1.1 keep-alive connections with hyper on one thread, records
//! latencies in HDR histograms and the CPU it used itself and the target processes used.
//!
//! `loadgen run --scenario validate --target http://127.0.0.1:8082 --issuer http://127.0.0.1:8081 \
//!   --client-id ID --client-secret SECRET --json out.json`
//! `loadgen report --out DIR RUN.json… [--probe PROBE.json]` writes `report.md` and SVG plots.
//! (`load-tests/compare.sh` runs every figure side by side with the reference targets.)
#![allow(clippy::print_stdout, reason = "a measurement tool prints its figures")]

mod drive;
mod record;
mod report;
mod scenario;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::drive::{Settings, Target, drive};
use crate::record::{Cpu, Run};
use crate::scenario::{Client, Scenario, prepare};

#[derive(Parser)]
#[command(version, about = "Load generator and report for the tokend load tests")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Drive one scenario and print (and optionally write) its figures.
    Run(RunArgs),
    /// Render runs (and a probe's samples) as a Markdown report with SVG plots.
    Report {
        /// The directory for report.md and the plots.
        #[arg(long)]
        out: PathBuf,
        /// The propagation probe's JSON (its samples become a histogram).
        #[arg(long)]
        probe: Option<PathBuf>,
        /// A line under the report (when, where, with what command).
        #[arg(long)]
        note: Option<String>,
        /// Exit 1 (after writing the report) when any answer failed or was wrong.
        #[arg(long)]
        strict: bool,
        /// Runs written by `loadgen run --json`.
        runs: Vec<PathBuf>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Where the load goes (repeat for several nodes; connection i goes to target i mod n).
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// Where pool tokens are made (default: the first target). Give another node than the
    /// targets to measure validation on nodes that did not issue the tokens.
    #[arg(long)]
    issuer: Option<String>,
    #[arg(long, env = "CLIENT_ID")]
    client_id: Option<String>,
    #[arg(long, env = "CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds driven before the measured window (not counted).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Requests per second (open model); without it, as fast as the target answers.
    #[arg(long)]
    rate: Option<f64>,
    /// Tokens made before the run for the validating scenarios, presented in turn.
    #[arg(long, default_value_t = 1000)]
    pool: usize,
    /// The generator's worker threads (it shares the machine with the target).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Processes whose CPU time during the window is reported (the target's).
    #[arg(long = "watch-pid")]
    watch: Vec<u32>,
    /// A name for the run in reports (default: the scenario).
    #[arg(long)]
    label: Option<String>,
    #[arg(long)]
    json: Option<PathBuf>,
    /// Fail (exit 1) when any answer failed or was wrong.
    #[arg(long)]
    strict: bool,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(args.threads.max(1))
                .enable_all()
                .build()?;
            runtime.block_on(run(args))
        }
        Command::Report {
            out,
            probe,
            note,
            strict,
            runs,
        } => report::write(&out, &runs, probe.as_deref(), note.as_deref(), strict),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let targets = args
        .targets
        .iter()
        .map(|t| Target::parse(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let issuer = args.issuer.as_deref().unwrap_or(&args.targets[0]);
    Target::parse(issuer)?;
    let client = match (&args.client_id, &args.client_secret) {
        (Some(id), Some(secret)) => Some(Client {
            id: id.clone(),
            secret: secret.clone(),
        }),
        _ => None,
    };
    let plan = prepare(args.scenario, issuer, client.as_ref(), args.pool)
        .await
        .context("preparing the scenario")?;
    let settings = Settings {
        connections: args.connections,
        warmup: Duration::from_secs(args.warmup),
        duration: Duration::from_secs(args.duration),
        rate: args.rate,
    };
    let watch = args.watch.clone();
    let window_cpu = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(args.warmup)).await;
        let before = Cpu::sample(&watch);
        tokio::time::sleep(Duration::from_secs(args.duration)).await;
        Cpu::sample(&watch).since(&before)
    });
    let tally = drive(plan, &targets, &settings).await?;
    let cpu = window_cpu.await?;
    let run = Run::new(
        args.label.clone(),
        args.scenario,
        &args.targets,
        &settings,
        &tally,
        &cpu,
    );
    println!("{}", run.line());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&run)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    anyhow::ensure!(
        !args.strict || (run.failed == 0 && run.wrong == 0),
        "{} failed and {} wrong answers",
        run.failed,
        run.wrong
    );
    Ok(())
}
