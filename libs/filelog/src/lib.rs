//! The embedded event log: one append-only file of framed records.
//!
//! A record is `len: u32 LE | crc32(payload): u32 LE | payload` (the payload is one JSON
//! event envelope). Its offset is its index in the file. On open, a torn tail (a record cut
//! short by a crash, or whose checksum fails at the end of the file) is truncated with a
//! warning; damage before the tail is an error, never silently dropped.
//!
//! Appends go through one writer thread that writes every queued record, then fsyncs once
//! (group commit), then hands each record in order to the sink (the in-process projector),
//! then answers the callers. A caller's event is therefore durable and projected when
//! `append` returns.

mod frame;
mod writer;

pub use frame::{FrameError, Recovered, recover};
pub use writer::{FileLog, FileLogOptions, Sink};
