//! The token service's domain, free of I/O: the read model ([`model`]), the projection as a
//! pure function of the log ([`Projection::apply`]), and the ports the adapters implement
//! ([`EventLog`], [`StateStore`], [`Clock`]).

mod clock;
pub mod model;
mod ports;
mod projection;

pub use clock::{Clock, ManualClock};
pub use ports::{Applied, EventLog, LogError, LogPosition, StateStore, StoreError};
pub use projection::{Alignment, Key, Projection, Record, RevocationKeys, State, align, keys};
