//! Revocation propagation to another node and to an SDK verifier (a resource server's
//! revocation mirror) while the cluster issues and revokes at a fixed rate (open model: requests start on schedule whatever the latency), against real Kafka
//! and Redis, with the idle propagation measured in the same run as the reference. Strict
//! revocations (`consistency=applied`) are checked for a zero window.
//! Run: `cargo bench -p tokend-projector --bench propagation` (ISSUE_RATE, REVOKE_RATE,
//! SECONDS to change the load).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::disallowed_methods
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokend::config::Backend;
use tokend::{Config, Node, SystemClock};
use tokend_kafka::KafkaSettings;
use tokend_projector::Metrics;
use tokend_redis::{RedisSettings, RedisStore};
use tokend_testkit::unique;
use tokio::sync::Mutex;

struct Target {
    nodes: Vec<String>,
    /// A resource server's verifier: the SDK with its own revocation mirror.
    sdk: tokend_verify::Verifier,
    client_id: String,
    secret: String,
    http: reqwest::Client,
}

impl Target {
    async fn issue(&self, node: usize) -> Option<String> {
        self.try_issue(node).await.ok()
    }

    /// The token, or why there is none (the status, or the transport error's kind).
    async fn try_issue(&self, node: usize) -> Result<String, String> {
        let r = self
            .http
            .post(format!("{}/oauth/token", self.nodes[node]))
            .basic_auth(&self.client_id, Some(&self.secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    "connect".to_owned()
                } else {
                    format!("transport: {e}")
                }
            })?;
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.map_err(|_| format!("{status}: no JSON"))?;
        body["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{status} {}", body["error"]))
    }

    async fn revoke(&self, node: usize, token: &str, strict: bool) -> bool {
        let mut form = vec![("token", token)];
        if strict {
            form.push(("consistency", "applied"));
        }
        self.http
            .post(format!("{}/oauth/revoke", self.nodes[node]))
            .basic_auth(&self.client_id, Some(&self.secret))
            .form(&form)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    async fn status(&self, node: usize, token: &str) -> u16 {
        self.http
            .get(format!("{}/api/data", self.nodes[node]))
            .bearer_auth(token)
            .send()
            .await
            .map_or(0, |r| r.status().as_u16())
    }

    /// Revokes on node 0 and polls node 1 and the SDK verifier until they reject: the delays
    /// after the revocation answered (`None`: the probe could not run). With `strict`, a
    /// first check that does not reject is reported as `Duration::MAX`.
    async fn probe(&self, strict: bool) -> Option<(Duration, Duration)> {
        let token = self.issue(0).await?;
        while self.status(1, &token).await != 200 || self.sdk.verify(&token).await.is_err() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if !self.revoke(0, &token, strict).await {
            return None;
        }
        let answered = Instant::now();
        let until_rejected = |rejected: bool| match rejected {
            true => Some(Some(answered.elapsed())),
            false if strict => Some(Some(Duration::MAX)),
            false if answered.elapsed() > Duration::from_secs(10) => Some(None),
            false => None,
        };
        let node = async {
            loop {
                if let Some(d) = until_rejected(self.status(1, &token).await == 401) {
                    return d;
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        };
        let sdk = async {
            loop {
                let rejected = matches!(
                    self.sdk.verify(&token).await,
                    Err(tokend_verify::Rejection::Revoked)
                );
                if let Some(d) = until_rejected(rejected) {
                    return d;
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        };
        let (node, sdk) = tokio::join!(node, sdk);
        Some((node?, sdk?))
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn probes(target: &Target, n: usize) -> (Vec<Duration>, Vec<Duration>) {
    let (mut node, mut sdk) = (Vec::new(), Vec::new());
    for _ in 0..n {
        if let Some((n, s)) = target.probe(false).await {
            node.push(n);
            sdk.push(s);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.sort_unstable();
    sdk.sort_unstable();
    (node, sdk)
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let (issue_rate, revoke_rate, seconds) = (
        env("ISSUE_RATE", 5000),
        env("REVOKE_RATE", 1000),
        env("SECONDS", 15),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (kafka, redis) = (tokend_testkit::kafka().await, tokend_testkit::redis().await);
        let topic = unique("prop");
        let kafka_settings = KafkaSettings {
            bootstrap_servers: kafka.bootstrap.clone(),
            dead_letter_topic: format!("{topic}.dlq"),
            keys_topic: format!("{topic}.keys"),
            topic,
            partitions: 6,
            ..KafkaSettings::default()
        }
        .single_broker();
        let redis_settings = RedisSettings {
            url: redis.url.clone(),
            key_prefix: unique("prop"),
            ..RedisSettings::default()
        };
        let projector_config = tokend_projector::Config {
            kafka: kafka_settings.clone(),
            redis: redis_settings.clone(),
            group_id: unique("prop"),
            metrics_addr: None,
            ..tokend_projector::Config::default()
        };
        tokio::spawn(async move {
            let store = RedisStore::connect_with(&projector_config.redis).await.unwrap();
            let metrics = Arc::new(Metrics::default());
            tokend_projector::run(&projector_config, Arc::new(store), metrics, std::future::pending())
                .await
                .unwrap();
        });
        let keys = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        let mut demo = None;
        for i in 0..2 {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let mut config = Config::default();
            config.storage.backend = Backend::Cluster;
            config.storage.data_dir = keys.path().join(format!("node{i}"));
            config.keys.kek = Some("22".repeat(32));
            config.rate_limit.enabled = false; // a load generator is one client
            config.tokens.issuer = nodes.first().cloned().unwrap_or_else(|| url.clone());
            config.seed.demo = i == 0;
            config.kafka = kafka_settings.clone();
            config.redis = redis_settings.clone();
            let node = Node::start(&config, Arc::new(SystemClock)).await.unwrap();
            if let Some(d) = &node.demo {
                demo = Some((d.client_id.clone(), d.client_secret.clone()));
            }
            let router = node.router.clone();
            tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
            nodes.push(url);
        }
        let (client_id, secret) = demo.unwrap();
        let mirror = RedisStore::connect_with(&redis_settings)
            .await
            .unwrap()
            .with_revocation_mirror(1_000_000);
        let sdk = tokend_verify::Verifier::new(
            Arc::new(tokend_verify::RemoteKeys::discover(&nodes[0], Default::default()).await.unwrap()),
            Arc::new(tokend_redis::RedisRevocation(mirror)),
            tokend_jwt::VerifyPolicy { issuer: nodes[0].clone(), audiences: Vec::new(), leeway_secs: 0 },
            Arc::new(tokend_verify::SystemClock),
        );
        let target = Arc::new(Target {
            sdk,
            nodes,
            client_id,
            secret,
            http: reqwest::Client::builder().pool_max_idle_per_host(512).build().unwrap(),
        });
        while target.issue(0).await.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let idle = probes(&target, 100).await;

        // The load: issues on both nodes and revocations of recent tokens, on schedule.
        let (issued, revoked, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        // Like k6's arrival-rate executors: a bounded pool of in-flight requests; a request
        // whose start time comes while all are busy is dropped and counted.
        let in_flight = Arc::new(tokio::sync::Semaphore::new(env("IN_FLIGHT", 128) as usize));
        let dropped = Arc::new(AtomicU64::new(0));
        let recent: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let load = {
            let (target, issued, revoked, failed, recent) = (target.clone(), issued.clone(), revoked.clone(), failed.clone(), recent.clone());
            let (in_flight, dropped) = (in_flight.clone(), dropped.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                let (per_tick_issue, per_tick_revoke) = (issue_rate / 100, revoke_rate / 100);
                while Instant::now() < deadline {
                    tick.tick().await;
                    for i in 0..per_tick_issue {
                        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        };
                        let (target, issued, failed, recent) = (target.clone(), issued.clone(), failed.clone(), recent.clone());
                        tokio::spawn(async move {
                            let _permit = permit;
                            match target.try_issue((i % 2) as usize).await {
                                Ok(t) => {
                                    issued.fetch_add(1, Ordering::Relaxed);
                                    let mut r = recent.lock().await;
                                    if r.len() < 10_000 {
                                        r.push(t);
                                    }
                                }
                                Err(why) => {
                                    if failed.fetch_add(1, Ordering::Relaxed) % 5000 == 0 {
                                        println!("an issue failed: {why}");
                                    }
                                }
                            }
                        });
                    }
                    for _ in 0..per_tick_revoke {
                        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        };
                        let Some(t) = recent.lock().await.pop() else { break };
                        let (target, revoked, failed) = (target.clone(), revoked.clone(), failed.clone());
                        tokio::spawn(async move {
                            let _permit = permit;
                            if target.revoke(0, &t, false).await {
                                revoked.fetch_add(1, Ordering::Relaxed);
                            } else {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        });
                    }
                }
            })
        };
        tokio::time::sleep(Duration::from_secs(2)).await; // let the load settle
        let started = Instant::now();
        let (i0, r0) = (issued.load(Ordering::Relaxed), revoked.load(Ordering::Relaxed));
        let (mut loaded, mut loaded_sdk) = (Vec::new(), Vec::new());
        let mut strict_violations = 0;
        let mut strict_probes = 0;
        while Instant::now() + Duration::from_secs(1) < deadline {
            if let Some((n, s)) = target.probe(false).await {
                loaded.push(n);
                loaded_sdk.push(s);
            }
            if let Some((n, s)) = target.probe(true).await {
                strict_probes += 1;
                strict_violations += u32::from(n == Duration::MAX || s == Duration::MAX);
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        let issue_achieved = (issued.load(Ordering::Relaxed) - i0) as f64 / elapsed;
        let revoke_achieved = (revoked.load(Ordering::Relaxed) - r0) as f64 / elapsed;
        load.await.unwrap();
        loaded.sort_unstable();
        loaded_sdk.sort_unstable();

        println!();
        println!("| revocation propagation (after the revoke answered) | samples | p50 | p99 | max |");
        println!("| --- | ---: | ---: | ---: | ---: |");
        for (name, s) in [
            ("reference: idle cluster, the other node", &idle.0),
            ("idle cluster, the SDK verifier", &idle.1),
            ("under load, the other node", &loaded),
            ("under load, the SDK verifier", &loaded_sdk),
        ] {
            println!(
                "| {name} | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
                s.len(),
                percentile(s, 0.5).as_secs_f64() * 1e3,
                percentile(s, 0.99).as_secs_f64() * 1e3,
                s.last().copied().unwrap_or_default().as_secs_f64() * 1e3
            );
        }
        println!(
            "load asked: {issue_rate} issues/s + {revoke_rate} revokes/s; achieved {issue_achieved:.0} issues/s + {revoke_achieved:.0} revokes/s; {} failed, {} dropped (all {} in flight)",
            failed.load(Ordering::Relaxed),
            dropped.load(Ordering::Relaxed),
            env("IN_FLIGHT", 128)
        );
        println!("strict revocations: {strict_violations} of {strict_probes} accepted by the other node or the SDK after answering (zero window: 0)");
    });
}
