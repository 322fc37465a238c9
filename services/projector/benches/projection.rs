//! Projection throughput against real Kafka and Redis (the test containers), printed side by
//! side with two references measured in the same run: reading and decoding the same log
//! without applying it (the ceiling Kafka and decoding set), and the pure in-memory
//! projection. Run: `cargo bench -p tokend-projector --bench projection` (EVENTS=N to size).
//!
//! The log is a realistic mix per 10 events: 6 client-credentials issues, 2 password grants
//! with refresh tokens, 1 refresh rotation, 1 access-token revocation; plus a subject and a
//! client revocation every 1,000.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::disallowed_methods,
    clippy::panic,
    clippy::print_stderr
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokend_domain::{EventLog, Projection};
use tokend_events::*;
use tokend_kafka::rdkafka::message::Message;
use tokend_kafka::{KafkaEventLog, KafkaSettings, replay_consumer};
use tokend_projector::{Config, Metrics, rebuild, run};
use tokend_redis::{RedisSettings, RedisStore};
use tokend_testkit::unique;

fn events(n: usize) -> Vec<Event> {
    let mut out = Vec::with_capacity(n);
    let mut last_refresh: Vec<(String, String)> = Vec::new();
    for i in 0..n {
        let family = format!("f{i:016x}");
        let issued = |refresh: Option<String>, rotated: Option<String>, family: &str| {
            Event::TokenIssued(TokenIssued {
                jti: format!("j{i:016x}"),
                sub: format!("user{}", i % 5000),
                client_id: format!("client{}", i % 20),
                scope: "read".into(),
                aud: vec!["api".into()],
                iat: 1_900_000_000,
                exp: 1_900_000_900,
                family_id: family.to_owned(),
                auth_time_ms: 1_900_000_000_000,
                refresh: refresh.map(|digest| RefreshIssued {
                    digest,
                    exp: 1_901_000_000,
                }),
                rotated_from: rotated,
                from_code: None,
                reuse_grace_secs: 0,
                retry: false,
            })
        };
        let e = if i % 1000 == 999 {
            Event::ClientRevoked(ClientRevoked {
                client_id: "client3".into(),
                revoked_before_ms: 1,
            })
        } else if i % 1000 == 998 {
            Event::SubjectRevoked(SubjectRevoked {
                sub: "user7".into(),
                revoked_before_ms: 1,
            })
        } else {
            match i % 10 {
                6 | 7 => {
                    let digest = format!("r{i:016x}");
                    last_refresh.push((family.clone(), digest.clone()));
                    issued(Some(digest), None, &family)
                }
                8 => match last_refresh.pop() {
                    Some((fam, parent)) => issued(Some(format!("r{i:016x}")), Some(parent), &fam),
                    None => issued(None, None, &family),
                },
                9 => Event::TokenRevoked(TokenRevoked {
                    jti: format!("j{:016x}", i - 1),
                    sub: "x".into(),
                    client_id: "c".into(),
                    exp: 1_900_000_900,
                    family_id: family.clone(),
                }),
                _ => issued(None, None, &family),
            }
        };
        out.push(e);
    }
    out
}

async fn produce(settings: &KafkaSettings, events: &[Event]) {
    let log = Arc::new(KafkaEventLog::connect(settings).await.unwrap());
    for chunk in events.chunks(5000) {
        let sends = chunk.iter().map(|e| {
            let log = log.clone();
            let env = Envelope::new(e, uuid::Uuid::nil(), 0);
            let key = e.partition_key().to_owned();
            async move { log.append(&env, &key).await.unwrap() }
        });
        futures::future::join_all(sends).await;
    }
}

/// Reads and decodes the whole topic without applying anything.
async fn read_only(settings: &KafkaSettings, total: usize) -> f64 {
    let consumer =
        replay_consumer(settings, &(0..settings.partitions).collect::<Vec<_>>()).unwrap();
    let started = Instant::now();
    let mut seen = 0;
    while seen < total {
        let m = consumer.recv().await.unwrap();
        let env = Envelope::from_bytes(m.payload().unwrap()).unwrap();
        std::hint::black_box(env.decode().unwrap());
        seen += 1;
        while let Some(Ok(m)) = consumer.recv().now_or_never() {
            let env = Envelope::from_bytes(m.payload().unwrap()).unwrap();
            std::hint::black_box(env.decode().unwrap());
            seen += 1;
        }
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// Decodes the encoded envelopes from memory (no Kafka).
fn decode_only(events: &[Event]) -> f64 {
    let bytes: Vec<Vec<u8>> = events
        .iter()
        .map(|e| Envelope::new(e, uuid::Uuid::nil(), 0).to_bytes())
        .collect();
    let started = Instant::now();
    for b in &bytes {
        std::hint::black_box(Envelope::from_bytes(b).unwrap().decode().unwrap());
    }
    events.len() as f64 / started.elapsed().as_secs_f64()
}

fn in_memory(events: &[Event]) -> f64 {
    let mut by_partition: HashMap<usize, Vec<&Event>> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        by_partition.entry(i % 6).or_default().push(e);
    }
    let started = Instant::now();
    let mut p = Projection::default();
    for (part, evs) in &by_partition {
        for chunk in evs.chunks(2000) {
            let refs: Vec<Option<&Event>> = chunk.iter().map(|e| Some(*e)).collect();
            let first = p.next_offset(*part as u32);
            p.apply_batch(*part as u32, first, &refs);
        }
    }
    events.len() as f64 / started.elapsed().as_secs_f64()
}

/// No phase may hang the bench: past these it fails with what it knows.
const PHASE_LIMIT: Duration = Duration::from_secs(300);
const STALL_LIMIT: Duration = Duration::from_secs(30);

async fn bounded<T>(limit: Duration, what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what} took longer than {limit:?}"),
    }
}

fn main() {
    let n: usize = std::env::var("EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    // Warnings (and more with RUST_LOG) go to stderr, with the phase markers below.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (kafka, redis) = (tokend_testkit::kafka().await, tokend_testkit::redis().await);
        let topic = unique("bench");
        let settings = KafkaSettings {
            bootstrap_servers: kafka.bootstrap.clone(),
            dead_letter_topic: format!("{topic}.dlq"),
            topic,
            partitions: 6,
            ..KafkaSettings::default()
        }
        .single_broker();
        let log = events(n);
        let started = Instant::now();
        produce(&settings, &log).await;
        println!("produced {n} events in {:.1} s", started.elapsed().as_secs_f64());

        let memory = in_memory(&log);
        let decoding = decode_only(&log);
        eprintln!("phase: read the log without applying");
        let read = bounded(PHASE_LIMIT, "reading the log", read_only(&settings, n)).await;

        let config = |prefix: &str| Config {
            kafka: settings.clone(),
            redis: RedisSettings { url: redis.url.clone(), key_prefix: prefix.to_owned(), ..RedisSettings::default() },
            group_id: unique("bench"),
            metrics_addr: None,
            ..Config::default()
        };
        let rebuilt = config(&unique("rebuild"));
        let store = RedisStore::connect_with(&rebuilt.redis).await.unwrap();
        eprintln!("phase: rebuild");
        let report = bounded(PHASE_LIMIT, "rebuild", rebuild(&rebuilt, &store, false))
            .await
            .unwrap();

        // The live projector, started on the whole log: its catch-up rate.
        let live = config(&unique("live"));
        let store = Arc::new(RedisStore::connect_with(&live.redis).await.unwrap());
        let metrics = Arc::new(Metrics::default());
        let started = Instant::now();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = {
            let (store, metrics, live) = (store.clone(), metrics.clone(), live.clone());
            tokio::spawn(async move {
                run(&live, store, metrics, async move { let _ = stopped.await; }).await.unwrap();
            })
        };
        eprintln!("phase: live catch-up");
        let (mut last, mut since) = (0, Instant::now());
        while Metrics::get(&metrics.applied) < n as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let applied = Metrics::get(&metrics.applied);
            if applied != last {
                (last, since) = (applied, Instant::now());
            } else if since.elapsed() > STALL_LIMIT {
                eprintln!("{}", metrics.summary());
                for p in 0..6 {
                    eprintln!("partition {p}: {:?}", store.partition_state(p).await);
                }
                panic!("the live projector made no progress for {STALL_LIMIT:?} at {applied} of {n}");
            }
        }
        let live_rate = n as f64 / started.elapsed().as_secs_f64();
        let _ = stop.send(());
        task.await.unwrap();
        let batches = Metrics::get(&metrics.batches).max(1);

        println!();
        println!("| {n} events, 6 partitions, this machine | events/s |");
        println!("| --- | ---: |");
        println!("| reference: decode envelopes from memory | {decoding:.0} |");
        println!("| reference: pure in-memory projection (batches of 2,000) | {memory:.0} |");
        println!("| reference: read + decode from Kafka, nothing applied | {read:.0} |");
        println!("| `projector rebuild` into Redis | {:.0} |", report.events_per_sec());
        println!("| live projector catching up from offset 0 | {live_rate:.0} |");
        println!(
            "live projector: {batches} batches, {:.0} records per batch, {:.2} Redis keys written per event, {:.0} µs per batch",
            n as f64 / batches as f64,
            Metrics::get(&metrics.records_written) as f64 / n as f64,
            Metrics::get(&metrics.apply_micros) as f64 / batches as f64
        );
    });
}
