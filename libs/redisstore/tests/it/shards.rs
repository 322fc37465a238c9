//! Refresh tokens, codes and families in their shards: where they live, a shard write left
//! pending, an old one coming back late, and a shard that lost its data.

use super::*;
use tokend_domain::model::RefreshStatus;

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn keys(con: &mut redis::aio::MultiplexedConnection, pattern: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(con)
        .await
        .unwrap()
}

/// Partition 0's pending shard writes, as `write.lua` left them.
async fn pending(con: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg(key)
        .arg(0)
        .query_async(con)
        .await
        .unwrap()
}

/// A store on the test Redis under a fresh key prefix; the URL and the prefix.
async fn fresh(tag: &str) -> (String, String, RedisStore) {
    let url = redis().await.url.clone();
    let prefix = unique(tag);
    let store = RedisStore::connect(&url, &prefix).await.unwrap();
    (url, prefix, store)
}

/// Deletes every key of the shard holding record `name` (`rt:…`, `fam:…`), as its master
/// restarting empty would; returns the record's key.
async fn lose_shard_of(
    con: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    name: &str,
) -> String {
    let found = keys(con, &format!("{{{prefix}:??}}:*:{name}")).await;
    let shard = &found[0][..=found[0].find('}').unwrap()];
    let lost = keys(con, &format!("{shard}:*")).await;
    let _: () = redis::cmd("DEL").arg(&lost).query_async(con).await.unwrap();
    found[0].clone()
}

#[tokio::test]
async fn the_base_slot_holds_no_record_per_live_grant() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let (url, prefix, store) = fresh("sh").await;
    let events = script();
    let reference = apply_all(&store, &events, 4).await;
    compare(&store, &reference).await;
    let mut con = raw(&url).await;
    let base = tokend_redis::base_key(&prefix);
    let in_base = keys(&mut con, &format!("{base}:*")).await;
    let per_grant = |k: &&String| k.contains(":rt:") || k.contains(":code:");
    assert_eq!(in_base.iter().filter(per_grant).count(), 0, "{in_base:?}");
    // Families: only the revoked ones have a copy there.
    for family in in_base.iter().filter(|k| k.contains(":fam:")) {
        let value: String = redis::cmd("GET")
            .arg(family)
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(value.contains("\"revoked\":true"), "{family}: {value}");
    }
    let sharded = keys(&mut con, &format!("{{{prefix}:??}}:*")).await;
    let records: Vec<_> = sharded.iter().filter(|k| !k.ends_with(":ready")).collect();
    let shards: std::collections::BTreeSet<&str> =
        records.iter().map(|k| &k[..k.find('}').unwrap()]).collect();
    println!("{} records in {} shards", records.len(), shards.len());
    assert!(records.iter().any(|k| k.contains(":rt:")));
    assert!(records.iter().any(|k| k.contains(":code:")));
    assert!(records.iter().any(|k| k.contains(":fam:")));
    assert!(shards.len() > 4, "spread over shards: {shards:?}");
}

#[tokio::test]
async fn a_shard_write_left_pending_is_written_by_the_next_writer_and_a_late_one_changes_nothing() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let (url, prefix, store) = fresh("sp").await;
    let events = [
        issued("a1", "erin", "fp", Some("rA"), None),
        issued("a2", "erin", "fp", Some("rB"), Some("rA")),
        issued("a3", "erin", "fq", Some("rC"), None),
    ];
    let refs: Vec<Option<&Event>> = events.iter().map(Some).collect();
    let status = async |digest: &str| store.refresh_status(digest, 1500).await.unwrap();
    // A writer that stops between the batch's write and its shard writes.
    let stopping = store.clone().stopping_before_shard_writes();
    assert!(complete(&store).await);
    stopping.apply_records(0, 0, &refs[..1]).await.unwrap();
    assert_eq!(
        status("rA").await,
        RefreshStatus::Unknown,
        "not written yet"
    );
    assert_eq!(
        store.next_offset(0).await.unwrap(),
        0,
        "not applied for readers (read-your-writes waits for it)"
    );
    let generation = store.active_generation().await.unwrap().unwrap();
    let pending_key = format!("{}:{generation}:pending", tokend_redis::base_key(&prefix));
    let mut con = raw(&url).await;
    let first = pending(&mut con, &pending_key).await.unwrap();
    // The next writer writes it before reading: the rotation finds rA and uses it.
    store.apply_records(0, 1, &refs[1..2]).await.unwrap();
    let reference = reference_of(&events[..2]);
    for digest in ["rA", "rB"] {
        assert_eq!(
            status(digest).await,
            reference.refresh_status(digest, 1500),
            "{digest}"
        );
    }
    // With no next record, the projector's periodic check writes it.
    stopping.apply_records(0, 2, &refs[2..]).await.unwrap();
    assert_eq!(store.next_offset(0).await.unwrap(), 2);
    store.partition_state(0).await.unwrap();
    assert_eq!(store.next_offset(0).await.unwrap(), 3);
    assert!(matches!(status("rC").await, RefreshStatus::Valid(_)));
    // The first pending write comes back late (a writer that stopped during a rebalance):
    // written again, it must not bring rA back unused nor the family back to an earlier state.
    let _: () = redis::pipe()
        .hset(&pending_key, 0, &first)
        .hset(format!("{pending_key}_from"), 0, 0)
        .query_async(&mut con)
        .await
        .unwrap();
    store.partition_state(0).await.unwrap();
    let reference = reference_of(&events);
    for digest in ["rA", "rB", "rC"] {
        assert_eq!(
            status(digest).await,
            reference.refresh_status(digest, 1500),
            "{digest} after a late write"
        );
    }
    assert_eq!(
        pending(&mut con, &pending_key).await,
        None,
        "cleared once written"
    );
}

#[tokio::test]
async fn a_shard_that_lost_its_data_fails_closed_until_the_projector_marks_it_again() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let (url, prefix, store) = fresh("sl").await;
    let events = [
        issued("b1", "erin", "fl", Some("rL"), None),
        issued("b2", "erin", "fl", Some("rM"), Some("rL")),
    ];
    let refs: Vec<Option<&Event>> = events.iter().map(Some).collect();
    store.apply_records(0, 0, &refs[..1]).await.unwrap();
    assert!(complete(&store).await);
    assert!(matches!(
        store.refresh_status("rL", 1500).await.unwrap(),
        RefreshStatus::Valid(_)
    ));
    // rL's shard loses everything (its master restarted empty).
    let mut con = raw(&url).await;
    lose_shard_of(&mut con, &prefix, "rt:rL").await;
    assert!(
        matches!(
            store.refresh_status("rL", 1500).await,
            Err(StoreError::NotReady)
        ),
        "never \"unknown\" from a shard that lost its data"
    );
    assert!(
        store.apply_records(0, 1, &refs[1..]).await.is_err(),
        "no write to it either"
    );
    assert_eq!(store.repair_shards().await.unwrap(), 1);
    assert_eq!(store.repair_shards().await.unwrap(), 0);
    // Its records are gone (the log has them: `projector rebuild`); writes go on.
    assert_eq!(
        store.refresh_status("rL", 1500).await.unwrap(),
        RefreshStatus::Unknown
    );
    store.apply_records(0, 1, &refs[1..]).await.unwrap();
    assert!(matches!(
        store.refresh_status("rM", 1500).await.unwrap(),
        RefreshStatus::Valid(_) | RefreshStatus::Revoked
    ));
}

#[tokio::test]
async fn a_revoked_family_whose_shard_lost_it_stays_revoked() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let (url, prefix, store) = fresh("sf").await;
    let events = [
        issued("c1", "erin", "fr", Some("rR"), None),
        Event::TokenFamilyRevoked(TokenFamilyRevoked {
            family_id: "fr".into(),
            sub: "erin".into(),
            reason: FamilyRevokeReason::RevokedByClient,
            until: 0,
        }),
        issued("c2", "erin", "fr", Some("rS"), Some("rR")),
    ];
    let refs: Vec<Option<&Event>> = events.iter().map(Some).collect();
    store.apply_records(0, 0, &refs[..2]).await.unwrap();
    assert!(complete(&store).await);
    // The family's shard loses everything; the base slot keeps the revoked copy.
    let mut con = raw(&url).await;
    let family = lose_shard_of(&mut con, &prefix, "fam:fr").await;
    assert_eq!(store.repair_shards().await.unwrap(), 1);
    // A later issue in the family rebuilds its shard record from the copy: still revoked
    // (not a fresh, live family that would outlive the copy).
    store.apply_records(0, 2, &refs[2..]).await.unwrap();
    let stored: String = redis::cmd("GET")
        .arg(&family)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(stored.contains("\"revoked\":true"), "{stored}");
    assert_eq!(
        store.refresh_status("rS", 1500).await.unwrap(),
        RefreshStatus::Revoked
    );
}
