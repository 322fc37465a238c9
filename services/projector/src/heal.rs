//! The projector's periodic check: heals and completes the projection for this member's
//! partitions without waiting for a record.
//! - The projection went back on a partition (Redis lost data, a failover to a replica that
//!   missed writes, a restore): the partition is marked incomplete, so readers answer 503
//!   rather than from the older state, and its worker replays from where the projection is.
//! - A worker that does not know where to start is told the projection's offset (records
//!   before it are passed over; if the consumer starts past it, the next rule seeks back).
//! - A worker that passed records over (they came after the one it expects, e.g. a seek that
//!   did not take) is sought back to the offset it expects. So is one that has waited, at the
//!   same offset, through two checks while the log holds records past it (the consumer
//!   delivered past it, or the log's end is past it). That rule needs no further record: at
//!   the end of a backlog nothing more arrives to show the stall (the catch-up stall seen in
//!   the projection bench). Nor does it need the consumer's position, which a seek clears:
//!   a seek that did not take after Redis lost its data left a worker waiting for good (seen
//!   once in CI). It backs off (checks 2, 4, 8, 16, 32, then every 32nd), so a slow fetch is
//!   not cut short by seek after seek.
//! - A partition that has applied the log up to its end is marked complete (and the
//!   generation ready once all are).
//! - A shard of refresh tokens and codes whose master lost its data (its marker is gone) is
//!   marked again, with an error in the log: its records read as unknown instead of 503, and
//!   the projector's writes to it resume (`RedisStore::repair_shards`).
//!
//! What to do is decided by [`plan`], a pure function of what was observed; the check only
//! observes and carries it out. Expectations are changed with a compare-and-swap against the
//! value observed, so a worker that moved on meanwhile is never sent back to a stale offset.
//! The check runs as a task of its own: its Redis reads and its (blocking) watermark queries
//! never hold up the loop that hands records to the workers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokend_kafka::rdkafka::Offset;
use tokend_kafka::rdkafka::consumer::Consumer;

use crate::Metrics;
use crate::worker::{Progress, Shared, UNKNOWN, seek};

/// The workers of this member's partitions, as the consumer loop keeps them.
pub(crate) type Workers = Arc<Mutex<HashMap<i32, Arc<Progress>>>>;

/// Checks every `interval` until dropped (the loop aborts it at shutdown).
pub(crate) async fn heal(shared: Shared, workers: Workers, partitions: u32, interval: Duration) {
    let mut every = tokio::time::interval(interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut waits = Waits::default();
    for round in 0u64.. {
        every.tick().await;
        let snapshot = workers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        // Every eighth check: shards of refresh tokens and codes whose master lost its data.
        if round % 8 == 0
            && !snapshot.is_empty()
            && let Err(error) = shared.store.repair_shards().await
        {
            tracing::debug!(%error, "Could not check the shards.");
        }
        waits.retain(|p, _| snapshot.contains_key(p));
        check(&shared, &snapshot, partitions, &mut waits).await;
    }
}

/// Per partition: the offset its worker waited at, and through how many checks in a row.
type Waits = HashMap<i32, (u64, u32)>;

/// Through how many earlier checks in a row the worker has waited at `expected` (and
/// records this check).
fn waited(waits: &mut Waits, p: i32, expected: u64, idle: bool) -> u32 {
    let seen = waits.entry(p).or_insert((expected, 0));
    let before = if seen.0 == expected { seen.1 } else { 0 };
    *seen = (expected, if idle { before + 1 } else { 0 });
    if idle { before } else { 0 }
}

/// What one check saw of one partition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observed {
    /// The offset the worker expects next (`UNKNOWN` before it knows).
    pub expected: u64,
    /// The worker passed records over since the last check.
    pub stalled: bool,
    /// The worker waits for records and has none queued.
    pub idle: bool,
    /// Through how many earlier checks in a row the worker has waited at `expected`.
    pub waited: u32,
    /// The offset after the last record the consumer delivered for the partition (cleared
    /// by a seek).
    pub delivered: Option<u64>,
    /// The end of the partition's log, as the consumer's latest fetches saw it.
    pub log_end: Option<u64>,
    /// The store's next offset for the partition.
    pub store_next: u64,
}

/// What the check does for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    Nothing,
    /// The worker does not know where to start: expect `at`.
    Start {
        at: u64,
    },
    /// The projection went back: mark the partition incomplete, expect and seek `to`.
    Rollback {
        to: u64,
    },
    /// The worker misses records: seek to what it expects.
    Reseek {
        at: u64,
    },
}

pub(crate) fn plan(o: Observed) -> Plan {
    if o.expected == UNKNOWN {
        return Plan::Start { at: o.store_next };
    }
    if o.store_next < o.expected {
        return Plan::Rollback { to: o.store_next };
    }
    let records_past = [o.delivered, o.log_end]
        .into_iter()
        .flatten()
        .any(|end| end > o.expected);
    if o.stalled || (o.idle && records_past && seek_due(o.waited)) {
        return Plan::Reseek { at: o.expected };
    }
    Plan::Nothing
}

/// A waiting worker is sought back after 1, 3, 7, 15, 31 checks of waiting, then every 32.
fn seek_due(waited: u32) -> bool {
    waited >= 1 && ((waited + 1).is_power_of_two() || waited % 32 == 31)
}

async fn check(
    shared: &Shared,
    workers: &HashMap<i32, Arc<Progress>>,
    partitions: u32,
    waits: &mut Waits,
) {
    let delivered = delivered(shared);
    let mut lags = HashMap::with_capacity(workers.len());
    for (&p, worker) in workers {
        let partition = u32::try_from(p).unwrap_or_default();
        // Observed before the store: the store's offset read afterwards can only be lower
        // than what the worker expects if the projection lost what the worker had written.
        let (expected, idle) = (worker.expected(), worker.idle());
        let log_end = shared.consumer.context().log_end(p);
        if let Some(end) = log_end.filter(|_| expected != UNKNOWN) {
            lags.insert(p, end.saturating_sub(expected));
        }
        let waited = waited(waits, p, expected, idle);
        let Ok(Some(state)) = shared.store.partition_state(partition).await else {
            continue; // the store is away (the workers retry and log) or just switched
        };
        let stalled = worker.take_stalled(); // kept for the next check if the store was away
        let observed = Observed {
            expected,
            stalled,
            idle,
            waited,
            delivered: delivered.get(&p).copied(),
            log_end,
            store_next: state.next,
        };
        match plan(observed) {
            Plan::Nothing => {}
            Plan::Start { at } => {
                worker.expect_instead_of(expected, at);
            }
            Plan::Rollback { to } => {
                Metrics::inc(&shared.metrics.generation_resets);
                tracing::warn!(
                    partition = p,
                    from = expected,
                    to,
                    "The projection went back on this partition (lost data or a rollback); readers wait while it replays."
                );
                if let Err(error) = shared
                    .store
                    .mark_incomplete(&state.generation, partition)
                    .await
                {
                    tracing::warn!(%error, "Could not mark a partition incomplete.");
                }
                if worker.expect_instead_of(expected, to) && !seek(shared, p, to).await {
                    worker.still_stalled();
                }
                continue;
            }
            Plan::Reseek { at } => {
                tracing::debug!(partition = p, at, "Worker misses records; seeking back.");
                if !seek(shared, p, at).await {
                    worker.still_stalled(); // try again at the next check
                }
            }
        }
        if !state.complete {
            complete(shared, p, &state, partitions).await;
        }
    }
    shared.metrics.set_lags(lags);
}

/// Marks the partition complete once the projection has applied the log up to its end.
async fn complete(shared: &Shared, p: i32, state: &tokend_redis::PartitionState, partitions: u32) {
    let partition = u32::try_from(p).unwrap_or_default();
    match high_watermark(shared, p).await {
        Some(high) if state.next > high => tracing::error!(
            partition = p,
            projection = state.next,
            log_end = high,
            "The projection is past the end of the log: the topic was truncated or recreated. Rebuild the projection."
        ),
        Some(high) if state.next >= high => match shared
            .store
            .mark_complete(&state.generation, partition, high, partitions)
            .await
        {
            Ok(true) => tracing::debug!(partition = p, "Partition complete; projection ready."),
            Ok(false) => {
                tracing::info!(partition = p, "Partition complete; waiting for the others.")
            }
            Err(error) => tracing::warn!(%error, "Could not mark a partition complete."),
        },
        _ => {}
    }
}

/// Where the consumer has delivered up to, per partition (librdkafka's local position, no
/// request to Kafka).
fn delivered(shared: &Shared) -> HashMap<i32, u64> {
    let Ok(positions) = shared.consumer.position() else {
        return HashMap::new();
    };
    positions
        .elements_for_topic(&shared.topic)
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), u64::try_from(o).ok()?)),
            _ => None,
        })
        .collect()
}

async fn high_watermark(shared: &Shared, partition: i32) -> Option<u64> {
    let (consumer, topic) = (shared.consumer.clone(), shared.topic.clone());
    tokio::task::spawn_blocking(move || {
        consumer.fetch_watermarks(&topic, partition, Duration::from_millis(500))
    })
    .await
    .ok()?
    .ok()
    .and_then(|(_, high)| u64::try_from(high).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(expected: u64, store_next: u64) -> Observed {
        Observed {
            expected,
            stalled: false,
            idle: true,
            waited: 1,
            delivered: Some(expected),
            log_end: Some(expected),
            store_next,
        }
    }

    #[test]
    fn an_unknown_start_expects_the_projections_offset() {
        assert_eq!(plan(at(UNKNOWN, 40)), Plan::Start { at: 40 });
    }

    #[test]
    fn a_projection_that_went_back_is_replayed_from_where_it_is() {
        assert_eq!(plan(at(100, 0)), Plan::Rollback { to: 0 });
    }

    #[test]
    fn a_worker_in_step_is_left_alone() {
        assert_eq!(plan(at(100, 100)), Plan::Nothing);
        // Busy with records queued past what it applied: it is working through them.
        let busy = Observed {
            idle: false,
            delivered: Some(180),
            ..at(100, 100)
        };
        assert_eq!(plan(busy), Plan::Nothing);
        // The consumer has not reached the projection yet: records are passed over.
        let behind = Observed {
            delivered: Some(20),
            ..at(100, 100)
        };
        assert_eq!(plan(behind), Plan::Nothing);
        // Records past it were only just seen: they may still be on their way.
        let fresh = Observed {
            waited: 0,
            log_end: Some(180),
            ..at(100, 100)
        };
        assert_eq!(plan(fresh), Plan::Nothing);
    }

    #[test]
    fn passed_over_records_seek_back() {
        let stalled = Observed {
            stalled: true,
            ..at(100, 100)
        };
        assert_eq!(plan(stalled), Plan::Reseek { at: 100 });
    }

    #[test]
    fn an_idle_worker_behind_what_was_delivered_seeks_back_without_a_further_record() {
        // The catch-up stall: the records after 100 were passed over and the backlog ended,
        // so nothing more arrives to mark the worker stalled.
        let stuck = Observed {
            delivered: Some(26_471 + 500),
            ..at(26_471, 26_471)
        };
        assert_eq!(plan(stuck), Plan::Reseek { at: 26_471 });
    }

    #[test]
    fn a_worker_waiting_short_of_the_log_end_seeks_back_though_a_seek_cleared_the_position() {
        // Redis lost its data: the worker was sought back to 0, the seek did not take, and
        // the consumer's position (which a seek clears) says nothing.
        let stuck = Observed {
            delivered: None,
            log_end: Some(4),
            ..at(0, 0)
        };
        assert_eq!(plan(stuck), Plan::Reseek { at: 0 });
    }

    #[test]
    fn seeking_a_waiting_worker_backs_off() {
        let due: Vec<u32> = (0..100).filter(|&w| seek_due(w)).collect();
        assert_eq!(due, [1, 3, 7, 15, 31, 63, 95]);
    }

    #[test]
    fn waiting_is_counted_at_one_offset_and_only_while_idle() {
        let mut waits = Waits::default();
        assert_eq!(waited(&mut waits, 0, 4, true), 0);
        assert_eq!(waited(&mut waits, 0, 4, true), 1);
        assert_eq!(waited(&mut waits, 0, 4, true), 2);
        assert_eq!(waited(&mut waits, 0, 9, true), 0, "it moved on");
        assert_eq!(waited(&mut waits, 0, 9, false), 0, "busy");
        assert_eq!(waited(&mut waits, 0, 9, true), 0);
        assert_eq!(waited(&mut waits, 0, 9, true), 1);
    }
}
