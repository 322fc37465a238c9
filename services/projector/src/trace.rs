//! The projector's spans (only when telemetry exports them): one `process` span per batch
//! (OpenTelemetry messaging conventions), the child of the producing request's `send` span
//! when the batch is one record, linked to each record's `send` span otherwise.

use tokend_kafka::rdkafka::message::{Headers, Message, OwnedMessage};
use tokend_telemetry::propagation;

use crate::worker::Shared;

/// A header's text value.
fn header<'m>(message: &'m OwnedMessage, key: &str) -> Option<&'m str> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| std::str::from_utf8(h.value?).ok())
}

/// The span a batch of one partition is applied in; disabled when telemetry is off.
pub(crate) fn process_span(
    shared: &Shared,
    partition: i32,
    batch: &[OwnedMessage],
) -> tracing::Span {
    if !tokend_telemetry::tracing_enabled() {
        return tracing::Span::none();
    }
    let first = batch.first().map_or(0, Message::offset);
    let span = tracing::info_span!(
        "process",
        otel.name = format!("process {}", shared.topic),
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = %shared.topic,
        messaging.destination.partition.id = %partition,
        messaging.consumer.group.name = %shared.group,
        messaging.kafka.offset = first,
        messaging.batch.message_count = i64::try_from(batch.len()).unwrap_or(i64::MAX),
    );
    let contexts = batch
        .iter()
        .filter_map(|m| propagation::span_context_from(|k| header(m, k)));
    if let [only] = batch {
        propagation::set_remote_parent(&span, |k| header(only, k));
    } else {
        propagation::add_links(&span, contexts);
    }
    span
}

/// The span of the Redis write inside a batch's `process` span.
pub(crate) fn redis_span(partition: u32, records: usize) -> tracing::Span {
    if !tokend_telemetry::tracing_enabled() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "apply",
        otel.name = "EVALSHA apply_batch",
        otel.kind = "client",
        db.system.name = "redis",
        db.operation.name = "EVALSHA",
        tokend.partition = partition,
        tokend.records = i64::try_from(records).unwrap_or(i64::MAX),
    )
}
