//! The key-encryption key and the signing keys at start: sealed keys are read from the data
//! directory, or one active key is made and sealed there. Cluster-wide rotation over a
//! compacted topic replaces this file in a later issue.

use std::path::Path;

use anyhow::{Context, bail};
use tokend_jwt::{Kek, KeyPair, KeyState, Keyring, SEAL_VERSION, SealedKey};

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
        if sealed.iter().any(|s| s.version != SEAL_VERSION) {
            // Records of the first format bind only the kid: seal them again, every field
            // bound, and swap the file atomically.
            let resealed: Vec<SealedKey> = ring
                .keys()
                .iter()
                .map(|k| SealedKey::seal(k, kek))
                .collect();
            let tmp = path.with_extension("json.tmp");
            let _ = std::fs::remove_file(&tmp);
            write_private(&tmp, serde_json::to_string_pretty(&resealed)?.as_bytes())?;
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("cannot replace {}", path.display()))?;
            tracing::info!(
                keys = resealed.len(),
                "Sealed the signing keys again in the current format."
            );
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

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};

    use super::*;

    #[test]
    fn first_format_key_files_are_sealed_again_with_every_field_bound() {
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
        let path = dir.path().join(KEYS_FILE);
        std::fs::write(&path, old.to_string()).unwrap();

        let ring = load_or_create(dir.path(), &kek, 0).unwrap();
        assert_eq!(ring.active().unwrap().kid(), key.kid());
        let now: Vec<SealedKey> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(now.iter().all(|s| s.version == SEAL_VERSION), "{now:?}");
        assert_eq!(now[0].open(&kek).unwrap().x(), key.x());
        // Loading again changes nothing.
        let again = std::fs::read_to_string(&path).unwrap();
        load_or_create(dir.path(), &kek, 0).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), again);
    }
}
