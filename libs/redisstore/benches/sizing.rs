//! What the projection costs in Redis per active and per revoked token, and what the
//! revocation mirror costs in a node per revocation it holds, on a private Redis (a
//! container, 127.0.0.1) with nothing else in it.
//! Run: `cargo bench -p tokend-redis --bench sizing` (TOKENS to change the count, default
//! 100,000).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::disallowed_methods
)]

use std::time::{Duration, Instant};

use tokend_domain::Applied;
use tokend_events::{
    Event, FamilyRevokeReason, RefreshIssued, TokenFamilyRevoked, TokenIssued, TokenRevoked,
};
use tokend_redis::RedisStore;

/// Far enough ahead that nothing expires during the run.
const EXP: i64 = 4_000_000_000;
const BATCH: usize = 2_000;

fn issued(i: usize, refresh: bool) -> Event {
    Event::TokenIssued(TokenIssued {
        jti: uuid(i, 1),
        sub: format!("user-{}", i % 1000),
        client_id: "app".into(),
        scope: "read write".into(),
        aud: vec!["api".into()],
        iat: 1_700_000_000,
        exp: EXP,
        family_id: uuid(i, 2),
        auth_time_ms: 1_700_000_000_000,
        refresh: refresh.then(|| RefreshIssued {
            digest: format!("{:064x}", i),
            exp: EXP + 86_400,
        }),
        rotated_from: None,
        from_code: None,
        reuse_grace_secs: 10,
        retry: false,
    })
}

/// A token id of the shape nodes mint (a UUID's 36 characters).
fn uuid(i: usize, kind: u8) -> String {
    format!("{kind:08x}-0000-4000-8000-{i:012x}")
}

async fn used_memory(con: &mut redis::aio::MultiplexedConnection) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(con)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

fn rss_bytes() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: i64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

struct Writer {
    store: RedisStore,
    next: u64,
}

impl Writer {
    async fn apply(&mut self, events: &[Event]) {
        for chunk in events.chunks(BATCH) {
            let refs: Vec<Option<&Event>> = chunk.iter().map(Some).collect();
            let (applied, _) = self.store.apply_records(0, self.next, &refs).await.unwrap();
            assert!(matches!(applied, Applied::Done { .. }));
            self.next += chunk.len() as u64;
        }
    }
}

fn main() {
    let n: usize = std::env::var("TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let redis = tokend_testkit::Redis::start().await;
        let mut con = redis::Client::open(redis.url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let store = RedisStore::connect(&redis.url, "sizing").await.unwrap();
        let mut w = Writer { store, next: 0 };
        w.apply(&[]).await;
        let state = w.store.partition_state(0).await.unwrap().unwrap();
        w.store
            .mark_complete(&state.generation, 0, 0, 1)
            .await
            .unwrap();

        let mut rows: Vec<(String, f64)> = Vec::new();
        let mut measure = |what: &str, before: i64, after: i64| {
            let per = (after - before) as f64 / n as f64;
            rows.push((what.to_owned(), per));
        };

        let m0 = used_memory(&mut con).await;
        let cc: Vec<Event> = (0..n).map(|i| issued(i, false)).collect();
        w.apply(&cc).await;
        let m1 = used_memory(&mut con).await;
        measure(
            "active token without a refresh token (client credentials)",
            m0,
            m1,
        );

        let grants: Vec<Event> = (n..2 * n).map(|i| issued(i, true)).collect();
        w.apply(&grants).await;
        let m2 = used_memory(&mut con).await;
        measure(
            "active token with a refresh token (its family and refresh record)",
            m1,
            m2,
        );

        let revoked: Vec<Event> = (0..n)
            .map(|i| {
                Event::TokenRevoked(TokenRevoked {
                    jti: uuid(i, 1),
                    sub: format!("user-{}", i % 1000),
                    client_id: "app".into(),
                    exp: EXP,
                    family_id: uuid(i, 2),
                })
            })
            .collect();
        w.apply(&revoked).await;
        let m3 = used_memory(&mut con).await;
        measure(
            "revoked access token (rev: record and its index entry)",
            m2,
            m3,
        );

        let families: Vec<Event> = (n..2 * n)
            .map(|i| {
                Event::TokenFamilyRevoked(TokenFamilyRevoked {
                    family_id: uuid(i, 2),
                    sub: format!("user-{}", i % 1000),
                    reason: FamilyRevokeReason::RevokedByClient,
                    until: 0,
                })
            })
            .collect();
        w.apply(&families).await;
        let m4 = used_memory(&mut con).await;
        measure(
            "revoked grant (the family record marked, and its index entry)",
            m3,
            m4,
        );

        // A node's mirror of the 2n revocations.
        let rss0 = rss_bytes();
        let started = Instant::now();
        let node = RedisStore::connect(&redis.url, "sizing")
            .await
            .unwrap()
            .with_revocation_mirror(10 * n);
        let mirror = node.revocation_mirror().unwrap();
        while !mirror.is_current() {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the mirror did not load"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let loaded = started.elapsed();
        let rss1 = rss_bytes();
        assert_eq!(mirror.len(), 2 * n);

        println!();
        println!("| {n} tokens each | bytes |");
        println!("| --- | ---: |");
        for (what, per) in &rows {
            println!("| Redis, per {what} | {per:.0} |");
        }
        println!(
            "| a node's revocation mirror, per revocation held (process RSS, {} held) | {:.0} |",
            2 * n,
            (rss1 - rss0) as f64 / (2 * n) as f64
        );
        println!(
            "the mirror loaded {} revocations in {:.2} s ({:.0}/s)",
            2 * n,
            loaded.as_secs_f64(),
            (2 * n) as f64 / loaded.as_secs_f64()
        );
    });
}
