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
#[allow(clippy::panic)]
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let port = 20_000 + (uuid::Uuid::new_v4().as_u128() % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in 20000-31999")
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
