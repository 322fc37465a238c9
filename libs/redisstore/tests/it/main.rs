//! The Redis projection against the pure reference (`tokend_domain::Projection`), on real
//! Redis in a container (host network, 127.0.0.1); each test under its own key prefix.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::disallowed_methods
)]

use tokend_domain::model::RevocationQuery;
use tokend_domain::{Applied, Projection, StateStore, StoreError};
use tokend_events::*;
use tokend_redis::RedisStore;
use tokend_testkit::{redis, unique};

mod cluster;
mod shards;

/// Every test's limit: a hang fails fast.
const LIMIT_SECS: u64 = 60;
const FAR: i64 = 4_000_000_000; // expiries far in the future, so Redis keeps every key

fn issued(jti: &str, sub: &str, family: &str, refresh: Option<&str>, from: Option<&str>) -> Event {
    Event::TokenIssued(TokenIssued {
        jti: jti.into(),
        sub: sub.into(),
        client_id: "app".into(),
        scope: "read write".into(),
        aud: vec!["api".into(), "billing".into()],
        iat: 1000,
        exp: FAR,
        family_id: family.into(),
        auth_time_ms: 1_000_000,
        refresh: refresh.map(|d| RefreshIssued {
            digest: d.into(),
            exp: FAR + 10,
        }),
        rotated_from: from.map(Into::into),
        from_code: None,
        reuse_grace_secs: 0,
        retry: false,
    })
}

fn code(digest: &str, family: &str, exp: i64) -> Event {
    Event::AuthorizationCodeIssued(AuthorizationCodeIssued {
        code_digest: digest.into(),
        client_id: "app".into(),
        sub: "erin".into(),
        redirect_uri: "https://app.test/cb".into(),
        scope: "read".into(),
        aud: vec!["api".into()],
        code_challenge: "challenge".into(),
        exp,
        family_id: family.into(),
        auth_time_ms: 1_000_000,
        redirect_uri_implied: false,
    })
}

fn redeem(jti: &str, family: &str, digest: &str) -> Event {
    let Event::TokenIssued(mut e) = issued(jti, "erin", family, Some(&format!("r-{jti}")), None)
    else {
        unreachable!()
    };
    e.from_code = Some(digest.into());
    Event::TokenIssued(e)
}

fn script() -> Vec<Event> {
    vec![
        Event::ClientRegistered(ClientRegistered {
            client_id: "app".into(),
            name: "App".into(),
            secret_digest: Some("ab".into()),
            grant_types: vec!["password".into()],
            scopes: vec!["read".into(), "write".into()],
            default_scopes: vec![],
            audiences: vec!["api".into()],
            redirect_uris: vec![],
        }),
        Event::ClientRegistered(ClientRegistered {
            client_id: "other".into(),
            name: "Other".into(),
            secret_digest: None,
            grant_types: vec![],
            scopes: vec![],
            default_scopes: vec![],
            audiences: vec!["api".into()],
            redirect_uris: vec![],
        }),
        Event::UserCreated(UserCreated {
            username: "alice".into(),
            password_hash: "$argon2id$a".into(),
        }),
        Event::UserCreated(UserCreated {
            username: "bob".into(),
            password_hash: "$argon2id$b".into(),
        }),
        Event::SigningKeyRevoked(SigningKeyRevoked {
            kid: "k-revoked".into(),
            at_ms: 5,
        }),
        Event::SigningKeyRevoked(SigningKeyRevoked {
            kid: "k-revoked".into(),
            at_ms: 9,
        }),
        issued("a1", "alice", "f1", Some("r1"), None),
        issued("a2", "alice", "f1", Some("r2"), Some("r1")),
        issued("a3", "alice", "f1", Some("r3"), Some("r1")), // reuse race: family dies
        issued("b1", "bob", "f2", Some("s1"), None),
        issued("b2", "bob", "f3", Some("s2"), None),
        Event::TokenRevoked(TokenRevoked {
            jti: "b1".into(),
            sub: "bob".into(),
            client_id: "app".into(),
            exp: FAR,
            family_id: "f2".into(),
        }),
        Event::TokenFamilyRevoked(TokenFamilyRevoked {
            family_id: "f3".into(),
            sub: "bob".into(),
            reason: FamilyRevokeReason::RevokedByClient,
            until: 0,
        }),
        issued("c1", "carol", "f4", Some("t1"), None),
        issued("c2", "carol", "f4", Some("t2"), Some("t1")),
        Event::SubjectRevoked(SubjectRevoked {
            sub: "carol".into(),
            revoked_before_ms: 1_000_001,
        }),
        issued("c3", "carol", "f5", Some("t3"), None),
        issued("d1", "dave", "f6", None, None),
        Event::UserDisabled(UserDisabled {
            username: "bob".into(),
            revoked_before_ms: 900_000,
        }),
        Event::ClientDisabled(ClientDisabled {
            client_id: "other".into(),
            revoked_before_ms: 2_000_000,
        }),
        Event::ClientRevoked(ClientRevoked {
            client_id: "ghost".into(),
            revoked_before_ms: 5,
        }),
        code("k1", "fk1", FAR),
        code("k2", "fk2", FAR - 100),
        redeem("e1", "fk1", "k1"),
        redeem("e2", "fk1", "k1"), // a replayed code: both redemptions' tokens die
        code("k3", "fk3", FAR),
    ]
}

/// The revocation query of a token of the script's client, signed by a live key.
fn query(jti: &str, family: &str, sub: &str) -> RevocationQuery {
    RevocationQuery {
        jti: jti.into(),
        family_id: family.into(),
        sub: Some(sub.into()),
        client_id: "app".into(),
        auth_time_ms: 1_000_000,
        kid: "k-live".into(),
    }
}

async fn store() -> RedisStore {
    RedisStore::connect(&redis().await.url, &unique("t"))
        .await
        .unwrap()
}

/// The pure projection of `events` (partition 0, from offset 0).
fn reference_of(events: &[Event]) -> Projection {
    let mut reference = Projection::default();
    for (i, e) in events.iter().enumerate() {
        reference.apply(
            tokend_domain::LogPosition {
                partition: 0,
                offset: i as u64,
            },
            Some(e),
        );
    }
    reference
}

/// Applies `events` to the reference one by one and to Redis in batches of `chunk`, then
/// marks the single partition complete so readers may answer.
async fn apply_all(store: &RedisStore, events: &[Event], chunk: usize) -> Projection {
    let reference = reference_of(events);
    let refs: Vec<Option<&Event>> = events.iter().map(Some).collect();
    for (n, batch) in refs.chunks(chunk).enumerate() {
        let first = (n * chunk) as u64;
        let (applied, _) = store.apply_records(0, first, batch).await.unwrap();
        assert_eq!(
            applied,
            Applied::Done {
                next: first + batch.len() as u64,
                duplicates: 0
            }
        );
    }
    assert!(complete(store).await);
    reference
}

/// Marks partition 0 (the only one) complete at where it is.
async fn complete(store: &RedisStore) -> bool {
    let state = store.partition_state(0).await.unwrap().unwrap();
    store
        .mark_complete(&state.generation, 0, state.next, 1)
        .await
        .unwrap()
}

#[tokio::test]
async fn redis_agrees_with_the_reference_projection_on_every_query() {
    tokend_testkit::time_limit(LIMIT_SECS);
    for chunk in [1, 4, 100] {
        let store = store().await;
        let reference = apply_all(&store, &script(), chunk).await;
        compare(&store, &reference).await;
    }
}

async fn compare(store: &RedisStore, reference: &Projection) {
    for digest in ["k1", "k2", "k3", "none"] {
        for now in [1000, FAR - 100, FAR + 1] {
            assert_eq!(
                store.code_status(digest, now).await.unwrap(),
                reference.code_status(digest, now),
                "code {digest} at {now}"
            );
        }
    }
    compare_revocations(store, reference).await;
    for digest in [
        "r1", "r2", "r3", "s1", "s2", "t1", "t2", "t3", "r-e1", "r-e2", "none",
    ] {
        for now in [1500, FAR + 20] {
            assert_eq!(
                store.refresh_status(digest, now).await.unwrap(),
                reference.refresh_status(digest, now),
                "{digest} at {now}"
            );
        }
    }
    for id in CLIENTS {
        assert_eq!(
            store.client(id).await.unwrap().as_ref(),
            reference.client(id),
            "{id}"
        );
    }
    assert_eq!(store.clients().await.unwrap(), reference.clients());
    for user in SUBJECTS {
        assert_eq!(
            store.user(user).await.unwrap().as_ref(),
            reference.user(user),
            "{user}"
        );
    }
    assert_eq!(
        store.next_offset(0).await.unwrap(),
        reference.next_offset(0)
    );
    assert_eq!(store.next_offset(7).await.unwrap(), 0);
}

const SUBJECTS: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "nobody"];
const CLIENTS: [&str; 3] = ["app", "other", "ghost"];

/// Every revocation query over the script's tokens, families, subjects, clients and keys.
async fn compare_revocations(store: &RedisStore, reference: &Projection) {
    let (subjects, clients) = (SUBJECTS, CLIENTS);
    let jtis = ["a1", "b1", "c1", "d1", "e1", "unseen"];
    let families = ["f1", "f2", "f3", "f4", "f5", "f6", "fk1", "fk3", ""];
    for jti in jtis {
        for family_id in families {
            for sub in subjects {
                for client_id in clients {
                    for auth_time_ms in [4, 5, 899_999, 900_000, 1_000_000, 1_000_001, 2_000_000] {
                        let q = RevocationQuery {
                            jti: jti.into(),
                            family_id: family_id.into(),
                            sub: Some(sub.into()),
                            client_id: client_id.into(),
                            auth_time_ms,
                            // Both kinds of key across the matrix, without a dimension more.
                            kid: if auth_time_ms % 2 == 0 {
                                "k-revoked"
                            } else {
                                "k-live"
                            }
                            .into(),
                        };
                        assert_eq!(
                            store.is_revoked(&q).await.unwrap(),
                            reference.is_revoked(&q),
                            "{q:?}"
                        );
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn redelivery_overlaps_and_gaps_change_nothing() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let events = script();
    let once = store().await;
    apply_all(&once, &events, 1).await;
    let redelivered = store().await;
    let refs: Vec<Option<&Event>> = events.iter().map(Some).collect();
    let mut next = 0u64;
    for i in (0..refs.len()).step_by(3) {
        // Each batch overlaps the previous one by two records; one arrives too early.
        let from = i.saturating_sub(2);
        let to = (i + 3).min(refs.len());
        let early = redelivered
            .apply_records(0, next + 1, &refs[(next as usize + 1).min(to)..to])
            .await
            .unwrap()
            .0;
        assert_eq!(early, Applied::Gap { next });
        let (applied, _) = redelivered
            .apply_records(0, from as u64, &refs[from..to])
            .await
            .unwrap();
        assert_eq!(
            applied,
            Applied::Done {
                next: to as u64,
                duplicates: next - from as u64
            }
        );
        next = to as u64;
    }
    complete(&redelivered).await;
    assert_eq!(
        redelivered.digest().await.unwrap(),
        once.digest().await.unwrap()
    );
    // A record with no effect (unknown type) still advances the offset.
    let n = events.len() as u64;
    let (applied, written) = once.apply_records(0, n, &[None]).await.unwrap();
    assert_eq!(
        (applied, written),
        (
            Applied::Done {
                next: n + 1,
                duplicates: 0
            },
            0
        )
    );
    assert_eq!(once.next_offset(0).await.unwrap(), n + 1);
}

/// Removes every key under the store's base prefix: what a Redis restart without
/// persistence, a `FLUSHALL` or a failover to an empty replica does to it.
async fn lose_everything(url: &str, base: &str) {
    let mut con = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", tokend_redis::base_key(base)))
        .query_async(&mut con)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(keys)
        .query_async(&mut con)
        .await
        .unwrap();
}

#[tokio::test]
async fn readers_fail_closed_until_the_projection_is_complete_again() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let base = unique("lost");
    let store = RedisStore::connect(&redis().await.url, &base)
        .await
        .unwrap();
    let revoked = query("b1", "f2", "bob");
    // Nothing there yet: not "not revoked", but "I do not know".
    assert!(matches!(
        store.is_revoked(&revoked).await,
        Err(StoreError::NotReady)
    ));
    assert!(matches!(store.ping().await, Err(StoreError::NotReady)));
    let events = script();
    apply_all(&store, &events, 5).await;
    assert!(store.is_revoked(&revoked).await.unwrap());
    let first = store.active_generation().await.unwrap().unwrap();

    lose_everything(&redis().await.url, &base).await;
    assert!(matches!(
        store.is_revoked(&revoked).await,
        Err(StoreError::NotReady)
    ));
    assert!(matches!(
        store.client("app").await,
        Err(StoreError::NotReady)
    ));

    // A writer finds no generation: it starts a new one from offset 0 (a gap for the batch
    // it had in hand), and readers wait until it is complete.
    let refs: Vec<Option<&Event>> = events.iter().map(Some).collect();
    let (gap, _) = store.apply_records(0, 10, &refs[10..]).await.unwrap();
    assert_eq!(gap, Applied::Gap { next: 0 });
    let second = store.active_generation().await.unwrap().unwrap();
    assert_ne!(first, second);
    store.apply_records(0, 0, &refs).await.unwrap();
    assert!(matches!(
        store.is_revoked(&revoked).await,
        Err(StoreError::NotReady)
    ));
    assert!(complete(&store).await);
    assert!(store.is_revoked(&revoked).await.unwrap());

    // Completion is refused for a generation that is no longer live, or short of the end.
    assert!(!store.mark_complete(&first, 0, 0, 1).await.unwrap());
    let state = store.partition_state(0).await.unwrap().unwrap();
    store.mark_incomplete(&state.generation, 0).await.unwrap();
    assert!(matches!(
        store.is_revoked(&revoked).await,
        Err(StoreError::NotReady)
    ));
    assert!(
        !store
            .mark_complete(&state.generation, 0, state.next + 1, 1)
            .await
            .unwrap()
    );
    assert!(
        store
            .mark_complete(&state.generation, 0, state.next, 1)
            .await
            .unwrap()
    );
    assert!(store.is_revoked(&revoked).await.unwrap());
}

#[tokio::test]
async fn a_rebuilt_generation_switches_only_once_it_has_caught_up() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let live = store().await;
    let events = script();
    let refs: Vec<Option<&Event>> = events.iter().map(Some).collect();
    apply_all(&live, &events[..10], 10).await;
    let old = live.active_generation().await.unwrap().unwrap();

    let fresh = live.generation(&tokend_redis::new_generation_name());
    fresh.apply_records(0, 0, &refs[..6]).await.unwrap();
    match live.activate(fresh_name(&fresh), &[(0, 6)]).await.unwrap() {
        tokend_redis::Activation::Behind { partition, needed } => {
            assert_eq!((partition, needed), (0, 10))
        }
        other => panic!("switched while behind: {other:?}"),
    }
    fresh.apply_records(0, 6, &refs[6..12]).await.unwrap();
    // The live projector moves on meanwhile, and is still at 12 or behind: switch.
    live.apply_records(0, 10, &refs[10..11]).await.unwrap();
    let switched = live.activate(fresh_name(&fresh), &[(0, 12)]).await.unwrap();
    assert_eq!(
        switched,
        tokend_redis::Activation::Switched {
            previous: Some(old.clone())
        }
    );
    // Readers follow at once (the pointer is read with every query).
    assert_eq!(live.next_offset(0).await.unwrap(), 12);
    assert_eq!(live.digest().await.unwrap(), fresh.digest().await.unwrap());
    // The live writer's next batch lands in the new generation.
    let (applied, _) = live.apply_records(0, 11, &refs[11..]).await.unwrap();
    assert_eq!(
        applied,
        Applied::Done {
            next: refs.len() as u64,
            duplicates: 1
        }
    );
    live.delete_generation(&old).await.unwrap();
    assert_eq!(live.next_offset(0).await.unwrap(), refs.len() as u64);
}

#[tokio::test]
async fn a_rebuilt_generation_that_lost_its_data_is_never_switched_to() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let live = store().await;
    let events = script();
    let refs: Vec<Option<&Event>> = events.iter().map(Some).collect();
    apply_all(&live, &events[..3], 3).await;
    let fresh = live.generation(&tokend_redis::new_generation_name());
    fresh.apply_records(0, 0, &refs[..5]).await.unwrap();
    fresh.delete_generation(fresh_name(&fresh)).await.unwrap(); // Redis lost it meanwhile
    assert_eq!(
        live.activate(fresh_name(&fresh), &[(0, 5)]).await.unwrap(),
        tokend_redis::Activation::Lost { partition: 0 }
    );
    assert_eq!(
        live.next_offset(0).await.unwrap(),
        3,
        "readers stay on the live one"
    );
}

/// A replay applies records long after they expired. A refresh token's record must still be
/// there when its rotations (later in the log, maybe in a later batch) are applied, or a
/// replayed reuse would go undetected and the family would come back to life.
#[tokio::test]
async fn a_replay_of_long_expired_records_still_detects_reuse() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let store = store().await;
    let old = |jti: &str, refresh: &str, from: Option<&str>| {
        let Event::TokenIssued(mut e) = issued(jti, "alice", "fold", Some(refresh), from) else {
            unreachable!()
        };
        (e.exp, e.refresh.as_mut().unwrap().exp) = (2_000, 3_000); // expired in 1970
        Event::TokenIssued(e)
    };
    let events = [
        old("o1", "ro1", None),
        old("o2", "ro2", Some("ro1")),
        old("o3", "ro3", Some("ro1")), // a second rotation of ro1: reuse
    ];
    let refs: Vec<Option<&Event>> = events.iter().map(Some).collect();
    for (i, batch) in refs.chunks(1).enumerate() {
        store.apply_records(0, i as u64, batch).await.unwrap();
    }
    complete(&store).await;
    let mut reference = Projection::default();
    reference.apply_batch(0, 0, &refs);
    let q = RevocationQuery {
        jti: "o2".into(),
        family_id: "fold".into(),
        sub: Some("alice".into()),
        client_id: "app".into(),
        auth_time_ms: 1_000_000,
        kid: "k-live".into(),
    };
    assert!(reference.is_revoked(&q));
    // Its tokens expired long ago, so the revocation check's copy of the family expired with
    // them; the family itself (what later rotations of the grant would meet) is revoked.
    assert_eq!(
        store.refresh_status("ro2", 1500).await.unwrap(),
        tokend_domain::model::RefreshStatus::Revoked,
        "the replayed reuse revoked the family"
    );
    assert_eq!(
        reference.refresh_status("ro2", 1500),
        tokend_domain::model::RefreshStatus::Revoked
    );
}

#[tokio::test]
async fn a_fence_pauses_live_writes_until_the_switch_then_they_land_in_the_new_generation() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let live = store().await;
    let events = script();
    apply_all(&live, &events[..3], 3).await;
    let old = live.active_generation().await.unwrap().unwrap();
    let fresh = live.generation(&tokend_redis::new_generation_name());
    let refs: Vec<Option<&Event>> = events.iter().map(Some).collect();
    fresh.apply_records(0, 0, &refs[..3]).await.unwrap();

    live.fence(&old).await.unwrap();
    let writer = tokio::spawn({
        let (live, later) = (live.clone(), events[3..5].to_vec());
        async move {
            let refs: Vec<Option<&Event>> = later.iter().map(Some).collect();
            live.apply_records(0, 3, &refs).await.unwrap().0
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !writer.is_finished(),
        "a live write waits while the generation is fenced"
    );
    assert_eq!(live.next_offset(0).await.unwrap(), 3);
    let switched = live.activate(fresh_name(&fresh), &[(0, 3)]).await.unwrap();
    assert_eq!(
        switched,
        tokend_redis::Activation::Switched {
            previous: Some(old)
        }
    );
    assert_eq!(
        writer.await.unwrap(),
        Applied::Done {
            next: 5,
            duplicates: 0
        }
    );
    assert_eq!(
        fresh.next_offset(0).await.unwrap(),
        5,
        "it landed in the new generation"
    );
}

fn fresh_name(store: &RedisStore) -> &str {
    store.pinned_generation().unwrap_or_default()
}

#[tokio::test]
async fn revoking_a_client_with_many_tokens_writes_one_key() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let store = store().await;
    let mut events: Vec<Event> = (0..2000)
        .map(|i| {
            issued(
                &format!("a{i}"),
                "alice",
                &format!("f{i}"),
                Some(&format!("r{i}")),
                None,
            )
        })
        .collect();
    events.push(Event::ClientRevoked(ClientRevoked {
        client_id: "app".into(),
        revoked_before_ms: 1_000_001,
    }));
    let refs: Vec<Option<&Event>> = events.iter().map(Some).collect();
    let (_, written) = store.apply_records(0, 0, &refs[..2000]).await.unwrap();
    assert_eq!(
        written, 4000,
        "a refresh-bearing issue writes its refresh token and family"
    );
    let (_, written) = store.apply_records(0, 2000, &refs[2000..]).await.unwrap();
    assert_eq!(written, 1, "the client-wide revocation is one watermark");
    complete(&store).await;
    for i in [0, 999, 1999] {
        let q = RevocationQuery {
            jti: format!("a{i}"),
            family_id: format!("f{i}"),
            sub: Some("alice".into()),
            client_id: "app".into(),
            auth_time_ms: 1_000_000,
            kid: "k-live".into(),
        };
        assert!(store.is_revoked(&q).await.unwrap());
        assert_eq!(
            store.refresh_status(&format!("r{i}"), 1500).await.unwrap(),
            tokend_domain::model::RefreshStatus::Revoked
        );
    }
}

#[tokio::test]
async fn an_unreachable_redis_is_unavailable_not_a_panic() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let port = tokend_testkit::free_port();
    let result = RedisStore::connect(&format!("redis://127.0.0.1:{port}"), "x").await;
    assert!(matches!(result, Err(StoreError::Unavailable(_))));
}

/// How many `MGET`s (record reads) a Redis has answered.
async fn record_reads(con: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(con)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_mget:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn until(what: &str, mut done: impl FnMut() -> bool) -> std::time::Duration {
    let started = std::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{what}: not within 5 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    started.elapsed()
}

/// A node's client cache answers repeated authentications without Redis, drops a client the
/// projector changes (on every node, through the change stream), and is not used while its
/// stream is broken: a change made then is read from Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_cache_follows_the_projector_and_steps_aside_when_its_stream_breaks() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let private = tokend_testkit::Redis::start().await; // its command counts are this test's
    let base = unique("cc");
    let writer = RedisStore::connect(&private.url, &base).await.unwrap();
    let nodes = [
        RedisStore::connect(&private.url, &base)
            .await
            .unwrap()
            .with_client_cache(100),
        RedisStore::connect(&private.url, &base)
            .await
            .unwrap()
            .with_client_cache(100),
    ];
    for node in &nodes {
        let cache = node.client_cache().unwrap();
        until("subscribed", || cache.is_live()).await;
    }
    let events = script();
    apply_all(&writer, &events[..2], 2).await;
    let mut con = redis::Client::open(private.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();

    for node in &nodes {
        assert!(!node.client("app").await.unwrap().unwrap().disabled);
    }
    let before = record_reads(&mut con).await;
    for _ in 0..50 {
        for node in &nodes {
            assert!(node.client("app").await.unwrap().is_some());
        }
    }
    assert_eq!(
        record_reads(&mut con).await,
        before,
        "repeated authentications are answered from memory"
    );

    let disable = Event::ClientDisabled(ClientDisabled {
        client_id: "app".into(),
        revoked_before_ms: 1,
    });
    writer.apply_records(0, 2, &[Some(&disable)]).await.unwrap();
    for node in &nodes {
        let started = std::time::Instant::now();
        loop {
            if node.client("app").await.unwrap().unwrap().disabled {
                break;
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(2));
        }
        println!(
            "a disabled client was seen by a node after {:?}",
            started.elapsed()
        );
    }

    // Break both subscriptions; the change made meanwhile is read from Redis, and each node
    // steps aside (not live) until it has subscribed again.
    for node in &nodes {
        assert!(!node.client("other").await.unwrap().unwrap().disabled); // now cached
    }
    let breaks: Vec<u64> = nodes
        .iter()
        .map(|n| n.client_cache().unwrap().breaks())
        .collect();
    let killed = kill_subscriptions(&mut con).await;
    assert_eq!(killed, 2, "both nodes' subscriptions");
    let disable = Event::ClientDisabled(ClientDisabled {
        client_id: "other".into(),
        revoked_before_ms: 1,
    });
    writer.apply_records(0, 3, &[Some(&disable)]).await.unwrap();
    for (node, before) in nodes.iter().zip(breaks) {
        let cache = node.client_cache().unwrap();
        until("the break noticed", || cache.breaks() > before).await;
        until("subscribed again", || cache.is_live()).await;
        assert!(node.client("other").await.unwrap().unwrap().disabled);
    }
}

/// A node's and a resource server's revocation mirrors answer every revocation query as the
/// reference does, from memory: what was applied before they started is loaded from the
/// index, what came after through the stream. A strict revocation's barrier passes once
/// every mirror read it, and a mirror that went silent holds it up only until its lease
/// lapses. A mirror whose stream breaks reads Redis until it has loaded again, and one whose
/// projection was lost answers "revoked" or `NotReady`, never "not revoked".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_revocation_mirror_answers_from_memory_and_keeps_strict_revocation_exact() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let private = tokend_testkit::Redis::start().await; // its command counts are this test's
    let base = unique("rm");
    let writer = RedisStore::connect(&private.url, &base).await.unwrap();
    let events = script();
    let refs: Vec<Option<&Event>> = events.iter().map(Some).collect();
    let half = events.len() / 2;
    writer.apply_records(0, 0, &refs[..half]).await.unwrap();
    assert!(complete(&writer).await);
    let connect = || async { RedisStore::connect(&private.url, &base).await.unwrap() };
    let node = connect().await.with_near_caches(100, 1000);
    let sdk = connect().await.with_revocation_mirror(1000);
    let mirrors = [&node, &sdk];
    for store in mirrors {
        let mirror = store.revocation_mirror().unwrap();
        let loaded = until("loaded", || mirror.is_current()).await;
        println!("a mirror loaded {} revocations in {loaded:?}", mirror.len());
    }
    for (i, event) in refs.iter().enumerate().skip(half) {
        writer.apply_records(0, i as u64, &[*event]).await.unwrap();
    }
    // The lease table is new: for a lease's length no mirror may be excused (one whose
    // lease was lost with Redis's data could still be answering), then both have read it.
    barrier_passes(&writer).await;
    let barrier = writer.reader_barrier().await.unwrap();
    let started = std::time::Instant::now();
    while !writer.readers_passed(barrier).await.unwrap() {
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
    println!("both mirrors read a barrier within {:?}", started.elapsed());

    let mut con = redis::Client::open(private.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let reference = reference_of(&events);
    let before = record_reads(&mut con).await;
    let fallbacks: Vec<u64> = mirrors
        .iter()
        .map(|m| m.revocation_mirror().unwrap().fallbacks())
        .collect();
    for store in mirrors {
        compare_revocations(store, &reference).await;
    }
    for (store, before) in mirrors.iter().zip(fallbacks) {
        assert_eq!(store.revocation_mirror().unwrap().fallbacks(), before);
    }
    assert_eq!(
        record_reads(&mut con).await,
        before,
        "every revocation check answered from memory"
    );

    // A mirror that went silent holds a barrier up until its lease lapses, no longer.
    let _: () = redis::cmd("HSET")
        .arg(format!("{}:mirrors:leases", tokend_redis::base_key(&base)))
        .arg("silent")
        .arg(now_ms(&mut con).await)
        .query_async(&mut con)
        .await
        .unwrap();
    let barrier = writer.reader_barrier().await.unwrap();
    let held = std::time::Instant::now();
    while !writer.readers_passed(barrier).await.unwrap() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let held = held.elapsed();
    println!("a silent mirror held a barrier for {held:?}");
    assert!(held >= tokend_redis::mirror::LEASE - std::time::Duration::from_millis(100));
    assert!(held < tokend_redis::mirror::LEASE * 2);

    // A broken stream: the node steps aside and reads Redis (still right), then loads again.
    // The kill takes every subscription, the SDK's mirror's too.
    let steps: Vec<u64> = mirrors
        .iter()
        .map(|m| m.revocation_mirror().unwrap().step_asides())
        .collect();
    let mirror = node.revocation_mirror().unwrap();
    kill_subscriptions(&mut con).await;
    until("stepped aside", || mirror.step_asides() > steps[0]).await;
    let late = late_revocation();
    writer
        .apply_records(0, events.len() as u64, &[Some(&late)])
        .await
        .unwrap();
    let d1 = query("d1", "f6", "dave");
    assert!(node.is_revoked(&d1).await.unwrap());
    println!(
        "while its stream was broken the mirror sent {} checks to Redis",
        mirror.fallbacks()
    );
    // The count below must not catch either mirror loading again.
    for (store, steps) in mirrors.iter().zip(steps) {
        let mirror = store.revocation_mirror().unwrap();
        until("stepped aside", || mirror.step_asides() > steps).await;
        until("loaded again", || mirror.is_current()).await;
    }
    let before = record_reads(&mut con).await;
    assert!(node.is_revoked(&d1).await.unwrap());
    assert_eq!(record_reads(&mut con).await, before);

    // The projection lost: every answer is "revoked" or NotReady until it is back.
    lose_everything(&private.url, &base).await;
    // The projector notices and starts a new generation (which tells the mirrors).
    while writer.partition_state(0).await.unwrap().is_none() {}
    let started = std::time::Instant::now();
    loop {
        match node.is_revoked(&d1).await {
            Ok(revoked) => assert!(revoked, "never \"not revoked\" for a revoked token"),
            Err(StoreError::NotReady) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    println!("a lost projection was noticed in {:?}", started.elapsed());
}

async fn now_ms(con: &mut redis::aio::MultiplexedConnection) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(con).await.unwrap();
    secs * 1000 + micros / 1000
}

/// Breaks every subscription (the nodes' change streams); returns how many.
async fn kill_subscriptions(con: &mut redis::aio::MultiplexedConnection) -> i64 {
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(con)
        .await
        .unwrap()
}

/// d1 (dave's token of family f6) revoked: a revocation to apply after the script.
fn late_revocation() -> Event {
    Event::TokenRevoked(TokenRevoked {
        jti: "d1".into(),
        sub: "dave".into(),
        client_id: "app".into(),
        exp: FAR,
        family_id: "f6".into(),
    })
}

/// A strict revocation's barrier is passed by every mirror, within a lease's length plus a
/// second (for a lease's length after the lease table began no mirror is excused: one whose
/// lease was lost with Redis's data could still be answering).
async fn barrier_passes(writer: &RedisStore) {
    let barrier = writer.reader_barrier().await.unwrap();
    let started = std::time::Instant::now();
    while !writer.readers_passed(barrier).await.unwrap() {
        assert!(
            started.elapsed() < tokend_redis::mirror::LEASE + std::time::Duration::from_secs(1)
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// A barrier counter that went back (Redis failed over to a replica that missed the last
/// barriers, or lost its data) finds no acknowledgement above it: a mirror's older, higher
/// one would stand for the new barriers of the same numbers, which it has not read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledgement_stands_above_a_barrier_counter_that_went_back() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let base = unique("ack");
    let url = &redis().await.url;
    let writer = RedisStore::connect(url, &base).await.unwrap();
    apply_all(&writer, &script(), 100).await;
    let node = RedisStore::connect(url, &base)
        .await
        .unwrap()
        .with_revocation_mirror(1000);
    let mirror = node.revocation_mirror().unwrap();
    until("loaded", || mirror.is_current()).await;
    for _ in 0..3 {
        barrier_passes(&writer).await;
    }
    let con = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let tagged = tokend_redis::base_key(&base);
    let acks = || {
        let mut con = con.clone();
        let key = format!("{tagged}:mirrors:acks");
        async move {
            let acks: Vec<u64> = redis::cmd("HVALS")
                .arg(key)
                .query_async(&mut con)
                .await
                .unwrap();
            acks
        }
    };
    assert_eq!(
        acks().await,
        vec![3],
        "the mirror acknowledged the third barrier"
    );
    let _: () = redis::cmd("SET")
        .arg(format!("{tagged}:mirrors:sync"))
        .arg(1)
        .query_async(&mut con.clone())
        .await
        .unwrap();
    // Two renewals later (one every 250 ms), the acknowledgement is back within the counter.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert_eq!(acks().await, vec![1]);
    barrier_passes(&writer).await; // barrier 2, read by the mirror
    assert_eq!(acks().await, vec![2]);
}
