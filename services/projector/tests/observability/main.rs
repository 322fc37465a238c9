//! The observability stack as an operator runs it, with real parts only: two `tokend`
//! processes and a projector process against real Kafka and Redis export OTLP to a real
//! OpenTelemetry Collector running `infra/observability/otel-collector.yaml`, which sends the
//! traces on to Jaeger; a real Prometheus (Debian's package) scrapes the services and
//! evaluates `infra/observability/prometheus/alerts.yml`. Then:
//! - every query of every Grafana dashboard, and every recording rule and alert expression,
//!   returns data through Prometheus's HTTP API; every rule is healthy;
//! - `promtool` passes the Prometheus config and the alerts' unit tests;
//! - the collector delivered the services' traces to Jaeger and serves their pushed metrics;
//! - no secret handed out or used in the run (client secret, password, access and refresh
//!   tokens) appears in any log line of the three processes, any exported span, or any
//!   metric.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::disallowed_methods
)]

mod prometheus;
mod stack;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokend_testkit::{Collector, Jaeger, Prometheus, demo_secrets, kafka, redis, workspace};

use crate::prometheus::{
    dashboard_queries, dashboards_have_data, eventually_ok, get_json, promtool, rules_have_data,
    screenshot,
};
use crate::stack::{Stack, wait_ready};

const ADMIN: &str = "observability-admin-token";

struct Demo {
    client_id: String,
    client_secret: String,
    password: String,
}

struct Run {
    http: reqwest::Client,
    nodes: [String; 2],
    demo: Demo,
    /// Every secret the run handed out or used.
    secrets: Vec<String>,
}

impl Run {
    async fn form(&self, node: usize, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.nodes[node]))
            .basic_auth(&self.demo.client_id, Some(&self.demo.client_secret))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn data(&self, node: usize, token: &str) -> u16 {
        let url = format!("{}/api/data", self.nodes[node]);
        let resp = self.http.get(url).bearer_auth(token).send().await.unwrap();
        resp.status().as_u16()
    }

    /// One round of what users do: issue on one node, validate and introspect on the other,
    /// log in, refresh, revoke (strict), and two client mistakes.
    async fn round(&mut self) {
        let (status, body) = self
            .form(0, "/oauth/token", &[("grant_type", "client_credentials")])
            .await;
        assert_eq!(status, 200, "{body}");
        let access = body["access_token"].as_str().unwrap().to_owned();
        assert_eq!(self.data(1, &access).await, 200);
        let (status, body) = self
            .form(1, "/oauth/introspect", &[("token", &access)])
            .await;
        assert_eq!((status, &body["active"]), (200, &Value::Bool(true)));

        let password = self.demo.password.clone();
        let login = [
            ("grant_type", "password"),
            ("username", "demo"),
            ("password", password.as_str()),
        ];
        let (status, body) = self.form(1, "/oauth/token", &login).await;
        assert_eq!(status, 200, "{body}");
        let refresh = body["refresh_token"].as_str().unwrap().to_owned();
        let (status, body) = self
            .form(
                0,
                "/oauth/token",
                &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let renewed = body["access_token"].as_str().unwrap().to_owned();
        let rotated = body["refresh_token"].as_str().map(str::to_owned);
        let (status, body) = self
            .form(
                0,
                "/oauth/revoke",
                &[("token", renewed.as_str()), ("consistency", "applied")],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(self.data(1, &renewed).await, 401);

        let wrong = self
            .http
            .post(format!("{}/oauth/token", self.nodes[1]))
            .basic_auth(&self.demo.client_id, Some("not-the-secret"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status().as_u16(), 401);
        let (status, _) = self
            .form(0, "/oauth/token", &[("grant_type", "made_up")])
            .await;
        assert_eq!(status, 400);
        self.secrets
            .extend([access, refresh, renewed].into_iter().chain(rotated));
    }
}

/// Spans of `service` that reached Jaeger, as its query API answers.
async fn traces_of(
    http: &reqwest::Client,
    jaeger: &Jaeger,
    service: &str,
    limit: usize,
) -> Result<Value, String> {
    let url = format!(
        "{}/api/traces?service={service}&limit={limit}&lookback=1h",
        jaeger.query
    );
    get_json(http, &url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_have_data_from_a_real_prometheus_and_nothing_leaks() {
    tokend_testkit::time_limit(300);
    let rules = workspace().join("infra/observability/prometheus");
    promtool(&["check", "config", "prometheus.yml"], &rules);
    promtool(&["test", "rules", "alerts.test.yml"], &rules);

    let jaeger = Jaeger::start();
    let collector = Collector::start(&jaeger.otlp_grpc);
    let (k, r) = (kafka().await, redis().await);
    let dir = tempfile::tempdir().unwrap();
    let Stack {
        mut services,
        nodes,
        addrs,
        projector_metrics,
    } = Stack::start(dir.path(), &k.bootstrap, &r.url, &collector.otlp);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    wait_ready(&http, &nodes, &mut services).await;
    let (client_id, client_secret, password) =
        demo_secrets(&services[1].output()).expect("node 1 shows the demo secrets once");
    let demo = Demo {
        client_id,
        client_secret,
        password,
    };
    let mut run = Run {
        http: http.clone(),
        nodes: nodes.clone(),
        secrets: vec![demo.client_secret.clone(), demo.password.clone()],
        demo,
    };

    let scrape = format!(
        "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
         rule_files: [\"{rules}/alerts.yml\"]\n\
         scrape_configs:\n\
         - {{ job_name: tokend, static_configs: [{{ targets: [\"{a}\", \"{b}\"] }}] }}\n\
         - {{ job_name: projector, static_configs: [{{ targets: [\"{projector_metrics}\"] }}] }}\n\
         - {{ job_name: otel-collector, static_configs: [{{ targets: [\"{own}\"] }}] }}\n",
        rules = rules.display(),
        a = addrs[0],
        b = addrs[1],
        own = collector.own_metrics,
    );
    let prometheus = Prometheus::start(&scrape);

    // Traffic while Prometheus scrapes (bounded: 12 s of rounds; 60 s for a picture).
    let picture = std::env::var_os("TOKEND_OBSERVABILITY_PICTURE").map(PathBuf::from);
    let traffic = Duration::from_secs(if picture.is_some() { 60 } else { 12 });
    let started = Instant::now();
    let mut rounds = 0;
    while started.elapsed() < traffic {
        run.round().await;
        rounds += 1;
    }

    // Every dashboard query and every rule has data.
    let queries = dashboard_queries();
    dashboards_have_data(&http, &prometheus.url, &queries).await;
    let checked_rules = rules_have_data(&http, &prometheus.url).await;

    if let Some(path) = picture {
        let (_, expr) = queries
            .iter()
            .find(|(panel, _)| panel.ends_with("Propagation delay p99 by event class\""))
            .expect("the propagation panel");
        screenshot(&prometheus.url, &expr.replace("30s", "10s"), &path);
    }

    // The collector delivered both services' spans to Jaeger, and serves the pushed metrics.
    for service in ["tokend", "tokend-projector"] {
        eventually_ok(
            "the collector delivers spans to Jaeger",
            Duration::from_secs(30),
            || async {
                let body = traces_of(&http, &jaeger, service, 20).await?;
                let traces = body["data"].as_array().map_or(0, Vec::len);
                if traces > 0 {
                    Ok(())
                } else {
                    Err(format!("no trace of {service}"))
                }
            },
        )
        .await;
    }
    let pushed = http
        .get(format!("http://{}/metrics", collector.pushed_metrics))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        pushed.contains("tokend_tokens_issued_total"),
        "pushed metrics missing from the collector:\n{pushed}"
    );

    // No secret in anything: logs of all three processes, spans, metrics.
    let mut exported = String::new();
    for service in ["tokend", "tokend-projector"] {
        exported.push_str(
            &traces_of(&http, &jaeger, service, 5000)
                .await
                .unwrap()
                .to_string(),
        );
    }
    for node in &nodes {
        let metrics = http.get(format!("{node}/metrics")).send().await.unwrap();
        exported.push_str(&metrics.text().await.unwrap());
    }
    exported.push_str(&pushed);
    drop(services); // every process stops; its log is complete
    let mut log_lines = 0;
    let logs: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    for text in &logs {
        for line in text.lines().filter(|l| l.starts_with('{')) {
            log_lines += 1;
            for secret in &run.secrets {
                assert!(
                    !line.contains(secret.as_str()),
                    "a secret in a log line: {line}"
                );
            }
        }
    }
    for secret in &run.secrets {
        assert!(!exported.contains(secret.as_str()), "a secret was exported");
    }
    assert!(
        log_lines > 100,
        "only {log_lines} log lines: the logs were not captured"
    );
    println!(
        "observability: {rounds} rounds; {} dashboard queries and {checked_rules} rules with data; {log_lines} log lines and {} bytes of spans and metrics scanned for {} secrets",
        queries.len(),
        exported.len(),
        run.secrets.len()
    );
}
