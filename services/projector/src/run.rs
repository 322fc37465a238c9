//! One member of the projector's consumer group.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokend_domain::{Applied, LogPosition, StateStore};
use tokend_events::{Decoded, Envelope, Event};
use tokend_kafka::rdkafka::consumer::{CommitMode, Consumer};
use tokend_kafka::rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use tokend_kafka::rdkafka::{Offset, consumer::StreamConsumer};
use tokend_kafka::{KafkaEventLog, group_consumer};

use crate::{Config, Metrics};

/// Consumes until `shutdown` resolves, then commits what was applied.
pub async fn run(
    config: &Config,
    store: Arc<dyn StateStore>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let dead_letters = KafkaEventLog::connect(&config.kafka).await?;
    let consumer = group_consumer(&config.kafka, &config.group_id)?;
    tracing::info!(topic = %config.kafka.topic, group = %config.group_id, "Projector consuming.");
    tokio::pin!(shutdown);
    loop {
        let message = tokio::select! {
            () = &mut shutdown => break,
            m = consumer.recv() => m,
        };
        let message = match message {
            Ok(m) => m,
            Err(error) => {
                tracing::warn!(%error, "Kafka consumer error; retrying.");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let outcome = project(&message, &*store, &metrics, config, &dead_letters).await;
        match outcome {
            Applied::Applied | Applied::Duplicate => {
                if let Err(error) = consumer.store_offset_from_message(&message) {
                    tracing::warn!(%error, "Could not store a consumer offset.");
                }
            }
            Applied::Gap { next } => seek(&consumer, &message, next, &metrics),
        }
    }
    if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::warn!(%error, "Final offset commit failed; records will be redelivered.");
    }
    tracing::info!("Projector stopped.");
    Ok(())
}

/// The projection is behind this record: read the partition again from where it is.
fn seek(consumer: &StreamConsumer, message: &BorrowedMessage<'_>, next: u64, metrics: &Metrics) {
    Metrics::inc(&metrics.seeks);
    tracing::info!(
        partition = message.partition(),
        from = message.offset(),
        to = next,
        "Projection is behind the consumer; seeking back."
    );
    let offset = Offset::Offset(i64::try_from(next).unwrap_or(i64::MAX));
    if let Err(error) = consumer.seek(
        message.topic(),
        message.partition(),
        offset,
        Duration::from_secs(5),
    ) {
        tracing::warn!(%error, "Seek failed; the record will be retried.");
    }
}

/// Decodes one record and applies it (retrying the store until it answers).
async fn project(
    message: &BorrowedMessage<'_>,
    store: &dyn StateStore,
    metrics: &Metrics,
    config: &Config,
    dead_letters: &KafkaEventLog,
) -> Applied {
    let position = LogPosition {
        partition: u32::try_from(message.partition()).unwrap_or_default(),
        offset: u64::try_from(message.offset()).unwrap_or_default(),
    };
    let payload = message.payload().unwrap_or_default();
    let event = match decode(payload, position, metrics) {
        Ok(event) => event,
        Err(reason) => {
            dead_letter(message, &reason, config, dead_letters, metrics).await;
            None
        }
    };
    let outcome = apply_with_retry(store, position, event.as_ref(), metrics).await;
    match outcome {
        Applied::Applied => Metrics::inc(&metrics.applied),
        Applied::Duplicate => Metrics::inc(&metrics.duplicates),
        Applied::Gap { .. } => {}
    }
    outcome
}

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

pub(crate) async fn apply_with_retry(
    store: &dyn StateStore,
    position: LogPosition,
    event: Option<&Event>,
    metrics: &Metrics,
) -> Applied {
    let mut backoff = Duration::from_millis(50);
    loop {
        match store.apply(position, event).await {
            Ok(outcome) => return outcome,
            Err(error) => {
                Metrics::inc(&metrics.store_retries);
                tracing::warn!(%error, ?backoff, "State store did not take a record; retrying.");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

async fn dead_letter(
    message: &BorrowedMessage<'_>,
    reason: &str,
    config: &Config,
    dead_letters: &KafkaEventLog,
    metrics: &Metrics,
) {
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
    while let Err(error) = dead_letters
        .send_raw(
            &config.kafka.dead_letter_topic,
            message.key(),
            payload,
            headers.clone(),
        )
        .await
    {
        tracing::warn!(%error, "Dead-letter topic did not take the record; retrying.");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
    Metrics::inc(&metrics.dead_lettered);
}
