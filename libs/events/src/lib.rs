//! The event log's wire format: a versioned, self-describing envelope around token events.
//!
//! Every record in the log is one JSON [`Envelope`]. Readers decode it with [`Envelope::decode`],
//! which never fails on an event type or version it does not know: it returns
//! [`Decoded::Unknown`] so that an old reader skips a newer writer's events with a warning.
//!
//! # Partition key
//! [`Event::partition_key`] decides which events are totally ordered against each other, and
//! the projection is built so that it needs no other order:
//!
//! - every event about one **token family** (one grant and its rotations: `TokenIssued`,
//!   `TokenRevoked`, `TokenFamilyRevoked`, `AuthorizationCodeIssued`) is keyed by the family
//!   id, so issue → rotate → reuse-detect → revoke of a family and the single use of a code
//!   apply in append order, and one busy client's tokens spread over every partition;
//! - `SubjectRevoked`, `UserCreated`, `UserDisabled` are keyed by the user name;
//! - `ClientRegistered`, `ClientDisabled`, `ClientRevoked` by the client id;
//! - `SigningKeyRevoked` by the key id (its record is the key's alone).
//!
//! Every record of the projection is written by events of one key only (a family's refresh
//! tokens, code and revoked flag; a subject's watermark and user record; a client's watermark
//! and registration), so each partition's part of the projection is a function of that
//! partition alone. What crosses partitions, a subject- or client-wide revocation against the
//! tokens of many families, is decided at read time by comparing times carried in the token
//! (`auth_time_ms`, the start of its grant) with the watermark (`revoked_before_ms`): that
//! comparison gives the same answer whichever partition the projector applied first.

mod envelope;
mod payload;

pub use envelope::{DecodeError, Decoded, Envelope};
pub use payload::*;
