//! The event log's wire format: a versioned, self-describing envelope around token events.
//!
//! Every record in the log is one JSON [`Envelope`]. Readers decode it with [`Envelope::decode`],
//! which never fails on an event type or version it does not know: it returns
//! [`Decoded::Unknown`] so that an old reader skips a newer writer's events with a warning.
//!
//! # Partition key
//! [`Event::partition_key`] decides which events are totally ordered against each other. Every
//! event about one token family, one subject's tokens or one authorization code carries the
//! *subject* as its key (an authorization code and the tokens redeemed from it included) (for `client_credentials` tokens the subject is the client id), so
//! issue → rotate → reuse-detect → revoke of a family and "log out everywhere" of a subject are
//! applied in the order they were appended. Client registration and client-wide revocation are
//! keyed by client id: client-wide revocation is a watermark on `iat`, which is correct in any
//! interleaving with the client's token events. Users are keyed by user name.

mod envelope;
mod payload;

pub use envelope::{DecodeError, Decoded, Envelope, TraceContext};
pub use payload::*;
