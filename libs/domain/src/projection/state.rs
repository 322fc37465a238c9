//! The projection's records by name, and the one place that says how each event changes
//! them. The same code runs on the whole state (embedded store, reference) and on the few
//! records a batch touches, loaded from Redis ([`keys`] names them; [`State::take_changes`]
//! says what to write back).

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use tokend_events::{Event, TokenIssued};

use crate::model::{Client, CodeRecord, FamilyRecord, RefreshRecord, User};

/// The name of one record. Every record is written by events of one partition key only (see
/// `tokend_events`' partition-key rule), which is what lets partitions apply independently.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Client(String),
    User(String),
    /// A token family, by family id (`sid`).
    Family(String),
    /// A refresh token, by digest.
    Refresh(String),
    /// An authorization code, by digest.
    Code(String),
    /// A revoked access token, by `jti`.
    RevokedToken(String),
    SubjectWatermark(String),
    ClientWatermark(String),
    /// A revoked signing key, by `kid`: every token it signed is revoked.
    RevokedKey(String),
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    Client(Box<Client>),
    User(User),
    Family(FamilyRecord),
    Refresh(Box<RefreshRecord>),
    Code(Box<CodeRecord>),
    /// A revoked access token; the value is the token's `exp`.
    RevokedToken(i64),
    /// "Revoked before", ms since the epoch.
    Watermark(i64),
    /// When the signing key was revoked (ms).
    RevokedKey(i64),
}

impl Record {
    /// Until when the record can change an answer (seconds); `None`: for ever.
    pub fn until(&self) -> Option<i64> {
        match self {
            Record::Family(f) => Some(f.until),
            Record::Refresh(r) => Some(r.exp),
            Record::Code(c) => Some(c.exp),
            Record::RevokedToken(exp) => Some(*exp),
            Record::Client(_) | Record::User(_) | Record::Watermark(_) | Record::RevokedKey(_) => {
                None
            }
        }
    }
}

/// Every record `event` reads or writes: what a store must load before applying it.
pub fn keys(event: &Event) -> Vec<Key> {
    match event {
        Event::ClientRegistered(e) => vec![Key::Client(e.client_id.clone())],
        Event::ClientDisabled(e) => vec![
            Key::Client(e.client_id.clone()),
            Key::ClientWatermark(e.client_id.clone()),
        ],
        Event::ClientRevoked(e) => vec![Key::ClientWatermark(e.client_id.clone())],
        Event::UserCreated(e) => vec![Key::User(e.username.clone())],
        Event::UserDisabled(e) => vec![
            Key::User(e.username.clone()),
            Key::SubjectWatermark(e.username.clone()),
        ],
        Event::SubjectRevoked(e) => vec![Key::SubjectWatermark(e.sub.clone())],
        Event::TokenIssued(e) => {
            if !starts_family_state(e) {
                return Vec::new();
            }
            let mut keys = vec![Key::Family(e.family_id.clone())];
            keys.extend(e.refresh.iter().map(|r| Key::Refresh(r.digest.clone())));
            keys.extend(e.rotated_from.iter().cloned().map(Key::Refresh));
            keys.extend(e.from_code.iter().cloned().map(Key::Code));
            keys
        }
        Event::TokenRevoked(e) => vec![Key::RevokedToken(e.jti.clone())],
        Event::TokenFamilyRevoked(e) => vec![Key::Family(e.family_id.clone())],
        Event::AuthorizationCodeIssued(e) => vec![Key::Code(e.code_digest.clone())],
        Event::SigningKeyRevoked(e) => vec![Key::RevokedKey(e.kid.clone())],
    }
}

/// A token with no refresh token, from neither a rotation nor a code (client credentials,
/// a password grant without refresh) needs no record at all: its `jti` is in the token, and
/// it can only be revoked by `jti` or by watermark.
fn starts_family_state(e: &TokenIssued) -> bool {
    e.refresh.is_some() || e.rotated_from.is_some() || e.from_code.is_some()
}

/// Records by name, and (when tracking) the names of those changed since the last
/// [`State::take_changes`].
#[derive(Debug, Clone, Default)]
pub struct State {
    records: HashMap<Key, Record>,
    changed: Option<BTreeSet<Key>>,
}

impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        self.records == other.records
    }
}
impl Eq for State {}

impl State {
    /// A state that records which keys each applied event changes.
    pub fn tracking() -> Self {
        Self {
            records: HashMap::new(),
            changed: Some(BTreeSet::new()),
        }
    }

    /// Puts a record loaded from a store (no change is recorded).
    pub fn load(&mut self, key: Key, record: Record) {
        self.records.insert(key, record);
    }

    pub fn get(&self, key: &Key) -> Option<&Record> {
        self.records.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Record)> {
        self.records.iter()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The records changed since the last call: the value to write, or `None` to delete.
    pub fn take_changes(&mut self) -> Vec<(Key, Option<Record>)> {
        let Some(changed) = self.changed.as_mut() else {
            return Vec::new();
        };
        std::mem::take(changed)
            .into_iter()
            .map(|k| {
                let v = self.records.get(&k).cloned();
                (k, v)
            })
            .collect()
    }

    /// Drops records that can no longer change an answer (expired before `now_secs`).
    pub fn prune(&mut self, now_secs: i64) {
        self.records
            .retain(|_, r| r.until().is_none_or(|until| until > now_secs));
    }

    fn put(&mut self, key: Key, record: Record) {
        if let Some(changed) = self.changed.as_mut() {
            changed.insert(key.clone());
        }
        self.records.insert(key, record);
    }

    /// Changes one record in place, if present.
    fn update(&mut self, key: Key, f: impl FnOnce(&mut Record)) {
        if let Some(r) = self.records.get_mut(&key) {
            f(r);
            if let Some(changed) = self.changed.as_mut() {
                changed.insert(key);
            }
        }
    }

    fn raise_watermark(&mut self, key: Key, ms: i64) {
        let current = match self.records.get(&key) {
            Some(Record::Watermark(w)) => *w,
            _ => i64::MIN,
        };
        if ms > current {
            self.put(key, Record::Watermark(ms));
        }
    }

    /// Applies one event. Deterministic: everything comes from the event and the records.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::ClientRegistered(e) => {
                // The first registration of an id wins: a later one (two nodes registering
                // at once) changes nothing, and its node answers 409 (`register_client`).
                let key = Key::Client(e.client_id.clone());
                if self.get(&key).is_none() {
                    self.put(key, Record::Client(Box::new(Client::from(e))));
                }
            }
            Event::ClientDisabled(e) => {
                self.update(Key::Client(e.client_id.clone()), |r| {
                    if let Record::Client(c) = r {
                        c.disabled = true;
                    }
                });
                self.raise_watermark(
                    Key::ClientWatermark(e.client_id.clone()),
                    e.revoked_before_ms,
                );
            }
            Event::ClientRevoked(e) => self.raise_watermark(
                Key::ClientWatermark(e.client_id.clone()),
                e.revoked_before_ms,
            ),
            Event::UserCreated(e) => {
                // The first creation of a name wins, as for clients.
                let key = Key::User(e.username.clone());
                if self.get(&key).is_none() {
                    let user = User {
                        username: e.username.clone(),
                        password_hash: e.password_hash.clone(),
                        disabled: false,
                    };
                    self.put(key, Record::User(user));
                }
            }
            Event::UserDisabled(e) => {
                self.update(Key::User(e.username.clone()), |r| {
                    if let Record::User(u) = r {
                        u.disabled = true;
                    }
                });
                self.raise_watermark(
                    Key::SubjectWatermark(e.username.clone()),
                    e.revoked_before_ms,
                );
            }
            Event::SubjectRevoked(e) => {
                self.raise_watermark(Key::SubjectWatermark(e.sub.clone()), e.revoked_before_ms);
            }
            Event::TokenIssued(e) => self.issue(e),
            Event::TokenRevoked(e) => {
                self.put(
                    Key::RevokedToken(e.jti.clone()),
                    Record::RevokedToken(e.exp),
                );
            }
            Event::TokenFamilyRevoked(e) => {
                let key = Key::Family(e.family_id.clone());
                if self.get(&key).is_none() && e.until > 0 {
                    let family = FamilyRecord {
                        revoked: true,
                        until: e.until,
                    };
                    self.put(key, Record::Family(family));
                } else {
                    self.update(key, |r| {
                        if let Record::Family(f) = r {
                            f.revoked = true;
                            f.until = f.until.max(e.until);
                        }
                    });
                }
            }
            Event::AuthorizationCodeIssued(e) => {
                let code = CodeRecord {
                    client_id: e.client_id.clone(),
                    sub: e.sub.clone(),
                    redirect_uri: e.redirect_uri.clone(),
                    scope: e.scope.clone(),
                    aud: e.aud.clone(),
                    code_challenge: e.code_challenge.clone(),
                    exp: e.exp,
                    family_id: e.family_id.clone(),
                    auth_time_ms: e.auth_time_ms,
                    redeemed_by: None,
                    redeemed_at: 0,
                    redirect_uri_implied: e.redirect_uri_implied,
                };
                self.put(
                    Key::Code(e.code_digest.clone()),
                    Record::Code(Box::new(code)),
                );
            }
            Event::SigningKeyRevoked(e) => {
                // The first revocation is the one on record; a repeat changes nothing.
                let key = Key::RevokedKey(e.kid.clone());
                if self.get(&key).is_none() {
                    self.put(key, Record::RevokedKey(e.at_ms));
                }
            }
        }
    }

    fn issue(&mut self, e: &TokenIssued) {
        if !starts_family_state(e) {
            return;
        }
        let family_key = Key::Family(e.family_id.clone());
        let mut family = match self.get(&family_key) {
            Some(Record::Family(f)) => f.clone(),
            _ => FamilyRecord::default(),
        };
        family.until = family
            .until
            .max(e.exp)
            .max(e.refresh.as_ref().map_or(0, |r| r.exp));
        // Two nodes may both accept the same refresh token (or code) before either event is
        // applied: the log decides. The first use wins. Another use within the grace is a
        // lost race (its tokens never left the node: nothing of it is recorded) or, marked
        // `retry`, a client retrying an answer it never got (recorded: a sibling). Later than
        // the grace it is theft, and the family dies.
        let mut outcome = Use::First;
        if let Some(parent) = &e.rotated_from {
            self.update(Key::Refresh(parent.clone()), |r| {
                if let Record::Refresh(r) = r {
                    outcome = outcome.max(use_of(&mut r.used_by, &mut r.used_at, e));
                }
            });
        }
        if let Some(code) = &e.from_code {
            self.update(Key::Code(code.clone()), |r| {
                if let Record::Code(c) = r {
                    outcome = outcome.max(use_of(&mut c.redeemed_by, &mut c.redeemed_at, e));
                }
            });
        }
        family.revoked |= outcome == Use::Theft;
        if let Some(r) = e.refresh.as_ref().filter(|_| outcome != Use::LostRace) {
            let record = RefreshRecord {
                family_id: e.family_id.clone(),
                sub: e.sub.clone(),
                client_id: e.client_id.clone(),
                scope: e.scope.clone(),
                aud: e.aud.clone(),
                iat: e.iat,
                exp: r.exp,
                auth_time_ms: e.auth_time_ms,
                used_by: None,
                used_at: 0,
            };
            self.put(
                Key::Refresh(r.digest.clone()),
                Record::Refresh(Box::new(record)),
            );
        }
        self.put(family_key, Record::Family(family));
    }
}

/// What one use of a single-use credential (a refresh token, a code) is, in log order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Use {
    /// The first use (or a retry the grace allows).
    First,
    /// A second use within the grace, not a retry: it lost a race.
    LostRace,
    /// A second use after the grace.
    Theft,
}

/// Records the first use (`jti`, at `iat`) of a credential and judges any other.
fn use_of(used_by: &mut Option<String>, used_at: &mut i64, e: &TokenIssued) -> Use {
    match used_by {
        None => {
            *used_by = Some(e.jti.clone());
            *used_at = e.iat;
            Use::First
        }
        Some(first) if *first == e.jti => Use::First,
        Some(_) if e.iat - *used_at < e.reuse_grace_secs => {
            if e.retry {
                Use::First
            } else {
                Use::LostRace
            }
        }
        Some(_) => Use::Theft,
    }
}
