//! The embedded event log: one append-only file of framed records.
//!
//! A record is `len: u32 LE | crc32(payload): u32 LE | payload` (the payload is one JSON
//! event envelope). Its offset is its index in the file. On open, a torn tail (the last
//! record cut short by a crash: no intact record follows it) is truncated with a warning;
//! any other damage, in whichever field, refuses to start with the offset and a recovery
//! hint, never silently dropping acknowledged events ([`truncate_to`] is the operator's
//! repair).
//!
//! Appends go through one writer thread that writes every queued record, then fsyncs once
//! (group commit), then hands each record in order to the sink (the in-process projector),
//! then answers the callers. A caller's event is therefore durable and projected when
//! `append` returns.

mod frame;
mod writer;

pub use frame::{FrameError, Recovered, recover, truncate_to};
pub use writer::{FileLog, FileLogOptions, Sink};
