//! The revocation-propagation probe: for each sample, a token issued on the first node and
//! accepted by every other node is revoked on the first node (eventual consistency, the
//! default), then every other node is polled until it rejects the token. Prints, over the
//! samples, how long after the revoke call started the last node rejected it (p50, p90, p99,
//! max), and how long the revoke call itself took. Optionally writes them as JSON.
//!
//! `propagation-probe --nodes http://127.0.0.1:8081,http://127.0.0.1:8082 \
//!   --client-id ID --client-secret SECRET --samples 200`
//! (`load-tests/run.sh probe --target cluster` runs it against the local stack.)
#![allow(clippy::print_stdout, clippy::disallowed_methods)] // a measurement tool

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// The nodes, comma-separated: tokens are issued and revoked on the first, checked on the
    /// others.
    #[arg(long, value_delimiter = ',', required = true)]
    nodes: Vec<String>,
    #[arg(long, env = "CLIENT_ID")]
    client_id: String,
    #[arg(long, env = "CLIENT_SECRET", hide_env_values = true)]
    client_secret: String,
    /// How many revocations to time.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// The longest a node may take to reject a revoked token before the probe fails.
    #[arg(long, default_value_t = 5_000)]
    limit_ms: u64,
    /// Where to write the figures as JSON.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

struct Probe {
    http: reqwest::Client,
    args: Args,
}

impl Probe {
    async fn issue(&self) -> anyhow::Result<String> {
        let body: serde_json::Value = self
            .http
            .post(format!("{}/oauth/token", self.args.nodes[0]))
            .basic_auth(&self.args.client_id, Some(&self.args.client_secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        body["access_token"]
            .as_str()
            .map(str::to_owned)
            .context("no access_token in the token response")
    }

    async fn status(&self, node: &str, token: &str) -> anyhow::Result<u16> {
        let resp = self
            .http
            .get(format!("{node}/api/data"))
            .bearer_auth(token)
            .send()
            .await?;
        Ok(resp.status().as_u16())
    }

    /// One sample: (revoke call → every other node rejects, the revoke call's own time).
    async fn sample(&self) -> anyhow::Result<(Duration, Duration)> {
        let token = self.issue().await?;
        for node in &self.args.nodes[1..] {
            ensure!(
                self.status(node, &token).await? == 200,
                "{node} refused a fresh token"
            );
        }
        let started = Instant::now();
        self.http
            .post(format!("{}/oauth/revoke", self.args.nodes[0]))
            .basic_auth(&self.args.client_id, Some(&self.args.client_secret))
            .form(&[("token", token.as_str())])
            .send()
            .await?
            .error_for_status()?;
        let answered = started.elapsed();
        let limit = Duration::from_millis(self.args.limit_ms);
        for node in &self.args.nodes[1..] {
            loop {
                match self.status(node, &token).await? {
                    401 => break,
                    200 if started.elapsed() < limit => {}
                    200 => bail!("{node} still accepted a revoked token after {limit:?}"),
                    other => bail!("{node} answered {other}"),
                }
            }
        }
        Ok((started.elapsed(), answered))
    }
}

fn percentiles(mut samples: Vec<Duration>) -> serde_json::Value {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1000.0
    };
    serde_json::json!({
        "p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99), "max_ms": at(1.0),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.nodes.len() >= 2, "give at least two nodes");
    ensure!(args.samples > 0, "give at least one sample");
    let probe = Probe {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?,
        args,
    };
    let (mut rejected, mut answered) = (Vec::new(), Vec::new());
    for i in 0..probe.args.samples {
        let (r, a) = probe
            .sample()
            .await
            .with_context(|| format!("sample {i}"))?;
        rejected.push(r);
        answered.push(a);
    }
    let rejected_ms: Vec<f64> = rejected.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    let figures = serde_json::json!({
        "samples": probe.args.samples,
        "rejected_ms": rejected_ms,
        "nodes": probe.args.nodes.len(),
        "rejected_everywhere_after_revoke": percentiles(rejected),
        "revoke_call": percentiles(answered),
    });
    let show = |k: &str| {
        let v = &figures[k];
        format!(
            "p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            v["p50_ms"].as_f64().unwrap_or_default(),
            v["p90_ms"].as_f64().unwrap_or_default(),
            v["p99_ms"].as_f64().unwrap_or_default(),
            v["max_ms"].as_f64().unwrap_or_default()
        )
    };
    println!(
        "revocation propagation over {} samples, {} nodes:",
        probe.args.samples,
        probe.args.nodes.len()
    );
    println!(
        "  rejected by every other node: {}",
        show("rejected_everywhere_after_revoke")
    );
    println!("  revoke call answered:         {}", show("revoke_call"));
    if let Some(path) = &probe.args.json {
        std::fs::write(path, serde_json::to_string_pretty(&figures)?)?;
    }
    Ok(())
}
