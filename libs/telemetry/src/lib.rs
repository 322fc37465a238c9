//! Telemetry for every binary of the service: one [`init`] sets up the log subscriber (env
//! filter; pretty or JSON lines), OpenTelemetry traces exported over OTLP (sampling,
//! resource, `service.name`/`service.version`), and metrics, readable as Prometheus text
//! (`GET /metrics`) and pushed over OTLP. Without an OTLP endpoint nothing is exported and no
//! span is made on the hot paths ([`tracing_enabled`]).
//!
//! No token, secret, password or code is ever put in a span: spans name routes (templates,
//! not raw paths), clients, partitions and offsets only.

mod config;
pub mod http;
mod init;
pub mod propagation;

pub use config::{LogFormat, TelemetryConfig};
pub use init::{PrometheusText, Telemetry, init, providers, tracing_enabled};
pub use opentelemetry::metrics::{Counter, Histogram, Meter};
pub use opentelemetry::{KeyValue, global};
