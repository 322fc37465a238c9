//! W3C trace context (`traceparent`, `tracestate`) across the Kafka hop: the producer writes
//! the current span's context into the record's headers, the consumer reads it back.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C headers of `span`'s context: (`traceparent`, `tracestate`); empty when the span
/// is not recorded (telemetry off, or not sampled).
pub fn headers_of(span: &tracing::Span) -> Vec<(&'static str, String)> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return Vec::new();
    }
    let mut fields = Fields::default();
    TraceContextPropagator::new().inject_context(&cx, &mut fields);
    fields.0
}

/// The span context named by W3C headers, if they name a valid one.
pub fn span_context_from<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<SpanContext> {
    let cx = TraceContextPropagator::new().extract(&Lookup(&get));
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// Makes `span` a child of the remote span named by W3C headers (an HTTP request's
/// `traceparent`, or a record's headers).
pub fn set_remote_parent<'a>(span: &tracing::Span, get: impl Fn(&str) -> Option<&'a str>) {
    let cx = TraceContextPropagator::new().extract(&Lookup(&get));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// Links `span` to the spans whose contexts are given (a batch's records).
pub fn add_links(span: &tracing::Span, contexts: impl IntoIterator<Item = SpanContext>) {
    for sc in contexts {
        span.add_link(sc);
    }
}

#[derive(Default)]
struct Fields(Vec<(&'static str, String)>);

impl Injector for Fields {
    fn set(&mut self, key: &str, value: String) {
        let key = match key {
            "traceparent" => "traceparent",
            "tracestate" => "tracestate",
            _ => return,
        };
        self.0.push((key, value));
    }
}

struct Lookup<'f, F>(&'f F);

impl<'a: 'f, 'f, F: Fn(&str) -> Option<&'a str>> Extractor for Lookup<'f, F> {
    fn get(&self, key: &str) -> Option<&str> {
        (self.0)(key)
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}
