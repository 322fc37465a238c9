//! The projection on a real Redis Cluster (three masters with a replica each, one container):
//! the same scripts and reads as on a single Redis, the shards spread over every master, the
//! near-caches on the master of the projection's slot, and failovers (a master that stops, and a manual one that leaves the old
//! master running as a replica).

use std::time::{Duration, Instant};

use tokend_domain::{StateStore, StoreError};
use tokend_events::*;
use tokend_redis::{RedisSettings, RedisStore, base_key};
use tokend_testkit::{RedisCluster, unique};

use super::*;

async fn connect(cluster: &RedisCluster, prefix: &str) -> RedisStore {
    RedisStore::connect_with(&RedisSettings {
        url: cluster.url.clone(),
        cluster: true,
        key_prefix: prefix.to_owned(),
        ..RedisSettings::default()
    })
    .await
    .unwrap()
}

/// Retries `read` until it stops failing (a failover in progress), for up to 20 s.
async fn once_available<T>(
    what: &str,
    mut read: impl AsyncFnMut() -> Result<T, StoreError>,
) -> (T, Duration) {
    let started = Instant::now();
    loop {
        match read().await {
            Ok(value) => return (value, started.elapsed()),
            Err(e) => assert!(
                started.elapsed() < Duration::from_secs(20),
                "{what}: still failing after 20 s: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the mirror answers again, for up to 20 s.
async fn current_again(store: &RedisStore) -> Duration {
    let mirror = store.revocation_mirror().unwrap();
    let started = Instant::now();
    while !mirror.is_current() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the mirror answers again"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projection_runs_on_a_redis_cluster_and_through_its_failovers() {
    tokend_testkit::time_limit(180);
    let cluster = RedisCluster::start().await;
    let prefix = unique("cl");
    let writer = connect(&cluster, &prefix).await;
    let events = script();
    let refs: Vec<Option<&Event>> = events.iter().map(Some).collect();
    let half = events.len() / 2;
    writer.apply_records(0, 0, &refs[..half]).await.unwrap();
    assert!(complete(&writer).await);
    let node = connect(&cluster, &prefix).await.with_near_caches(100, 1000);
    current_again(&node).await;
    for (i, event) in refs.iter().enumerate().skip(half) {
        writer.apply_records(0, i as u64, &[*event]).await.unwrap();
    }
    let reference = reference_of(&events);
    barrier_passes(&writer).await;
    compare(&writer, &reference).await;
    compare_revocations(&node, &reference).await;
    let mirror = node.revocation_mirror().unwrap();
    assert_eq!(mirror.fallbacks(), 0, "every check answered from memory");
    // Refresh tokens, codes and families are spread over every master.
    let pattern = format!("{{{prefix}:??}}:*");
    let mut spread = Vec::new();
    for &port in &cluster.ports {
        if cluster.cli(port, &["role"]).starts_with("master") {
            let keys = cluster.cli(port, &["--scan", "--pattern", &pattern]);
            spread.push(keys.lines().filter(|k| !k.ends_with(":ready")).count());
        }
    }
    println!("shard records per master: {spread:?}");
    assert_eq!(spread.len(), 3);
    assert!(spread.iter().all(|n| *n > 0), "{spread:?}");

    // A master that stops: its replica takes over with the data, readers and the writer
    // follow it, and the mirror subscribes on the new master and answers again.
    let tag = base_key(&prefix);
    let first = cluster.master_of(&tag);
    cluster.synced(first);
    let steps = mirror.step_asides();
    cluster.stop(first);
    let (_, took) = once_available("reads after the master stopped", async || {
        writer.is_revoked(&query("a1", "f1", "alice")).await
    })
    .await;
    let second = cluster.master_of(&tag);
    assert_ne!(first, second);
    println!("reads came back {took:?} after the master stopped");
    compare(&writer, &reference).await;
    let took = current_again(&node).await;
    assert!(mirror.step_asides() > steps, "stepped aside meanwhile");
    println!("the mirror answered again {took:?} later");
    compare_revocations(&node, &reference).await;
    let late = late_revocation();
    writer
        .apply_records(0, events.len() as u64, &[Some(&late)])
        .await
        .unwrap();
    barrier_passes(&writer).await;
    let d1 = query("d1", "f6", "dave");
    let before = mirror.fallbacks();
    assert!(node.is_revoked(&d1).await.unwrap());
    assert_eq!(mirror.fallbacks(), before, "answered from memory");

    // The stopped node comes back as a replica; then a manual failover hands the slot back
    // to it while the old master keeps running (as a replica). The stream, still connected
    // there, is no longer the one the writes publish on: the lease sees the other node and
    // the mirror subscribes again on the new master.
    cluster.restart(first);
    cluster.synced(second);
    let steps = mirror.step_asides();
    cluster.cli(first, &["cluster", "failover"]);
    let started = Instant::now();
    while cluster.master_of(&tag) != first {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "manual failover"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    while mirror.step_asides() == steps {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the mirror notices its stream is on a replica"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    current_again(&node).await;
    let erin = query("z1", "fz", "erin");
    assert!(!node.is_revoked(&erin).await.unwrap());
    let revoked_after = Event::SubjectRevoked(SubjectRevoked {
        sub: "erin".into(),
        revoked_before_ms: 5_000_000,
    });
    let next = events.len() as u64 + 1;
    let (_, took) = once_available("a write after the manual failover", async || {
        writer
            .apply_records(0, next, &[Some(&revoked_after)])
            .await
            .map(|_| ())
    })
    .await;
    println!("writes went on {took:?} after the manual failover");
    barrier_passes(&writer).await;
    assert!(node.is_revoked(&erin).await.unwrap());
    assert!(writer.is_revoked(&erin).await.unwrap());
    assert!(cluster.healthy());

    // With every replica in sync, a batch's pending write is cleared only once the masters'
    // replicas have its shard writes (so a failover right after cannot lose them).
    let masters: Vec<u16> = cluster
        .ports
        .iter()
        .copied()
        .filter(|&p| cluster.cli(p, &["role"]).starts_with("master"))
        .collect();
    for &port in &masters {
        cluster.synced(port);
    }
    let waits = || -> u64 {
        masters
            .iter()
            .map(|&p| {
                let stats = cluster.cli(p, &["info", "commandstats"]);
                stats
                    .lines()
                    .find_map(|l| l.strip_prefix("cmdstat_wait:calls="))
                    .and_then(|rest| rest.split(',').next())
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    };
    let before = waits();
    let issue = issued("y1", "yara", "fy", Some("rY"), None);
    writer
        .apply_records(0, next + 1, &[Some(&issue)])
        .await
        .unwrap();
    assert!(waits() > before, "waited for the replicas");
    assert!(matches!(
        writer.refresh_status("rY", 1500).await.unwrap(),
        tokend_domain::model::RefreshStatus::Valid(_)
    ));
}
