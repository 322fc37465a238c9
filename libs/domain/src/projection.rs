//! The projection: the read model as a pure function of the log. [`Projection::apply`] is
//! deterministic and idempotent (by log position), so replaying the log from the start gives
//! exactly the state that live application gave.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tokend_events::{Event, TokenIssued};

use crate::model::{
    Client, CodeRecord, CodeStatus, RefreshRecord, RefreshStatus, RevocationQuery, TokenRecord,
    User, before_watermark,
};
use crate::{Applied, LogPosition};

/// One grant's descendants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Family {
    sub: String,
    client_id: String,
    revoked: bool,
    jtis: BTreeSet<String>,
    refresh: BTreeSet<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    next_offsets: BTreeMap<u32, u64>,
    clients: BTreeMap<String, Client>,
    users: BTreeMap<String, User>,
    tokens: HashMap<String, TokenRecord>,
    /// Revoked `jti` → its `exp`, so the entry can be dropped once the token has expired.
    revoked: HashMap<String, i64>,
    refresh: HashMap<String, RefreshRecord>,
    families: HashMap<String, Family>,
    subject_families: HashMap<String, BTreeSet<String>>,
    client_families: HashMap<String, BTreeSet<String>>,
    subject_watermarks: HashMap<String, i64>,
    client_watermarks: HashMap<String, i64>,
    codes: HashMap<String, CodeRecord>,
}

impl Projection {
    /// Applies the record at `position` (`None`: a record with no effect, such as an unknown
    /// event type, whose offset is still recorded). Records of a partition apply in offset
    /// order only: an offset already applied is a [`Applied::Duplicate`], one past the next
    /// expected offset a [`Applied::Gap`]; neither changes anything.
    pub fn apply(&mut self, position: LogPosition, event: Option<&Event>) -> Applied {
        let next = self.next_offset(position.partition);
        if position.offset < next {
            return Applied::Duplicate;
        }
        if position.offset > next {
            return Applied::Gap { next };
        }
        self.next_offsets
            .insert(position.partition, position.offset + 1);
        if let Some(event) = event {
            self.apply_event(event);
        }
        Applied::Applied
    }

    fn apply_event(&mut self, event: &Event) {
        match event {
            Event::ClientRegistered(e) => {
                let client = Client {
                    client_id: e.client_id.clone(),
                    name: e.name.clone(),
                    secret_digest: e.secret_digest.clone(),
                    grant_types: e.grant_types.clone(),
                    scopes: e.scopes.clone(),
                    default_scopes: e.default_scopes.clone(),
                    audiences: e.audiences.clone(),
                    redirect_uris: e.redirect_uris.clone(),
                    disabled: false,
                };
                self.clients.insert(e.client_id.clone(), client);
            }
            Event::ClientDisabled(e) => {
                if let Some(c) = self.clients.get_mut(&e.client_id) {
                    c.disabled = true;
                }
                self.revoke_client(&e.client_id, e.revoked_before_ms);
            }
            Event::ClientRevoked(e) => self.revoke_client(&e.client_id, e.revoked_before_ms),
            Event::UserCreated(e) => {
                let user = User {
                    username: e.username.clone(),
                    password_hash: e.password_hash.clone(),
                    disabled: false,
                };
                self.users.insert(e.username.clone(), user);
            }
            Event::UserDisabled(e) => {
                if let Some(u) = self.users.get_mut(&e.username) {
                    u.disabled = true;
                }
                self.revoke_subject(&e.username, e.revoked_before_ms);
            }
            Event::TokenIssued(e) => self.issue(e),
            Event::TokenRevoked(e) => {
                self.tokens.remove(&e.jti);
                self.revoked.insert(e.jti.clone(), e.exp);
            }
            Event::TokenFamilyRevoked(e) => self.revoke_family(&e.family_id),
            Event::SubjectRevoked(e) => self.revoke_subject(&e.sub, e.revoked_before_ms),
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
                    redeemed_by: None,
                };
                self.codes.insert(e.code_digest.clone(), code);
            }
        }
    }

    fn issue(&mut self, e: &TokenIssued) {
        let family = self.families.entry(e.family_id.clone()).or_default();
        family.sub.clone_from(&e.sub);
        family.client_id.clone_from(&e.client_id);
        family.jtis.insert(e.jti.clone());
        if let Some(r) = &e.refresh {
            family.refresh.insert(r.digest.clone());
            self.refresh.insert(
                r.digest.clone(),
                RefreshRecord {
                    family_id: e.family_id.clone(),
                    sub: e.sub.clone(),
                    client_id: e.client_id.clone(),
                    scope: e.scope.clone(),
                    aud: e.aud.clone(),
                    iat: e.iat,
                    exp: r.exp,
                    used_by: None,
                },
            );
        }
        self.subject_families
            .entry(e.sub.clone())
            .or_default()
            .insert(e.family_id.clone());
        self.client_families
            .entry(e.client_id.clone())
            .or_default()
            .insert(e.family_id.clone());
        self.tokens.insert(
            e.jti.clone(),
            TokenRecord {
                sub: e.sub.clone(),
                client_id: e.client_id.clone(),
                family_id: e.family_id.clone(),
                iat: e.iat,
                exp: e.exp,
            },
        );

        // Two nodes may both accept the same refresh token (or code) before either event is
        // applied: the log decides. The first use wins; a second one is a replay, and the
        // family dies.
        let mut reuse = false;
        if let Some(parent) = e
            .rotated_from
            .as_ref()
            .and_then(|d| self.refresh.get_mut(d))
        {
            reuse |= replayed(&mut parent.used_by, &e.jti);
        }
        if let Some(code) = e.from_code.as_ref().and_then(|d| self.codes.get_mut(d)) {
            reuse |= replayed(&mut code.redeemed_by, &e.jti);
        }
        let family_revoked = self.families.get(&e.family_id).is_some_and(|f| f.revoked);
        if reuse || family_revoked {
            self.revoke_family(&e.family_id);
        }
    }

    fn revoke_family(&mut self, family_id: &str) {
        let Some(family) = self.families.get_mut(family_id) else {
            return;
        };
        family.revoked = true;
        for jti in &family.jtis {
            if let Some(t) = self.tokens.remove(jti) {
                self.revoked.insert(jti.clone(), t.exp);
            }
        }
    }

    fn revoke_subject(&mut self, sub: &str, revoked_before_ms: i64) {
        let wm = self
            .subject_watermarks
            .entry(sub.to_owned())
            .or_insert(i64::MIN);
        *wm = (*wm).max(revoked_before_ms);
        let families = self.subject_families.get(sub).cloned().unwrap_or_default();
        for f in families {
            self.revoke_family(&f);
        }
    }

    fn revoke_client(&mut self, client_id: &str, revoked_before_ms: i64) {
        let wm = self
            .client_watermarks
            .entry(client_id.to_owned())
            .or_insert(i64::MIN);
        *wm = (*wm).max(revoked_before_ms);
        let families = self
            .client_families
            .get(client_id)
            .cloned()
            .unwrap_or_default();
        for f in families {
            self.revoke_family(&f);
        }
    }

    /// Drops what can no longer matter: records of tokens that expired before `now_secs`.
    pub fn prune(&mut self, now_secs: i64) {
        self.revoked.retain(|_, exp| *exp > now_secs);
        self.tokens.retain(|_, t| t.exp > now_secs);
        self.refresh.retain(|_, r| r.exp > now_secs);
        self.codes.retain(|_, c| c.exp > now_secs);
        let (tokens, refresh) = (&self.tokens, &self.refresh);
        let revoked = &self.revoked;
        self.families.retain(|_, f| {
            f.jtis
                .retain(|j| tokens.contains_key(j) || revoked.contains_key(j));
            f.refresh.retain(|d| refresh.contains_key(d));
            !f.jtis.is_empty() || !f.refresh.is_empty()
        });
        let families = &self.families;
        for index in [&mut self.subject_families, &mut self.client_families] {
            index.retain(|_, set| {
                set.retain(|f| families.contains_key(f));
                !set.is_empty()
            });
        }
    }

    pub fn next_offset(&self, partition: u32) -> u64 {
        self.next_offsets.get(&partition).copied().unwrap_or(0)
    }

    pub fn client(&self, client_id: &str) -> Option<&Client> {
        self.clients.get(client_id)
    }

    pub fn clients(&self) -> impl Iterator<Item = &Client> {
        self.clients.values()
    }

    pub fn user(&self, username: &str) -> Option<&User> {
        self.users.get(username)
    }

    pub fn refresh_status(&self, digest: &str, now_secs: i64) -> RefreshStatus {
        let Some(r) = self.refresh.get(digest) else {
            return RefreshStatus::Unknown;
        };
        let family_revoked = self.families.get(&r.family_id).is_none_or(|f| f.revoked);
        if family_revoked
            || before_watermark(r.iat, self.subject_watermarks.get(&r.sub).copied())
            || before_watermark(r.iat, self.client_watermarks.get(&r.client_id).copied())
        {
            RefreshStatus::Revoked
        } else if r.used_by.is_some() {
            RefreshStatus::Used(r.clone())
        } else if r.exp <= now_secs {
            RefreshStatus::Expired
        } else {
            RefreshStatus::Valid(r.clone())
        }
    }

    pub fn code_status(&self, digest: &str, now_secs: i64) -> CodeStatus {
        match self.codes.get(digest) {
            None => CodeStatus::Unknown,
            Some(c) if c.redeemed_by.is_some() => CodeStatus::Redeemed(c.clone()),
            Some(c) if c.exp <= now_secs => CodeStatus::Expired,
            Some(c) => CodeStatus::Valid(c.clone()),
        }
    }

    pub fn is_revoked(&self, q: &RevocationQuery) -> bool {
        self.revoked.contains_key(&q.jti)
            || before_watermark(q.iat, self.subject_watermarks.get(&q.sub).copied())
            || before_watermark(q.iat, self.client_watermarks.get(&q.client_id).copied())
    }
}

/// Records the first use (by `jti`); `true` when another `jti` used it first.
fn replayed(used_by: &mut Option<String>, jti: &str) -> bool {
    match used_by {
        None => {
            *used_by = Some(jti.to_owned());
            false
        }
        Some(first) => first != jti,
    }
}

#[cfg(test)]
mod tests;
