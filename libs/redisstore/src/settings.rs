//! Where the projection lives, for every process that reads or writes it.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://host:port` of a single Redis; with `cluster`, seed nodes separated by commas.
    pub url: String,
    /// A Redis Cluster: the projection lives in one hash slot (the prefix is its hash tag) and
    /// the client follows the slot's master through failovers.
    pub cluster: bool,
    pub key_prefix: String,
    /// A command with no answer within this time fails (and the caller answers 503).
    pub response_timeout_ms: u64,
    /// Client records a token node keeps in memory, kept current by the projector's change
    /// stream (0: none, every authentication reads Redis). Nodes only.
    pub client_cache: usize,
    /// Revocation records a token node keeps in memory, so that validation needs no Redis
    /// round trip (0: none). Past this many live revocations the node reads Redis again.
    pub revocation_mirror: usize,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            cluster: false,
            key_prefix: "tokend".into(),
            response_timeout_ms: 2000,
            client_cache: 10_000,
            revocation_mirror: 1_000_000,
        }
    }
}

impl RedisSettings {
    /// The nodes `url` names: one, or with `cluster` the seed nodes (comma-separated).
    pub(crate) fn nodes(&self) -> redis::RedisResult<Vec<redis::ConnectionInfo>> {
        let nodes: Vec<redis::ConnectionInfo> = self
            .url
            .split(',')
            .map(|u| redis::IntoConnectionInfo::into_connection_info(u.trim()))
            .collect::<redis::RedisResult<_>>()?;
        if nodes.len() > 1 && !self.cluster {
            return Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "redis.url lists several nodes: set redis.cluster = true for a Redis Cluster",
            )));
        }
        Ok(nodes)
    }

    /// Checks `url` without connecting (for `check-config`).
    pub fn validate(&self) -> Result<(), String> {
        self.nodes()
            .map(drop)
            .map_err(|e| format!("redis.url: {e}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn several_nodes_need_cluster_mode_and_every_url_must_parse() {
        let mut settings = RedisSettings {
            url: "redis://10.0.0.1:6379, redis://10.0.0.2:6379".into(),
            ..RedisSettings::default()
        };
        let error = settings.validate().unwrap_err();
        assert!(error.contains("redis.cluster"), "{error}");
        settings.cluster = true;
        assert_eq!(settings.validate(), Ok(()));
        assert_eq!(settings.nodes().map(|n| n.len()).ok(), Some(2));
        settings.url = "redis://10.0.0.1:6379,not a url".into();
        assert!(settings.validate().is_err());
        assert_eq!(RedisSettings::default().validate(), Ok(()));
    }
}
