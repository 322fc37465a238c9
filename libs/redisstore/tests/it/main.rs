//! The Redis projection against the pure reference (`tokend_domain::Projection`), on real
//! Redis in a container (host network, 127.0.0.1); each test under its own key prefix.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tokend_domain::model::RevocationQuery;
use tokend_domain::{Applied, LogPosition, Projection, StateStore};
use tokend_events::*;
use tokend_redis::RedisStore;
use tokend_testkit::{redis, unique};

const FAR: i64 = 4_000_000_000; // expiries far in the future, so Redis keeps every key

fn pos(offset: u64) -> LogPosition {
    LogPosition {
        partition: 0,
        offset,
    }
}

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
        refresh: refresh.map(|d| RefreshIssued {
            digest: d.into(),
            exp: FAR + 10,
        }),
        rotated_from: from.map(Into::into),
        from_code: None,
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
        }),
        Event::TokenFamilyRevoked(TokenFamilyRevoked {
            family_id: "f3".into(),
            sub: "bob".into(),
            reason: FamilyRevokeReason::RevokedByClient,
        }),
        issued("c1", "carol", "f4", Some("t1"), None),
        issued("c2", "carol", "f4", Some("t2"), Some("t1")),
        Event::SubjectRevoked(SubjectRevoked {
            sub: "carol".into(),
            revoked_before_ms: 1_000_400,
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

async fn store() -> RedisStore {
    RedisStore::connect(&redis().await.url, &unique("t"))
        .await
        .unwrap()
}

async fn apply_all(store: &RedisStore, events: &[Event]) -> Projection {
    let mut reference = Projection::default();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(reference.apply(pos(i as u64), Some(e)), Applied::Applied);
        assert_eq!(
            store.apply(pos(i as u64), Some(e)).await.unwrap(),
            Applied::Applied
        );
    }
    reference
}

#[tokio::test]
async fn redis_agrees_with_the_reference_projection_on_every_query() {
    let store = store().await;
    let reference = apply_all(&store, &script()).await;
    for digest in ["k1", "k2", "k3", "none"] {
        for now in [1000, FAR - 100, FAR + 1] {
            assert_eq!(
                store.code_status(digest, now).await.unwrap(),
                reference.code_status(digest, now),
                "code {digest} at {now}"
            );
        }
    }
    let subjects = ["alice", "bob", "carol", "dave", "erin", "nobody"];
    let clients = ["app", "other", "ghost"];
    let jtis = [
        "a1", "a2", "a3", "b1", "b2", "c1", "c2", "c3", "d1", "e1", "e2", "unseen",
    ];
    for jti in jtis {
        for sub in subjects {
            for client_id in clients {
                for iat in [999, 1000, 1001, 1999, 2000] {
                    let q = RevocationQuery {
                        jti: jti.into(),
                        sub: sub.into(),
                        client_id: client_id.into(),
                        iat,
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
    for id in clients {
        assert_eq!(
            store.client(id).await.unwrap().as_ref(),
            reference.client(id),
            "{id}"
        );
    }
    let listed: Vec<_> = reference.clients().cloned().collect();
    assert_eq!(store.clients().await.unwrap(), listed);
    for user in subjects {
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

#[tokio::test]
async fn redelivery_and_gaps_change_nothing() {
    let events = script();
    let once = store().await;
    apply_all(&once, &events).await;
    let redelivered = store().await;
    for (i, e) in events.iter().enumerate() {
        // Every record twice, and a look-ahead record that arrives too early.
        assert_eq!(
            redelivered.apply(pos(i as u64), Some(e)).await.unwrap(),
            Applied::Applied
        );
        assert_eq!(
            redelivered.apply(pos(i as u64), Some(e)).await.unwrap(),
            Applied::Duplicate
        );
        if let Some(later) = events.get(i + 2) {
            let early = redelivered
                .apply(pos(i as u64 + 2), Some(later))
                .await
                .unwrap();
            assert_eq!(early, Applied::Gap { next: i as u64 + 1 });
        }
    }
    assert_eq!(
        redelivered.digest().await.unwrap(),
        once.digest().await.unwrap()
    );
    // A record with no effect (unknown type) still advances the offset.
    let n = events.len() as u64;
    assert_eq!(once.apply(pos(n), None).await.unwrap(), Applied::Applied);
    assert_eq!(once.next_offset(0).await.unwrap(), n + 1);
}

#[tokio::test]
async fn generations_switch_readers_atomically() {
    let reader = store().await;
    let events = script();
    apply_all(&reader, &events[..4]).await;
    assert_eq!(reader.active_generation().await.unwrap(), "g0");
    let before = reader.digest().await.unwrap();

    let g1 = reader.generation("g1");
    for (i, e) in events.iter().enumerate() {
        g1.apply(pos(i as u64), Some(e)).await.unwrap();
    }
    assert_eq!(
        reader.digest().await.unwrap(),
        before,
        "readers stay on g0 until the switch"
    );
    reader.activate("g1").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(reader.current_generation().await.unwrap(), "g1");
    assert_eq!(reader.digest().await.unwrap(), g1.digest().await.unwrap());
    assert!(reader.client("other").await.unwrap().is_some());

    reader.delete_generation("g0").await.unwrap();
    assert_eq!(reader.generation("g0").next_offset(0).await.unwrap(), 0);
}

#[tokio::test]
async fn an_unreachable_redis_is_unavailable_not_a_panic() {
    let port = tokend_testkit::free_port();
    let result = RedisStore::connect(&format!("redis://127.0.0.1:{port}"), "x").await;
    assert!(matches!(
        result,
        Err(tokend_domain::StoreError::Unavailable(_))
    ));
}
