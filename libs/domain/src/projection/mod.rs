//! The projection: the read model as a pure function of the log. Records of a partition apply
//! in offset order only; [`Projection::apply_batch`] and the Redis store share [`align`] and
//! [`State::apply`], so replaying the log from the start gives exactly the state that live
//! application gave, in memory or in Redis.

mod revocation;
mod state;

use std::collections::BTreeMap;

use tokend_events::Event;

pub use revocation::RevocationKeys;
pub use state::{Key, Record, State, keys};

use crate::model::{
    Client, CodeRecord, CodeStatus, RefreshRecord, RefreshStatus, RevocationQuery, RevocationState,
    User, code_status, refresh_status,
};
use crate::{Applied, LogPosition};

/// How a batch of `len` records starting at offset `first` lines up with a partition whose
/// next offset to apply is `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    /// Records before `next` are missing: apply nothing, resume reading at `next`.
    Gap { next: u64 },
    /// Pass over the first `skip` records (applied before), apply the rest.
    Apply { skip: usize },
}

pub fn align(next: u64, first: u64, len: usize) -> Alignment {
    if first > next {
        return Alignment::Gap { next };
    }
    let skip = usize::try_from(next - first).unwrap_or(usize::MAX).min(len);
    Alignment::Apply { skip }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    next_offsets: BTreeMap<u32, u64>,
    state: State,
}

impl Projection {
    /// Applies the record at `position` (`None`: a record with no effect, such as an unknown
    /// event type, whose offset is still recorded).
    pub fn apply(&mut self, position: LogPosition, event: Option<&Event>) -> Applied {
        self.apply_batch(position.partition, position.offset, &[event])
    }

    /// Applies consecutive records of one partition starting at offset `first`. Records
    /// already applied are passed over; records past a missing one are refused
    /// ([`Applied::Gap`]); neither changes anything.
    pub fn apply_batch(
        &mut self,
        partition: u32,
        first: u64,
        events: &[Option<&Event>],
    ) -> Applied {
        let next = self.next_offset(partition);
        let skip = match align(next, first, events.len()) {
            Alignment::Gap { next } => return Applied::Gap { next },
            Alignment::Apply { skip } => skip,
        };
        for event in events[skip..].iter().flatten() {
            self.state.apply(event);
        }
        let next = next.max(first + events.len() as u64);
        self.next_offsets.insert(partition, next);
        Applied::Done {
            next,
            duplicates: skip as u64,
        }
    }

    /// Drops what can no longer matter: records of tokens that expired before `now_secs`.
    pub fn prune(&mut self, now_secs: i64) {
        self.state.prune(now_secs);
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn next_offset(&self, partition: u32) -> u64 {
        self.next_offsets.get(&partition).copied().unwrap_or(0)
    }

    pub fn next_offsets(&self) -> &BTreeMap<u32, u64> {
        &self.next_offsets
    }

    pub fn client(&self, client_id: &str) -> Option<&Client> {
        match self.state.get(&Key::Client(client_id.to_owned())) {
            Some(Record::Client(c)) => Some(c),
            _ => None,
        }
    }

    pub fn clients(&self) -> Vec<Client> {
        let mut clients: Vec<Client> = self
            .state
            .iter()
            .filter_map(|(_, r)| match r {
                Record::Client(c) => Some((**c).clone()),
                _ => None,
            })
            .collect();
        clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        clients
    }

    pub fn user(&self, username: &str) -> Option<&User> {
        match self.state.get(&Key::User(username.to_owned())) {
            Some(Record::User(u)) => Some(u),
            _ => None,
        }
    }

    fn revocation_state(&self, q: RevocationKeys<'_>) -> RevocationState {
        q.state(|key| self.state.get(key))
    }

    pub fn refresh_status(&self, digest: &str, now_secs: i64) -> RefreshStatus {
        let record: Option<RefreshRecord> = match self.state.get(&Key::Refresh(digest.to_owned())) {
            Some(Record::Refresh(r)) => Some((**r).clone()),
            _ => None,
        };
        let revocation = record.as_ref().map_or_else(RevocationState::default, |r| {
            self.revocation_state(RevocationKeys::of_grant(&r.family_id, &r.sub, &r.client_id))
        });
        refresh_status(record, &revocation, now_secs)
    }

    pub fn code_status(&self, digest: &str, now_secs: i64) -> CodeStatus {
        let record: Option<CodeRecord> = match self.state.get(&Key::Code(digest.to_owned())) {
            Some(Record::Code(c)) => Some((**c).clone()),
            _ => None,
        };
        code_status(record, now_secs)
    }

    pub fn is_revoked(&self, q: &RevocationQuery) -> bool {
        self.revocation_state(RevocationKeys::of_token(q))
            .revokes(q.auth_time_ms)
    }
}

#[cfg(test)]
mod tests;
