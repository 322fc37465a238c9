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
use tokend_jwt::{Kek, KeyPair, KeyRecord, SealedKey, SecretsRoot};

pub use log::{FileKeyLog, KafkaKeyLog, KeyLog};
pub use manager::{Keks, KeyInfo, KeyManager};

/// A node's signing keys and the log they come from.
pub struct Keys {
    pub manager: Arc<KeyManager>,
    log: Arc<dyn KeyLog>,
    /// The installation's secrets root (never changes once known).
    root: SecretsRoot,
}

impl Keys {
    /// The root of the client-secret digest key and the session and CSRF keys.
    pub fn root(&self) -> &SecretsRoot {
        &self.root
    }

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

    /// Rotates ahead of the schedule: the next key is published now and signs a lead from
    /// now (at the plain rotation if that comes sooner). Returns its kid and when it signs.
    pub async fn rotate_early(&self) -> anyhow::Result<(String, i64)> {
        if let Some(cut) = self.manager.early_rotation() {
            self.log.append(&cut).await?;
        }
        let (manager, log) = (&self.manager, &self.log);
        back_from_log("the next key", Duration::from_millis(20), || async move {
            manager.refresh();
            // Once the cut is back from the log, the next key is due.
            if manager.early_rotation().is_none()
                && let Some(next) = manager.next_key()
            {
                return Ok(Some(next));
            }
            for record in manager.proposals() {
                log.append(&record).await?;
            }
            Ok(None)
        })
        .await
    }

    /// KEK rotation: re-seals the secrets root and every key in use under this node's KEK
    /// and waits until the record is back from the log. Returns the KEK id and how many keys
    /// were re-sealed.
    pub async fn reseal(&self) -> Result<(String, usize), ResealError> {
        let record = self.manager.reseal().map_err(ResealError::Refused)?;
        let KeyRecord::Resealed { kek, keys, .. } = &record else {
            return Err(ResealError::Refused("nothing to re-seal".into()));
        };
        let (kek, count) = (kek.clone(), keys.len());
        self.log.append(&record).await.map_err(ResealError::Log)?;
        let manager = &self.manager;
        back_from_log("the re-seal", Duration::from_millis(20), || async {
            Ok((manager.kek_ids().0 == kek).then_some(()))
        })
        .await
        .map_err(ResealError::Log)?;
        Ok((kek, count))
    }
}

use crate::config::{self, Backend, Config};

/// Why a KEK rotation was not done.
#[derive(Debug, thiserror::Error)]
pub enum ResealError {
    /// This node cannot re-seal (it cannot open something it would have to).
    #[error("{0}")]
    Refused(String),
    /// The key log could not be written or read back.
    #[error("{0:#}")]
    Log(anyhow::Error),
}

/// The key file of earlier versions: its active key is carried over into the key log once.
const LEGACY_KEYS_FILE: &str = "signing-keys.json";
/// The embedded key log, under `storage.data_dir`.
pub const KEY_LOG_FILE: &str = "keys.log";
const DEV_KEK_FILE: &str = "dev-kek";
/// How long a start waits for a key of the current epoch to come back from the log.
const ADOPTION_LIMIT: Duration = Duration::from_secs(30);

/// The node's KEKs: `keys.kek` (or `keys.kek_file`), and during a KEK change
/// `keys.previous_kek` (or its file).
pub fn keks(config: &Config) -> anyhow::Result<Keks> {
    let previous = config::secret(
        config.keys.previous_kek.as_deref(),
        config.keys.previous_kek_file.as_deref(),
        "keys.previous_kek",
    )?
    .map(|text| Kek::parse(&text).context("keys.previous_kek"))
    .transpose()?;
    let given = config::secret(
        config.keys.kek.as_deref(),
        config.keys.kek_file.as_deref(),
        "keys.kek",
    )?;
    let current = match given {
        Some(text) => Kek::parse(&text).context("keys.kek")?,
        None if previous.is_some() => bail!("keys.previous_kek is set but keys.kek is not"),
        None => development_kek(config)?,
    };
    if previous.as_ref().is_some_and(|p| p.id() == current.id()) {
        bail!("keys.previous_kek is the same KEK as keys.kek");
    }
    Ok(Keks { current, previous })
}

fn development_kek(config: &Config) -> anyhow::Result<Kek> {
    if config.storage.backend == config::Backend::Cluster {
        // Each node would make its own: its own signing keys and secrets, no other node
        // able to open them.
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
pub async fn start(
    config: &Config,
    keks: Keks,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Arc<Keys>> {
    let legacy_key = legacy_active_key(&config.storage.data_dir, &keks)?;
    let manager = KeyManager::new(keks, config.keys.rotation(), clock);
    let log: Arc<dyn KeyLog> = match config.storage.backend {
        Backend::Embedded => Arc::new(FileKeyLog::open(
            &config.storage.data_dir.join(KEY_LOG_FILE),
            config.storage.fsync,
            &manager,
        )?),
        Backend::Cluster => Arc::new(KafkaKeyLog::open(&config.kafka, &manager).await?),
    };
    if let Some(why) = manager.unopenable() {
        bail!(why);
    }
    // The secrets root: from the log; for an installation from before it, as it was; for a
    // new installation, the first proposal in the log.
    if !manager.root_recorded() {
        if manager.has_history() || legacy_key.is_some() {
            manager.use_root_of_installation_before_roots();
        } else {
            log.append(&manager.root_proposal()).await?;
        }
    }
    if let Some(key) = legacy_key
        && let Some(record) = manager.adopt_existing(&key)
    {
        log.append(&record).await?;
        tracing::info!(
            kid = key.kid(),
            "Carried the key file's active key over into the key log."
        );
    }
    let root = back_from_log(
        "a signing key and the secrets root",
        Duration::from_millis(50),
        || async {
            manager.refresh();
            if let Some(why) = manager.unopenable() {
                bail!(why);
            }
            if let Some(root) = manager.root()
                && manager.has_active()
            {
                return Ok(Some(root));
            }
            for record in manager.proposals() {
                log.append(&record).await?;
            }
            Ok(None)
        },
    )
    .await?;
    Ok(Arc::new(Keys { manager, log, root }))
}

/// Runs `step` every `every` until it returns what it waits for (what this node wrote,
/// read back from the key log), for at most [`ADOPTION_LIMIT`].
async fn back_from_log<T, F, Fut>(what: &str, every: Duration, mut step: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + ADOPTION_LIMIT;
    loop {
        if let Some(value) = step().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{what} did not come back from the key log within {ADOPTION_LIMIT:?}");
        }
        tokio::time::sleep(every).await;
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
fn legacy_active_key(data_dir: &Path, keks: &Keks) -> anyhow::Result<Option<KeyPair>> {
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
            let opened = std::iter::once(&keks.current)
                .chain(&keks.previous)
                .find_map(|kek| s.open(kek).ok());
            opened.with_context(|| format!("signing key {} does not open under keys.kek", s.kid))
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
        let keks = |b| Keks {
            current: Kek::from_bytes(b),
            previous: None,
        };
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
        let carried = legacy_active_key(dir.path(), &keks(kek_bytes))
            .unwrap()
            .unwrap();
        assert_eq!(carried.kid(), key.kid());
        assert!(legacy_active_key(dir.path(), &keks([6; 32])).is_err());
    }
}
