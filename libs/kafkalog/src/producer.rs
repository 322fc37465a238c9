//! The producer side: appends that resolve on the broker's acknowledgement.

use std::time::Duration;

use async_trait::async_trait;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokend_domain::{EventLog, LogError, LogPosition};
use tokend_events::Envelope;
use tokend_telemetry::KeyValue;
use tracing::Instrument;

use crate::KafkaSettings;

pub struct KafkaEventLog {
    producer: FutureProducer,
    topic: String,
    timeout: Duration,
}

impl std::fmt::Debug for KafkaEventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaEventLog")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// The producer configuration every writer of the log uses.
pub(crate) fn producer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &settings.bootstrap_servers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5")
        .set("compression.type", &settings.compression)
        .set("linger.ms", settings.linger_ms.to_string())
        .set("message.timeout.ms", settings.append_timeout_ms.to_string())
        .set("socket.keepalive.enable", "true");
    c
}

impl KafkaEventLog {
    /// Creates the producer and makes sure the topics exist.
    pub async fn connect(settings: &KafkaSettings) -> Result<Self, LogError> {
        crate::ensure_topics(settings, &settings.event_topics()).await?;
        let producer: FutureProducer = producer_config(settings)
            .create()
            .map_err(|e| LogError::Unavailable(format!("kafka producer: {e}")))?;
        Ok(Self {
            producer,
            topic: settings.topic.clone(),
            timeout: Duration::from_millis(settings.append_timeout_ms),
        })
    }

    /// Appends raw bytes to any topic (the projector's dead-letter path).
    pub async fn send_raw(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<LogPosition, LogError> {
        let mut record = FutureRecord::to(topic).payload(payload).headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        self.deliver(record).await
    }

    async fn deliver<K: rdkafka::message::ToBytes + ?Sized>(
        &self,
        record: FutureRecord<'_, K, [u8]>,
    ) -> Result<LogPosition, LogError> {
        match self.producer.send(record, self.timeout).await {
            Ok(delivery) => Ok(LogPosition {
                partition: u32::try_from(delivery.partition).unwrap_or_default(),
                offset: u64::try_from(delivery.offset).unwrap_or_default(),
            }),
            Err((e, _)) => Err(LogError::Unavailable(format!("kafka: {e}"))),
        }
    }
}

/// `messaging.client.operation.duration` of one append (seconds), with `error.type` when the
/// broker did not take it.
fn produce_duration(took: Duration, ok: bool) {
    let histogram = tokend_telemetry::seconds_histogram!(
        "tokend-kafka",
        "messaging.client.operation.duration",
        "Kafka produce latency, to the broker's acknowledgement"
    );
    let mut attributes = vec![
        KeyValue::new("messaging.system", "kafka"),
        KeyValue::new("messaging.operation.name", "send"),
    ];
    if !ok {
        attributes.push(KeyValue::new("error.type", "kafka_unavailable"));
    }
    histogram.record(took.as_secs_f64(), &attributes);
}

/// The producer span of one append (OpenTelemetry messaging conventions); disabled when
/// telemetry is off.
fn send_span(topic: &str) -> tracing::Span {
    if !tokend_telemetry::tracing_enabled() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "send",
        otel.name = format!("send {topic}"),
        otel.kind = "producer",
        messaging.system = "kafka",
        messaging.operation.type = "send",
        messaging.operation.name = "send",
        messaging.destination.name = %topic,
        messaging.destination.partition.id = tracing::field::Empty,
        messaging.kafka.offset = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

#[async_trait]
impl EventLog for KafkaEventLog {
    async fn append(&self, envelope: &Envelope, key: &str) -> Result<LogPosition, LogError> {
        let span = send_span(&self.topic);
        let payload = envelope.to_bytes();
        let version = envelope.version.to_string();
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: "type",
                value: Some(envelope.kind.as_str()),
            })
            .insert(Header {
                key: "version",
                value: Some(version.as_str()),
            });
        // The `send` span's W3C context: the projector's `process` span continues the trace.
        for (name, value) in tokend_telemetry::propagation::headers_of(&span) {
            headers = headers.insert(Header {
                key: name,
                value: Some(value.as_str()),
            });
        }
        let record = FutureRecord::to(&self.topic)
            .key(key)
            .payload(payload.as_slice())
            .headers(headers);
        #[allow(clippy::disallowed_methods)] // a measurement
        let started = std::time::Instant::now();
        let delivered = self.deliver(record).instrument(span.clone()).await;
        produce_duration(started.elapsed(), delivered.is_ok());
        match &delivered {
            Ok(position) => {
                span.record(
                    "messaging.destination.partition.id",
                    position.partition.to_string(),
                );
                span.record(
                    "messaging.kafka.offset",
                    i64::try_from(position.offset).unwrap_or(i64::MAX),
                );
            }
            Err(_) => {
                span.record("error.type", "kafka_unavailable");
            }
        }
        delivered
    }

    async fn ping(&self) -> Result<(), LogError> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(2))
                .map(|_| ())
                .map_err(|e| LogError::Unavailable(format!("kafka metadata: {e}")))
        })
        .await
        .map_err(|e| LogError::Unavailable(e.to_string()))?
    }
}
