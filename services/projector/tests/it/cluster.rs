//! A test cluster: token nodes served on 127.0.0.1 port 0, projector tasks, and an HTTP client.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokend::config::Backend;
use tokend::{Config, Node, SystemClock};
use tokend_kafka::KafkaSettings;
use tokend_projector::Metrics;
use tokend_redis::{RedisSettings, RedisStore};
use tokend_testkit::unique;
use tokio::task::JoinHandle;

pub const ADMIN: &str = "cluster-admin-token";

pub struct Cluster {
    pub nodes: Vec<String>,
    pub kafka: KafkaSettings,
    pub redis: RedisSettings,
    pub group: String,
    pub client_id: String,
    pub client_secret: String,
    pub password: String,
    pub http: reqwest::Client,
    _keys: tempfile::TempDir,
    node_tasks: Vec<JoinHandle<()>>,
    /// The nodes themselves (their key managers rotate while they live).
    _nodes: Vec<Node>,
    /// Node 0's configuration, for starting one more node like it.
    pub config: Config,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for t in &self.node_tasks {
            t.abort();
        }
    }
}

pub fn kafka_settings(bootstrap: &str) -> KafkaSettings {
    let topic = unique("events");
    KafkaSettings {
        bootstrap_servers: bootstrap.to_owned(),
        dead_letter_topic: format!("{topic}.dlq"),
        keys_topic: format!("{topic}.keys"),
        topic,
        partitions: 3,
        append_timeout_ms: 3000,
        ..KafkaSettings::default()
    }
    .single_broker()
}

pub fn projector_config(c: &Cluster) -> tokend_projector::Config {
    tokend_projector::Config {
        kafka: c.kafka.clone(),
        redis: c.redis.clone(),
        group_id: c.group.clone(),
        metrics_addr: None,
        ..tokend_projector::Config::default()
    }
}

impl Cluster {
    /// `nodes` token nodes sharing one topic, one key prefix and one sealed key set.
    pub async fn start(bootstrap: &str, redis_url: &str, nodes: usize) -> Self {
        Self::start_with(bootstrap, redis_url, nodes, Arc::new(SystemClock)).await
    }

    /// As [`Cluster::start`], the nodes on `clock`.
    pub async fn start_with(
        bootstrap: &str,
        redis_url: &str,
        nodes: usize,
        clock: Arc<dyn tokend_domain::Clock>,
    ) -> Self {
        let redis = RedisSettings {
            url: redis_url.to_owned(),
            ..RedisSettings::default()
        };
        Self::start_on(bootstrap, redis, nodes, clock).await
    }

    /// As [`Cluster::start`], on the Redis (or Redis Cluster) `redis` names; each cluster
    /// its own key prefix.
    pub async fn start_on(
        bootstrap: &str,
        mut redis: RedisSettings,
        nodes: usize,
        clock: Arc<dyn tokend_domain::Clock>,
    ) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("warn")
            .try_init();
        let keys = tempfile::tempdir().unwrap();
        let kafka = kafka_settings(bootstrap);
        redis.key_prefix = unique("tokend");
        let group = unique("projector");
        // Node 0 seeds the demo client, which needs a ready projection: a projector runs
        // until the nodes are up, then leaves the group (tests start their own).
        let (stop_seeding, seeding_stopped) = tokio::sync::oneshot::channel::<()>();
        let seeding = tokio::spawn(run_projector(
            tokend_projector::Config {
                kafka: kafka.clone(),
                redis: redis.clone(),
                group_id: group.clone(),
                metrics_addr: None,
                ..tokend_projector::Config::default()
            },
            async move {
                let _ = seeding_stopped.await;
            },
        ));
        let listeners: Vec<tokio::net::TcpListener> = futures::future::join_all(
            (0..nodes).map(|_| tokio::net::TcpListener::bind("127.0.0.1:0")),
        )
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
        let urls: Vec<String> = listeners
            .iter()
            .map(|l| format!("http://{}", l.local_addr().unwrap()))
            .collect();
        let mut demo = None;
        let mut node_tasks = Vec::new();
        let mut node_handles = Vec::new();
        let mut first_config = None;
        for (i, listener) in listeners.into_iter().enumerate() {
            let mut config = Config::default();
            config.storage.backend = Backend::Cluster;
            // Each node its own directory: the signing keys come from the key topic alone.
            config.storage.data_dir = keys.path().join(format!("node{i}"));
            config.keys.kek = Some("11".repeat(32));
            // These nodes serve load generators: one demo user logging in many times a second.
            config.rate_limit.enabled = false;
            config.tokens.issuer = urls[0].clone();
            config.tokens.leeway_secs = 0;
            config.grants.password = true;
            config.seed.demo = i == 0;
            config.admin.token = Some(ADMIN.into());
            config.kafka = kafka.clone();
            config.redis = redis.clone();
            let node = Node::start(&config, clock.clone()).await.unwrap();
            if i == 0 {
                demo = node.demo.as_ref().map(|d| {
                    (
                        d.client_id.clone(),
                        d.client_secret.clone(),
                        d.password.clone(),
                    )
                });
            }
            let router = node.router.clone();
            node_tasks.push(tokio::spawn(async move {
                axum::serve(listener, router).await.unwrap();
            }));
            node_handles.push(node);
            first_config.get_or_insert(config);
        }
        let (client_id, client_secret, password) = demo.expect("node 0 seeds the demo");
        let _ = stop_seeding.send(());
        seeding.await.unwrap();
        Self {
            nodes: urls,
            kafka,
            redis,
            group,
            client_id,
            client_secret,
            password,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            _keys: keys,
            node_tasks,
            _nodes: node_handles,
            config: first_config.expect("at least one node"),
        }
    }

    pub async fn store(&self) -> RedisStore {
        RedisStore::connect_with(&self.redis).await.unwrap()
    }

    /// A projector task (abort it to kill it mid-stream).
    pub fn spawn_projector(&self) -> JoinHandle<()> {
        tokio::spawn(run_projector(
            projector_config(self),
            std::future::pending(),
        ))
    }

    /// A projector task, once the nodes answer with its projection (see [`Cluster::ready`]).
    pub async fn projecting(&self) -> JoinHandle<()> {
        let projector = self.spawn_projector();
        self.ready().await;
        projector
    }

    /// POST a form to node `i` as the demo client.
    pub async fn form(
        &self,
        i: usize,
        path: &str,
        form: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.nodes[i]))
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// POST JSON to node `i`'s admin API.
    pub async fn admin_json(
        &self,
        i: usize,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.nodes[i]))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn admin(&self, i: usize, path: &str) -> u16 {
        self.http
            .post(format!("{}{path}", self.nodes[i]))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Status of `GET /api/data` on node `i` with `token`.
    pub async fn data(&self, i: usize, token: &str) -> u16 {
        self.http
            .get(format!("{}/api/data", self.nodes[i]))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    pub async fn client_credentials(&self, i: usize) -> String {
        let (status, body) = self
            .form(i, "/oauth/token", &[("grant_type", "client_credentials")])
            .await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn password_grant(&self, i: usize) -> serde_json::Value {
        let (status, body) = self
            .form(
                i,
                "/oauth/token",
                &[
                    ("grant_type", "password"),
                    ("username", "demo"),
                    ("password", &self.password),
                ],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits until the projector has applied the demo seed (the client can authenticate,
    /// the user can log in).
    pub async fn ready(&self) {
        eventually(Duration::from_secs(60), || async {
            let password = [
                ("grant_type", "password"),
                ("username", "demo"),
                ("password", self.password.as_str()),
            ];
            self.form(0, "/oauth/token", &[("grant_type", "client_credentials")])
                .await
                .0
                == 200
                && self.form(0, "/oauth/token", &password).await.0 == 200
        })
        .await;
    }
}

/// One projector until `stop` resolves.
pub async fn run_projector(
    config: tokend_projector::Config,
    stop: impl std::future::Future<Output = ()>,
) {
    let store = RedisStore::connect_with(&config.redis).await.unwrap();
    tokend_projector::run(&config, Arc::new(store), Arc::new(Metrics::default()), stop)
        .await
        .unwrap();
}

/// Polls `check` every 5 ms until it holds; panics after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The `jti` of an access token (its payload, unverified: the test issued it).
pub fn jti(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

/// Waits until the store has applied every record of the topic.
pub async fn caught_up(c: &Cluster, store: &RedisStore) {
    use tokend_domain::StateStore;
    let ends = tokend_kafka::end_offsets(&c.kafka).await.unwrap();
    eventually(Duration::from_secs(60), || async {
        for (p, high) in &ends {
            let next = store.next_offset(*p as u32).await.unwrap();
            if (next as i64) < *high {
                return false;
            }
        }
        true
    })
    .await;
}

/// Waits until the live projection has applied the whole log, replays the same log into an
/// empty prefix with `rebuild`, and returns both digests (live, clean) and the report.
pub async fn live_and_clean_digests(
    c: &Cluster,
) -> (String, String, tokend_projector::RebuildReport) {
    let store = c.store().await;
    caught_up(c, &store).await;
    let live = store.digest().await.unwrap();
    let mut clean_config = projector_config(c);
    clean_config.redis.key_prefix = unique("clean");
    let clean = RedisStore::connect_with(&clean_config.redis).await.unwrap();
    let report = tokend_projector::rebuild(&clean_config, &clean, false)
        .await
        .unwrap();
    (live, clean.digest().await.unwrap(), report)
}
