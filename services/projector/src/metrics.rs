//! A handful of counters, served as Prometheus text.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub applied: AtomicU64,
    pub duplicates: AtomicU64,
    pub seeks: AtomicU64,
    pub unknown_events: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub store_retries: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let rows = [
            ("projector_records_applied_total", &self.applied),
            ("projector_records_duplicate_total", &self.duplicates),
            ("projector_partition_seeks_total", &self.seeks),
            ("projector_unknown_events_total", &self.unknown_events),
            ("projector_dead_lettered_total", &self.dead_lettered),
            ("projector_store_retries_total", &self.store_retries),
        ];
        rows.iter()
            .map(|(name, v)| {
                format!(
                    "# TYPE {name} counter\n{name} {}\n",
                    v.load(Ordering::Relaxed)
                )
            })
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
