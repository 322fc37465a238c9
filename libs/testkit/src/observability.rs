//! The observability backends, real and run as child processes with every listener on
//! 127.0.0.1 at ports chosen here; each is killed when its fixture is dropped.
//! - [`Jaeger`]: the trace backend. Jaeger v2 (an OpenTelemetry Collector distribution,
//!   built by `infra/scripts/install-jaeger.sh`) with `jaeger.yaml`: OTLP in, its query API
//!   out.
//! - [`Collector`]: the same binary running the repository's own collector config,
//!   `infra/observability/otel-collector.yaml`, in front of a trace backend.
//! - [`Prometheus`]: Debian's `prometheus` with a scrape config the test writes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

pub const JAEGER_VERSION: &str = "1.76.0";

/// The repository's root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where the binary is: `TOKEND_JAEGER_BIN`, else the workspace's `target/tools/`.
fn binary() -> PathBuf {
    std::env::var_os("TOKEND_JAEGER_BIN").map_or_else(
        || {
            workspace()
                .join("target/tools")
                .join(format!("jaeger-{JAEGER_VERSION}"))
                .join("jaeger")
        },
        PathBuf::from,
    )
}

fn local(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// Waits until every port accepts connections.
#[allow(clippy::panic, clippy::disallowed_methods)] // a wait bound
fn listening(what: &str, ports: &[u16]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for &port in ports {
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                panic!("{what} did not listen on 127.0.0.1:{port} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A child process killed with the fixture, and the directory it kept its data in.
struct Process(Child, Option<PathBuf>);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if let Some(dir) = &self.1 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Runs the Jaeger binary with `config` and `env`.
#[allow(clippy::expect_used)]
fn jaeger_with(config: &Path, env: &[(&str, String)]) -> Process {
    let bin = binary();
    assert!(
        bin.exists(),
        "{} is missing: run infra/scripts/install-jaeger.sh",
        bin.display()
    );
    let child = Command::new(&bin)
        .arg(format!("--config=file:{}", config.display()))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Jaeger starts");
    Process(child, None)
}

pub struct Jaeger {
    /// The OTLP/HTTP endpoint (`http://127.0.0.1:P`; `/v1/traces` is appended by exporters).
    pub otlp: String,
    /// The OTLP/gRPC address (`127.0.0.1:P`), for a collector in front.
    pub otlp_grpc: String,
    /// The query API's base URL (`/api/traces/{id}`, `/api/traces?service=`).
    pub query: String,
    _process: Process,
}

impl Jaeger {
    /// Starts Jaeger and waits until its OTLP and query ports accept connections.
    pub fn start() -> Self {
        let (http, grpc, query) = (free_port(), free_port(), free_port());
        let process = jaeger_with(
            &workspace().join("libs/testkit/src/jaeger.yaml"),
            &[
                ("JAEGER_OTLP_HTTP", local(http)),
                ("JAEGER_OTLP_GRPC", local(grpc)),
                ("JAEGER_QUERY_HTTP", local(query)),
                ("JAEGER_QUERY_GRPC", local(free_port())),
            ],
        );
        listening("Jaeger", &[http, grpc, query]);
        Self {
            otlp: format!("http://{}", local(http)),
            otlp_grpc: local(grpc),
            query: format!("http://{}", local(query)),
            _process: process,
        }
    }
}

/// The repository's OpenTelemetry Collector config, run by a real collector.
pub struct Collector {
    /// The OTLP/HTTP endpoint services export to.
    pub otlp: String,
    /// `host:port` of its Prometheus exporter (metrics pushed to it) ...
    pub pushed_metrics: String,
    /// ... and of its own metrics.
    pub own_metrics: String,
    _process: Process,
}

impl Collector {
    /// Starts `infra/observability/otel-collector.yaml` sending traces to `traces_grpc`.
    pub fn start(traces_grpc: &str) -> Self {
        let (http, grpc, pushed, own) = (free_port(), free_port(), free_port(), free_port());
        let process = jaeger_with(
            &workspace().join("infra/observability/otel-collector.yaml"),
            &[
                ("OTLP_HTTP_LISTEN", local(http)),
                ("OTLP_GRPC_LISTEN", local(grpc)),
                ("TRACES_OTLP_GRPC", traces_grpc.to_owned()),
                ("PROMETHEUS_EXPORTER_LISTEN", local(pushed)),
                ("COLLECTOR_TELEMETRY_HOST", "127.0.0.1".to_owned()),
                ("COLLECTOR_TELEMETRY_PORT", own.to_string()),
            ],
        );
        listening("the collector", &[http, grpc, pushed, own]);
        Self {
            otlp: format!("http://{}", local(http)),
            pushed_metrics: local(pushed),
            own_metrics: local(own),
            _process: process,
        }
    }
}

/// A real Prometheus (Debian's package) with the scrape config the test gives.
pub struct Prometheus {
    /// Its HTTP API's base URL.
    pub url: String,
    _process: Process,
}

impl Prometheus {
    /// Starts `/usr/bin/prometheus` (or `TOKEND_PROMETHEUS_BIN`) with `config` (YAML), its
    /// data in a fresh directory, and waits until it is ready.
    #[allow(clippy::expect_used, clippy::panic, clippy::disallowed_methods)]
    pub fn start(config: &str) -> Self {
        let bin = std::env::var("TOKEND_PROMETHEUS_BIN").unwrap_or("/usr/bin/prometheus".into());
        assert!(
            Path::new(&bin).exists(),
            "{bin} is missing: the test script installs Debian's prometheus package"
        );
        let dir = std::env::temp_dir().join(crate::unique("prometheus"));
        std::fs::create_dir_all(&dir).expect("a data directory");
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config).expect("the config is written");
        let port = free_port();
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={}", local(port)))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Prometheus starts");
        let process = Process(child, Some(dir));
        listening("Prometheus", &[port]);
        Self {
            url: format!("http://{}", local(port)),
            _process: process,
        }
    }
}
