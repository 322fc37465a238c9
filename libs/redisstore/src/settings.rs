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
