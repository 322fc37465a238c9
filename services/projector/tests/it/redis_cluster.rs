//! The loop on a real Redis Cluster (three masters with a replica each): token nodes and the
//! projector with `redis.cluster = true`, an SDK verifier with its own mirror, and the master
//! of the projection's slot stopped under them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokend::SystemClock;
use tokend_redis::{RedisSettings, base_key};
use tokend_testkit::{RedisCluster, kafka};

use crate::LIMIT_SECS;
use crate::cluster::Cluster;
use crate::heal::revoke_strict;
use crate::loop_tests::{issue_on_0_validate_and_refresh_on_1, strict_revocation_everywhere};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_runs_on_a_redis_cluster_and_through_a_failover() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let redis = RedisCluster::start().await;
    let settings = RedisSettings {
        url: redis.url.clone(),
        cluster: true,
        ..RedisSettings::default()
    };
    let c = Cluster::start_on(&kafka().await.bootstrap, settings, 2, Arc::new(SystemClock)).await;
    let _projector = c.projecting().await;
    issue_on_0_validate_and_refresh_on_1(&c).await;
    let _sdk = strict_revocation_everywhere(&c, 10).await;

    // The master of the projection's slot stops. Until its replica has taken over, a node
    // answers a revoked token with 401 or 503, never 200; then everything works again.
    let live = c.client_credentials(0).await;
    let revoked = c.client_credentials(0).await;
    revoke_strict(&c, 0, &revoked).await;
    let tag = base_key(&c.redis.key_prefix);
    let master = redis.master_of(&tag);
    redis.synced(master);
    redis.stop(master);
    let stopped = Instant::now();
    let mut unavailable = 0;
    loop {
        for node in 0..2 {
            let status = c.data(node, &revoked).await;
            assert!(
                status == 401 || status == 503,
                "a revoked token got {status} during a failover"
            );
            unavailable += usize::from(status == 503);
        }
        let statuses = (c.data(0, &live).await, c.data(1, &live).await);
        if statuses == (200, 200) {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(60),
            "validation works again after a failover: a live token gets {statuses:?}; the cluster: {}",
            redis.cli(redis.master_of(&tag), &["cluster", "nodes"])
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "validation answered again {:?} after the master stopped ({unavailable} answers were 503)",
        stopped.elapsed()
    );
    assert_ne!(redis.master_of(&tag), master, "the replica took over");
    let started = Instant::now();
    let token = loop {
        let (status, body) = c
            .form(0, "/oauth/token", &[("grant_type", "client_credentials")])
            .await;
        if status == 200 {
            break body["access_token"].as_str().unwrap().to_owned();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(c.data(1, &token).await, 200);
    issue_on_0_validate_and_refresh_on_1(&c).await;
    strict_revocation_everywhere(&c, 5).await;
}
