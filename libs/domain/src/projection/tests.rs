//! The projection as a pure function: idempotence, replay equality, and every revoke path.

use tokend_events::*;

use super::*;
use crate::Applied;
use crate::model::RevocationQuery;

fn pos(offset: u64) -> LogPosition {
    LogPosition {
        partition: 0,
        offset,
    }
}

fn issued(jti: &str, family: &str, refresh: Option<&str>, rotated_from: Option<&str>) -> Event {
    Event::TokenIssued(TokenIssued {
        jti: jti.into(),
        sub: "alice".into(),
        client_id: "app".into(),
        scope: "read".into(),
        aud: vec!["api".into()],
        iat: 1000,
        exp: 1900,
        family_id: family.into(),
        refresh: refresh.map(|d| RefreshIssued {
            digest: d.into(),
            exp: 5000,
        }),
        rotated_from: rotated_from.map(Into::into),
        from_code: None,
    })
}

fn query(jti: &str, iat: i64) -> RevocationQuery {
    RevocationQuery {
        jti: jti.into(),
        sub: "alice".into(),
        client_id: "app".into(),
        iat,
    }
}

fn replay(events: &[Event]) -> Projection {
    let mut p = Projection::default();
    for (i, e) in events.iter().enumerate() {
        p.apply(pos(i as u64), Some(e));
    }
    p
}

#[test]
fn applying_a_position_twice_equals_applying_it_once() {
    let events = [
        issued("a1", "f1", Some("r1"), None),
        Event::TokenRevoked(TokenRevoked {
            jti: "a1".into(),
            sub: "alice".into(),
            client_id: "app".into(),
            exp: 1900,
        }),
    ];
    let once = replay(&events);
    let mut twice = replay(&events);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(twice.apply(pos(i as u64), Some(e)), Applied::Duplicate);
    }
    assert_eq!(once, twice);
    assert!(once.is_revoked(&query("a1", 1000)));
    assert_eq!(once.next_offset(0), 2);
    assert_eq!(once.next_offset(1), 0);
}

#[test]
fn rotation_marks_the_parent_used_and_reuse_in_the_log_kills_the_family() {
    let mut p = replay(&[
        issued("a1", "f1", Some("r1"), None),
        issued("a2", "f1", Some("r2"), Some("r1")),
    ]);
    assert!(matches!(
        p.refresh_status("r1", 1100),
        RefreshStatus::Used(_)
    ));
    assert!(matches!(
        p.refresh_status("r2", 1100),
        RefreshStatus::Valid(_)
    ));
    assert!(!p.is_revoked(&query("a2", 1000)));

    // A second node rotated the same parent before seeing the first rotation.
    p.apply(pos(2), Some(&issued("a3", "f1", Some("r3"), Some("r1"))));
    for jti in ["a1", "a2", "a3"] {
        assert!(p.is_revoked(&query(jti, 1000)), "{jti} must be revoked");
    }
    for d in ["r1", "r2", "r3"] {
        assert_eq!(p.refresh_status(d, 1100), RefreshStatus::Revoked);
    }
}

#[test]
fn family_revoke_covers_every_access_and_refresh_token() {
    let p = replay(&[
        issued("a1", "f1", Some("r1"), None),
        issued("a2", "f1", Some("r2"), Some("r1")),
        issued("b1", "f2", Some("s1"), None),
        Event::TokenFamilyRevoked(TokenFamilyRevoked {
            family_id: "f1".into(),
            sub: "alice".into(),
            reason: FamilyRevokeReason::RefreshTokenReuse,
        }),
    ]);
    assert!(p.is_revoked(&query("a1", 1000)) && p.is_revoked(&query("a2", 1000)));
    assert_eq!(p.refresh_status("r2", 1100), RefreshStatus::Revoked);
    assert!(!p.is_revoked(&query("b1", 1000)));
    assert!(matches!(
        p.refresh_status("s1", 1100),
        RefreshStatus::Valid(_)
    ));
}

#[test]
fn subject_revoke_catches_indexed_tokens_and_earlier_seconds_only() {
    let p = replay(&[
        issued("a1", "f1", Some("r1"), None),
        Event::SubjectRevoked(SubjectRevoked {
            sub: "alice".into(),
            revoked_before_ms: 1_000_500,
        }),
        issued("a2", "f2", Some("r2"), None),
    ]);
    // a1 was issued in the watermark's second but before it: the index catches it.
    assert!(p.is_revoked(&query("a1", 1000)));
    // a2 came after the revoke in log order, in the same second: a new session.
    assert!(!p.is_revoked(&query("a2", 1000)));
    assert!(matches!(
        p.refresh_status("r2", 1100),
        RefreshStatus::Valid(_)
    ));
    // A token from an earlier second the index never saw is caught by the watermark.
    assert!(p.is_revoked(&query("unseen", 999)));
    assert!(!p.is_revoked(&query("unseen", 1001)));
}

#[test]
fn client_disable_and_user_disable_revoke_and_lock_out() {
    let reg = Event::ClientRegistered(ClientRegistered {
        client_id: "app".into(),
        name: "App".into(),
        secret_digest: Some("d".into()),
        grant_types: vec!["client_credentials".into()],
        scopes: vec!["read".into()],
        default_scopes: vec![],
        audiences: vec!["api".into()],
        redirect_uris: vec![],
    });
    let user = Event::UserCreated(UserCreated {
        username: "alice".into(),
        password_hash: "$argon2id$x".into(),
    });
    let mut p = replay(&[reg, user, issued("a1", "f1", Some("r1"), None)]);
    assert!(!p.client("app").unwrap().disabled);
    p.apply(
        pos(3),
        Some(&Event::UserDisabled(UserDisabled {
            username: "alice".into(),
            revoked_before_ms: 2_000_000,
        })),
    );
    assert!(p.user("alice").unwrap().disabled);
    assert!(p.is_revoked(&query("a1", 1000)));
    p.apply(
        pos(4),
        Some(&Event::ClientDisabled(ClientDisabled {
            client_id: "app".into(),
            revoked_before_ms: 3_000_000,
        })),
    );
    assert!(p.client("app").unwrap().disabled);
    let mut other = query("x", 2500);
    other.sub = "bob".into();
    assert!(
        p.is_revoked(&other),
        "client watermark applies to every subject"
    );
}

#[test]
fn expiry_of_refresh_tokens_and_pruning() {
    let mut p = replay(&[
        issued("a1", "f1", Some("r1"), None),
        Event::TokenRevoked(TokenRevoked {
            jti: "a1".into(),
            sub: "alice".into(),
            client_id: "app".into(),
            exp: 1900,
        }),
    ]);
    assert_eq!(p.refresh_status("r1", 5000), RefreshStatus::Expired);
    assert_eq!(p.refresh_status("nope", 10), RefreshStatus::Unknown);
    p.prune(1901);
    assert!(
        !p.is_revoked(&query("a1", 1000)),
        "expired entries are dropped"
    );
    assert!(matches!(
        p.refresh_status("r1", 2000),
        RefreshStatus::Valid(_)
    ));
    p.prune(6000);
    assert_eq!(p, {
        let mut empty = Projection::default();
        empty.next_offsets.insert(0, 2);
        empty
    });
}

#[test]
fn offsets_apply_in_order_only_and_empty_records_advance_them() {
    let mut p = Projection::default();
    let e = issued("a1", "f1", None, None);
    assert_eq!(p.apply(pos(1), Some(&e)), Applied::Gap { next: 0 });
    assert_eq!(p, Projection::default(), "a gap changes nothing");
    assert_eq!(p.apply(pos(0), None), Applied::Applied);
    assert_eq!(p.apply(pos(1), Some(&e)), Applied::Applied);
    assert_eq!(p.apply(pos(0), None), Applied::Duplicate);
    assert_eq!(p.next_offset(0), 2);
    assert!(!p.is_revoked(&query("a1", 1000)));
}

fn code_issued(digest: &str, family: &str, exp: i64) -> Event {
    Event::AuthorizationCodeIssued(AuthorizationCodeIssued {
        code_digest: digest.into(),
        client_id: "app".into(),
        sub: "alice".into(),
        redirect_uri: "https://app.test/cb".into(),
        scope: "read".into(),
        aud: vec!["api".into()],
        code_challenge: "c".into(),
        exp,
        family_id: family.into(),
    })
}

fn redeemed(jti: &str, family: &str, code: &str) -> Event {
    let Event::TokenIssued(mut e) = issued(jti, family, Some(&format!("r-{jti}")), None) else {
        unreachable!()
    };
    e.from_code = Some(code.into());
    Event::TokenIssued(e)
}

#[test]
fn codes_redeem_once_and_a_replay_revokes_the_first_tokens() {
    use crate::model::CodeStatus;
    let mut p = replay(&[code_issued("k1", "fc", 1060), redeemed("a1", "fc", "k1")]);
    assert!(matches!(p.code_status("k1", 1010), CodeStatus::Redeemed(_)));
    assert!(!p.is_revoked(&query("a1", 1000)));
    // Redelivery of the same redemption is not a replay.
    assert_eq!(
        p.apply(pos(1), Some(&redeemed("a1", "fc", "k1"))),
        Applied::Duplicate
    );
    p.apply(pos(2), Some(&redeemed("a2", "fc", "k1")));
    assert!(p.is_revoked(&query("a1", 1000)) && p.is_revoked(&query("a2", 1000)));
    assert_eq!(p.refresh_status("r-a1", 1010), RefreshStatus::Revoked);

    let q = replay(&[code_issued("k2", "fd", 1060)]);
    assert!(matches!(q.code_status("k2", 1059), CodeStatus::Valid(_)));
    assert_eq!(q.code_status("k2", 1060), CodeStatus::Expired);
    assert_eq!(q.code_status("nope", 0), CodeStatus::Unknown);
    let mut pruned = q.clone();
    pruned.prune(1061);
    assert_eq!(pruned.code_status("k2", 0), CodeStatus::Unknown);
}
