//! The projection as a function of the log: a projector killed mid-stream converges to a clean
//! replay, a wiped Redis is rebuilt to the same digest, redelivery changes nothing, and every
//! token a client received is in the log.

use crate::LIMIT_SECS;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokend_kafka::rdkafka::message::Message;
use tokend_projector::{Metrics, rebuild};
use tokend_testkit::{kafka, redis, unique};

use crate::cluster::{
    Cluster, caught_up, eventually, jti, live_and_clean_digests, projector_config,
};

/// A stream of issues, rotations and revocations from a few concurrent clients; returns every
/// access token handed out.
pub(crate) async fn stream(c: &Arc<Cluster>, workers: usize, rounds: usize) -> Vec<String> {
    let received = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (c, received) = (c.clone(), received.clone());
        tasks.spawn(async move {
            for _ in 0..rounds {
                let t = c.password_grant(0).await;
                let rt = t["refresh_token"].as_str().unwrap().to_owned();
                let at = t["access_token"].as_str().unwrap().to_owned();
                let (_, r) = c
                    .form(
                        0,
                        "/oauth/token",
                        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
                    )
                    .await;
                let cc = c.client_credentials(0).await;
                c.form(0, "/oauth/revoke", &[("token", &at)]).await;
                let mut got = received.lock().unwrap();
                got.push(at);
                got.push(cc);
                if let Some(rotated) = r["access_token"].as_str() {
                    got.push(rotated.to_owned());
                }
            }
        });
    }
    tasks.join_all().await;
    Arc::try_unwrap(received).unwrap().into_inner().unwrap()
}

/// Every `jti` of a `TokenIssued` in the log.
async fn logged_jtis(c: &Cluster) -> HashSet<String> {
    let ends = tokend_kafka::end_offsets(&c.kafka).await.unwrap();
    let partitions: Vec<i32> = ends
        .iter()
        .filter(|(_, h)| *h > 0)
        .map(|(p, _)| *p)
        .collect();
    let mut remaining: usize = ends.iter().map(|(_, h)| *h as usize).sum();
    let consumer = tokend_kafka::replay_consumer(&c.kafka, &partitions).unwrap();
    let mut jtis = HashSet::new();
    while remaining > 0 {
        let m = consumer.recv().await.unwrap();
        remaining -= 1;
        let env = tokend_events::Envelope::from_bytes(m.payload().unwrap()).unwrap();
        if let Ok(tokend_events::Decoded::Known(tokend_events::Event::TokenIssued(e))) =
            env.decode()
        {
            jtis.insert(e.jti);
        }
    }
    jtis
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_projector_converges_to_a_clean_replay_and_a_wipe_rebuilds_it() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let (k, r) = (kafka().await, redis().await);
    let c = Arc::new(Cluster::start(&k.bootstrap, &r.url, 1).await);
    let mut projector = c.spawn_projector();
    c.ready().await;

    let load = tokio::spawn({
        let c = c.clone();
        async move { stream(&c, 4, 25).await }
    });
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        projector.abort(); // killed mid-stream, wherever it is
        let _ = projector.await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        projector = c.spawn_projector();
    }
    let received = load.await.unwrap();
    let (live, clean, report) = live_and_clean_digests(&c).await;
    assert_eq!(clean, live, "killed-and-restarted == clean replay");
    let store = c.store().await;
    println!(
        "clean replay: {} events in {:.2} s ({:.0} events/s)",
        report.events,
        report.seconds,
        report.events_per_sec()
    );

    // Wipe the live projection, rebuild it: the same digest again.
    let generation = store.active_generation().await.unwrap().unwrap();
    store.delete_generation(&generation).await.unwrap();
    assert_ne!(store.digest().await.unwrap(), live);
    let report = rebuild(&projector_config(&c), &store, false).await.unwrap();
    assert_eq!(
        store.digest().await.unwrap(),
        live,
        "wiped and rebuilt == before"
    );
    assert!(report.events > 400, "{report:?}");

    // Reconciliation: every token a client received is in the log.
    let logged = logged_jtis(&c).await;
    let missing: Vec<String> = received
        .iter()
        .map(|t| jti(t))
        .filter(|j| !logged.contains(j))
        .collect();
    assert!(
        missing.is_empty(),
        "tokens handed out but not in the log: {missing:?}"
    );
    assert!(received.len() >= 4 * 25 * 3);
    projector.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_delivery_changes_nothing() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let (k, r) = (kafka().await, redis().await);
    let c = Arc::new(Cluster::start(&k.bootstrap, &r.url, 1).await);
    let projector = c.projecting().await;
    stream(&c, 2, 10).await;
    let store = c.store().await;
    caught_up(&c, &store).await;
    let before = store.digest().await.unwrap();
    let total: u64 = tokend_kafka::end_offsets(&c.kafka)
        .await
        .unwrap()
        .iter()
        .map(|(_, h)| *h as u64)
        .sum();

    // A second consumer group delivers every record again to the same projection, one record
    // per batch: after the first, the worker knows the projection's offset and passes the
    // rest over (each still counted as a duplicate).
    let mut config = projector_config(&c);
    config.group_id = unique("redelivery");
    config.max_batch = 1;
    let metrics = Arc::new(Metrics::default());
    let (m, s) = (metrics.clone(), store.clone());
    let again = tokio::spawn(async move {
        tokend_projector::run(&config, Arc::new(s), m, std::future::pending())
            .await
            .unwrap();
    });
    // Every record comes again and is passed over; nothing applies twice. (A new group's
    // first assignment took over 30 s once, in a CI run with the other loop tests on the same
    // two cores.)
    eventually(Duration::from_secs(90), || async {
        tokend_projector::Metrics::get(&metrics.duplicates) >= total
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        metrics.applied.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(store.digest().await.unwrap(), before);
    again.abort();
    projector.abort();
}
