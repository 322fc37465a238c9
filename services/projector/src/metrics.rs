//! The projector's metrics. Counters are atomics (tests and benches read them) that
//! OpenTelemetry observes; latencies, batch sizes and the revocation propagation delay are
//! histograms. `tokend_telemetry` exposes all of them as Prometheus text and over OTLP.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokend_domain::Applied;
use tokend_events::Event;
use tokend_kafka::rdkafka::message::{Message, OwnedMessage};
use tokend_telemetry::{Histogram, KeyValue, Meter};

#[derive(Debug, Default)]
pub struct Counters {
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

#[derive(Debug)]
pub struct Metrics {
    counters: Arc<Counters>,
    /// Per partition of this member: records in the log not yet applied to Redis.
    lags: Arc<Mutex<HashMap<i32, u64>>>,
    apply_seconds: Histogram<f64>,
    batch_size: Histogram<u64>,
    propagation_seconds: Histogram<f64>,
}

impl std::ops::Deref for Metrics {
    type Target = Counters;
    fn deref(&self) -> &Counters {
        &self.counters
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(&tokend_telemetry::global::meter("tokend-projector"))
    }
}

/// Which counter of [`Counters`] an instrument observes.
type Field = fn(&Counters) -> &AtomicU64;

const SECONDS: &[f64] = tokend_telemetry::SECONDS_BUCKETS;

impl Metrics {
    pub fn new(meter: &Meter) -> Self {
        let counters = Arc::new(Counters::default());
        let observed: [(&str, &str, Field); 10] = [
            (
                "projector.records.applied",
                "events applied to the projection",
                |c| &c.applied,
            ),
            (
                "projector.records.duplicate",
                "events seen again and skipped",
                |c| &c.duplicates,
            ),
            ("projector.batches", "batches written to Redis", |c| {
                &c.batches
            }),
            (
                "projector.redis.records.written",
                "Redis records written",
                |c| &c.records_written,
            ),
            (
                "projector.partition.seeks",
                "seeks back to the projection's offset",
                |c| &c.seeks,
            ),
            (
                "projector.generation.resets",
                "heals after Redis lost or rolled back data",
                |c| &c.generation_resets,
            ),
            (
                "projector.events.unknown",
                "events of an unknown type or version, skipped",
                |c| &c.unknown_events,
            ),
            (
                "projector.events.dead_lettered",
                "undecodable records sent to the dead-letter topic",
                |c| &c.dead_lettered,
            ),
            (
                "projector.store.retries",
                "batches retried while Redis was away",
                |c| &c.store_retries,
            ),
            (
                "projector.apply.microseconds",
                "time spent writing batches",
                |c| &c.apply_micros,
            ),
        ];
        for (name, description, field) in observed {
            let c = counters.clone();
            meter
                .u64_observable_counter(name)
                .with_description(description)
                .with_callback(move |o| o.observe(field(&c).load(Ordering::Relaxed), &[]))
                .build();
        }
        let lags: Arc<Mutex<HashMap<i32, u64>>> = Arc::default();
        let observed = lags.clone();
        meter
            .u64_observable_gauge("projector.partition.lag")
            .with_unit("{record}")
            .with_description("records in the log not yet applied to Redis, per partition of this member (refreshed by each heal check)")
            .with_callback(move |o| {
                for (p, lag) in lock(&observed).iter() {
                    let partition = KeyValue::new("messaging.destination.partition.id", p.to_string());
                    o.observe(*lag, &[partition]);
                }
            })
            .build();
        Self {
            counters,
            lags,
            apply_seconds: meter
                .f64_histogram("projector.apply.duration")
                .with_unit("s")
                .with_description("time to write one batch to Redis")
                .with_boundaries(SECONDS.to_vec())
                .build(),
            batch_size: meter
                .u64_histogram("projector.batch.size")
                .with_description("events per batch")
                .with_boundaries(vec![
                    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0,
                ])
                .build(),
            propagation_seconds: meter
                .f64_histogram("projector.propagation.delay")
                .with_unit("s")
                .with_description(
                    "from an event's time (the writing node's clock) to its being applied in Redis",
                )
                .with_boundaries(SECONDS.to_vec())
                .build(),
        }
    }

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
            self.apply_seconds.record(took.as_secs_f64(), &[]);
            self.batch_size.record(len, &[]);
        }
    }

    /// How long after it was produced (the record's timestamp, the writing node's clock)
    /// each event of a batch just applied became visible in Redis, by class of event.
    pub(crate) fn record_propagation(&self, batch: &[OwnedMessage], events: &[Option<Event>]) {
        #[allow(clippy::disallowed_methods)] // a measurement against the producers' clocks
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        for (m, event) in batch.iter().zip(events) {
            if let (Some(event), Some(produced)) = (event, m.timestamp().to_millis()) {
                let delay = (now_ms - produced).max(0) as f64 / 1000.0;
                let class = KeyValue::new("event.class", class(event));
                self.propagation_seconds.record(delay, &[class]);
            }
        }
    }

    /// The lag of each partition this member owns now (the others are dropped).
    pub(crate) fn set_lags(&self, lags: HashMap<i32, u64>) {
        *lock(&self.lags) = lags;
    }

    /// Records not yet applied on `partition`, as of the last heal check.
    pub fn lag(&self, partition: i32) -> Option<u64> {
        lock(&self.lags).get(&partition).copied()
    }

    /// The counters as text, for the benches' diagnostics.
    pub fn summary(&self) -> String {
        format!("{:?}", self.counters)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Few label values: what a dashboard tells apart.
fn class(event: &Event) -> &'static str {
    match event {
        Event::TokenRevoked(_)
        | Event::TokenFamilyRevoked(_)
        | Event::SubjectRevoked(_)
        | Event::ClientRevoked(_)
        | Event::ClientDisabled(_)
        | Event::UserDisabled(_)
        | Event::SigningKeyRevoked(_) => "revocation",
        Event::TokenIssued(_) | Event::AuthorizationCodeIssued(_) => "issue",
        Event::ClientRegistered(_) | Event::UserCreated(_) => "registration",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_are_prometheus_text_made_by_the_library() {
        let telemetry = tokend_telemetry::providers("test", "0", &Default::default()).unwrap();
        let m = Metrics::default();
        let done = Applied::Done {
            next: 3,
            duplicates: 0,
        };
        m.record_batch(3, 5, Duration::from_millis(2), done);
        m.set_lags(HashMap::from([(2, 7)]));
        let text = telemetry.prometheus().render();
        for line in [
            "projector_records_applied_total 3",
            "projector_batches_total 1",
            "projector_redis_records_written_total 5",
            "projector_apply_duration_seconds_bucket{le=\"0.002\"} 1",
            "projector_batch_size_count 1",
            "projector_partition_lag{messaging_destination_partition_id=\"2\"} 7",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
