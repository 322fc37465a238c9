//! One `init` for every binary: the log subscriber, and OpenTelemetry traces and metrics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_prometheus_text_exporter::PrometheusExporter;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetryConfig};

/// Set once traces are exported: only then do the HTTP and Kafka paths make spans and carry
/// trace context (no exporter, no cost on the hot path).
static TRACING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported.
pub fn tracing_enabled() -> bool {
    TRACING.load(Ordering::Relaxed)
}

/// How long a shutdown waits for the last export (the collector may be gone).
const FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// Keeps the providers; [`Telemetry::shutdown`] (or dropping it) flushes them, bounded.
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: SdkMeterProvider,
    prometheus: PrometheusExporter,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("traces", &self.tracer.is_some())
            .finish_non_exhaustive()
    }
}

/// Sets up logs, traces and metrics for `service`. Call once, early in `main`.
pub fn init(
    service: &'static str,
    version: &'static str,
    config: &TelemetryConfig,
) -> anyhow::Result<Telemetry> {
    let telemetry = providers(service, version, config)?;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_filter))
        .context("telemetry.log_filter")?;
    // Each layer its own filter: quiet logs must not silence the spans that are exported.
    let logs = match config.log_format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer().with_filter(filter).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_filter(filter)
            .boxed(),
    };
    let spans = telemetry.tracer.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(service))
            .with_tracked_inactivity(false)
            .with_filter(LevelFilter::INFO)
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()
        .context("a log subscriber was set up before telemetry::init")?;
    Ok(telemetry)
}

/// The providers alone (tests install their own subscriber): metrics always (for
/// `/metrics`), traces and the OTLP metric push (unless turned off) when an endpoint is
/// configured.
pub fn providers(
    service: &'static str,
    version: &'static str,
    config: &TelemetryConfig,
) -> anyhow::Result<Telemetry> {
    config.validate()?;
    let resource = Resource::builder()
        .with_service_name(service)
        .with_attribute(KeyValue::new("service.version", version))
        .with_attributes(
            config
                .resource_attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .build();
    let prometheus = PrometheusExporter::builder().without_scope_info().build();
    let mut meter = SdkMeterProvider::builder()
        .with_resource(resource.clone())
        .with_reader(prometheus.clone());
    let endpoint = config
        .otlp_endpoint
        .as_deref()
        .map(|e| e.trim_end_matches('/'));
    let protocol = protocol(
        config.otlp_protocol.as_deref(),
        std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").ok().as_deref(),
    );
    let mut tracer = None;
    if config.endpoint().is_some() {
        let mut spans = opentelemetry_otlp::SpanExporter::builder().with_http();
        let mut metrics = opentelemetry_otlp::MetricExporter::builder().with_http();
        if let Some(e) = endpoint {
            spans = spans.with_endpoint(format!("{e}/v1/traces"));
            metrics = metrics.with_endpoint(format!("{e}/v1/metrics"));
        }
        if let Some(p) = protocol {
            spans = spans.with_protocol(p);
            metrics = metrics.with_protocol(p);
        }
        let spans = spans.build().context("the OTLP span exporter")?;
        let metrics = metrics.build().context("the OTLP metric exporter")?;
        let sampler =
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sampling_ratio)));
        tracer = Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(spans)
                .with_sampler(sampler)
                .with_resource(resource)
                .build(),
        );
        if config.pushes_metrics() {
            meter = meter.with_reader(
                PeriodicReader::builder(metrics)
                    .with_interval(Duration::from_secs(config.metrics_interval_secs))
                    .build(),
            );
        }
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        TRACING.store(true, Ordering::Relaxed);
    }
    let meter = meter.build();
    opentelemetry::global::set_meter_provider(meter.clone());
    Ok(Telemetry {
        tracer,
        meter,
        prometheus,
    })
}

/// The OTLP encoding: the configured one; else `OTEL_EXPORTER_OTLP_PROTOCOL`, which the SDK
/// reads itself (`None`); else protobuf. (Left to itself the SDK would pick pretty-printed
/// JSON, because the `http-json` feature is built in: several times the bytes and the CPU.)
fn protocol(configured: Option<&str>, from_env: Option<&str>) -> Option<Protocol> {
    match (configured, from_env) {
        (Some("http/json"), _) => Some(Protocol::HttpJson),
        (Some(_), _) | (None, None) => Some(Protocol::HttpBinary),
        (None, Some(_)) => None,
    }
}

impl Telemetry {
    /// Exports the spans buffered so far (blocks until the exporter answers or times out).
    pub fn flush(&self) {
        if let Some(t) = &self.tracer {
            let _ = t.force_flush();
        }
    }

    /// A cheap handle for the `/metrics` route.
    pub fn prometheus(&self) -> PrometheusText {
        PrometheusText(self.prometheus.clone())
    }

    /// Flushes what is buffered, waiting at most a few seconds even when the collector is
    /// gone.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let tracer = self.tracer.take();
        let meter = self.meter.clone();
        let (done, wait) = std::sync::mpsc::channel();
        // The SDK's shutdown blocks on the exporter; a thread keeps that off the caller.
        let flushing = std::thread::Builder::new()
            .name("telemetry-flush".into())
            .spawn(move || {
                if let Some(t) = tracer {
                    let _ = t.shutdown_with_timeout(FLUSH_LIMIT);
                }
                let _ = meter.shutdown();
                let _ = done.send(());
            });
        if flushing.is_ok()
            && wait
                .recv_timeout(FLUSH_LIMIT + Duration::from_secs(1))
                .is_err()
        {
            tracing::warn!("Telemetry was not flushed in time; the rest is dropped.");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if self.tracer.is_some() {
            self.stop();
        }
    }
}

/// The Prometheus text of every metric, for a `/metrics` route.
#[derive(Clone)]
pub struct PrometheusText(PrometheusExporter);

impl PrometheusText {
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(error) = self.0.export(&mut out) {
            tracing::warn!(%error, "Metrics could not be rendered.");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protobuf_unless_json_is_asked_for() {
        assert_eq!(protocol(None, None), Some(Protocol::HttpBinary));
        assert_eq!(
            protocol(Some("http/protobuf"), None),
            Some(Protocol::HttpBinary)
        );
        assert_eq!(protocol(Some("http/json"), None), Some(Protocol::HttpJson));
        // The standard variable: the SDK reads it.
        assert_eq!(protocol(None, Some("http/json")), None);
        assert_eq!(
            protocol(Some("http/protobuf"), Some("http/json")),
            Some(Protocol::HttpBinary)
        );
    }
}
