//! The `[telemetry]` section every binary shares. A setting left out falls back to the
//! standard `OTEL_*` variable the OpenTelemetry SDK reads (endpoint, protocol, headers,
//! resource attributes), so the usual deployment recipes work unchanged.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// `tracing` filter directives; `RUST_LOG` wins when set.
    pub log_filter: String,
    /// Where traces and metrics go: an OTLP/HTTP endpoint such as `http://127.0.0.1:4318`
    /// (a collector or Jaeger). Unset: `OTEL_EXPORTER_OTLP_ENDPOINT`; unset too: nothing is
    /// exported and nothing runs in the background.
    pub otlp_endpoint: Option<String>,
    /// `http/protobuf` (default) or `http/json`; unset: `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub otlp_protocol: Option<String>,
    /// The share of new traces recorded (a request that arrives sampled stays sampled).
    pub sampling_ratio: f64,
    /// Extra resource attributes (`OTEL_RESOURCE_ATTRIBUTES` is read as well).
    pub resource_attributes: BTreeMap<String, String>,
    /// How often metrics are pushed over OTLP (`/metrics` is always current).
    pub metrics_interval_secs: u64,
    /// Push metrics over OTLP too (traces always go when an endpoint is set). Unset: yes,
    /// unless `OTEL_METRICS_EXPORTER=none` (for a Prometheus that scrapes `/metrics`, so
    /// nothing is counted twice).
    pub push_metrics: Option<bool>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Pretty,
            log_filter: "info".into(),
            otlp_endpoint: None,
            otlp_protocol: None,
            sampling_ratio: 1.0,
            resource_attributes: BTreeMap::new(),
            metrics_interval_secs: 15,
            push_metrics: None,
        }
    }
}

impl TelemetryConfig {
    /// The endpoint to export to, from the config or the standard variables.
    pub fn endpoint(&self) -> Option<String> {
        self.otlp_endpoint.clone().or_else(|| {
            [
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        })
    }

    /// Whether metrics are pushed over OTLP (when there is an endpoint).
    pub fn pushes_metrics(&self) -> bool {
        self.push_metrics.unwrap_or_else(|| {
            std::env::var("OTEL_METRICS_EXPORTER").map_or(true, |v| v.trim() != "none")
        })
    }

    /// Refuses settings that cannot work, with a message naming the setting.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            anyhow::bail!("telemetry.sampling_ratio must be between 0 and 1");
        }
        if let Some(p) = &self.otlp_protocol
            && !matches!(p.as_str(), "http/protobuf" | "http/json")
        {
            anyhow::bail!(
                "telemetry.otlp_protocol must be http/protobuf or http/json (gRPC is not built in: point the exporter at the collector's OTLP/HTTP port, 4318)"
            );
        }
        if self.metrics_interval_secs == 0 {
            anyhow::bail!("telemetry.metrics_interval_secs must be at least 1");
        }
        Ok(())
    }
}
