//! Per-operation cost of the domain's hot paths: an event encoded and decoded (the Kafka
//! record's JSON envelope), applied to the in-memory projection, and the revocation check
//! against a projection holding many tokens and revocations. The Redis batch apply, with
//! real Kafka and Redis, is `cargo bench -p tokend-projector --bench projection`.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tokend_domain::model::RevocationQuery;
use tokend_domain::{LogPosition, Projection};
use tokend_events::{Envelope, Event, RefreshIssued, TokenIssued, TokenRevoked};

fn issued(i: usize) -> Event {
    Event::TokenIssued(TokenIssued {
        jti: format!("{i:032x}"),
        sub: format!("user-{}", i % 1000),
        client_id: "demo-client".into(),
        scope: "read write".into(),
        aud: vec!["api".into()],
        iat: 1_700_000_000,
        exp: 4_000_000_000,
        family_id: format!("{:032x}", i / 2),
        auth_time_ms: 1_700_000_000_000,
        refresh: i.is_multiple_of(2).then(|| RefreshIssued {
            digest: format!("{i:064x}"),
            exp: 4_000_000_000,
        }),
        rotated_from: None,
        from_code: None,
        reuse_grace_secs: 10,
        retry: false,
    })
}

fn query(i: usize) -> RevocationQuery {
    RevocationQuery {
        jti: format!("{i:032x}"),
        family_id: format!("{:032x}", i / 2),
        sub: Some(format!("user-{}", i % 1000)),
        client_id: "demo-client".into(),
        auth_time_ms: 1_700_000_000_000,
        kid: "k".into(),
    }
}

fn bench(c: &mut Criterion) {
    let event = issued(7);
    let id = uuid::Uuid::from_u128(7);
    c.bench_function("event_encode", |b| {
        b.iter(|| Envelope::new(&event, id, 1_700_000_000_000).to_bytes())
    });
    let bytes = Envelope::new(&event, id, 1_700_000_000_000).to_bytes();
    c.bench_function("event_decode", |b| {
        b.iter(|| Envelope::from_bytes(&bytes).map(|e| e.decode()))
    });

    let batch: Vec<Event> = (0..1000).map(issued).collect();
    let mut group = c.benchmark_group("projection_apply_memory");
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("1000_issues", |b| {
        b.iter_batched(
            Projection::default,
            |mut p| {
                let refs: Vec<Option<&Event>> = batch.iter().map(Some).collect();
                p.apply_batch(0, 0, &refs);
                p
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    // 100,000 tokens, every tenth revoked.
    let mut projection = Projection::default();
    for i in 0..100_000usize {
        projection.apply(
            LogPosition {
                partition: 0,
                offset: 2 * i as u64,
            },
            Some(&issued(i)),
        );
        let revoke = i.is_multiple_of(10).then(|| {
            Event::TokenRevoked(TokenRevoked {
                jti: format!("{i:032x}"),
                sub: format!("user-{}", i % 1000),
                client_id: "demo-client".into(),
                exp: 4_000_000_000,
                family_id: format!("{:032x}", i / 2),
            })
        });
        projection.apply(
            LogPosition {
                partition: 0,
                offset: 2 * i as u64 + 1,
            },
            revoke.as_ref(),
        );
    }
    let (live, revoked) = (query(12_345), query(12_340));
    assert!(!projection.is_revoked(&live) && projection.is_revoked(&revoked));
    c.bench_function("revocation_check_memory", |b| {
        b.iter(|| projection.is_revoked(&live))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
