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
mod process;
pub mod propagation;

pub use config::{LogFormat, TelemetryConfig};
pub use init::{PrometheusText, Telemetry, init, providers, tracing_enabled};
pub use opentelemetry::metrics::{AsyncInstrument, Counter, Histogram, Meter};
pub use opentelemetry::{KeyValue, global};
pub use process::stop_signal;

/// Histogram bounds for latencies in seconds: 0.5 ms to 10 s.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A counter of the process-wide meter, made once (after [`init`]: before it, a no-op).
#[macro_export]
macro_rules! counter {
    ($meter:literal, $name:literal, $description:literal) => {{
        static COUNTER: ::std::sync::OnceLock<$crate::Counter<u64>> = ::std::sync::OnceLock::new();
        COUNTER.get_or_init(|| {
            $crate::global::meter($meter)
                .u64_counter($name)
                .with_description($description)
                .build()
        })
    }};
}

/// A latency histogram (seconds, [`SECONDS_BUCKETS`]) of the process-wide meter, made once.
#[macro_export]
macro_rules! seconds_histogram {
    ($meter:literal, $name:literal, $description:literal) => {{
        static HISTOGRAM: ::std::sync::OnceLock<$crate::Histogram<f64>> =
            ::std::sync::OnceLock::new();
        HISTOGRAM.get_or_init(|| {
            $crate::global::meter($meter)
                .f64_histogram($name)
                .with_unit("s")
                .with_description($description)
                .with_boundaries($crate::SECONDS_BUCKETS.to_vec())
                .build()
        })
    }};
}
