//! The node's signing keys and secrets root, from the key log alone: every node applies the
//! same records in the same order, adopts the first proposal of each epoch, and derives each
//! key's state from the schedule and its clock. A node signs only with a key it read back from
//! the log, so it never signs with a key the others cannot have seen. Private keys travel
//! sealed under the KEK and are opened here, in memory.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokend_domain::Clock;
use tokend_jwt::{
    Adopted, Kek, KeyPair, KeyRecord, KeyState, Keyring, Rotation, SealedKey, SecretsRoot,
    SharedKeyring,
};

/// The node's KEKs: the one it is given, and during a KEK change the one being replaced.
#[derive(Debug, Clone)]
pub struct Keks {
    pub current: Kek,
    pub previous: Option<Kek>,
}

impl Keks {
    fn all(&self) -> impl Iterator<Item = &Kek> {
        std::iter::once(&self.current).chain(self.previous.as_ref())
    }

    fn ids(&self) -> Vec<String> {
        self.all().map(Kek::id).collect()
    }
}

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
    /// The id of the KEK its newest copy in the log is sealed under (absent: none opens here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealed_under: Option<String>,
}

pub struct KeyManager {
    keks: Keks,
    rotation: Rotation,
    clock: Arc<dyn Clock>,
    ring: Arc<SharedKeyring>,
    known: Mutex<Known>,
}

#[derive(Default)]
struct Known {
    adopted: Adopted,
    /// Adopted keys, opened, with the id of the KEK that opened their newest copy.
    keys: HashMap<String, (KeyPair, String)>,
    /// Why an adopted key did not open here.
    unopened: HashMap<String, String>,
    revoked: HashSet<String>,
    /// The secrets root, once known.
    root: Option<SecretsRoot>,
    /// The first root record did not open here.
    root_unopened: bool,
    /// The log had a root record.
    root_recorded: bool,
    /// The KEK the log is sealed under since its last re-seal (its id).
    log_kek: Option<String>,
    /// What the keyring holds now (kid and state), to rebuild it only on a change.
    published: Vec<(String, KeyState)>,
}

impl KeyManager {
    pub fn new(keks: Keks, rotation: Rotation, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Self {
            keks,
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

    /// Opens a sealed key under any of the node's KEKs; with the id of the one that did.
    fn open(&self, key: &SealedKey) -> Result<(KeyPair, String), tokend_jwt::SealError> {
        let mut last = tokend_jwt::SealError::Open;
        for kek in self.keks.all() {
            match key.open(kek) {
                Ok(pair) => return Ok((pair, kek.id())),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn open_root(&self, secret: &tokend_jwt::SealedSecret) -> Option<SecretsRoot> {
        self.keks.all().find_map(|kek| secret.open(kek).ok())
    }

    /// The KEK new records are sealed under: the one the log is under, else (no re-seal yet)
    /// the one being replaced if there is one, since nodes not given the new KEK yet must
    /// open what this node writes.
    fn sealing_kek(&self, known: &Known) -> &Kek {
        let named = known
            .log_kek
            .as_ref()
            .and_then(|id| self.keks.all().find(|k| k.id() == *id));
        named
            .or(self.keks.previous.as_ref())
            .unwrap_or(&self.keks.current)
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
                    match self.open(&key) {
                        Ok(opened) => {
                            known.keys.insert(key.kid.clone(), opened);
                        }
                        Err(error) => {
                            let why = format!(
                                "signing key {} (epoch {epoch}) in the key log does not open: {error}",
                                key.kid
                            );
                            known.unopened.insert(key.kid.clone(), why);
                        }
                    }
                }
                KeyRecord::Revoked { kid } => {
                    // Its epoch takes the next proposal (every node sees the same order).
                    let epoch = known.adopted.withdraw(&kid);
                    tracing::warn!(%kid, ?epoch, "Signing key revoked.");
                    known.keys.remove(&kid);
                    known.unopened.remove(&kid);
                    known.revoked.insert(kid);
                }
                KeyRecord::Cut { epoch, at_secs } => {
                    if known.adopted.cut(epoch, at_secs) {
                        tracing::info!(
                            epoch,
                            at_secs,
                            "Early rotation: the next key signs from then."
                        );
                    }
                }
                KeyRecord::Root { secret } => {
                    // The first root in the log is the installation's; later proposals lost.
                    if !known.root_recorded {
                        known.root_recorded = true;
                        known.root = self.open_root(&secret);
                        known.root_unopened = known.root.is_none();
                    }
                }
                KeyRecord::Resealed { kek, root, keys } => {
                    if let Some(opened) = self.open_root(&root) {
                        known.root.get_or_insert(opened);
                        known.root_unopened = false;
                    }
                    known.root_recorded = true;
                    for key in keys {
                        let adopted = known.adopted.all().any(|(_, k)| k == key.kid);
                        if adopted && let Ok(opened) = self.open(&key) {
                            known.unopened.remove(&key.kid);
                            known.keys.insert(key.kid.clone(), opened);
                        }
                    }
                    tracing::info!(kek = %kek, "The key log is now sealed under another KEK.");
                    known.log_kek = Some(kek);
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
            .filter_map(|(kid, state)| known.keys.get(kid).map(|(k, _)| k.with_state(*state)))
            .collect();
        *self.ring.write() = Keyring::new(keys);
        tracing::info!(keys = ?published, "Signing keys now published.");
        known.published = published;
    }

    /// Proposals for the epochs due now that have no key yet (a new key each, sealed).
    pub fn proposals(&self) -> Vec<KeyRecord> {
        let now = self.clock.now_secs();
        let known = self.known();
        let kek = self.sealing_kek(&known);
        known
            .adopted
            .missing(&self.rotation, now)
            .into_iter()
            .map(|epoch| KeyRecord::Proposed {
                epoch,
                key: SealedKey::seal(&KeyPair::generate(KeyState::Next, self.clock.now_ms()), kek),
            })
            .collect()
    }

    /// A proposal of an existing key for the epoch signing now (the upgrade from a key file).
    pub fn adopt_existing(&self, key: &KeyPair) -> Option<KeyRecord> {
        let known = self.known();
        let epoch = known
            .adopted
            .epoch_at(&self.rotation, self.clock.now_secs());
        known
            .adopted
            .kid(epoch)
            .is_none()
            .then(|| KeyRecord::Proposed {
                epoch,
                key: SealedKey::seal(key, self.sealing_kek(&known)),
            })
    }

    /// An early rotation asked for now: the record that makes the next key sign a lead from
    /// now, or `None` when the plain schedule rotates as soon (or the epoch was cut already).
    pub fn early_rotation(&self) -> Option<KeyRecord> {
        self.known()
            .adopted
            .early_rotation(&self.rotation, self.clock.now_secs())
    }

    /// The key that signs after the current one, and from when (seconds), once adopted.
    pub fn next_key(&self) -> Option<(String, i64)> {
        let known = self.known();
        let next = known
            .adopted
            .epoch_at(&self.rotation, self.clock.now_secs())
            + 1;
        let kid = known.adopted.kid(next)?.to_owned();
        Some((kid, known.adopted.signs_from(&self.rotation, next)))
    }

    /// The signing schedule now: how long the active key has signed, and how long until the
    /// next one signs (seconds).
    pub fn schedule_now(&self) -> Option<(i64, i64)> {
        let now = self.clock.now_secs();
        let known = self.known();
        let epoch = known.adopted.epoch_at(&self.rotation, now);
        known.adopted.kid(epoch)?;
        let since = known.adopted.signs_from(&self.rotation, epoch);
        let next = known.adopted.signs_from(&self.rotation, epoch + 1);
        Some((now - since, next - now))
    }

    /// Whether the log holds any key: an installation exists (and from before the secrets
    /// root, if it has no root record).
    pub fn has_history(&self) -> bool {
        let known = self.known();
        known.adopted.all().next().is_some() || !known.revoked.is_empty()
    }

    /// Whether the log named a secrets root (whether or not it opened here).
    pub fn root_recorded(&self) -> bool {
        self.known().root_recorded
    }

    /// The secrets root, once known.
    pub fn root(&self) -> Option<SecretsRoot> {
        self.known().root.clone()
    }

    /// A root proposal for a new installation, sealed like the keys.
    pub fn root_proposal(&self) -> KeyRecord {
        let known = self.known();
        KeyRecord::Root {
            secret: SecretsRoot::generate().seal(self.sealing_kek(&known)),
        }
    }

    /// An installation from before the secrets root: its secrets derive from the KEK its
    /// log is sealed under, as they always did (a record of it is written at the next KEK
    /// rotation).
    pub fn use_root_of_installation_before_roots(&self) {
        let mut known = self.known();
        let kek = self.sealing_kek(&known).clone();
        known
            .root
            .get_or_insert_with(|| SecretsRoot::of_installation_before_roots(&kek));
    }

    /// KEK rotation: the secrets root and every key still published, sealed under the node's
    /// own KEK. `Err` when this node cannot open something it would have to re-seal.
    pub fn reseal(&self) -> Result<KeyRecord, String> {
        if let Some(why) = self.unopenable() {
            return Err(why);
        }
        let now = self.clock.now_secs();
        let known = self.known();
        let root = known
            .root
            .as_ref()
            .ok_or("the secrets root is not known yet")?;
        let kek = &self.keks.current;
        let keys = known
            .adopted
            .published(&self.rotation, now)
            .into_iter()
            .filter_map(|(kid, _)| known.keys.get(kid))
            .map(|(pair, _)| SealedKey::seal(pair, kek))
            .collect();
        Ok(KeyRecord::Resealed {
            kek: kek.id(),
            root: root.seal(kek),
            keys,
        })
    }

    /// The id of the KEK the log is sealed under (as far as this node knows), and this node's.
    pub fn kek_ids(&self) -> (String, String) {
        let known = self.known();
        (self.sealing_kek(&known).id(), self.keks.current.id())
    }

    /// The adopted keys, newest epoch first: kid, epoch, state now (`None`: not published).
    pub fn list(&self) -> Vec<KeyInfo> {
        let now = self.clock.now_secs();
        let known = self.known();
        let mut keys: Vec<KeyInfo> = known
            .adopted
            .all()
            .map(|(epoch, kid)| {
                let opened = known.keys.get(kid);
                KeyInfo {
                    kid: kid.to_owned(),
                    epoch,
                    state: known.adopted.state(&self.rotation, epoch, now),
                    created_at_ms: opened.map(|(k, _)| k.created_at_ms()),
                    sealed_under: opened.map(|(_, kek)| kek.clone()),
                }
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

    /// Why this node must not serve: the log is sealed under a KEK it does not have, or a key
    /// it must publish, or the secrets root, does not open under its KEKs.
    pub fn unopenable(&self) -> Option<String> {
        let now = self.clock.now_secs();
        let known = self.known();
        let ours = self.keks.ids().join(", ");
        let advice = "every node needs the KEK the key log is sealed under (during a KEK change, \
                      the new one as keys.kek_file and the old one as keys.previous_kek_file)";
        if let Some(id) = &known.log_kek
            && !self.keks.ids().contains(id)
        {
            return Some(format!(
                "the key log is sealed under KEK {id}, and this node's KEK is {ours}: {advice}"
            ));
        }
        let published = known.adopted.published(&self.rotation, now);
        if let Some(why) = published
            .iter()
            .find_map(|(kid, _)| known.unopened.get(*kid))
        {
            return Some(format!("{why} (this node's KEK: {ours}); {advice}"));
        }
        known.root_unopened.then(|| {
            format!(
                "the secrets root in the key log does not open (this node's KEK: {ours}); {advice}"
            )
        })
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
        let keks = Keks {
            current: Kek::from_bytes([kek; 32]),
            previous: None,
        };
        KeyManager::new(keks, rotation, clock)
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

    fn with_keks(clock: Arc<ManualClock>, current: u8, previous: Option<u8>) -> Arc<KeyManager> {
        let m = manager(clock.clone(), current);
        let keks = Keks {
            current: Kek::from_bytes([current; 32]),
            previous: previous.map(|p| Kek::from_bytes([p; 32])),
        };
        KeyManager::new(keks, m.rotation, clock)
    }

    #[test]
    fn a_kek_change_reseals_keys_and_root_and_keeps_every_secret() {
        let clock = Arc::new(ManualClock::new(10 * DAY * 1000));
        // An installation under KEK 1, with its root and key.
        let old = with_keks(clock.clone(), 1, None);
        let mut log_records = vec![old.root_proposal()];
        log_records.extend(old.proposals());
        log(&[&old], &log_records);
        let root = old.root().unwrap().derive("client-secret-digest");
        let kid = active(&old).unwrap();

        // Step 1: a node given the new KEK 2 and the old one opens everything, and seals
        // what it proposes under the old one, which the nodes not yet changed still have.
        let changing = with_keks(clock.clone(), 2, Some(1));
        log(&[&changing], &log_records);
        assert_eq!(changing.unopenable(), None);
        assert_eq!(changing.kek_ids().0, Kek::from_bytes([1; 32]).id());
        clock.advance_secs(DAY - 3600);
        let next = changing.proposals();
        log(&[&old, &changing], &next);
        log_records.extend(next);
        assert_eq!(
            old.unopenable(),
            None,
            "the old node opens the new proposal"
        );

        // Step 2: the re-seal. From then on the log is under KEK 2.
        let resealed = changing.reseal().unwrap();
        let KeyRecord::Resealed { keys, .. } = &resealed else {
            unreachable!()
        };
        assert_eq!(keys.len(), 2, "the active and the next key");
        log_records.push(resealed);
        log(&[&changing], &log_records[log_records.len() - 1..]);
        assert_eq!(changing.kek_ids().0, Kek::from_bytes([2; 32]).id());

        // Step 3: a node with KEK 2 alone reads the whole log: same keys, same secrets.
        let new = with_keks(clock.clone(), 2, None);
        log(&[&new], &log_records);
        assert_eq!(new.unopenable(), None);
        assert_eq!(active(&new), Some(kid));
        assert_eq!(new.root().unwrap().derive("client-secret-digest"), root);
        assert!(
            new.list()
                .iter()
                .all(|k| k.sealed_under.as_deref() == Some(new.kek_ids().1.as_str()))
        );

        // A node with only the old KEK is now refused, naming the KEK the log is under.
        let stale = with_keks(clock, 1, None);
        log(&[&stale], &log_records);
        let why = stale.unopenable().unwrap();
        assert!(why.contains(&Kek::from_bytes([2; 32]).id()), "{why}");
    }

    #[test]
    fn the_first_root_wins_and_one_that_does_not_open_refuses_the_node() {
        let clock = Arc::new(ManualClock::new(10 * DAY * 1000));
        let (a, b) = (manager(clock.clone(), 1), manager(clock.clone(), 1));
        let (ra, rb) = (a.root_proposal(), b.root_proposal());
        log(&[&a, &b], &[rb.clone(), ra]);
        let secret = |m: &KeyManager| m.root().unwrap().derive("session");
        let KeyRecord::Root { secret: first } = &rb else {
            unreachable!()
        };
        let first = first.open(&Kek::from_bytes([1; 32])).unwrap();
        assert_eq!(secret(&a), first.derive("session"), "the first in the log");
        assert_eq!(secret(&b), first.derive("session"));
        let other = manager(clock, 2);
        log(&[&other], &[rb]);
        assert!(other.unopenable().unwrap().contains("secrets root"));
    }
}
