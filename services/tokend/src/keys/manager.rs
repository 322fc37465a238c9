//! The node's signing keys, from the key log alone: every node applies the same records in
//! the same order, adopts the first proposal of each epoch, and derives each key's state from
//! the schedule and its clock. A node signs only with a key it read back from the log, so it
//! never signs with a key the others cannot have seen. Private keys travel sealed under the
//! KEK and are opened here, in memory.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokend_domain::Clock;
use tokend_jwt::{
    Adopted, Kek, KeyPair, KeyRecord, KeyState, Keyring, Rotation, SealedKey, SharedKeyring,
};

/// One adopted key, as the admin API lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub epoch: u64,
    /// `next`, `active` or `retired`; absent when not published (yet, or any more).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<KeyState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at_ms: Option<i64>,
}

pub struct KeyManager {
    kek: Kek,
    rotation: Rotation,
    clock: Arc<dyn Clock>,
    ring: Arc<SharedKeyring>,
    known: Mutex<Known>,
}

#[derive(Default)]
struct Known {
    adopted: Adopted,
    /// Adopted keys, opened.
    keys: HashMap<String, KeyPair>,
    revoked: HashSet<String>,
    /// An adopted key this node cannot open (another KEK): it must not serve.
    unopenable: Option<String>,
    /// What the keyring holds now (kid and state), to rebuild it only on a change.
    published: Vec<(String, KeyState)>,
}

impl KeyManager {
    pub fn new(kek: Kek, rotation: Rotation, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Self {
            kek,
            rotation,
            clock,
            ring: Arc::new(SharedKeyring::new(Keyring::default())),
            known: Mutex::default(),
        })
    }

    /// The keyring signers and verifiers use; kept current by [`KeyManager::refresh`].
    pub fn keyring(&self) -> Arc<SharedKeyring> {
        self.ring.clone()
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies one record of the key log, in log order.
    pub fn apply(&self, record: KeyRecord) {
        {
            let mut known = self.known();
            match record {
                KeyRecord::Proposed { epoch, key } => {
                    if known.revoked.contains(&key.kid) || !known.adopted.propose(epoch, &key.kid) {
                        return; // a later proposal for an epoch that has its key
                    }
                    match key.open(&self.kek) {
                        Ok(pair) => {
                            known.keys.insert(key.kid.clone(), pair);
                        }
                        Err(error) => {
                            known.unopenable = Some(format!(
                                "signing key {} (epoch {epoch}) in the key log does not open: {error}; \
                                 every node needs the KEK the keys were sealed under",
                                key.kid
                            ));
                        }
                    }
                }
                KeyRecord::Revoked { kid } => {
                    // Its epoch takes the next proposal (every node sees the same order).
                    let epoch = known.adopted.withdraw(&kid);
                    tracing::warn!(%kid, ?epoch, "Signing key revoked.");
                    known.keys.remove(&kid);
                    known.revoked.insert(kid);
                }
            }
        }
        self.refresh();
    }

    /// Applies a record as stored (JSON); one that does not decode is passed over with a
    /// warning (a newer record type).
    pub fn apply_bytes(&self, bytes: &[u8]) {
        match serde_json::from_slice::<KeyRecord>(bytes) {
            Ok(record) => self.apply(record),
            Err(error) => tracing::warn!(%error, "Key log record not understood; passed over."),
        }
    }

    /// Sets the keyring to the keys published now, in their states (only when that changed).
    pub fn refresh(&self) {
        let now = self.clock.now_secs();
        let mut known = self.known();
        let published: Vec<(String, KeyState)> = known
            .adopted
            .published(&self.rotation, now)
            .into_iter()
            .filter(|(kid, _)| !known.revoked.contains(*kid) && known.keys.contains_key(*kid))
            .map(|(kid, state)| (kid.to_owned(), state))
            .collect();
        if published == known.published {
            return;
        }
        let keys = published
            .iter()
            .filter_map(|(kid, state)| known.keys.get(kid).map(|k| k.with_state(*state)))
            .collect();
        *self.ring.write() = Keyring::new(keys);
        tracing::info!(keys = ?published, "Signing keys now published.");
        known.published = published;
    }

    /// Proposals for the epochs due now that have no key yet (a new key each, sealed).
    pub fn proposals(&self) -> Vec<KeyRecord> {
        let now = self.clock.now_secs();
        let missing = self.known().adopted.missing(&self.rotation, now);
        missing
            .into_iter()
            .map(|epoch| KeyRecord::Proposed {
                epoch,
                key: SealedKey::seal(
                    &KeyPair::generate(KeyState::Next, self.clock.now_ms()),
                    &self.kek,
                ),
            })
            .collect()
    }

    /// A proposal of an existing key for the epoch signing now (the upgrade from a key file).
    pub fn adopt_existing(&self, key: &KeyPair) -> Option<KeyRecord> {
        let epoch = self.rotation.epoch_at(self.clock.now_secs());
        self.known()
            .adopted
            .kid(epoch)
            .is_none()
            .then(|| KeyRecord::Proposed {
                epoch,
                key: SealedKey::seal(key, &self.kek),
            })
    }

    /// The adopted keys, newest epoch first: kid, epoch, state now (`None`: not published).
    pub fn list(&self) -> Vec<KeyInfo> {
        let now = self.clock.now_secs();
        let known = self.known();
        let mut keys: Vec<KeyInfo> = known
            .adopted
            .all()
            .map(|(epoch, kid)| KeyInfo {
                kid: kid.to_owned(),
                epoch,
                state: self.rotation.state(epoch, now),
                created_at_ms: known.keys.get(kid).map(KeyPair::created_at_ms),
            })
            .collect();
        keys.reverse();
        keys
    }

    /// Whether `kid` is an adopted key (revoked ones are not).
    pub fn knows(&self, kid: &str) -> bool {
        self.known().adopted.all().any(|(_, k)| k == kid)
    }

    /// Whether `kid` was revoked.
    pub fn is_revoked(&self, kid: &str) -> bool {
        self.known().revoked.contains(kid)
    }

    /// An adopted key this node cannot open: it must not serve (a KEK mismatch).
    pub fn unopenable(&self) -> Option<String> {
        self.known().unopenable.clone()
    }

    /// Whether a key signs now.
    pub fn has_active(&self) -> bool {
        self.ring.read().active().is_some()
    }
}

#[cfg(test)]
mod tests {
    use tokend_domain::ManualClock;

    use super::*;

    const DAY: i64 = 86_400;

    fn manager(clock: Arc<ManualClock>, kek: u8) -> Arc<KeyManager> {
        let rotation = Rotation {
            period_secs: DAY,
            lead_secs: 3600,
            retire_after_secs: 7200,
        };
        KeyManager::new(Kek::from_bytes([kek; 32]), rotation, clock)
    }

    /// Applies `records` to every manager in the same order (the log).
    fn log(managers: &[&Arc<KeyManager>], records: &[KeyRecord]) {
        for m in managers {
            for r in records {
                m.apply(r.clone());
            }
        }
    }

    fn active(m: &KeyManager) -> Option<String> {
        m.keyring().read().active().map(|k| k.kid().to_owned())
    }

    #[test]
    fn nodes_agree_on_the_first_proposal_and_rotate_on_schedule() {
        let clock = Arc::new(ManualClock::new(10 * DAY * 1000 + 1000));
        let (a, b) = (manager(clock.clone(), 1), manager(clock.clone(), 1));
        assert!(!a.has_active());
        // Both propose for the current epoch at once; the log orders b's first.
        let (pa, pb) = (a.proposals(), b.proposals());
        assert_eq!((pa.len(), pb.len()), (1, 1));
        log(&[&a, &b], &[pb[0].clone(), pa[0].clone()]);
        let KeyRecord::Proposed { key: first, .. } = &pb[0] else {
            unreachable!()
        };
        assert_eq!(active(&a).as_deref(), Some(first.kid.as_str()));
        assert_eq!(active(&a), active(&b));
        assert!(a.has_active());

        // An hour before the next epoch its key is due; once adopted it is published as next.
        clock.advance_secs(DAY - 3600 - 1);
        let next = a.proposals();
        assert_eq!(next.len(), 1);
        log(&[&a, &b], &next);
        for m in [&a, &b] {
            m.refresh();
            let ring = m.keyring();
            let states: Vec<KeyState> = ring.read().keys().iter().map(KeyPair::state).collect();
            assert!(states.contains(&KeyState::Next), "{states:?}");
            assert_eq!(active(m).as_deref(), Some(first.kid.as_str()));
        }
        // At the epoch boundary the next key signs and the first one only verifies.
        clock.advance_secs(3600);
        a.refresh();
        let KeyRecord::Proposed { key: second, .. } = &next[0] else {
            unreachable!()
        };
        assert_eq!(active(&a).as_deref(), Some(second.kid.as_str()));
        assert_eq!(
            a.keyring().read().get(&first.kid).map(KeyPair::state),
            Some(KeyState::Retired)
        );
        // Two hours later the first key is gone from the set.
        clock.advance_secs(7200);
        a.refresh();
        assert!(a.keyring().read().get(&first.kid).is_none());
    }

    #[test]
    fn a_revoked_key_leaves_the_set_at_once() {
        let clock = Arc::new(ManualClock::new(10 * DAY * 1000));
        let a = manager(clock, 1);
        let p = a.proposals();
        log(&[&a], &p);
        let kid = active(&a).unwrap();
        a.apply(KeyRecord::Revoked { kid: kid.clone() });
        assert!(a.keyring().read().get(&kid).is_none());
        assert!(!a.has_active() && !a.knows(&kid));
        // Its epoch takes the next proposal; the revoked key can never come back.
        let replacement = a.proposals();
        assert_eq!(replacement.len(), 1);
        log(&[&a], &p);
        log(&[&a], &replacement);
        let now = active(&a).unwrap();
        assert_ne!(now, kid);
    }

    #[test]
    fn a_key_sealed_under_another_kek_keeps_the_node_from_serving() {
        let clock = Arc::new(ManualClock::new(10 * DAY * 1000));
        let (a, other) = (manager(clock.clone(), 1), manager(clock, 2));
        let p = a.proposals();
        log(&[&a, &other], &p);
        let why = other.unopenable().unwrap();
        assert!(why.contains("does not open"), "{why}");
        assert!(a.has_active());
    }
}
