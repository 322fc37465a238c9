//! The services under test, as processes: a projector and two token nodes sharing one topic
//! set and one key prefix, exporting telemetry to the collector.

use std::path::Path;
use std::time::{Duration, Instant};

use tokend_testkit::{Service, free_port, sibling_binary, unique};

use crate::ADMIN;

/// What the services share: one topic set, one key prefix, telemetry to the collector.
pub(crate) fn shared_env(
    prefix: &str,
    bootstrap: &str,
    redis_url: &str,
    topic: &str,
    otlp: &str,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("KAFKA__BOOTSTRAP_SERVERS", bootstrap),
        ("KAFKA__TOPIC", topic),
        ("KAFKA__DEAD_LETTER_TOPIC", &format!("{topic}.dlq")),
        ("KAFKA__KEYS_TOPIC", &format!("{topic}.keys")),
        ("KAFKA__PARTITIONS", "3"),
        ("KAFKA__REPLICATION_FACTOR", "1"),
        ("KAFKA__MIN_INSYNC_REPLICAS", "1"),
        ("REDIS__URL", redis_url),
        ("REDIS__KEY_PREFIX", &format!("{topic}-projection")),
        ("TELEMETRY__OTLP_ENDPOINT", otlp),
        ("TELEMETRY__LOG_FORMAT", "json"),
        // Everything the services log, the chatty levels included, is scanned for secrets.
        ("TELEMETRY__LOG_FILTER", "debug"),
        ("TELEMETRY__METRICS_INTERVAL_SECS", "1"),
    ]
    .iter()
    .map(|(k, v)| (format!("{prefix}_{k}"), (*v).to_owned()))
    .collect();
    env.push(("OTEL_METRICS_EXPORTER".into(), "otlp".into()));
    env
}

/// The services under test: a projector and two token nodes (node 0 seeds the demo).
pub(crate) struct Stack {
    pub services: Vec<Service>,
    pub nodes: [String; 2],
    pub addrs: [String; 2],
    pub projector_metrics: String,
}

impl Stack {
    pub(crate) fn start(dir: &Path, bootstrap: &str, redis_url: &str, otlp: &str) -> Self {
        let topic = unique("events");
        let projector_metrics = format!("127.0.0.1:{}", free_port());
        let mut env = shared_env("PROJECTOR", bootstrap, redis_url, &topic, otlp);
        env.push(("PROJECTOR_METRICS_ADDR".into(), projector_metrics.clone()));
        env.push(("PROJECTOR_GROUP_ID".into(), unique("projector")));
        let projector = Service::start(
            Path::new(env!("CARGO_BIN_EXE_projector")),
            &env,
            dir.join("projector.log"),
        );
        let addrs = [free_port(), free_port()].map(|p| format!("127.0.0.1:{p}"));
        let nodes = addrs.clone().map(|a| format!("http://{a}"));
        let mut services = vec![projector];
        for (i, addr) in addrs.iter().enumerate() {
            let mut env = shared_env("TOKEND", bootstrap, redis_url, &topic, otlp);
            let data_dir = dir.join(format!("node{i}")).display().to_string();
            env.extend(
                [
                    ("TOKEND_STORAGE__BACKEND", "cluster"),
                    ("TOKEND_STORAGE__DATA_DIR", data_dir.as_str()),
                    ("TOKEND_SERVER__LISTEN_ADDR", addr.as_str()),
                    ("TOKEND_KEYS__KEK", &"22".repeat(32)),
                    ("TOKEND_ADMIN__TOKEN", ADMIN),
                    ("TOKEND_GRANTS__PASSWORD", "true"),
                    ("TOKEND_RATE_LIMIT__ENABLED", "false"),
                    ("TOKEND_TOKENS__ISSUER", nodes[0].as_str()),
                    ("TOKEND_SEED__DEMO", if i == 0 { "true" } else { "false" }),
                ]
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
            );
            let log = dir.join(format!("tokend-{i}.log"));
            services.push(Service::start(&sibling_binary("tokend"), &env, log));
        }
        Self {
            services,
            nodes,
            addrs,
            projector_metrics,
        }
    }
}

/// Waits until every node answers `/readyz`; a service that exits meanwhile fails the test
/// with its output.
pub(crate) async fn wait_ready(http: &reqwest::Client, nodes: &[String], services: &mut [Service]) {
    for (i, node) in nodes.iter().enumerate() {
        let started = Instant::now();
        loop {
            match http.get(format!("{node}/readyz")).send().await {
                Ok(r) if r.status().is_success() => break,
                _ if started.elapsed() > Duration::from_secs(90) => {
                    panic!("node {i} not ready in 90 s")
                }
                _ => {}
            }
            for service in services.iter_mut() {
                if let Some(why) = service.exited() {
                    panic!("{} exited {why}", service.log.display());
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
