//! One trace from `POST /oauth/token` through the Kafka hop to the Redis write, exported over
//! OTLP to a real Jaeger and read back through its query API; the metrics of the same run;
//! and no secret in any exported span or metric. Its own test binary: telemetry is process-wide (one subscriber, one exporter).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::disallowed_methods
)]

#[allow(dead_code)]
#[path = "it/cluster.rs"]
mod cluster;

use std::time::{Duration, Instant};

use serde_json::Value;
use tokend_testkit::{Jaeger, kafka, redis};

use crate::cluster::Cluster;

const SERVICE: &str = "tokend-it";

/// Every span of the service Jaeger holds, as JSON.
async fn all_spans(http: &reqwest::Client, jaeger: &Jaeger) -> Vec<Value> {
    let url = format!(
        "{}/api/traces?service={SERVICE}&limit=1000&lookback=1h",
        jaeger.query
    );
    let body: Value = http.get(url).send().await.unwrap().json().await.unwrap();
    body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["spans"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans
        .iter()
        .filter(|s| s["operationName"] == name)
        .collect()
}

/// Whether `span` refers to `parent` (child of, or a link: Jaeger shows links as
/// `FOLLOWS_FROM`), and how.
fn reference<'a>(span: &'a Value, parent: &Value) -> Option<&'a str> {
    span["references"].as_array()?.iter().find_map(|r| {
        (r["spanID"] == parent["spanID"] && r["traceID"] == parent["traceID"])
            .then(|| r["refType"].as_str().unwrap_or_default())
    })
}

fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .map(|t| &t["value"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_token_request_through_kafka_to_the_redis_write() {
    tokend_testkit::time_limit(180);
    let jaeger = Jaeger::start();
    let config = tokend_telemetry::TelemetryConfig {
        otlp_endpoint: Some(jaeger.otlp.clone()),
        log_filter: "warn".into(),
        ..Default::default()
    };
    let telemetry = tokend_telemetry::init(SERVICE, "test", &config).unwrap();
    let (k, r) = (kafka().await, redis().await);
    let c = Cluster::start(&k.bootstrap, &r.url, 1).await;
    let _projector = c.spawn_projector();
    c.ready().await;

    // The caller's trace: its `traceparent` is honoured.
    let trace_id = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let caller = "00f067aa0ba902b7";
    let resp = c
        .http
        .post(format!("{}/oauth/token", c.nodes[0]))
        .basic_auth(&c.client_id, Some(&c.client_secret))
        .header("traceparent", format!("00-{trace_id}-{caller}-01"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let token = resp.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let topic = c.kafka.topic.clone();
    let started = Instant::now();
    let (request, send, process, write) = loop {
        telemetry.flush();
        let spans = all_spans(&c.http, &jaeger).await;
        let request = named(&spans, "POST /oauth/token")
            .into_iter()
            .find(|s| s["traceID"] == trace_id.as_str() && s["references"][0]["spanID"] == caller)
            .cloned();
        let send = request.as_ref().and_then(|req| {
            named(&spans, &format!("send {topic}"))
                .into_iter()
                .find(|s| reference(s, req).is_some())
                .cloned()
        });
        let process = send.as_ref().and_then(|send| {
            named(&spans, &format!("process {topic}"))
                .into_iter()
                .find(|s| reference(s, send).is_some())
                .cloned()
        });
        let write = process.as_ref().and_then(|p| {
            named(&spans, "EVALSHA apply_batch")
                .into_iter()
                .find(|s| reference(s, p) == Some("CHILD_OF"))
                .cloned()
        });
        if let (Some(a), Some(b), Some(c), Some(d)) = (request, send, process, write) {
            break (a, b, c, d);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the chain never showed up in Jaeger"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!(
        "trace {trace_id}: request -> send ({}) -> process ({}) -> Redis write",
        reference(&send, &request).unwrap(),
        reference(&process, &send).unwrap()
    );
    // The conventions: route template and status; messaging system, destination, partition,
    // offset and consumer group.
    assert_eq!(tag(&request, "http.route").unwrap(), "/oauth/token");
    assert_eq!(tag(&request, "http.response.status_code").unwrap(), 200);
    assert_eq!(tag(&send, "messaging.system").unwrap(), "kafka");
    assert_eq!(
        tag(&send, "messaging.destination.name").unwrap(),
        topic.as_str()
    );
    assert!(tag(&send, "messaging.kafka.offset").is_some());
    assert_eq!(
        tag(&process, "messaging.consumer.group.name").unwrap(),
        c.group.as_str()
    );
    assert_eq!(tag(&process, "span.kind").unwrap(), "consumer");
    assert_eq!(tag(&send, "span.kind").unwrap(), "producer");
    assert_eq!(tag(&write, "db.system.name").unwrap(), "redis");

    // No secret in anything exported: the client secret, the demo password (the readiness
    // check signed in with it), the token handed out.
    let everything = serde_json::to_string(&all_spans(&c.http, &jaeger).await).unwrap();
    for (what, secret) in [
        ("client secret", c.client_secret.as_str()),
        ("password", c.password.as_str()),
        ("access token", token.as_str()),
    ] {
        assert!(!everything.contains(secret), "the {what} was exported");
    }

    // The metrics of the same run, as Prometheus scrapes them.
    assert_eq!(c.data(0, &token).await, 200);
    // A revocation, for the mirror's delay histogram.
    c.form(0, "/oauth/revoke", &[("token", &token)]).await;
    let revoked = Instant::now();
    while c.data(0, &token).await != 401 {
        assert!(
            revoked.elapsed() < Duration::from_secs(5),
            "the revocation took hold"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let metrics = telemetry.prometheus().render();
    for needle in [
        "http_server_request_duration_seconds_bucket{",
        "http_route=\"/oauth/token\"",
        "tokend_tokens_issued_total{grant_type=\"client_credentials\"}",
        "tokend_validations_total{outcome=\"valid\"}",
        "messaging_client_operation_duration_seconds_count{",
        "projector_propagation_delay_seconds_count{event_class=\"issue\"}",
        "projector_records_applied_total",
        "tokend_signing_key_age_seconds",
        "tokend_signing_key_next_rotation_seconds",
        "tokend_revocation_mirror_current 1",
        "tokend_revocation_mirror_entries",
        "tokend_revocation_mirror_step_asides",
        "tokend_revocation_mirror_delay_seconds_count",
    ] {
        assert!(
            metrics.contains(needle),
            "{needle} missing from:\n{metrics}"
        );
    }
    for secret in [
        c.client_secret.as_str(),
        c.password.as_str(),
        token.as_str(),
    ] {
        assert!(!metrics.contains(secret));
    }
    // The projector's lag per partition, from the log ends its consumer saw (statistics
    // every second): every record has been applied, so each partition reads 0.
    let lag = "projector_partition_lag{messaging_destination_partition_id=";
    let started = Instant::now();
    loop {
        let metrics = telemetry.prometheus().render();
        let lags: Vec<&str> = metrics.lines().filter(|l| l.starts_with(lag)).collect();
        if !lags.is_empty() && lags.iter().all(|l| l.ends_with("} 0")) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no lag of 0 per partition in 15 s: {lags:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    telemetry.shutdown();
}
