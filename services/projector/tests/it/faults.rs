//! Faults: Kafka stopped and started again under a running node; records the projector cannot
//! read.

use crate::LIMIT_SECS;
use std::time::Duration;

use tokend_kafka::rdkafka::ClientConfig;
use tokend_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use tokend_testkit::{Kafka, docker, redis};

use crate::cluster::{Cluster, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_down_means_503_for_issuance_but_validation_works_then_recovers() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let kafka = Kafka::start().await;
    let c = Cluster::start(&kafka.bootstrap, &redis().await.url, 1).await;
    let _projector = c.projecting().await;
    let before = c.client_credentials(0).await;

    docker("stop", kafka.id());
    let started = std::time::Instant::now();
    let resp = c
        .http
        .post(format!("{}/oauth/token", c.nodes[0]))
        .basic_auth(&c.client_id, Some(&c.client_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body.get("access_token").is_none());
    assert_eq!(body["error"], "temporarily_unavailable");
    println!(
        "issuance with Kafka stopped answered 503 after {:?}",
        started.elapsed()
    );
    assert_eq!(
        c.data(0, &before).await,
        200,
        "validation does not touch Kafka"
    );

    docker("start", kafka.id());
    eventually(Duration::from_secs(90), || async {
        c.form(0, "/oauth/token", &[("grant_type", "client_credentials")])
            .await
            .0
            == 200
    })
    .await;
    println!(
        "issuance recovered {:?} after Kafka was stopped",
        started.elapsed()
    );
    let after = c.client_credentials(0).await;
    assert_eq!(c.data(0, &after).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_undecodable_records_do_not_stop_the_projector() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let kafka = tokend_testkit::kafka().await;
    let c = Cluster::start(&kafka.bootstrap, &redis().await.url, 1).await;
    let _projector = c.projecting().await;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &c.kafka.bootstrap_servers)
        .create()
        .unwrap();
    let future_event = serde_json::json!({
        "type": "TokenTeleported", "version": 1, "id": "00000000-0000-0000-0000-000000000000",
        "occurred_at_ms": 0, "payload": {}
    })
    .to_string();
    for payload in [future_event.as_bytes(), b"\xff not json".as_slice()] {
        producer
            .send(
                FutureRecord::to(&c.kafka.topic)
                    .key("demo")
                    .payload(payload),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
    }
    // The projector moves on: a revocation after the bad records still takes effect.
    let token = c.client_credentials(0).await;
    c.form(0, "/oauth/revoke", &[("token", &token)]).await;
    eventually(Duration::from_secs(10), || async {
        c.data(0, &token).await == 401
    })
    .await;
    let dead = tokend_kafka::end_offsets(&tokend_kafka::KafkaSettings {
        topic: c.kafka.dead_letter_topic.clone(),
        ..c.kafka.clone()
    })
    .await
    .unwrap();
    assert_eq!(
        dead.iter().map(|(_, h)| h).sum::<i64>(),
        1,
        "one record dead-lettered"
    );
}

/// Production topic defaults (3 copies, 2 in sync: `acks=all` means something) on a cluster
/// with fewer brokers fail at start with a message that says what to change, not a code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_topic_defaults_on_one_broker_fail_with_a_clear_message() {
    tokend_testkit::time_limit(LIMIT_SECS);
    // A private broker: a refused topic creation must not disturb the other tests' broker.
    let kafka = Kafka::start().await;
    let topic = tokend_testkit::unique("rf");
    let settings = tokend_kafka::KafkaSettings {
        bootstrap_servers: kafka.bootstrap.clone(),
        dead_letter_topic: format!("{topic}.dlq"),
        topic,
        ..tokend_kafka::KafkaSettings::default()
    };
    assert_eq!(
        (settings.replication_factor, settings.min_insync_replicas),
        (3, 2)
    );
    let error = tokend_kafka::KafkaEventLog::connect(&settings)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("fewer brokers than kafka.replication_factor = 3"),
        "{error}"
    );
    assert!(
        tokend_kafka::KafkaEventLog::connect(&settings.single_broker())
            .await
            .is_ok()
    );
}

/// Dropping a running projector (and the nodes) while Kafka is gone finishes promptly: the
/// consumer's close, which never returns without a broker, must not run on the thread that
/// drops it. Without that, a runtime shutting down (a process exiting, a test ending) hangs.
#[test]
fn a_projector_dropped_while_kafka_is_gone_does_not_hold_up_the_runtime() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (kafka, cluster) = runtime.block_on(async {
        let kafka = Kafka::start().await;
        let c = Cluster::start(&kafka.bootstrap, &redis().await.url, 1).await;
        let projector = c.projecting().await;
        let token = c.client_credentials(0).await;
        c.form(0, "/oauth/revoke", &[("token", &token)]).await;
        eventually(Duration::from_secs(10), || async {
            c.data(0, &token).await == 401
        })
        .await;
        docker("stop", kafka.id());
        drop(projector); // detached: the runtime's shutdown drops it
        (kafka, c)
    });

    let (done, dropped) = std::sync::mpsc::channel();
    let started = std::time::Instant::now();
    std::thread::spawn(move || {
        drop(cluster);
        drop(runtime);
        let _ = done.send(());
    });
    // A blocking close takes librdkafka's session timeout or longer (6 s here), or forever.
    let finished = dropped.recv_timeout(Duration::from_secs(3));
    println!("nodes and runtime dropped in {:?}", started.elapsed());
    assert!(
        finished.is_ok(),
        "dropping the runtime with the projector's consumer in it still blocks after 3 s"
    );
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async move { drop(kafka) });
}
