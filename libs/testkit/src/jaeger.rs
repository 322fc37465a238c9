//! A real trace backend: Jaeger's all-in-one (built by `infra/scripts/install-jaeger.sh`), run
//! as a child process with every listener on 127.0.0.1 at ports chosen here. It takes OTLP over
//! HTTP and answers its query API; it is killed when the fixture is dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

pub const JAEGER_VERSION: &str = "1.76.0";

pub struct Jaeger {
    /// The OTLP/HTTP endpoint (`http://127.0.0.1:P`; `/v1/traces` is appended by exporters).
    pub otlp: String,
    /// The query API's base URL (`/api/traces/{id}`, `/api/traces?service=`).
    pub query: String,
    child: Child,
}

/// Where the binary is: `TOKEND_JAEGER_BIN`, else the workspace's `target/tools/`.
fn binary() -> PathBuf {
    std::env::var_os("TOKEND_JAEGER_BIN").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/tools")
                .join(format!("jaeger-{JAEGER_VERSION}"))
                .join("jaeger-all-in-one")
        },
        PathBuf::from,
    )
}

impl Jaeger {
    /// Starts Jaeger and waits until its OTLP and query ports accept connections.
    #[allow(clippy::panic, clippy::expect_used, clippy::disallowed_methods)] // a wait bound
    pub fn start() -> Self {
        let bin = binary();
        assert!(
            bin.exists(),
            "{} is missing: run infra/scripts/install-jaeger.sh",
            bin.display()
        );
        let (otlp, query) = (free_port(), free_port());
        let local = |p: u16| format!("127.0.0.1:{p}");
        let child = Command::new(&bin)
            .args([
                format!("--collector.otlp.http.host-port={}", local(otlp)),
                format!("--collector.otlp.grpc.host-port={}", local(free_port())),
                format!("--collector.grpc-server.host-port={}", local(free_port())),
                format!("--collector.http-server.host-port={}", local(free_port())),
                format!("--query.http-server.host-port={}", local(query)),
                format!("--query.grpc-server.host-port={}", local(free_port())),
                format!("--admin.http.host-port={}", local(free_port())),
                "--memory.max-traces=10000".into(),
                "--log-level=warn".into(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Jaeger starts");
        let jaeger = Self {
            otlp: format!("http://{}", local(otlp)),
            query: format!("http://{}", local(query)),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        for port in [otlp, query] {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                if Instant::now() > deadline {
                    panic!("Jaeger did not listen on 127.0.0.1:{port} within 30 s");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        jaeger
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
