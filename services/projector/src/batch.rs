//! What the live projector and `rebuild` share: decoding records and applying a batch with
//! retries while the store is away.

use std::future::Future;
use std::time::Duration;

use tokend_domain::{Applied, LogPosition, StoreError};
use tokend_events::{Decoded, Envelope, Event};
use tokend_redis::RedisStore;
use tracing::Instrument;

use crate::Metrics;

/// `Ok(None)` for an event type or version this build does not know.
pub(crate) fn decode(
    payload: &[u8],
    position: LogPosition,
    metrics: &Metrics,
) -> Result<Option<Event>, String> {
    match Envelope::from_bytes(payload).and_then(|e| e.decode()) {
        Ok(Decoded::Known(event)) => Ok(Some(event)),
        Ok(Decoded::Unknown { kind, version }) => {
            Metrics::inc(&metrics.unknown_events);
            tracing::warn!(
                partition = position.partition,
                offset = position.offset,
                kind,
                version,
                "Skipped an unknown event type."
            );
            Ok(None)
        }
        Err(error) => Err(error.to_string()),
    }
}

/// Applies a batch, retrying (with backoff) while the store is unavailable, until it answers
/// or `stop` resolves (`None` then).
pub(crate) async fn apply_with_retry(
    store: &RedisStore,
    partition: u32,
    first: u64,
    events: &[Option<&Event>],
    metrics: &Metrics,
    stop: impl Future<Output = ()>,
) -> Option<Applied> {
    tokio::pin!(stop);
    let mut backoff = Duration::from_millis(50);
    loop {
        #[allow(clippy::disallowed_methods)] // a measurement, not domain time
        let started = std::time::Instant::now();
        let write = store
            .apply_records(partition, first, events)
            .instrument(crate::trace::redis_span(partition, events.len()));
        match write.await {
            Ok((applied, written)) => {
                metrics.record_batch(events.len(), written, started.elapsed(), applied);
                return Some(applied);
            }
            Err(error) => {
                Metrics::inc(&metrics.store_retries);
                log_store_error(&error, partition, backoff);
            }
        }
        tokio::select! {
            () = &mut stop => return None,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

fn log_store_error(error: &StoreError, partition: u32, backoff: Duration) {
    tracing::warn!(%error, partition, ?backoff, "State store did not take a batch; retrying.");
}
