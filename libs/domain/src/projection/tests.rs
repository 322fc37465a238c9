//! The projection as a pure function: idempotence, batches, partial state, every revoke path.

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
        auth_time_ms: 1_000_000,
        refresh: refresh.map(|d| RefreshIssued {
            digest: d.into(),
            exp: 5000,
        }),
        rotated_from: rotated_from.map(Into::into),
        from_code: None,
        reuse_grace_secs: 0,
        retry: false,
    })
}

fn query(jti: &str, family: &str, auth_time_ms: i64) -> RevocationQuery {
    RevocationQuery {
        jti: jti.into(),
        family_id: family.into(),
        sub: Some("alice".into()),
        client_id: "app".into(),
        auth_time_ms,
        kid: "k1".into(),
    }
}

fn revoked(jti: &str, family: &str) -> Event {
    Event::TokenRevoked(TokenRevoked {
        jti: jti.into(),
        sub: "alice".into(),
        client_id: "app".into(),
        exp: 1900,
        family_id: family.into(),
    })
}

fn replay(events: &[Event]) -> Projection {
    let mut p = Projection::default();
    for (i, e) in events.iter().enumerate() {
        p.apply(pos(i as u64), Some(e));
    }
    p
}

fn done(next: u64, duplicates: u64) -> Applied {
    Applied::Done { next, duplicates }
}

#[test]
fn applying_a_position_twice_equals_applying_it_once() {
    let events = [issued("a1", "f1", Some("r1"), None), revoked("a1", "f1")];
    let once = replay(&events);
    let mut twice = replay(&events);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(twice.apply(pos(i as u64), Some(e)), done(2, 1));
    }
    assert_eq!(once, twice);
    assert!(once.is_revoked(&query("a1", "f1", 1_000_000)));
    assert_eq!(once.next_offset(0), 2);
    assert_eq!(once.next_offset(1), 0);
}

#[test]
fn a_batch_equals_its_records_one_by_one_and_overlaps_apply_only_the_new_part() {
    let events: Vec<Event> = vec![
        issued("a1", "f1", Some("r1"), None),
        issued("a2", "f1", Some("r2"), Some("r1")),
        revoked("a2", "f1"),
        issued("a3", "f1", Some("r3"), Some("r1")),
    ];
    let one_by_one = replay(&events);
    let refs: Vec<Option<&Event>> = events.iter().map(Some).collect();
    let mut batched = Projection::default();
    assert_eq!(batched.apply_batch(0, 0, &refs[..2]), done(2, 0));
    assert_eq!(batched.apply_batch(0, 1, &refs[1..]), done(4, 1));
    assert_eq!(batched, one_by_one);
    assert_eq!(batched.apply_batch(0, 0, &refs), done(4, 4));
    assert_eq!(batched.apply_batch(0, 5, &refs), Applied::Gap { next: 4 });
    assert_eq!(batched, one_by_one);
}

/// What the Redis store does: load only the records [`keys`] names, apply, write back the
/// changes. Doing that event by event must give the whole-state result.
#[test]
fn applying_on_the_touched_records_alone_gives_the_whole_state_result() {
    let reg = Event::ClientRegistered(ClientRegistered {
        client_id: "app".into(),
        name: "App".into(),
        secret_digest: Some("d".into()),
        grant_types: vec![],
        scopes: vec![],
        default_scopes: vec![],
        audiences: vec![],
        redirect_uris: vec![],
    });
    let events = vec![
        reg.clone(),
        Event::UserCreated(UserCreated {
            username: "alice".into(),
            password_hash: "h".into(),
        }),
        code_issued("k1", "fc", 1060),
        redeemed("c1", "fc", "k1"),
        redeemed("c2", "fc", "k1"),
        issued("a1", "f1", Some("r1"), None),
        issued("a2", "f1", Some("r2"), Some("r1")),
        issued("a3", "f1", Some("r3"), Some("r1")),
        issued("cc", "f9", None, None),
        revoked("cc", "f9"),
        Event::TokenFamilyRevoked(TokenFamilyRevoked {
            family_id: "f1".into(),
            sub: "alice".into(),
            reason: FamilyRevokeReason::RevokedByClient,
            until: 0,
        }),
        Event::ClientDisabled(ClientDisabled {
            client_id: "app".into(),
            revoked_before_ms: 7,
        }),
        reg,
        Event::UserDisabled(UserDisabled {
            username: "alice".into(),
            revoked_before_ms: 9,
        }),
        Event::SubjectRevoked(SubjectRevoked {
            sub: "alice".into(),
            revoked_before_ms: 8,
        }),
        Event::ClientRevoked(ClientRevoked {
            client_id: "app".into(),
            revoked_before_ms: 11,
        }),
    ];
    let whole = replay(&events);
    let mut store = State::default();
    for e in &events {
        let mut partial = State::tracking();
        for k in keys(e) {
            if let Some(r) = store.get(&k) {
                partial.load(k, r.clone());
            }
        }
        partial.apply(e);
        for (k, v) in partial.take_changes() {
            assert!(
                keys(e).contains(&k),
                "{k:?} written but not named by keys()"
            );
            match v {
                Some(r) => store.load(k, r),
                None => unreachable!("the projection never deletes"),
            }
        }
    }
    assert_eq!(&store, whole.state());
    assert!(
        whole.client("app").unwrap().disabled,
        "re-registration keeps a client disabled"
    );
}

#[test]
fn a_client_credentials_token_needs_no_record() {
    let p = replay(&[issued("cc", "f9", None, None)]);
    assert!(p.state().is_empty());
    assert!(keys(&issued("cc", "f9", None, None)).is_empty());
    assert!(!p.is_revoked(&query("cc", "f9", 1_000_000)));
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
    assert!(!p.is_revoked(&query("a2", "f1", 1_000_000)));

    // A second node rotated the same parent before seeing the first rotation.
    p.apply(pos(2), Some(&issued("a3", "f1", Some("r3"), Some("r1"))));
    for jti in ["a1", "a2", "a3"] {
        assert!(
            p.is_revoked(&query(jti, "f1", 1_000_000)),
            "{jti} must be revoked"
        );
    }
    for d in ["r1", "r2", "r3"] {
        assert_eq!(p.refresh_status(d, 1100), RefreshStatus::Revoked);
    }
}

#[test]
fn family_revoke_is_one_record_and_covers_every_token_of_the_family() {
    let mut p = replay(&[
        issued("a1", "f1", Some("r1"), None),
        issued("a2", "f1", Some("r2"), Some("r1")),
        issued("b1", "f2", Some("s1"), None),
    ]);
    let revoke = Event::TokenFamilyRevoked(TokenFamilyRevoked {
        family_id: "f1".into(),
        sub: "alice".into(),
        reason: FamilyRevokeReason::RefreshTokenReuse,
        until: 0,
    });
    assert_eq!(keys(&revoke), vec![Key::Family("f1".into())]);
    p.apply(pos(3), Some(&revoke));
    assert!(p.is_revoked(&query("a1", "f1", 1)) && p.is_revoked(&query("a2", "f1", 1)));
    // A token minted in the family afterwards is born revoked.
    p.apply(pos(4), Some(&issued("a9", "f1", Some("r9"), None)));
    assert!(p.is_revoked(&query("a9", "f1", 1)));
    assert_eq!(p.refresh_status("r2", 1100), RefreshStatus::Revoked);
    assert!(!p.is_revoked(&query("b1", "f2", 1)));
    assert!(matches!(
        p.refresh_status("s1", 1100),
        RefreshStatus::Valid(_)
    ));
}

#[test]
fn watermarks_compare_milliseconds_of_the_grant_in_any_order() {
    let revoke = Event::SubjectRevoked(SubjectRevoked {
        sub: "alice".into(),
        revoked_before_ms: 1_000_500,
    });
    // The revocation and the family sit in different partitions: either order of
    // application gives the same answers.
    for events in [
        vec![issued("a1", "f1", Some("r1"), None), revoke.clone()],
        vec![revoke.clone(), issued("a1", "f1", Some("r1"), None)],
    ] {
        let p = replay(&events);
        // Same second, earlier millisecond: revoked.
        assert!(p.is_revoked(&query("a1", "f1", 1_000_499)));
        assert!(!p.is_revoked(&query("a1", "f1", 1_000_500)));
        // Its refresh token (grant began at 1_000_000) is revoked too, and so is every
        // token the family mints later, whatever its own iat: they carry the grant's time.
        assert_eq!(p.refresh_status("r1", 1100), RefreshStatus::Revoked);
        let mut later = query("a-later", "f1", 1_000_000);
        later.jti = "minted-after".into();
        assert!(p.is_revoked(&later));
    }
}

#[test]
fn a_revoked_signing_key_revokes_every_token_it_signed_and_only_those() {
    let mut events = vec![
        issued("a1", "f1", Some("r1"), None),
        issued("a2", "f2", None, None),
    ];
    let p = replay(&events);
    assert!(!p.is_revoked(&query("a1", "f1", 1_000_000)));
    events.push(Event::SigningKeyRevoked(SigningKeyRevoked {
        kid: "k1".into(),
        at_ms: 7,
    }));
    let p = replay(&events);
    for (jti, family) in [("a1", "f1"), ("a2", "f2"), ("never-seen", "f9")] {
        assert!(p.is_revoked(&query(jti, family, 1_000_000)), "{jti}");
    }
    let other_key = RevocationQuery {
        kid: "k2".into(),
        ..query("a1", "f1", 1_000_000)
    };
    assert!(!p.is_revoked(&other_key));
    // The refresh token lives on: the grant was not revoked, only what the key signed.
    assert!(matches!(
        p.refresh_status("r1", 1000),
        crate::model::RefreshStatus::Valid(_)
    ));
    // One record, written once: a second revocation of the key changes nothing.
    let before = p.state().clone();
    events.push(Event::SigningKeyRevoked(SigningKeyRevoked {
        kid: "k1".into(),
        at_ms: 9,
    }));
    assert_eq!(replay(&events).state(), &before);
}

#[test]
fn mass_revocation_is_one_record_whatever_the_number_of_tokens() {
    let mut p = Projection::default();
    for i in 0..10_000u64 {
        let family = format!("f{i}");
        p.apply(
            pos(i),
            Some(&issued(
                &format!("a{i}"),
                &family,
                Some(&format!("r{i}")),
                None,
            )),
        );
    }
    let revoke = Event::ClientRevoked(ClientRevoked {
        client_id: "app".into(),
        revoked_before_ms: 2_000_000,
    });
    assert_eq!(keys(&revoke).len(), 1);
    let mut partial = State::tracking();
    partial.apply(&revoke);
    assert_eq!(partial.take_changes().len(), 1);
    p.apply(pos(10_000), Some(&revoke));
    assert!(p.is_revoked(&query("a7", "f7", 1_000_000)));
    assert_eq!(p.refresh_status("r7", 1100), RefreshStatus::Revoked);
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
    assert!(p.is_revoked(&query("a1", "f1", 1_000_000)));
    p.apply(
        pos(4),
        Some(&Event::ClientDisabled(ClientDisabled {
            client_id: "app".into(),
            revoked_before_ms: 3_000_000,
        })),
    );
    assert!(p.client("app").unwrap().disabled);
    let mut other = query("x", "fx", 2_500_000);
    other.sub = Some("bob".into());
    assert!(
        p.is_revoked(&other),
        "client watermark applies to every subject"
    );
}

#[test]
fn expiry_of_refresh_tokens_and_pruning() {
    let mut p = replay(&[issued("a1", "f1", Some("r1"), None), revoked("a1", "f1")]);
    assert_eq!(p.refresh_status("r1", 5000), RefreshStatus::Expired);
    assert_eq!(p.refresh_status("nope", 10), RefreshStatus::Unknown);
    p.prune(1901);
    assert!(
        !p.is_revoked(&query("a1", "f1", 1)),
        "expired entries are dropped"
    );
    assert!(matches!(
        p.refresh_status("r1", 2000),
        RefreshStatus::Valid(_)
    ));
    p.prune(6000);
    assert!(p.state().is_empty());
    assert_eq!(p.next_offset(0), 2);
}

#[test]
fn offsets_apply_in_order_only_and_empty_records_advance_them() {
    let mut p = Projection::default();
    let e = issued("a1", "f1", Some("r1"), None);
    assert_eq!(p.apply(pos(1), Some(&e)), Applied::Gap { next: 0 });
    assert_eq!(p, Projection::default(), "a gap changes nothing");
    assert_eq!(p.apply(pos(0), None), done(1, 0));
    assert_eq!(p.apply(pos(1), Some(&e)), done(2, 0));
    assert_eq!(p.apply(pos(0), None), done(2, 1));
    assert_eq!(p.next_offset(0), 2);
    assert!(!p.is_revoked(&query("a1", "f1", 1)));
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
        auth_time_ms: 1_000_000,
        redirect_uri_implied: false,
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
    assert!(!p.is_revoked(&query("a1", "fc", 1_000_000)));
    // Redelivery of the same redemption is not a replay.
    assert_eq!(
        p.apply(pos(1), Some(&redeemed("a1", "fc", "k1"))),
        done(2, 1)
    );
    p.apply(pos(2), Some(&redeemed("a2", "fc", "k1")));
    assert!(p.is_revoked(&query("a1", "fc", 1)) && p.is_revoked(&query("a2", "fc", 1)));
    assert_eq!(p.refresh_status("r-a1", 1010), RefreshStatus::Revoked);

    let q = replay(&[code_issued("k2", "fd", 1060)]);
    assert!(matches!(q.code_status("k2", 1059), CodeStatus::Valid(_)));
    assert_eq!(q.code_status("k2", 1060), CodeStatus::Expired);
    assert_eq!(q.code_status("nope", 0), CodeStatus::Unknown);
    let mut pruned = q.clone();
    pruned.prune(1061);
    assert_eq!(pruned.code_status("k2", 0), CodeStatus::Unknown);
}

fn rotation(jti: &str, refresh: &str, parent: &str, iat: i64, grace: i64, retry: bool) -> Event {
    let Event::TokenIssued(mut e) = issued(jti, "f1", Some(refresh), Some(parent)) else {
        unreachable!()
    };
    (e.iat, e.reuse_grace_secs, e.retry) = (iat, grace, retry);
    Event::TokenIssued(e)
}

#[test]
fn concurrent_uses_have_one_winner_and_within_the_grace_the_grant_lives_on() {
    let first = issued("a1", "f1", Some("r1"), None);
    // Two nodes rotated r1 at once: the log's first wins; the other lost a race.
    let p = replay(&[
        first.clone(),
        rotation("a2", "r2", "r1", 1000, 10, false),
        rotation("a3", "r3", "r1", 1001, 10, false),
    ]);
    assert!(matches!(
        p.refresh_status("r2", 1100),
        RefreshStatus::Valid(_)
    ));
    assert_eq!(
        p.refresh_status("r3", 1100),
        RefreshStatus::Unknown,
        "the loser's token is not recorded"
    );
    assert!(
        !p.is_revoked(&query("a2", "f1", 1_000_000)),
        "the grant lives on"
    );

    // A retry (the node saw r1 used, within the grace) is rotated again: a sibling.
    let p = replay(&[
        first.clone(),
        rotation("a2", "r2", "r1", 1000, 10, false),
        rotation("a3", "r3", "r1", 1005, 10, true),
    ]);
    assert!(matches!(
        p.refresh_status("r3", 1100),
        RefreshStatus::Valid(_)
    ));
    assert!(matches!(
        p.refresh_status("r2", 1100),
        RefreshStatus::Valid(_)
    ));

    // After the grace a second use is theft, retry or not: the family dies.
    for retry in [false, true] {
        let p = replay(&[
            first.clone(),
            rotation("a2", "r2", "r1", 1000, 10, false),
            rotation("a3", "r3", "r1", 1010, 10, retry),
        ]);
        assert!(p.is_revoked(&query("a2", "f1", 1_000_000)));
        assert_eq!(p.refresh_status("r2", 1100), RefreshStatus::Revoked);
    }
}

#[test]
fn the_first_registration_of_a_name_wins() {
    let reg = |name: &str, digest: &str| {
        Event::ClientRegistered(ClientRegistered {
            client_id: "app".into(),
            name: name.into(),
            secret_digest: Some(digest.into()),
            grant_types: vec![],
            scopes: vec![],
            default_scopes: vec![],
            audiences: vec![],
            redirect_uris: vec![],
        })
    };
    let user = |hash: &str| {
        Event::UserCreated(UserCreated {
            username: "alice".into(),
            password_hash: hash.into(),
        })
    };
    let p = replay(&[
        reg("first", "d1"),
        user("h1"),
        reg("second", "d2"),
        user("h2"),
    ]);
    let client = p.client("app").unwrap();
    assert_eq!(
        (client.name.as_str(), client.secret_digest.as_deref()),
        ("first", Some("d1"))
    );
    assert_eq!(p.user("alice").unwrap().password_hash, "h1");
}
