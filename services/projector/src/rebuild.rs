//! `rebuild`: replay the whole log into a fresh generation of the projection, catch up with
//! the live end (live projectors keep applying meanwhile), and switch readers only when the
//! new generation has applied at least as far as the live one on every partition, in one
//! atomic step, so nothing applied meanwhile is rolled back. When the live projectors stay
//! ahead, their writes are paused (a fence of at most `FENCE_MS`, lifted by the switch) for
//! the last catch-up. Live projectors follow by themselves: their next write finds the new
//! generation.

use std::collections::HashMap;

use anyhow::bail;
use futures::FutureExt;
use indicatif::{ProgressBar, ProgressStyle};
use tokend_domain::{Applied, LogPosition};
use tokend_events::Event;
use tokend_kafka::rdkafka::message::{Message, OwnedMessage};
use tokend_kafka::{end_offsets, replay_consumer};
use tokend_redis::{Activation, FENCE_MS, RedisStore, new_generation_name};

use crate::batch::{apply_with_retry, decode};
use crate::{Config, Metrics};

#[derive(Debug, Clone)]
pub struct RebuildReport {
    pub generation: String,
    pub events: u64,
    pub seconds: f64,
}

impl RebuildReport {
    pub fn events_per_sec(&self) -> f64 {
        if self.seconds > 0.0 {
            self.events as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Records read before the buffered ones are applied.
const READ_AHEAD: usize = 20_000;

pub async fn rebuild(
    config: &Config,
    store: &RedisStore,
    progress: bool,
) -> anyhow::Result<RebuildReport> {
    #[allow(clippy::disallowed_methods)] // a measurement, not domain time
    let started = std::time::Instant::now();
    let generation = new_generation_name();
    let target = store.generation(&generation);
    let mut ends: HashMap<i32, u64> = current_ends(config).await?;
    let partitions: Vec<i32> = ends.keys().copied().collect();
    let bar = progress_bar(progress, ends.values().sum());
    let consumer = replay_consumer(&config.kafka, &partitions)?;
    // Reading runs ahead of applying by up to two buffers, so Kafka and Redis work at once.
    let (buffers, mut to_apply) = tokio::sync::mpsc::channel::<Vec<OwnedMessage>>(2);
    let reader = tokio::spawn(async move {
        loop {
            let first = match consumer.recv().await {
                Ok(m) => m.detach(),
                Err(e) => return Err(anyhow::Error::from(e).context("reading the log")),
            };
            let mut buffered = vec![first];
            while buffered.len() < READ_AHEAD {
                match consumer.recv().now_or_never() {
                    Some(Ok(m)) => buffered.push(m.detach()),
                    Some(Err(e)) => return Err(anyhow::Error::from(e).context("reading the log")),
                    None => break,
                }
            }
            if buffers.send(buffered).await.is_err() {
                return Ok(());
            }
        }
    });
    let metrics = Metrics::default();
    let mut applied: HashMap<i32, u64> = partitions.iter().map(|p| (*p, 0)).collect();
    let mut events = 0u64;
    let mut fenced_at = None;
    let outcome = async {
        loop {
            while applied.iter().any(|(p, next)| *next < ends[p]) {
                let Some(buffered) = to_apply.recv().await else {
                    bail!("the log reader stopped");
                };
                let count = buffered.len() as u64;
                for (p, next) in apply(&target, buffered, &metrics).await? {
                    applied.insert(p, next);
                }
                events += count;
                bar.inc(count);
            }
            let held: Vec<(u32, u64)> = applied
                .iter()
                .map(|(p, next)| (u32::try_from(*p).unwrap_or_default(), *next))
                .collect();
            match target.activate(&generation, &held).await? {
                Activation::Switched { previous } => return Ok(previous),
                Activation::Lost { partition } => bail!(
                    "Redis lost the new generation's data during the rebuild (partition \
                     {partition}); nothing was switched: run the rebuild again"
                ),
                Activation::Behind { partition, needed } => {
                    tracing::debug!(partition, needed, "Live projection moved on; catching up.");
                    // Under steady traffic the live projectors are always a little ahead:
                    // pause their writes (briefly, bounded by FENCE_MS) so the last catch-up
                    // meets offsets that no longer move; the switch lifts the pause.
                    let stale = fenced_at.is_none_or(|at: std::time::Instant| {
                        at.elapsed() > std::time::Duration::from_millis(FENCE_MS / 2)
                    });
                    if stale && let Some(live) = store.active_generation().await? {
                        store.fence(&live).await?;
                        #[allow(clippy::disallowed_methods)] // a timeout, not domain time
                        let now = std::time::Instant::now();
                        fenced_at = Some(now);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    ends = current_ends(config).await?;
                    bar.set_length(ends.values().sum());
                }
            }
        }
    }
    .await;
    // The reader may be waiting for records that will not come: stop it.
    reader.abort();
    let _ = reader.await;
    if let Some(old) = outcome? {
        store.delete_generation(&old).await?;
    }
    bar.finish_and_clear();
    Ok(RebuildReport {
        generation,
        events,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Applies buffered records partition by partition (each partition's in one batch, all
/// partitions at once); returns each partition's next offset.
async fn apply(
    target: &RedisStore,
    buffered: Vec<OwnedMessage>,
    metrics: &Metrics,
) -> anyhow::Result<Vec<(i32, u64)>> {
    let mut by_partition: HashMap<i32, Vec<OwnedMessage>> = HashMap::new();
    for m in buffered {
        by_partition.entry(m.partition()).or_default().push(m);
    }
    let batches = by_partition.into_iter().map(|(p, messages)| async move {
        let partition = u32::try_from(p).unwrap_or_default();
        let first = u64::try_from(messages[0].offset()).unwrap_or_default();
        let events: Vec<Option<Event>> = messages
            .iter()
            .map(|m| {
                let position = LogPosition {
                    partition,
                    offset: u64::try_from(m.offset()).unwrap_or_default(),
                };
                decode(m.payload().unwrap_or_default(), position, metrics).unwrap_or_else(
                    |reason| {
                        tracing::warn!(
                            offset = position.offset,
                            reason,
                            "Undecodable record passed over."
                        );
                        None
                    },
                )
            })
            .collect();
        let refs: Vec<Option<&Event>> = events.iter().map(Option::as_ref).collect();
        let applied = apply_with_retry(
            target,
            partition,
            first,
            &refs,
            metrics,
            std::future::pending(),
        )
        .await;
        match applied {
            Some(Applied::Done { next, .. }) => Ok((p, next)),
            _ => bail!(
                "partition {p} starts at offset {first} but the projection needs an earlier \
                 one: the log is no longer complete, so it cannot be replayed"
            ),
        }
    });
    futures::future::join_all(batches)
        .await
        .into_iter()
        .collect()
}

async fn current_ends(config: &Config) -> anyhow::Result<HashMap<i32, u64>> {
    Ok(end_offsets(&config.kafka)
        .await?
        .into_iter()
        .map(|(p, high)| (p, u64::try_from(high).unwrap_or(0)))
        .collect())
}

fn progress_bar(show: bool, total: u64) -> ProgressBar {
    let bar = if show {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
