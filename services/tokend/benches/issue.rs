//! Issue-through-the-embedded-log: a client-credentials grant end to end below HTTP (client
//! authentication, signing, the `TokenIssued` append with fsync, projection), one at a time and
//! 64 at once (group commit).

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use tokend::{Config, Node, SystemClock};
use tokend_oauth::secrets::Secret;
use tokend_oauth::{ClientCredentials, Grant, TokenRequest, TokenService};

fn request() -> TokenRequest {
    TokenRequest {
        grant: Grant::ClientCredentials,
        scope: None,
        audience: None,
    }
}

#[allow(clippy::expect_used)]
fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::default();
    config.storage.data_dir = dir.path().to_path_buf();
    config.seed.demo = true;
    let node = rt
        .block_on(Node::start(&config, Arc::new(SystemClock)))
        .expect("node");
    let demo = node.demo.as_ref().expect("demo");
    let creds = Arc::new(ClientCredentials {
        client_id: demo.client_id.clone(),
        secret: Some(Secret::new(demo.client_secret.clone())),
        via_basic: true,
    });
    let svc: Arc<TokenService> = node.service.clone();

    let mut group = c.benchmark_group("issue_embedded_fsync");
    group.bench_function("sequential", |b| {
        b.to_async(&rt)
            .iter(|| async { svc.token(&creds, request()).await.expect("token") })
    });
    group.bench_function("concurrent_64", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (svc, creds) = (svc.clone(), creds.clone());
            async move {
                #[allow(clippy::disallowed_methods)]
                let start = std::time::Instant::now();
                let mut tasks = tokio::task::JoinSet::new();
                for worker in 0..64u64 {
                    let (svc, creds) = (svc.clone(), creds.clone());
                    let share = iters / 64 + u64::from(worker < iters % 64);
                    tasks.spawn(async move {
                        for _ in 0..share {
                            svc.token(&creds, request()).await.expect("token");
                        }
                    });
                }
                tasks.join_all().await;
                start.elapsed()
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
