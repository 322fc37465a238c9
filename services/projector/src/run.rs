//! One member of the projector's consumer group: routes records to per-partition workers,
//! follows rebalances, heals the projection by itself, and stops within a bounded time.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokend_kafka::rdkafka::consumer::{CommitMode, Consumer};
use tokend_kafka::rdkafka::message::Message;
use tokend_kafka::{GroupConsumer, KafkaEventLog, Rebalanced, close_within, group_consumer};
use tokend_redis::RedisStore;

use crate::heal::{Workers, heal};
use crate::worker::{Shared, Worker};
use crate::{Config, Metrics};

fn lock(
    workers: &Workers,
) -> std::sync::MutexGuard<'_, HashMap<i32, Arc<crate::worker::Progress>>> {
    workers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How long shutdown waits for the batches in hand, and then for Kafka to take the final
/// commit, before it leaves them behind.
const SHUTDOWN_STEP: Duration = Duration::from_secs(5);

/// Consumes until `shutdown` resolves, then commits what was applied (bounded, even with
/// Kafka gone).
pub async fn run(
    config: &Config,
    store: Arc<RedisStore>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let dead_letters = Arc::new(KafkaEventLog::connect(&config.kafka).await?);
    let (consumer, mut rebalances) = group_consumer(&config.kafka, &config.group_id)?;
    let consumer = Arc::new(consumer);
    let partitions = partition_count(&consumer, &config.kafka.topic).await?;
    let shared = Shared {
        store,
        consumer: consumer.clone(),
        dead_letters,
        metrics,
        topic: config.kafka.topic.clone(),
        group: config.group_id.clone(),
        dead_letter_topic: config.kafka.dead_letter_topic.clone(),
        max_batch: config.max_batch.max(1),
    };
    tracing::info!(topic = %config.kafka.topic, group = %config.group_id, partitions, "Projector consuming.");
    let mut workers: HashMap<i32, Worker> = HashMap::new();
    // The heal check runs beside this loop, on what the workers share with it.
    let progress: Workers = Arc::default();
    // In a set, so it ends with this function however it ends (even aborted): a check left
    // running would keep the consumer, and its partitions, from the group.
    let mut healer = tokio::task::JoinSet::new();
    healer.spawn(heal(
        shared.clone(),
        progress.clone(),
        partitions,
        Duration::from_millis(config.heal_interval_ms.max(10)),
    ));
    let start = |workers: &mut HashMap<i32, Worker>, p: i32| {
        workers.entry(p).or_insert_with(|| {
            let w = Worker::start(p, shared.clone());
            lock(&progress).insert(p, w.progress.clone());
            w
        });
    };
    tokio::pin!(shutdown);
    'consume: loop {
        // Not biased: records, rebalances and shutdown each get their turn.
        tokio::select! {
            () = &mut shutdown => break,
            Some(change) = rebalances.recv() => match change {
                Rebalanced::Assigned(ps) => {
                    tracing::info!(partitions = ?ps, "Partitions assigned.");
                    for p in ps {
                        start(&mut workers, p);
                    }
                }
                Rebalanced::Revoked(ps) => {
                    tracing::info!(partitions = ?ps, "Partitions revoked.");
                    for p in ps {
                        lock(&progress).remove(&p);
                        if let Some(w) = workers.remove(&p) {
                            w.stop();
                        }
                    }
                }
            },
            message = consumer.recv() => {
                let message = match message {
                    Ok(m) => m.detach(),
                    Err(error) => {
                        tracing::warn!(%error, "Kafka consumer error; retrying.");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                let p = message.partition();
                start(&mut workers, p);
                let Some(worker) = workers.get(&p) else { continue };
                tokio::select! {
                    _ = worker.tx.send(message) => {}
                    () = &mut shutdown => break 'consume,
                }
            }
        }
    }
    healer.abort_all();
    stop(workers, consumer, shared).await;
    Ok(())
}

async fn partition_count(consumer: &Arc<GroupConsumer>, topic: &str) -> anyhow::Result<u32> {
    let (consumer, name) = (consumer.clone(), topic.to_owned());
    let metadata = tokio::task::spawn_blocking(move || {
        consumer.fetch_metadata(Some(&name), Duration::from_secs(10))
    })
    .await??;
    let count = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    anyhow::ensure!(count > 0, "topic {topic} has no partitions");
    Ok(u32::try_from(count)?)
}

/// Bounded shutdown: the batches in hand get `SHUTDOWN_STEP`, the final commit and group
/// leave another; past that, a clear log line and the consumer is left to close in the
/// background (librdkafka's close does not return while Kafka is gone).
async fn stop(workers: HashMap<i32, Worker>, consumer: Arc<GroupConsumer>, shared: Shared) {
    futures::future::join_all(workers.into_values().map(|w| w.finish(SHUTDOWN_STEP))).await;
    drop(shared);
    let closed = close_within(
        consumer,
        |c| {
            let _ = c.commit_consumer_state(CommitMode::Sync);
        },
        SHUTDOWN_STEP,
    )
    .await;
    if closed {
        tracing::info!("Projector stopped.");
    } else {
        tracing::warn!(
            limit = ?SHUTDOWN_STEP,
            "Projector stopped; Kafka did not take the final commit in time (offsets up to the last commit are kept, later records will be delivered again and passed over)."
        );
    }
}
