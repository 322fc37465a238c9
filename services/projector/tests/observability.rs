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

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokend_testkit::{
    Collector, Jaeger, Prometheus, Service, demo_secrets, free_port, kafka, redis, sibling_binary,
    unique, workspace,
};

const ADMIN: &str = "observability-admin-token";

/// What the services share: one topic set, one key prefix, telemetry to the collector.
fn shared_env(
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

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let resp = http.get(url).send().await.map_err(|e| e.to_string())?;
    resp.json().await.map_err(|e| e.to_string())
}

/// `GET /api/v1/query` at the latest scrape: how many series, or why there are none.
async fn query(http: &reqwest::Client, prometheus: &str, expr: &str) -> Result<usize, String> {
    let url =
        reqwest::Url::parse_with_params(&format!("{prometheus}/api/v1/query"), &[("query", expr)])
            .map_err(|e| e.to_string())?;
    let body = get_json(http, url.as_str()).await?;
    if body["status"] != "success" {
        return Err(format!("{}: {}", body["errorType"], body["error"]));
    }
    match body["data"]["result"].as_array().map(Vec::len) {
        Some(n) if n > 0 => Ok(n),
        _ => Err("no data".into()),
    }
}

/// `Ok` when there is no problem, else all of them.
fn none(problems: Vec<String>) -> Result<(), String> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Every dashboard query has data.
async fn dashboards_have_data(
    http: &reqwest::Client,
    prometheus: &str,
    queries: &[(String, String)],
) {
    eventually_ok(
        "every dashboard query has data",
        Duration::from_secs(30),
        || async {
            let mut missing = Vec::new();
            for (panel, expr) in queries {
                if let Err(why) = query(http, prometheus, expr).await {
                    missing.push(format!("{panel}: {expr}: {why}"));
                }
            }
            none(missing)
        },
    )
    .await;
}

/// Every rule Prometheus loaded is healthy and has data (an alert: its expression with
/// `bool`); returns how many there are.
async fn rules_have_data(http: &reqwest::Client, prometheus: &str) -> usize {
    let checked = std::sync::atomic::AtomicUsize::new(0);
    eventually_ok(
        "every rule is healthy and has data",
        Duration::from_secs(30),
        || async {
            let body = get_json(http, &format!("{prometheus}/api/v1/rules")).await?;
            let rules: Vec<&Value> = body["data"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().into_iter().flatten())
                .collect();
            checked.store(rules.len(), std::sync::atomic::Ordering::Relaxed);
            let mut problems = Vec::new();
            if rules.len() < 10 {
                problems.push(format!("only {} rules loaded", rules.len()));
            }
            for rule in rules {
                let (name, expr) = (
                    rule["name"].as_str().unwrap(),
                    rule["query"].as_str().unwrap(),
                );
                if rule["health"] != "ok" {
                    problems.push(format!("{name}: {} {}", rule["health"], rule["lastError"]));
                    continue;
                }
                let probe = if rule["type"] == "alerting" {
                    with_bool(expr)
                } else {
                    name.to_owned()
                };
                if let Err(why) = query(http, prometheus, &probe).await {
                    problems.push(format!("{name}: {probe}: {why}"));
                }
            }
            none(problems)
        },
    )
    .await;
    checked.into_inner()
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

/// Every query of every dashboard (`$__rate_interval` as Grafana would set it for a 1 s
/// scrape), as (dashboard and panel title, expression).
fn dashboard_queries() -> Vec<(String, String)> {
    let dir = workspace().join("infra/observability/grafana/dashboards");
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "dashboards missing in {}", dir.display());
    for file in files {
        let dashboard: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                out.push((
                    format!("{} / {}", dashboard["title"], panel["title"]),
                    expr.replace("$__rate_interval", "30s"),
                ));
            }
        }
    }
    out
}

/// An alert's `<expression> <comparison> <threshold>` as a comparison with `bool`: data
/// whenever the expression has data, firing or not.
fn with_bool(alert: &str) -> String {
    let parts: Vec<&str> = alert.trim().rsplitn(3, ' ').collect();
    let [threshold, op, expr] = parts[..] else {
        panic!("an alert is `<expression> <comparison> <threshold>`: {alert}");
    };
    assert!(
        ["<", ">", "<=", ">=", "==", "!="].contains(&op) && threshold.parse::<f64>().is_ok(),
        "an alert is `<expression> <comparison> <threshold>`: {alert}"
    );
    format!("{expr} {op} bool {threshold}")
}

/// The README's picture: Prometheus's own graph of a dashboard query, rendered by Chromium
/// (Grafana is not installable here; the query is the panel's).
fn screenshot(prometheus: &str, expr: &str, path: &Path) {
    let url = reqwest::Url::parse_with_params(
        &format!("{prometheus}/classic/graph"),
        &[("g0.expr", expr), ("g0.tab", "0"), ("g0.range_input", "1m")],
    )
    .unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1280,860",
            "--virtual-time-budget=8000",
        ])
        .arg(format!("--screenshot={}", path.display()))
        .arg(url.as_str())
        .output()
        .expect("chromium runs");
    assert!(path.exists(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn promtool(args: &[&str], dir: &Path) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool (Debian's prometheus package) runs");
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn eventually_ok<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(()) => return,
            Err(why) if started.elapsed() > limit => panic!("{what} within {limit:?}: {why}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// The services under test: a projector and two token nodes (node 0 seeds the demo).
struct Stack {
    services: Vec<Service>,
    nodes: [String; 2],
    addrs: [String; 2],
    projector_metrics: String,
}

impl Stack {
    fn start(dir: &Path, bootstrap: &str, redis_url: &str, otlp: &str) -> Self {
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
async fn wait_ready(http: &reqwest::Client, nodes: &[String], services: &mut [Service]) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_have_data_from_a_real_prometheus_and_nothing_leaks() {
    let _limit = tokend_testkit::time_limit(300);
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
