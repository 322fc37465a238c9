//! What tracing costs: three `tokend` processes (embedded mode): telemetry off, exporting a
//! tenth of the traces, and exporting every span, over OTLP to a real Jaeger; loaded in turns
//! in the same run with client-credentials grants (issue) and `GET /api/data` (validate).
//! Prints, for each, requests per second and the node's own CPU time per request (Jaeger and
//! the load generator share the machine: throughput alone would charge their work to the
//! node), and the ratios to "off".
//!
//! `cargo bench -p tokend --bench tracing_overhead` (needs `infra/scripts/install-jaeger.sh`).
//! `TRACING_BENCH_SECS` sets each turn's length (default 5), `TRACING_BENCH_TURNS` the turns
//! per mode (default 3), `TRACING_BENCH_CONCURRENCY` the requests in flight (default 32).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::disallowed_methods
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokend_testkit::{Jaeger, Service, demo_secrets, free_port};

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Node {
    url: String,
    client_id: String,
    client_secret: String,
    service: Service,
}

async fn start(dir: &std::path::Path, name: &str, otlp: Option<(&str, &str)>) -> Node {
    let port = free_port();
    let mut env: Vec<(String, String)> = [
        ("TOKEND_SERVER__LISTEN_ADDR", format!("127.0.0.1:{port}")),
        (
            "TOKEND_STORAGE__DATA_DIR",
            dir.join(name).display().to_string(),
        ),
        ("TOKEND_SEED__DEMO", "true".into()),
        ("TOKEND_RATE_LIMIT__ENABLED", "false".into()),
        ("TOKEND_TELEMETRY__LOG_FILTER", "warn".into()),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .to_vec();
    if let Some((endpoint, ratio)) = otlp {
        env.push(("TOKEND_TELEMETRY__OTLP_ENDPOINT".into(), endpoint.into()));
        env.push(("TOKEND_TELEMETRY__SAMPLING_RATIO".into(), ratio.into()));
    }
    let mut service = Service::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_tokend")),
        &env,
        dir.join(format!("{name}.log")),
    );
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while reqwest::get(format!("{url}/readyz"))
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        if let Some(why) = service.exited() {
            panic!("{name} exited {why}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{name} not ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (client_id, client_secret, _) = demo_secrets(&service.output()).expect("demo secrets");
    Node {
        url,
        client_id,
        client_secret,
        service,
    }
}

#[derive(Clone, Copy)]
enum Load {
    Issue,
    Validate,
}

/// Requests per second over one turn of `secs` with `concurrency` in flight, and the node's
/// CPU time per request.
async fn turn(
    http: &reqwest::Client,
    node: &Node,
    load: Load,
    token: &str,
    secs: u64,
    concurrency: u64,
) -> (f64, Duration) {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (http, done, stop) = (http.clone(), done.clone(), stop.clone());
        let (url, id, secret, token) = (
            node.url.clone(),
            node.client_id.clone(),
            node.client_secret.clone(),
            token.to_owned(),
        );
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let request = match load {
                    Load::Issue => http
                        .post(format!("{url}/oauth/token"))
                        .basic_auth(&id, Some(&secret))
                        .form(&[("grant_type", "client_credentials")]),
                    Load::Validate => http.get(format!("{url}/api/data")).bearer_auth(&token),
                };
                let status = request.send().await.unwrap().status();
                assert!(status.is_success(), "{status}");
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let (started, cpu) = (Instant::now(), node.service.cpu_time());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let count = done.load(Ordering::Relaxed);
    let (took, cpu) = (started.elapsed(), node.service.cpu_time() - cpu);
    tasks.join_all().await;
    (
        count as f64 / took.as_secs_f64(),
        cpu / u32::try_from(count.max(1)).unwrap_or(u32::MAX),
    )
}

async fn token(http: &reqwest::Client, node: &Node) -> String {
    let body: serde_json::Value = http
        .post(format!("{}/oauth/token", node.url))
        .basic_auth(&node.client_id, Some(&node.client_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with no such flag.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let (secs, turns, concurrency) = (
        setting("TRACING_BENCH_SECS", 5),
        setting("TRACING_BENCH_TURNS", 3),
        setting("TRACING_BENCH_CONCURRENCY", 32),
    );
    let jaeger = Jaeger::start();
    let dir = tempfile::tempdir().unwrap();
    let nodes = [
        ("off", start(dir.path(), "off", None).await),
        (
            "on 10%",
            start(dir.path(), "sampled", Some((&jaeger.otlp, "0.1"))).await,
        ),
        (
            "on 100%",
            start(dir.path(), "all", Some((&jaeger.otlp, "1.0"))).await,
        ),
    ];
    let http = reqwest::Client::new();
    let mut tokens = Vec::new();
    for (_, node) in &nodes {
        tokens.push(token(&http, node).await);
    }

    println!(
        "tracing overhead: {turns} turns of {secs} s per mode and load, {concurrency} in flight, modes in turns"
    );
    for (load, name) in [(Load::Issue, "issue"), (Load::Validate, "validate")] {
        let mut results = vec![Vec::new(); nodes.len()];
        for _ in 0..turns {
            for (i, (_, node)) in nodes.iter().enumerate() {
                results[i].push(turn(&http, node, load, &tokens[i], secs, concurrency).await);
            }
        }
        let mean = |v: &[(f64, Duration)]| {
            let rate = v.iter().map(|r| r.0).sum::<f64>() / v.len() as f64;
            let cpu = v.iter().map(|r| r.1.as_secs_f64()).sum::<f64>() / v.len() as f64;
            (rate, cpu * 1e6)
        };
        let (base_rate, base_cpu) = mean(&results[0]);
        for ((mode, _), result) in nodes.iter().zip(&results) {
            let (rate, cpu) = mean(result);
            println!(
                "{name:>8} {mode:>8}: {rate:>7.0}/s ({:.3} of off), node CPU {cpu:>5.1} µs/request ({:.3} of off)",
                rate / base_rate,
                cpu / base_cpu
            );
        }
    }
    let spans: serde_json::Value = http
        .get(format!(
            "{}/api/traces?service=tokend&limit=1&lookback=1h",
            jaeger.query
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        spans["data"].as_array().is_some_and(|t| !t.is_empty()),
        "the traced node exported nothing: the comparison would be void"
    );
}
