//! Topic creation at start: create what is missing, leave what exists.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use tokend_domain::LogError;

use crate::KafkaSettings;

/// One topic to make sure of.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub compacted: bool,
    /// No time or size retention: the topic is the source of truth.
    pub keep_forever: bool,
    /// `None`: `kafka.partitions`.
    pub partitions: Option<i32>,
}

impl KafkaSettings {
    /// The event topic and its dead-letter topic.
    pub fn event_topics(&self) -> Vec<TopicSpec> {
        vec![
            TopicSpec {
                name: self.topic.clone(),
                compacted: false,
                keep_forever: true,
                partitions: None,
            },
            TopicSpec {
                name: self.dead_letter_topic.clone(),
                compacted: false,
                keep_forever: false,
                partitions: None,
            },
        ]
    }

    /// The signing-key topic: one partition (one order for every node), compacted (records
    /// are keyed uniquely per proposal, so only explicit tombstones remove one), kept forever.
    pub fn keys_topic_spec(&self) -> TopicSpec {
        TopicSpec {
            name: self.keys_topic.clone(),
            compacted: true,
            keep_forever: true,
            partitions: Some(1),
        }
    }
}

pub async fn ensure_topics(settings: &KafkaSettings, topics: &[TopicSpec]) -> Result<(), LogError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &settings.bootstrap_servers)
        .create()
        .map_err(|e| LogError::Unavailable(format!("kafka admin client: {e}")))?;
    let min_isr = settings.min_insync_replicas.to_string();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let topic = NewTopic::new(
                &t.name,
                t.partitions.unwrap_or(settings.partitions),
                TopicReplication::Fixed(settings.replication_factor),
            )
            .set("min.insync.replicas", &min_isr);
            let topic = if t.compacted {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            };
            if t.keep_forever {
                topic.set("retention.ms", "-1").set("retention.bytes", "-1")
            } else {
                topic
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(new.iter(), &options)
        .await
        .map_err(|e| LogError::Unavailable(format!("kafka create topics: {e}")))?;
    for result in results {
        match result {
            Ok(name) => tracing::info!(topic = name, "Created topic."),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, RDKafkaErrorCode::InvalidReplicationFactor)) => {
                return Err(LogError::Unavailable(format!(
                    "kafka topic {name}: the cluster has fewer brokers than \
                     kafka.replication_factor = {} (production default 3, with \
                     kafka.min_insync_replicas = 2); add brokers, or for a single-broker \
                     stack set both to 1",
                    settings.replication_factor
                )));
            }
            Err((name, code)) => {
                return Err(LogError::Unavailable(format!("kafka topic {name}: {code}")));
            }
        }
    }
    await_partitions(admin, settings, topics).await
}

/// How long a start waits for new topics' partitions to have leaders.
const PARTITIONS_LIMIT: Duration = Duration::from_secs(30);

/// Returns once every topic's metadata shows its partitions with a leader: a topic just
/// created can be listed without them for a moment (seen on a loaded machine), and a reader
/// or producer started then fails with "unknown partition".
async fn await_partitions(
    admin: AdminClient<DefaultClientContext>,
    settings: &KafkaSettings,
    topics: &[TopicSpec],
) -> Result<(), LogError> {
    let wanted: Vec<(String, usize)> = topics
        .iter()
        .map(|t| {
            let n = t.partitions.unwrap_or(settings.partitions);
            (t.name.clone(), usize::try_from(n).unwrap_or_default())
        })
        .collect();
    tokio::task::spawn_blocking(move || {
        #[allow(clippy::disallowed_methods)] // a wait bound
        let deadline = std::time::Instant::now() + PARTITIONS_LIMIT;
        for (name, partitions) in &wanted {
            loop {
                let ready = admin
                    .inner()
                    .fetch_metadata(Some(name), Duration::from_secs(5))
                    .ok()
                    .and_then(|m| {
                        let t = m.topics().iter().find(|t| t.name() == name)?;
                        let led = t.partitions().iter().filter(|p| p.leader() >= 0).count();
                        Some(t.error().is_none() && led >= *partitions)
                    })
                    .unwrap_or(false);
                if ready {
                    break;
                }
                #[allow(clippy::disallowed_methods)] // a wait bound
                let late = std::time::Instant::now() > deadline;
                if late {
                    return Err(LogError::Unavailable(format!(
                        "kafka topic {name}: its partitions have no leader after {PARTITIONS_LIMIT:?}"
                    )));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| LogError::Unavailable(e.to_string()))?
}
