//! The signing-key schedule (issue 10's foundation): time is cut into rotation *epochs* of
//! `period_secs`; the key adopted for epoch N is
//! - `next` from `lead_secs` before the epoch starts (published in the JWKS, not signing),
//! - `active` during the epoch (signing),
//! - `retired` for `retire_after_secs` after it ends (verifying what it signed),
//! - then gone.
//!
//! Agreement needs no leader and no lock: any node may propose a key for an epoch, and the
//! first proposal of an epoch in log order wins ([`Adopted`]); every node applies the same log,
//! so all adopt the same key. Clocks only need to agree within the lead (coarse epochs).
//!
//! An operator may rotate ahead of the schedule: a [`KeyRecord::Cut`] ends an epoch early, a
//! lead after it was asked for, and the next epoch's key signs from then (it is published at
//! once, so verifiers know it a lead before it signs).
//! Everything here is pure: the caller passes the time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{KeyState, SealedKey, SealedSecret};

/// A record of the key log (a compacted Kafka topic in cluster mode, a file in the embedded
/// mode). Only sealed keys travel; they are opened in memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KeyRecord {
    /// A node proposes `key` to sign during `epoch`; the first proposal of an epoch wins.
    Proposed { epoch: u64, key: SealedKey },
    /// Emergency: the key is withdrawn from the JWKS and what it signed is no longer accepted.
    Revoked { kid: String },
    /// The installation's secrets root, proposed by a node of a new installation; the first
    /// in the log wins (later copies of it come re-sealed in [`KeyRecord::Resealed`]).
    Root { secret: SealedSecret },
    /// An early rotation: `epoch` stops signing at `at_secs` and the next epoch's key signs
    /// from then. The first cut of an epoch wins.
    Cut { epoch: u64, at_secs: i64 },
    /// A KEK rotation: the secrets root and every key in use, re-sealed under the KEK whose id
    /// is `kek`. From this record on the log is sealed under that KEK.
    Resealed {
        kek: String,
        root: SealedSecret,
        keys: Vec<SealedKey>,
    },
}

impl KeyRecord {
    /// The record's key in a compacted topic: unique per proposal, so compaction never drops a
    /// first proposal in favour of a later one.
    pub fn log_key(&self) -> String {
        match self {
            KeyRecord::Proposed { epoch, key } => format!("proposed/{epoch}/{}", key.kid),
            KeyRecord::Revoked { kid } => format!("revoked/{kid}"),
            KeyRecord::Root { secret } => format!("root/{}", secret.nonce),
            KeyRecord::Cut { epoch, at_secs } => format!("cut/{epoch}/{at_secs}"),
            // A repeated re-seal under the same KEK supersedes the earlier one.
            KeyRecord::Resealed { kek, .. } => format!("resealed/{kek}"),
        }
    }
}

/// Extra time on top of the JWKS cache age before a new key may sign, for clock skew and for
/// verifiers that fetched just before the key appeared.
pub const PUBLICATION_MARGIN_SECS: i64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// How long each key signs.
    pub period_secs: i64,
    /// How long before signing a key is published.
    pub lead_secs: i64,
    /// How long after signing a key stays published.
    pub retire_after_secs: i64,
}

/// Settings that would leave some verifier without the key it needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotationError {
    #[error(
        "the lead ({lead} s) must be at least the JWKS cache age plus {PUBLICATION_MARGIN_SECS} s ({needed} s): a verifier with a cached key set would meet a kid it does not know"
    )]
    LeadTooShort { lead: i64, needed: i64 },
    #[error(
        "keys must stay published at least the access-token lifetime plus leeway ({needed} s) after they stop signing, not {retire_after} s: tokens they signed would stop verifying"
    )]
    RetiredTooSoon { retire_after: i64, needed: i64 },
    #[error("the rotation period ({period} s) must be longer than the lead ({lead} s)")]
    PeriodTooShort { period: i64, lead: i64 },
}

impl Rotation {
    /// Refuses settings that would leave a verifier without a key it needs.
    pub fn validate(
        &self,
        jwks_max_age_secs: i64,
        access_ttl_secs: i64,
        leeway_secs: i64,
    ) -> Result<(), RotationError> {
        let needed = jwks_max_age_secs + PUBLICATION_MARGIN_SECS;
        if self.lead_secs < needed {
            return Err(RotationError::LeadTooShort {
                lead: self.lead_secs,
                needed,
            });
        }
        let needed = access_ttl_secs + leeway_secs;
        if self.retire_after_secs < needed {
            return Err(RotationError::RetiredTooSoon {
                retire_after: self.retire_after_secs,
                needed,
            });
        }
        if self.period_secs <= self.lead_secs {
            return Err(RotationError::PeriodTooShort {
                period: self.period_secs,
                lead: self.lead_secs,
            });
        }
        Ok(())
    }

    /// The epoch signing at `now_secs` on the plain schedule (no early rotation).
    pub fn epoch_at(&self, now_secs: i64) -> u64 {
        Schedule::plain(self).epoch_at(now_secs)
    }

    /// The state at `now_secs` of the key of `epoch` on the plain schedule.
    pub fn state(&self, epoch: u64, now_secs: i64) -> Option<KeyState> {
        Schedule::plain(self).state(epoch, now_secs)
    }

    /// The epochs due at `now_secs` on the plain schedule.
    pub fn due(&self, now_secs: i64) -> Vec<u64> {
        Schedule::plain(self).due(now_secs)
    }

    fn natural_start(&self, epoch: u64) -> i64 {
        i64::try_from(epoch)
            .unwrap_or(i64::MAX)
            .saturating_mul(self.period_secs)
    }
}

/// The schedule with the early rotations (cuts) the log holds.
struct Schedule<'a> {
    rotation: &'a Rotation,
    cuts: Option<&'a BTreeMap<u64, i64>>,
}

impl<'a> Schedule<'a> {
    fn plain(rotation: &'a Rotation) -> Self {
        Self {
            rotation,
            cuts: None,
        }
    }

    fn cut(&self, epoch: u64) -> Option<i64> {
        self.cuts?.get(&epoch).copied()
    }

    fn end(&self, epoch: u64) -> i64 {
        let natural = self.rotation.natural_start(epoch + 1);
        self.cut(epoch).map_or(natural, |c| c.min(natural))
    }

    fn start(&self, epoch: u64) -> i64 {
        let natural = self.rotation.natural_start(epoch);
        match epoch.checked_sub(1) {
            Some(before) => self.end(before).min(natural),
            None => natural,
        }
    }

    /// The epoch signing at `now_secs`.
    fn epoch_at(&self, now_secs: i64) -> u64 {
        let mut epoch =
            u64::try_from(now_secs.max(0) / self.rotation.period_secs).unwrap_or_default();
        while now_secs >= self.end(epoch) {
            epoch += 1;
        }
        epoch
    }

    /// The state at `now_secs` of the key adopted for `epoch`; `None`: not published (yet,
    /// or any more).
    fn state(&self, epoch: u64, now_secs: i64) -> Option<KeyState> {
        let (start, end) = (self.start(epoch), self.end(epoch));
        if now_secs < start - self.rotation.lead_secs {
            None
        } else if now_secs < start {
            Some(KeyState::Next)
        } else if now_secs < end {
            Some(KeyState::Active)
        } else if now_secs < end.saturating_add(self.rotation.retire_after_secs) {
            Some(KeyState::Retired)
        } else {
            None
        }
    }

    /// The epochs whose keys must exist at `now_secs`: the signing one, and the next once its
    /// publication is due. A node proposes a key for any of them that has none.
    fn due(&self, now_secs: i64) -> Vec<u64> {
        let current = self.epoch_at(now_secs);
        let mut due = vec![current];
        if now_secs >= self.start(current + 1) - self.rotation.lead_secs {
            due.push(current + 1);
        }
        due
    }
}

/// The key adopted for each epoch: the first proposal in log order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Adopted {
    by_epoch: BTreeMap<u64, String>,
    /// Early ends of epochs (seconds), the first cut of each.
    cuts: BTreeMap<u64, i64>,
}

impl Adopted {
    /// Applies a proposal of `kid` for `epoch`; `true` when it is adopted (the first for that
    /// epoch), `false` when another key was adopted before (later proposals are ignored).
    pub fn propose(&mut self, epoch: u64, kid: &str) -> bool {
        match self.by_epoch.get(&epoch) {
            Some(_) => false,
            None => {
                self.by_epoch.insert(epoch, kid.to_owned());
                true
            }
        }
    }

    /// Withdraws a revoked key: its epoch takes the next proposal that comes. Returns the
    /// epoch it held.
    pub fn withdraw(&mut self, kid: &str) -> Option<u64> {
        let epoch = self
            .by_epoch
            .iter()
            .find_map(|(e, k)| (k == kid).then_some(*e))?;
        self.by_epoch.remove(&epoch);
        Some(epoch)
    }

    /// Applies an early rotation: `epoch` stops signing at `at_secs`; `false` when the epoch
    /// was cut before (later cuts are ignored).
    pub fn cut(&mut self, epoch: u64, at_secs: i64) -> bool {
        if self.cuts.contains_key(&epoch) {
            return false;
        }
        self.cuts.insert(epoch, at_secs);
        true
    }

    fn schedule<'a>(&'a self, rotation: &'a Rotation) -> Schedule<'a> {
        Schedule {
            rotation,
            cuts: Some(&self.cuts),
        }
    }

    /// The epoch signing at `now_secs`.
    pub fn epoch_at(&self, rotation: &Rotation, now_secs: i64) -> u64 {
        self.schedule(rotation).epoch_at(now_secs)
    }

    /// The state at `now_secs` of the key of `epoch`.
    pub fn state(&self, rotation: &Rotation, epoch: u64, now_secs: i64) -> Option<KeyState> {
        self.schedule(rotation).state(epoch, now_secs)
    }

    /// When the key of `epoch` starts signing (seconds).
    pub fn signs_from(&self, rotation: &Rotation, epoch: u64) -> i64 {
        self.schedule(rotation).start(epoch)
    }

    /// An early rotation asked for at `now_secs`: the cut that makes the next key sign a
    /// lead from now, or `None` when the plain schedule rotates as soon anyway, or the epoch
    /// was cut already.
    pub fn early_rotation(&self, rotation: &Rotation, now_secs: i64) -> Option<KeyRecord> {
        let schedule = self.schedule(rotation);
        let epoch = schedule.epoch_at(now_secs);
        let at_secs = now_secs.saturating_add(rotation.lead_secs);
        (at_secs < schedule.end(epoch)).then_some(KeyRecord::Cut { epoch, at_secs })
    }

    /// Every adopted key with its epoch.
    pub fn all(&self) -> impl Iterator<Item = (u64, &str)> {
        self.by_epoch.iter().map(|(e, k)| (*e, k.as_str()))
    }

    pub fn kid(&self, epoch: u64) -> Option<&str> {
        self.by_epoch.get(&epoch).map(String::as_str)
    }

    /// Every adopted key published at `now_secs`, with its state (at most one `Active`).
    pub fn published(&self, rotation: &Rotation, now_secs: i64) -> Vec<(&str, KeyState)> {
        let schedule = self.schedule(rotation);
        self.by_epoch
            .iter()
            .filter_map(|(epoch, kid)| Some((kid.as_str(), schedule.state(*epoch, now_secs)?)))
            .collect()
    }

    /// Epochs due at `now_secs` that have no key yet.
    pub fn missing(&self, rotation: &Rotation, now_secs: i64) -> Vec<u64> {
        self.schedule(rotation)
            .due(now_secs)
            .into_iter()
            .filter(|e| !self.by_epoch.contains_key(e))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn daily() -> Rotation {
        Rotation {
            period_secs: DAY,
            lead_secs: 3600,
            retire_after_secs: 2 * 3600,
        }
    }

    #[test]
    fn a_key_is_next_then_active_then_retired_then_gone() {
        let r = daily();
        let epoch = 10;
        let start = 10 * DAY;
        assert_eq!(r.state(epoch, start - 3601), None);
        assert_eq!(r.state(epoch, start - 3600), Some(KeyState::Next));
        assert_eq!(r.state(epoch, start - 1), Some(KeyState::Next));
        assert_eq!(r.state(epoch, start), Some(KeyState::Active));
        assert_eq!(r.state(epoch, start + DAY - 1), Some(KeyState::Active));
        assert_eq!(r.state(epoch, start + DAY), Some(KeyState::Retired));
        assert_eq!(r.state(epoch, start + DAY + 7199), Some(KeyState::Retired));
        assert_eq!(r.state(epoch, start + DAY + 7200), None);
    }

    #[test]
    fn the_next_key_is_due_a_lead_before_it_signs() {
        let r = daily();
        assert_eq!(r.due(10 * DAY), vec![10]);
        assert_eq!(r.due(11 * DAY - 3601), vec![10]);
        assert_eq!(r.due(11 * DAY - 3600), vec![10, 11]);
    }

    #[test]
    fn the_first_proposal_of_an_epoch_wins_everywhere() {
        // Two nodes propose for epoch 11 at once; every node applies the log in one order.
        let log = [
            (10, "k10"),
            (11, "from-node-b"),
            (11, "from-node-a"),
            (12, "k12"),
        ];
        let replay = || {
            let mut a = Adopted::default();
            let outcomes: Vec<bool> = log.iter().map(|(e, k)| a.propose(*e, k)).collect();
            (a, outcomes)
        };
        let (node1, outcomes) = replay();
        assert_eq!(outcomes, vec![true, true, false, true]);
        assert_eq!(node1.kid(11), Some("from-node-b"));
        assert_eq!(replay().0, node1, "every node adopts the same keys");
    }

    #[test]
    fn at_any_time_one_key_signs_and_the_jwks_holds_what_verifiers_need() {
        let r = daily();
        let mut a = Adopted::default();
        for e in 9..=12 {
            a.propose(e, &format!("k{e}"));
        }
        let at = |now| {
            let mut p = a.published(&r, now);
            p.sort_by_key(|(kid, _)| *kid);
            p
        };
        // Early in epoch 10: 9 still verifies what it signed, 10 signs.
        assert_eq!(
            at(10 * DAY + 60),
            vec![("k10", KeyState::Active), ("k9", KeyState::Retired)]
        );
        // Late in epoch 10: 9 is gone, 11 is published ahead of signing.
        assert_eq!(
            at(11 * DAY - 60),
            vec![("k10", KeyState::Active), ("k11", KeyState::Next)]
        );
        assert_eq!(a.missing(&r, 12 * DAY - 60), Vec::<u64>::new());
        assert_eq!(a.missing(&r, 13 * DAY - 60), vec![13]);
    }

    #[test]
    fn an_early_rotation_publishes_the_next_key_at_once_and_signs_with_it_a_lead_later() {
        let r = daily();
        let mut a = Adopted::default();
        a.propose(10, "k10");
        let asked = 10 * DAY + 600;
        let Some(KeyRecord::Cut { epoch, at_secs }) = a.early_rotation(&r, asked) else {
            panic!("a cut is due")
        };
        assert_eq!((epoch, at_secs), (10, asked + 3600));
        assert!(a.cut(epoch, at_secs));
        assert!(!a.cut(10, asked + 7200), "the first cut of an epoch wins");
        // The next key is due at once, and published (not signing) until the cut.
        assert_eq!(a.missing(&r, asked), vec![11]);
        a.propose(11, "k11");
        assert_eq!(a.state(&r, 11, asked), Some(KeyState::Next));
        assert_eq!(a.epoch_at(&r, at_secs - 1), 10);
        assert_eq!(a.epoch_at(&r, at_secs), 11);
        assert_eq!(a.signs_from(&r, 11), at_secs);
        assert_eq!(a.state(&r, 10, at_secs), Some(KeyState::Retired));
        assert_eq!(a.state(&r, 10, at_secs + 7200), None);
        // It signs until the plain end of its epoch, then the schedule goes on as before.
        assert_eq!(a.state(&r, 11, 12 * DAY - 1), Some(KeyState::Active));
        assert_eq!(a.epoch_at(&r, 12 * DAY), 12);
        // A rotation asked for within a lead of the plain one needs no cut.
        assert_eq!(a.early_rotation(&r, 12 * DAY - 60), None);
    }

    #[test]
    fn settings_that_strand_a_verifier_are_refused() {
        let ok = daily();
        assert_eq!(ok.validate(300, 900, 30), Ok(()));
        let short_lead = Rotation {
            lead_secs: 300,
            ..ok
        };
        assert!(matches!(
            short_lead.validate(300, 900, 30),
            Err(RotationError::LeadTooShort { needed: 360, .. })
        ));
        let early_removal = Rotation {
            retire_after_secs: 600,
            ..ok
        };
        assert!(matches!(
            early_removal.validate(300, 900, 30),
            Err(RotationError::RetiredTooSoon { needed: 930, .. })
        ));
        let tiny_period = Rotation {
            period_secs: 3000,
            ..ok
        };
        assert!(tiny_period.validate(300, 900, 30).is_err());
    }
}
