//! A handful of counters, served as Prometheus text.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokend_domain::Applied;

#[derive(Debug, Default)]
pub struct Metrics {
    pub applied: AtomicU64,
    pub duplicates: AtomicU64,
    pub batches: AtomicU64,
    pub records_written: AtomicU64,
    pub apply_micros: AtomicU64,
    pub seeks: AtomicU64,
    pub generation_resets: AtomicU64,
    pub unknown_events: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub store_retries: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn record_batch(
        &self,
        len: usize,
        written: usize,
        took: Duration,
        applied: Applied,
    ) {
        if let Applied::Done { duplicates, .. } = applied {
            let len = len as u64;
            self.applied
                .fetch_add(len - duplicates.min(len), Ordering::Relaxed);
            self.duplicates
                .fetch_add(duplicates.min(len), Ordering::Relaxed);
            Self::inc(&self.batches);
            self.records_written
                .fetch_add(written as u64, Ordering::Relaxed);
            self.apply_micros.fetch_add(
                u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
    }

    pub fn render(&self) -> String {
        let rows = [
            ("projector_records_applied_total", &self.applied),
            ("projector_records_duplicate_total", &self.duplicates),
            ("projector_batches_total", &self.batches),
            (
                "projector_redis_records_written_total",
                &self.records_written,
            ),
            ("projector_apply_microseconds_total", &self.apply_micros),
            ("projector_partition_seeks_total", &self.seeks),
            ("projector_generation_resets_total", &self.generation_resets),
            ("projector_unknown_events_total", &self.unknown_events),
            ("projector_dead_lettered_total", &self.dead_lettered),
            ("projector_store_retries_total", &self.store_retries),
        ];
        rows.iter()
            .map(|(name, v)| format!("# TYPE {name} counter\n{name} {}\n", Self::get(v)))
            .collect()
    }

    /// Serves `/metrics` until the process ends.
    pub async fn serve(self: Arc<Self>, addr: std::net::SocketAddr) -> anyhow::Result<()> {
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let m = self.clone();
                async move { m.render() }
            }),
        );
        let listener = tokio::net::TcpListener::bind(addr).await?;
        axum::serve(listener, app).await?;
        Ok(())
    }
}
