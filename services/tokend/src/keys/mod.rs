//! The key-encryption key, and the signing keys from the key log: a node needs only the KEK
//! and the log (the Kafka address in cluster mode, its data directory embedded). It reads
//! every key record before it serves, proposes a key for any epoch due without one, and keeps
//! rotating on schedule while it runs ([`rotate`]). No key file is copied between nodes.

mod log;
mod manager;

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::{Context, bail};
use tokend_domain::Clock;
use tokend_jwt::{Kek, KeyPair, SealedKey};

pub use log::{FileKeyLog, KafkaKeyLog, KeyLog};
pub use manager::{KeyInfo, KeyManager};

/// A node's signing keys and the log they come from.
pub struct Keys {
    pub manager: Arc<KeyManager>,
    log: Arc<dyn KeyLog>,
}

impl Keys {
    /// Emergency: withdraws `kid` from the key set on every node (through the key log). A
    /// revoked active key is replaced within a rotation check (a second). What it signed is
    /// revoked through the event log (`Service::revoke_signing_key`).
    pub async fn revoke(&self, kid: &str) -> anyhow::Result<()> {
        self.log
            .append(&tokend_jwt::KeyRecord::Revoked {
                kid: kid.to_owned(),
            })
            .await
    }
}

use crate::config::{self, Backend, Config};

/// The key file of earlier versions: its active key is carried over into the key log once.
const LEGACY_KEYS_FILE: &str = "signing-keys.json";
/// The embedded key log, under `storage.data_dir`.
pub const KEY_LOG_FILE: &str = "keys.log";
const DEV_KEK_FILE: &str = "dev-kek";
/// How long a start waits for a key of the current epoch to come back from the log.
const ADOPTION_LIMIT: Duration = Duration::from_secs(30);

pub fn kek(config: &Config) -> anyhow::Result<Kek> {
    let given = config::secret(
        config.keys.kek.as_deref(),
        config.keys.kek_file.as_deref(),
        "keys.kek",
    )?;
    if let Some(text) = given {
        return Kek::parse(&text).context("keys.kek");
    }
    if config.storage.backend == config::Backend::Cluster {
        // Each node would make its own: its own signing keys, and session cookies, CSRF
        // tokens and client-secret digests no other node accepts.
        bail!(
            "cluster mode needs the operator's key-encryption key, the same on every node: set \
             keys.kek_file (or TOKEND_KEYS__KEK) to 32 random bytes, base64 or hex \
             (e.g. `head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'`)"
        );
    }
    let path = config.storage.data_dir.join(DEV_KEK_FILE);
    tracing::warn!(
        path = %path.display(),
        "NO KEY-ENCRYPTION KEY CONFIGURED: using a development KEK stored next to the keys it \
         protects. Set keys.kek_file (or TOKEND_KEYS__KEK) before production use."
    );
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Kek::parse(&text).context("development KEK file");
    }
    let text = tokend_oauth::secrets::random_token();
    write_private(&path, text.as_bytes())?;
    Kek::parse(&text).context("development KEK")
}

/// Opens the key log, applies it, and returns once a key signs for the current epoch (read
/// back from the log: never one the other nodes cannot have seen).
pub async fn start(config: &Config, kek: &Kek, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<Keys>> {
    let manager = KeyManager::new(kek.clone(), config.keys.rotation(), clock);
    let log: Arc<dyn KeyLog> = match config.storage.backend {
        Backend::Embedded => Arc::new(FileKeyLog::open(
            &config.storage.data_dir.join(KEY_LOG_FILE),
            config.storage.fsync,
            &manager,
        )?),
        Backend::Cluster => Arc::new(KafkaKeyLog::open(&config.kafka, &manager).await?),
    };
    if let Some(key) = legacy_active_key(&config.storage.data_dir, kek)?
        && let Some(record) = manager.adopt_existing(&key)
    {
        log.append(&record).await?;
        tracing::info!(
            kid = key.kid(),
            "Carried the key file's active key over into the key log."
        );
    }
    let deadline = tokio::time::Instant::now() + ADOPTION_LIMIT;
    loop {
        manager.refresh();
        if let Some(why) = manager.unopenable() {
            bail!(why);
        }
        if manager.has_active() {
            return Ok(Arc::new(Keys { manager, log }));
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no signing key came back from the key log within {ADOPTION_LIMIT:?}");
        }
        for record in manager.proposals() {
            log.append(&record).await?;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Keeps the keys on schedule while the node lives: moves states as time passes and proposes
/// the next key when its publication is due.
pub async fn rotate(keys: Weak<Keys>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(keys) = keys.upgrade() else {
            return;
        };
        keys.manager.refresh();
        for record in keys.manager.proposals() {
            if let Err(error) = keys.log.append(&record).await {
                tracing::warn!(error = %format!("{error:#}"), "Could not propose a signing key; will retry.");
            }
        }
    }
}

/// The active key of an earlier version's key file, if there is one.
fn legacy_active_key(data_dir: &Path, kek: &Kek) -> anyhow::Result<Option<KeyPair>> {
    let path = data_dir.join(LEGACY_KEYS_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let sealed: Vec<SealedKey> =
        serde_json::from_str(&text).with_context(|| format!("{} is malformed", path.display()))?;
    sealed
        .iter()
        .find(|s| s.state == tokend_jwt::KeyState::Active)
        .map(|s| {
            s.open(kek)
                .with_context(|| format!("signing key {}", s.kid))
        })
        .transpose()
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};
    use tokend_jwt::KeyState;

    use super::*;

    #[test]
    fn the_active_key_of_a_first_format_key_file_is_carried_over() {
        let dir = tempfile::tempdir().unwrap();
        let kek_bytes = [5u8; 32];
        let kek = Kek::from_bytes(kek_bytes);
        // A key file of the first format: no version, the kid alone as associated data.
        let seed = [9u8; 32];
        let key = KeyPair::from_seed(&seed, KeyState::Active, 7);
        let cipher = XChaCha20Poly1305::new(&kek_bytes.into());
        let nonce = [1u8; 24];
        let payload = Payload {
            msg: seed.as_slice(),
            aad: key.kid().as_bytes(),
        };
        let ciphertext = cipher.encrypt(XNonce::from_slice(&nonce), payload).unwrap();
        let old = serde_json::json!([{
            "kid": key.kid(), "state": "active", "created_at_ms": 7,
            "nonce": B64.encode(nonce), "ciphertext": B64.encode(ciphertext),
        }]);
        std::fs::write(dir.path().join(LEGACY_KEYS_FILE), old.to_string()).unwrap();
        let carried = legacy_active_key(dir.path(), &kek).unwrap().unwrap();
        assert_eq!(carried.kid(), key.kid());
        assert!(legacy_active_key(dir.path(), &Kek::from_bytes([6; 32])).is_err());
    }
}
