//! The key-encryption key and the signing keys at start: sealed keys are read from the data
//! directory, or one active key is made and sealed there. Cluster-wide rotation over a
//! compacted topic replaces this file in a later issue.

use std::path::Path;

use anyhow::{Context, bail};
use tokend_jwt::{Kek, KeyPair, KeyState, Keyring, SealedKey};

use crate::config::{self, Config};

const KEYS_FILE: &str = "signing-keys.json";
const DEV_KEK_FILE: &str = "dev-kek";

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

pub fn load_or_create(data_dir: &Path, kek: &Kek, now_ms: i64) -> anyhow::Result<Keyring> {
    let path = data_dir.join(KEYS_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let sealed: Vec<SealedKey> = serde_json::from_str(&text)
            .with_context(|| format!("{} is malformed", path.display()))?;
        let mut ring = Keyring::default();
        for s in &sealed {
            ring.insert(
                s.open(kek)
                    .with_context(|| format!("signing key {}", s.kid))?,
            );
        }
        if ring.active().is_none() {
            bail!("{} holds no active signing key", path.display());
        }
        return Ok(ring);
    }
    let key = KeyPair::generate(KeyState::Active, now_ms);
    let sealed = vec![SealedKey::seal(&key, kek)];
    write_private(&path, serde_json::to_string_pretty(&sealed)?.as_bytes())?;
    tracing::info!(kid = key.kid(), "Created a signing key.");
    Ok(Keyring::new(vec![key]))
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
