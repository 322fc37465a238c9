//! Integration-test fixtures: real Apache Kafka (KRaft) and real Redis, each in a container
//! built locally by `infra/docker/build-images.sh`, on the host network, listening on
//! 127.0.0.1 at ports chosen here. One Kafka and one Redis are shared by every test of a test
//! binary (started lazily); tests isolate themselves by topic, consumer group and key prefix
//! ([`unique`]). Fault tests take a private container ([`Kafka::start`], [`Redis::start`]) and
//! stop, start, pause or unpause it. Containers carry the label `tokend-test=1`; the test script
//! removes leftovers by that label.

mod observability;
mod process;

pub use observability::{Collector, JAEGER_VERSION, Jaeger, Prometheus, workspace};
pub use process::{Service, demo_secrets, sibling_binary};

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use testcontainers::core::WaitFor;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tokio::sync::OnceCell;

pub const REDIS_IMAGE: (&str, &str) = ("tokend-test/redis", "7");
pub const KAFKA_IMAGE: (&str, &str) = ("tokend-test/kafka", "3.9");
const LABEL: &str = "tokend-test";

/// A name no other test uses: for topics, consumer groups and key prefixes.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A port free on 127.0.0.1 right now, below the ephemeral range: a server restarted on it
/// (Kafka stopped and started by a fault test) cannot find it taken by a client's outgoing
/// connection, which would take ephemeral ports (even connecting to itself).
pub fn free_port() -> u16 {
    free_port_in(12_000, |_| true)
}

/// A port for a Redis Cluster node: free on 127.0.0.1 with its cluster bus port (10,000 above),
/// both below the ephemeral range (32768 up), where a client's outgoing connection could take
/// the bus port.
fn free_cluster_port() -> u16 {
    free_port_in(2_700, |port| {
        TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
    })
}

/// A free port in 20000 up to `span` above it, for which `also` holds.
#[allow(clippy::panic)]
fn free_port_in(span: u16, also: impl Fn(u16) -> bool) -> u16 {
    for _ in 0..1000 {
        let port = 20_000 + (uuid::Uuid::new_v4().as_u128() % u128::from(span)) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && also(port) {
            return port;
        }
    }
    panic!("no free loopback port in 20000-{}", 20_000 + span - 1)
}

/// Runs `docker <verb> <id>` (stop, start, pause, unpause, kill).
#[allow(clippy::expect_used, clippy::panic)]
pub fn docker(verb: &str, id: &str) {
    let status = Command::new("docker")
        .args([verb, id])
        .status()
        .expect("the docker CLI runs");
    if !status.success() {
        panic!("docker {verb} {id} failed");
    }
}

pub struct Redis {
    pub url: String,
    pub port: u16,
    container: ContainerAsync<GenericImage>,
}

impl Redis {
    /// A private Redis.
    #[allow(clippy::expect_used)]
    pub async fn start() -> Self {
        let port = free_port();
        let container = GenericImage::new(REDIS_IMAGE.0, REDIS_IMAGE.1)
            .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"))
            .with_network("host")
            .with_label(LABEL, "1")
            .with_cmd([
                "redis-server".to_owned(),
                "--bind".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port.to_string(),
                "--save".into(),
                String::new(),
                "--appendonly".into(),
                "no".into(),
            ])
            .start()
            .await
            .expect("the Redis test image starts (run infra/docker/build-images.sh)");
        Self {
            url: format!("redis://127.0.0.1:{port}"),
            port,
            container,
        }
    }

    pub fn id(&self) -> &str {
        self.container.id()
    }
}

/// A Redis Cluster of three masters, each with a replica, in one private container: six
/// `redis-server` processes on 127.0.0.1, joined by `redis-cli --cluster create`. A node
/// times out after 2 s (not less: a loaded test machine would fail healthy nodes), so a master
/// that stops is replaced by its replica within a few seconds.
pub struct RedisCluster {
    /// The seed nodes, comma-separated (`redis.url` with `redis.cluster = true`).
    pub url: String,
    pub ports: Vec<u16>,
    container: ContainerAsync<GenericImage>,
}

impl RedisCluster {
    /// Starts one; a start that fails (a port taken meanwhile) is tried again on other ports.
    #[allow(clippy::panic)]
    pub async fn start() -> Self {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Self::try_start().await {
                Ok(cluster) => return cluster,
                Err(error) => failures.push(error),
            }
        }
        panic!(
            "the Redis test image does not start a cluster (run infra/docker/build-images.sh): {failures:?}"
        )
    }

    #[allow(clippy::disallowed_methods, reason = "a start's time limit")]
    async fn try_start() -> Result<Self, String> {
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < 6 {
            let port = free_cluster_port();
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        let list =
            |f: &dyn Fn(u16) -> String| ports.iter().map(|p| f(*p)).collect::<Vec<_>>().join(" ");
        let script = format!(
            "set -e\n\
             for p in {ports}; do {server}; done\n\
             for p in {ports}; do until redis-cli -p $p ping 2>/dev/null | grep -q PONG; do sleep 0.05; done; done\n\
             redis-cli --cluster create {nodes} --cluster-replicas 1 --cluster-yes >/dev/null\n\
             for p in {ports}; do until redis-cli -p $p cluster info | grep -q cluster_state:ok; do sleep 0.1; done; done\n\
             echo CLUSTER READY\n\
             exec sleep infinity",
            ports = list(&|p| p.to_string()),
            server = Self::server("$p"),
            nodes = list(&|p| format!("127.0.0.1:{p}")),
        );
        let container = GenericImage::new(REDIS_IMAGE.0, REDIS_IMAGE.1)
            .with_network("host")
            .with_label(LABEL, "1")
            .with_cmd(["sh".to_owned(), "-c".into(), script])
            .start()
            .await
            .map_err(|e| e.to_string())?;
        // Waited for here rather than by testcontainers, so that a start that fails says why.
        let started = std::time::Instant::now();
        let logs = |what: &[&str]| {
            Command::new("docker")
                .args(what)
                .output()
                .map(|o| {
                    let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
                    text.push_str(&String::from_utf8_lossy(&o.stderr));
                    text
                })
                .unwrap_or_default()
        };
        while !logs(&["logs", container.id()]).contains("CLUSTER READY") {
            let running = logs(&["inspect", "-f", "{{.State.Running}}", container.id()]);
            if running.trim() != "true" || started.elapsed() > Duration::from_secs(30) {
                let nodes = "tail -n 5 /tmp/redis-*.log";
                return Err(format!(
                    "no cluster (container running: {}) on {ports:?}: {}\n{}",
                    running.trim(),
                    logs(&["logs", container.id()]),
                    logs(&["exec", container.id(), "sh", "-c", nodes])
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            url: list(&|p| format!("redis://127.0.0.1:{p}")).replace(' ', ","),
            ports,
            container,
        })
    }

    /// The command that starts the node on `port` (its cluster state in /tmp survives a stop).
    fn server(port: &str) -> String {
        format!(
            "redis-server --bind 127.0.0.1 --port {port} --cluster-enabled yes \
             --cluster-config-file /tmp/nodes-{port}.conf --cluster-node-timeout 2000 \
             --save '' --appendonly no --daemonize yes --logfile /tmp/redis-{port}.log"
        )
    }

    /// `redis-cli -p <port> <args>` in the container; its output.
    #[allow(clippy::expect_used)]
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = Command::new("docker")
            .args([
                "exec",
                self.container.id(),
                "redis-cli",
                "-p",
                &port.to_string(),
            ])
            .args(args)
            .output()
            .expect("the docker CLI runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The port of the master that serves `key` now, as the live nodes see it (asked again
    /// for up to 10 s: right after a stop, a node may not know the new master yet).
    #[allow(
        clippy::panic,
        clippy::disallowed_methods,
        reason = "a test's time limit"
    )]
    pub fn master_of(&self, key: &str) -> u16 {
        let started = std::time::Instant::now();
        loop {
            if let Some(port) = self.try_master_of(key) {
                return port;
            }
            if started.elapsed() > Duration::from_secs(10) {
                panic!("no master serves {key}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn try_master_of(&self, key: &str) -> Option<u16> {
        let port = self.live_port();
        let slot: u16 = self
            .cli(port, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .ok()?;
        self.cli(port, &["cluster", "nodes"])
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let flags = fields.get(2)?;
                if !flags.contains("master") || flags.contains("fail") {
                    return None;
                }
                let serves = fields.iter().skip(8).any(|range| {
                    let (a, b) = range.split_once('-').unwrap_or((range, range));
                    matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
                });
                let addr = fields.get(1)?.split('@').next()?;
                serves.then(|| addr.rsplit(':').next()?.parse().ok())?
            })
    }

    /// A node that answers.
    #[allow(clippy::panic)]
    fn live_port(&self) -> u16 {
        self.ports
            .iter()
            .copied()
            .find(|p| self.cli(*p, &["ping"]).trim() == "PONG")
            .unwrap_or_else(|| panic!("no cluster node answers"))
    }

    /// Waits (up to 20 s) until the master on `port` has a replica that holds all it wrote.
    #[allow(
        clippy::panic,
        clippy::disallowed_methods,
        reason = "a test's time limit"
    )]
    pub fn synced(&self, port: u16) {
        let started = std::time::Instant::now();
        loop {
            let info = self.cli(port, &["info", "replication"]);
            let field = |line: &str, name: &str| -> Option<u64> {
                line.split(',')
                    .find_map(|kv| kv.strip_prefix(name))
                    .and_then(|v| v.trim().parse().ok())
            };
            let written = info.lines().find_map(|l| field(l, "master_repl_offset:"));
            let replicated = info
                .lines()
                .filter(|l| l.starts_with("slave") && l.contains("state=online"))
                .filter_map(|l| l.split_once(':').and_then(|(_, kv)| field(kv, "offset=")))
                .max();
            if written.is_some() && written == replicated {
                return;
            }
            if started.elapsed() > Duration::from_secs(20) {
                panic!("no replica of {port} caught up: {info}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the node on `port` at once (no save): its replica takes over if it was a master.
    pub fn stop(&self, port: u16) {
        self.cli(port, &["shutdown", "nosave"]);
    }

    /// Starts the node on `port` again; it rejoins the cluster (empty, a replica if it was
    /// replaced meanwhile).
    #[allow(clippy::expect_used)]
    pub fn restart(&self, port: u16) {
        let status = Command::new("docker")
            .args(["exec", self.container.id(), "sh", "-c"])
            .arg(Self::server(&port.to_string()))
            .status()
            .expect("the docker CLI runs");
        assert!(status.success(), "redis-server restarts on {port}");
    }

    /// Whether every node that answers says the cluster is ok.
    pub fn healthy(&self) -> bool {
        self.ports.iter().all(|p| {
            let info = self.cli(*p, &["cluster", "info"]);
            info.is_empty() || info.contains("cluster_state:ok")
        })
    }
}

pub struct Kafka {
    pub bootstrap: String,
    container: ContainerAsync<GenericImage>,
}

impl Kafka {
    /// A private single-node KRaft broker.
    #[allow(clippy::expect_used)]
    pub async fn start() -> Self {
        let (broker, controller) = (free_port(), free_port());
        let container = GenericImage::new(KAFKA_IMAGE.0, KAFKA_IMAGE.1)
            .with_wait_for(WaitFor::message_on_stdout("Kafka Server started"))
            .with_network("host")
            .with_label(LABEL, "1")
            .with_env_var("KAFKA_BROKER_PORT", broker.to_string())
            .with_env_var("KAFKA_CONTROLLER_PORT", controller.to_string())
            .with_startup_timeout(Duration::from_secs(120))
            .start()
            .await
            .expect("the Kafka test image starts (run infra/docker/build-images.sh)");
        Self {
            bootstrap: format!("127.0.0.1:{broker}"),
            container,
        }
    }

    pub fn id(&self) -> &str {
        self.container.id()
    }
}

static SHARED_REDIS: OnceCell<Redis> = OnceCell::const_new();
static SHARED_KAFKA: OnceCell<Kafka> = OnceCell::const_new();

/// The Redis shared by this test binary.
pub async fn redis() -> &'static Redis {
    SHARED_REDIS.get_or_init(Redis::start).await
}

/// The Kafka shared by this test binary.
pub async fn kafka() -> &'static Kafka {
    SHARED_KAFKA.get_or_init(Kafka::start).await
}

thread_local! {
    /// The calling test's watchdog, disarmed when the test's thread ends.
    static WATCHDOG: std::cell::RefCell<Option<std::sync::mpsc::Sender<()>>> =
        const { std::cell::RefCell::new(None) };
}

/// A test's time limit: when the test's thread has not ended after `secs`, the whole test
/// binary stops with a message naming the test, so a hang fails fast instead of stalling CI
/// until its own limit. Call it first thing in the test. The limit covers what runs after the
/// body too (the drop of `#[tokio::test]`'s runtime, which drops every task left), since it is
/// disarmed only by the thread's end.
pub fn time_limit(secs: u64) {
    let (disarm, disarmed) = std::sync::mpsc::channel::<()>();
    let name = std::thread::current()
        .name()
        .unwrap_or("an integration test")
        .to_owned();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            disarmed.recv_timeout(Duration::from_secs(secs))
        {
            #[allow(clippy::print_stderr)]
            {
                eprintln!(
                    "TIME LIMIT: {name} did not finish within {secs} s; stopping the test binary."
                );
            }
            std::process::exit(101);
        }
    });
    // Replacing an earlier watchdog of this thread disarms that one.
    WATCHDOG.with(|w| *w.borrow_mut() = Some(disarm));
}

#[cfg(test)]
mod tests {
    /// A thread's end disarms its limit (were it not, the watchdog would stop this binary
    /// during the sleep and the run would fail).
    #[test]
    fn a_limit_ends_with_its_thread() {
        std::thread::spawn(|| super::time_limit(1)).join().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
    }
}
