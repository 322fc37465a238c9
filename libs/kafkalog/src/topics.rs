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
    Ok(())
}
