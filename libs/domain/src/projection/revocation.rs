//! Which records the revocation rule reads, and how they make a [`RevocationState`]: one
//! definition for every store (the embedded one reads its map, Redis one `MGET`).

use crate::model::{RevocationQuery, RevocationState};

use super::{Key, Record};

/// The names a revocation check looks up: for an access token all of them, for a refresh
/// token's grant no `jti` and no `kid` (those belong to access tokens).
#[derive(Debug, Clone, Copy)]
pub struct RevocationKeys<'a> {
    pub jti: Option<&'a str>,
    pub family_id: &'a str,
    pub sub: Option<&'a str>,
    pub client_id: &'a str,
    pub kid: Option<&'a str>,
}

impl<'a> RevocationKeys<'a> {
    pub fn of_token(q: &'a RevocationQuery) -> Self {
        Self {
            jti: Some(&q.jti),
            family_id: &q.family_id,
            sub: q.sub.as_deref(),
            client_id: &q.client_id,
            kid: Some(&q.kid),
        }
    }

    pub fn of_grant(family_id: &'a str, sub: &'a str, client_id: &'a str) -> Self {
        Self {
            jti: None,
            family_id,
            sub: Some(sub),
            client_id,
            kid: None,
        }
    }

    /// Every record the check reads.
    pub fn keys(&self) -> Vec<Key> {
        let mut keys = vec![
            Key::Family(self.family_id.to_owned()),
            Key::ClientWatermark(self.client_id.to_owned()),
        ];
        keys.extend(self.jti.map(|j| Key::RevokedToken(j.to_owned())));
        keys.extend(self.sub.map(|s| Key::SubjectWatermark(s.to_owned())));
        keys.extend(self.kid.map(|k| Key::RevokedKey(k.to_owned())));
        keys
    }

    /// The state from the records found under [`RevocationKeys::keys`].
    pub fn state<'r>(&self, get: impl Fn(&Key) -> Option<&'r Record>) -> RevocationState {
        let watermark = |key: Key| match get(&key) {
            Some(Record::Watermark(w)) => Some(*w),
            _ => None,
        };
        let present = |key: Option<Key>| key.is_some_and(|k| get(&k).is_some());
        RevocationState {
            token_revoked: present(self.jti.map(|j| Key::RevokedToken(j.to_owned()))),
            family: match get(&Key::Family(self.family_id.to_owned())) {
                Some(Record::Family(f)) => Some(f.clone()),
                _ => None,
            },
            subject_watermark: self
                .sub
                .and_then(|s| watermark(Key::SubjectWatermark(s.to_owned()))),
            client_watermark: watermark(Key::ClientWatermark(self.client_id.to_owned())),
            key_revoked: present(self.kid.map(|k| Key::RevokedKey(k.to_owned()))),
        }
    }
}
