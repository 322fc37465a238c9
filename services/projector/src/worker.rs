//! One partition's worker: gathers consecutive records into batches (as many as have arrived,
//! up to `max_batch`, so a quiet log applies each record at once and a busy one in large
//! batches), applies each batch in one step, and only then stores the consumer offset.
//! Records before the offset it expects are passed over; records after it wait for the seek
//! that brings the expected one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokend_domain::{Applied, LogPosition};
use tokend_events::Event;
use tokend_kafka::rdkafka::Offset;
use tokend_kafka::rdkafka::consumer::Consumer;
use tokend_kafka::rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use tokend_kafka::{GroupConsumer, KafkaEventLog};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::Metrics;
use crate::batch::{apply_with_retry, decode};

/// `expected` before the worker knows where the projection is.
pub(crate) const UNKNOWN: u64 = u64::MAX;

/// What every worker of a projector shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub store: Arc<tokend_redis::RedisStore>,
    pub consumer: Arc<GroupConsumer>,
    pub dead_letters: Arc<KafkaEventLog>,
    pub metrics: Arc<Metrics>,
    pub topic: String,
    /// The consumer group (for spans).
    pub group: String,
    pub dead_letter_topic: String,
    pub max_batch: usize,
}

pub(crate) struct Worker {
    pub tx: mpsc::Sender<OwnedMessage>,
    pub progress: Arc<Progress>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// What a worker shares with the heal check (which runs as a task of its own).
pub(crate) struct Progress {
    /// The offset it applies next (`UNKNOWN` before it knows).
    expected: AtomicU64,
    /// Records passed over because they came after the expected one, since the last check.
    stalled: AtomicU64,
    /// Handling a record (false while it waits for one).
    busy: AtomicBool,
    /// Its queue, to see whether records wait in it.
    queue: mpsc::WeakSender<OwnedMessage>,
}

impl Progress {
    pub fn expected(&self) -> u64 {
        self.expected.load(Ordering::Acquire)
    }

    /// From now on the worker expects `next`, unless it no longer expects `observed`: then it
    /// moved on, and `next` is stale.
    pub fn expect_instead_of(&self, observed: u64, next: u64) -> bool {
        self.expected
            .compare_exchange(observed, next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Waits for records and has none queued.
    pub fn idle(&self) -> bool {
        !self.busy.load(Ordering::Acquire)
            && self
                .queue
                .upgrade()
                .is_none_or(|tx| tx.capacity() == tx.max_capacity())
    }

    /// Whether records past the expected one arrived since the last call (the seek that
    /// should bring the expected one may not have taken).
    pub fn take_stalled(&self) -> bool {
        self.stalled.swap(0, Ordering::AcqRel) > 0
    }

    /// Keeps the worker marked stalled (the seek meant to unstall it failed).
    pub fn still_stalled(&self) {
        self.stalled.fetch_add(1, Ordering::AcqRel);
    }
}

impl Worker {
    pub fn start(partition: i32, shared: Shared) -> Self {
        let (tx, rx) = mpsc::channel(shared.max_batch * 2);
        let progress = Arc::new(Progress {
            expected: AtomicU64::new(UNKNOWN),
            stalled: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            queue: tx.downgrade(),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(work(partition, shared, rx, progress.clone(), stopped));
        Self {
            tx,
            progress,
            stop,
            task,
        }
    }

    /// Stops after the batch in hand (a revoked partition): nothing waits for it.
    pub fn stop(self) {
        let _ = self.stop.send(true);
    }

    /// Stops and waits at most `limit` for the batch in hand.
    pub async fn finish(self, limit: Duration) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Points the consumer at `next` for `partition` (blocking librdkafka call, off the runtime).
pub(crate) async fn seek(shared: &Shared, partition: i32, next: u64) -> bool {
    let (consumer, topic) = (shared.consumer.clone(), shared.topic.clone());
    let offset = Offset::Offset(i64::try_from(next).unwrap_or(i64::MAX));
    Metrics::inc(&shared.metrics.seeks);
    let sought = tokio::task::spawn_blocking(move || {
        consumer.seek(&topic, partition, offset, Duration::from_secs(1))
    })
    .await;
    match sought {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::warn!(partition, %error, "Seek not possible yet; will retry.");
            false
        }
        Err(_) => false,
    }
}

async fn work(
    partition: i32,
    shared: Shared,
    mut rx: mpsc::Receiver<OwnedMessage>,
    progress: Arc<Progress>,
    mut stopped: watch::Receiver<bool>,
) {
    let Progress {
        expected,
        stalled,
        busy,
        ..
    } = &*progress;
    let p = u32::try_from(partition).unwrap_or_default();
    let mut held: Option<OwnedMessage> = None;
    loop {
        let message = match held.take() {
            Some(m) => m,
            None => {
                busy.store(false, Ordering::Release);
                let m = tokio::select! {
                    m = rx.recv() => match m { Some(m) => m, None => return },
                    _ = stopped.wait_for(|s| *s) => return,
                };
                busy.store(true, Ordering::Release);
                m
            }
        };
        let offset = u64::try_from(message.offset()).unwrap_or_default();
        let want = expected.load(Ordering::Acquire);
        if want != UNKNOWN && offset != want {
            // Before: applied already (a duplicate, passed over). After: the seek to `want`
            // is on its way.
            if offset > want {
                stalled.fetch_add(1, Ordering::AcqRel);
            } else {
                Metrics::inc(&shared.metrics.duplicates);
            }
            continue;
        }
        let mut batch = vec![message];
        while batch.len() < shared.max_batch {
            match rx.try_recv() {
                Ok(m) if m.offset() == batch[batch.len() - 1].offset() + 1 => batch.push(m),
                Ok(m) => {
                    held = Some(m);
                    break;
                }
                Err(_) => break,
            }
        }
        let mut events: Vec<Option<Event>> = Vec::with_capacity(batch.len());
        for m in &batch {
            let position = LogPosition {
                partition: p,
                offset: u64::try_from(m.offset()).unwrap_or_default(),
            };
            let payload = m.payload().unwrap_or_default();
            events.push(match decode(payload, position, &shared.metrics) {
                Ok(event) => event,
                Err(reason) => {
                    if !dead_letter(&shared, m, &reason, &mut stopped.clone()).await {
                        return;
                    }
                    None
                }
            });
        }
        let refs: Vec<Option<&Event>> = events.iter().map(Option::as_ref).collect();
        let mut stop = stopped.clone();
        let stop = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let span = crate::trace::process_span(&shared, partition, &batch);
        let outcome = apply_with_retry(&shared.store, p, offset, &refs, &shared.metrics, stop)
            .instrument(span)
            .await;
        match outcome {
            None => return,
            Some(Applied::Done { next, duplicates }) => {
                if duplicates == 0 {
                    shared.metrics.record_propagation(&batch, &events);
                }
                expected.store(next, Ordering::Release);
                let stored = i64::try_from(next).unwrap_or(i64::MAX) - 1;
                if let Err(error) = shared
                    .consumer
                    .store_offset(&shared.topic, partition, stored)
                {
                    tracing::debug!(partition, %error, "Could not store a consumer offset.");
                }
            }
            Some(Applied::Gap { next }) => {
                tracing::info!(
                    partition,
                    from = offset,
                    to = next,
                    "Projection is behind the consumer; seeking back."
                );
                expected.store(next, Ordering::Release);
                if !seek(&shared, partition, next).await {
                    // The loop's check seeks again and sets the offset then.
                    expected.store(UNKNOWN, Ordering::Release);
                }
            }
        }
    }
}

/// Sends an undecodable record to the dead-letter topic, retrying until it is taken (`true`)
/// or the worker is stopped (`false`).
async fn dead_letter(
    shared: &Shared,
    message: &OwnedMessage,
    reason: &str,
    stopped: &mut watch::Receiver<bool>,
) -> bool {
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    tracing::error!(
        partition = message.partition(),
        offset = message.offset(),
        reason,
        "Undecodable record; sending it to the dead-letter topic."
    );
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "error",
            value: Some(reason),
        })
        .insert(Header {
            key: "source.topic",
            value: Some(message.topic()),
        })
        .insert(Header {
            key: "source.partition",
            value: Some(partition.as_str()),
        })
        .insert(Header {
            key: "source.offset",
            value: Some(offset.as_str()),
        });
    let payload = message.payload().unwrap_or_default();
    let mut backoff = Duration::from_millis(100);
    while let Err(error) = shared
        .dead_letters
        .send_raw(
            &shared.dead_letter_topic,
            message.key(),
            payload,
            headers.clone(),
        )
        .await
    {
        tracing::warn!(%error, "Dead-letter topic did not take the record; retrying.");
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stopped.wait_for(|s| *s) => return false,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
    Metrics::inc(&shared.metrics.dead_lettered);
    true
}
