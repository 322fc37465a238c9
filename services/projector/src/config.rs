//! Layered configuration: defaults, a TOML file, then `PROJECTOR_SECTION__KEY` variables.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use tokend_kafka::KafkaSettings;
use tokend_redis::RedisSettings;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaSettings,
    pub redis: RedisSettings,
    pub group_id: String,
    /// Prometheus text metrics at `/metrics`; empty to turn off.
    pub metrics_addr: Option<SocketAddr>,
    /// The most records of one partition applied in one step.
    pub max_batch: usize,
    /// How often the projector checks that the projection is where it expects (lost data,
    /// a new generation) and marks caught-up partitions complete.
    pub heal_interval_ms: u64,
    pub telemetry: tokend_telemetry::TelemetryConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            kafka: KafkaSettings::default(),
            redis: RedisSettings::default(),
            group_id: "tokend-projector".into(),
            metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            max_batch: 2000,
            heal_interval_ms: 250,
            telemetry: tokend_telemetry::TelemetryConfig::default(),
        }
    }
}

impl Config {
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            if !file.exists() {
                bail!("config file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(Env::prefixed("PROJECTOR_").split("__").ignore(&["config"]));
        let config: Self = figment.extract().context("invalid configuration")?;
        config.redis.validate().map_err(anyhow::Error::msg)?;
        Ok(config)
    }
}
