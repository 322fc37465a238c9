//! Prometheus's side of the observability test: queries through its HTTP API, the
//! dashboards' and rules' expressions, promtool, and the picture.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokend_testkit::workspace;

pub(crate) async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let resp = http.get(url).send().await.map_err(|e| e.to_string())?;
    resp.json().await.map_err(|e| e.to_string())
}

/// `GET /api/v1/query` at the latest scrape: how many series, or why there are none.
pub(crate) async fn query(
    http: &reqwest::Client,
    prometheus: &str,
    expr: &str,
) -> Result<usize, String> {
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
pub(crate) fn none(problems: Vec<String>) -> Result<(), String> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Every dashboard query has data.
pub(crate) async fn dashboards_have_data(
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
pub(crate) async fn rules_have_data(http: &reqwest::Client, prometheus: &str) -> usize {
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

/// Every query of every dashboard (`$__rate_interval` as Grafana would set it for a 1 s
/// scrape), as (dashboard and panel title, expression).
pub(crate) fn dashboard_queries() -> Vec<(String, String)> {
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
pub(crate) fn with_bool(alert: &str) -> String {
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
pub(crate) fn screenshot(prometheus: &str, expr: &str, path: &Path) {
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

pub(crate) fn promtool(args: &[&str], dir: &Path) {
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

pub(crate) async fn eventually_ok<F, Fut>(what: &str, limit: Duration, mut check: F)
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
