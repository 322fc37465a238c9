//! `rebuild`: replay the whole log into a fresh generation of the projection, then switch
//! readers to it with one atomic pointer write. Live projectors follow by themselves: the new
//! generation's offsets make them seek to where it is.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use tokend_domain::{Applied, LogPosition};
use tokend_kafka::rdkafka::message::Message;
use tokend_kafka::{end_offsets, replay_consumer};
use tokend_redis::RedisStore;

use crate::run::{apply_with_retry, decode};
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

/// The generation after `current` (`g0` → `g1`).
fn next_generation(current: &str) -> String {
    let n: u64 = current.trim_start_matches('g').parse().unwrap_or(0);
    format!("g{}", n + 1)
}

pub async fn rebuild(
    config: &Config,
    store: &RedisStore,
    progress: bool,
) -> anyhow::Result<RebuildReport> {
    #[allow(clippy::disallowed_methods)] // a measurement, not domain time
    let started = std::time::Instant::now();
    let ends: HashMap<i32, i64> = end_offsets(&config.kafka).await?.into_iter().collect();
    let total: u64 = ends.values().map(|h| u64::try_from(*h).unwrap_or(0)).sum();
    let old = store.active_generation().await?;
    let generation = next_generation(&old);
    store.delete_generation(&generation).await?;
    let target = store.generation(&generation);

    let bar = if progress {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut remaining: HashMap<i32, i64> = ends.into_iter().filter(|(_, high)| *high > 0).collect();
    let partitions: Vec<i32> = remaining.keys().copied().collect();
    let metrics = Metrics::default();
    let mut events = 0u64;
    if !partitions.is_empty() {
        let consumer = replay_consumer(&config.kafka, &partitions)?;
        while !remaining.is_empty() {
            let message = consumer.recv().await.context("reading the log")?;
            let Some(high) = remaining.get(&message.partition()).copied() else {
                continue;
            };
            let position = LogPosition {
                partition: u32::try_from(message.partition()).unwrap_or_default(),
                offset: u64::try_from(message.offset()).unwrap_or_default(),
            };
            let event = decode(message.payload().unwrap_or_default(), position, &metrics)
                .unwrap_or_else(|reason| {
                    tracing::warn!(
                        offset = position.offset,
                        reason,
                        "Undecodable record passed over."
                    );
                    None
                });
            if let Applied::Gap { next } =
                apply_with_retry(&target, position, event.as_ref(), &metrics).await
            {
                bail!(
                    "partition {} starts at offset {} but the projection needs {next}: \
                     the log is no longer complete, so it cannot be replayed",
                    position.partition,
                    position.offset
                );
            }
            events += 1;
            bar.inc(1);
            if message.offset() + 1 >= high {
                remaining.remove(&message.partition());
            }
        }
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    store.activate(&generation).await?;
    // Readers re-read the generation pointer at least once a second; then the old one can go.
    tokio::time::sleep(Duration::from_secs(2)).await;
    if old != generation {
        store.delete_generation(&old).await?;
    }
    Ok(RebuildReport {
        generation,
        events,
        seconds,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn generations_count_up() {
        assert_eq!(super::next_generation("g0"), "g1");
        assert_eq!(super::next_generation("g41"), "g42");
        assert_eq!(super::next_generation("weird"), "g1");
    }
}
