//! The consumer side: a consumer-group member for the projector (offsets stored only after the
//! projection has applied a record; assignment changes reported on a channel), a group-less
//! replay consumer for `rebuild`, and a close that never blocks the caller: every consumer
//! handed out is [`Detached`], whose drop closes it on a thread of its own.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::Statistics;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokend_domain::LogError;
use tokio::sync::mpsc;

use crate::KafkaSettings;

/// A change of this member's partitions, as the group decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebalanced {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// How often librdkafka reports its statistics (the log ends come from them).
const STATISTICS_MS: &str = "1000";

/// Reports assignment changes to the projector's loop (which seeks new partitions to the
/// projection's offsets and stops the workers of revoked ones), and keeps the end of the log
/// of each partition of `topic` as the latest fetches saw it.
pub struct GroupContext {
    events: mpsc::UnboundedSender<Rebalanced>,
    topic: String,
    log_ends: Mutex<HashMap<i32, u64>>,
}

impl GroupContext {
    /// The offset after the last record of `partition` that a reader may consume (the last
    /// stable offset), as of the latest statistics (at most a second or so old; no request
    /// to Kafka). `None` before the first fetch of the partition.
    pub fn log_end(&self, partition: i32) -> Option<u64> {
        self.log_ends
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&partition)
            .copied()
    }
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        let ends = topic.partitions.values().filter_map(|p| {
            let end = if p.ls_offset >= 0 {
                p.ls_offset
            } else {
                p.hi_offset
            };
            Some((p.partition, u64::try_from(end).ok()?))
        });
        let mut known = self
            .log_ends
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        known.extend(ends.filter(|(p, _)| *p >= 0));
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // Offsets stored so far (all applied to the projection) go to the group now, so
            // the next owner starts close to where this one stopped.
            if let Err(error) = consumer.commit_consumer_state(CommitMode::Async) {
                tracing::debug!(%error, "No offsets to commit on revoke.");
            }
            let _ = self.events.send(Rebalanced::Revoked(partitions(tpl)));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let _ = self.events.send(Rebalanced::Assigned(partitions(tpl)));
        }
    }
}

/// A consumer whose drop never blocks the thread that drops it.
///
/// rdkafka's consumer drop closes the consumer (final commit, leave the group) and polls until
/// librdkafka says it is closed, which takes seconds with Kafka gone and, in a group that
/// cannot be left, never happens. Dropped on a tokio worker while a runtime shuts down (a
/// process exiting, a task aborted), that would hold the whole runtime up. So the drop hands
/// the consumer to a detached `kafka-close` thread; [`close_within`] is the close a caller
/// waits for, with a bound.
pub struct Detached<C: Send + 'static>(Option<C>);

impl<C: Send + 'static> Detached<C> {
    pub fn new(consumer: C) -> Self {
        Self(Some(consumer))
    }

    /// Closes the consumer on the calling thread (blocking: for a thread of its own).
    fn close_here(mut self) {
        drop(self.0.take());
    }
}

impl<C: Send + 'static> Deref for Detached<C> {
    type Target = C;

    #[allow(
        clippy::expect_used,
        reason = "the consumer is taken only by drop and close_here, which consume self"
    )]
    fn deref(&self) -> &C {
        self.0
            .as_ref()
            .expect("a detached consumer is present until dropped")
    }
}

impl<C: Send + 'static> Drop for Detached<C> {
    fn drop(&mut self) {
        let Some(consumer) = self.0.take() else {
            return;
        };
        // The consumer waits in a slot so that, should the thread not start (the process is
        // out of threads), it can be leaked rather than closed here.
        let slot = Arc::new(Mutex::new(Some(consumer)));
        let theirs = Arc::clone(&slot);
        let spawned = std::thread::Builder::new()
            .name("kafka-close".into())
            .spawn(move || drop(take(&theirs)));
        if spawned.is_err() {
            std::mem::forget(take(&slot));
        }
    }
}

fn take<C>(slot: &Mutex<Option<C>>) -> Option<C> {
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
}

/// The projector's consumer-group member.
pub type GroupConsumer = Detached<StreamConsumer<GroupContext>>;

/// A group-less consumer (replay, the key log).
pub type Reader = Detached<StreamConsumer>;

/// Runs `commit` and closes the consumer (leave the group) on a thread of its own, and waits at
/// most `limit`: with Kafka gone, librdkafka's close does not return, and it must not hold up
/// the caller's shutdown. Returns whether it closed in time; `false` too when another owner
/// still holds the consumer (it then closes when that one drops it).
pub async fn close_within<C: Send + Sync + 'static>(
    consumer: Arc<Detached<C>>,
    commit: impl FnOnce(&C) + Send + 'static,
    limit: Duration,
) -> bool {
    let (done, closed) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("kafka-close".into())
        .spawn(move || {
            commit(&consumer);
            let last = Arc::into_inner(consumer).map(Detached::close_here);
            let _ = done.send(last.is_some());
        });
    if spawned.is_err() {
        return false;
    }
    matches!(tokio::time::timeout(limit, closed).await, Ok(Ok(true)))
}

fn base(settings: &KafkaSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &settings.bootstrap_servers)
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000");
    c
}

fn unavailable(e: rdkafka::error::KafkaError) -> LogError {
    LogError::Unavailable(format!("kafka consumer: {e}"))
}

/// A member of `group_id` subscribed to the event topic. Offsets are committed automatically
/// but only once stored, and the projector stores an offset only after Redis has it
/// (`enable.auto.offset.store=false`), so a crash redelivers rather than loses.
pub fn group_consumer(
    settings: &KafkaSettings,
    group_id: &str,
) -> Result<(GroupConsumer, mpsc::UnboundedReceiver<Rebalanced>), LogError> {
    let (events, rebalances) = mpsc::unbounded_channel();
    let consumer: StreamConsumer<GroupContext> = base(settings)
        .set("group.id", group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", "50")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("statistics.interval.ms", STATISTICS_MS)
        .create_with_context(GroupContext {
            events,
            topic: settings.topic.clone(),
            log_ends: Mutex::default(),
        })
        .map_err(unavailable)?;
    consumer
        .subscribe(&[&settings.topic])
        .map_err(unavailable)?;
    Ok((Detached::new(consumer), rebalances))
}

/// A consumer that reads every partition of the event topic from the beginning, outside any
/// group and without committing (for `rebuild`).
pub fn replay_consumer(settings: &KafkaSettings, partitions: &[i32]) -> Result<Reader, LogError> {
    let consumer: StreamConsumer = base(settings)
        .set("group.id", "tokend-rebuild")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(unavailable)?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(&settings.topic, *p, Offset::Beginning)
            .map_err(unavailable)?;
    }
    consumer.assign(&tpl).map_err(unavailable)?;
    Ok(Detached::new(consumer))
}

/// A group-less reader of one partition of `topic` from its beginning (the key log), and the
/// offset after the partition's last record when it started.
pub async fn topic_reader(
    settings: &KafkaSettings,
    topic: &str,
    partition: i32,
) -> Result<(Reader, i64), LogError> {
    let consumer: StreamConsumer = base(settings)
        .set("group.id", "tokend-reader")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(unavailable)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)
        .map_err(unavailable)?;
    consumer.assign(&tpl).map_err(unavailable)?;
    let (consumer, name) = (Arc::new(Detached::new(consumer)), topic.to_owned());
    let probe = consumer.clone();
    let high = tokio::task::spawn_blocking(move || {
        probe.fetch_watermarks(&name, partition, Duration::from_secs(10))
    })
    .await
    .map_err(|e| LogError::Unavailable(e.to_string()))?
    .map_err(unavailable)?
    .1;
    let consumer = Arc::into_inner(consumer)
        .ok_or_else(|| LogError::Unavailable("reader still shared".into()))?;
    Ok((consumer, high))
}

/// The partitions of the event topic and, for each, the offset after its last record.
pub async fn end_offsets(settings: &KafkaSettings) -> Result<Vec<(i32, i64)>, LogError> {
    let settings = settings.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: Reader = base(&settings)
            .set("group.id", "tokend-watermarks")
            .create()
            .map(Detached::new)
            .map_err(unavailable)?;
        let timeout = Duration::from_secs(10);
        let metadata = consumer
            .fetch_metadata(Some(&settings.topic), timeout)
            .map_err(unavailable)?;
        let mut out = Vec::new();
        for topic in metadata.topics() {
            for p in topic.partitions() {
                let (_, high) = consumer
                    .fetch_watermarks(&settings.topic, p.id(), timeout)
                    .map_err(unavailable)?;
                out.push((p.id(), high));
            }
        }
        out.sort_unstable();
        Ok(out)
    })
    .await
    .map_err(|e| LogError::Unavailable(e.to_string()))?
}
