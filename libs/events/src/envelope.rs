//! The envelope: type, version, id and time around a payload. (Trace context travels in the
//! Kafka record's headers, `traceparent` and `tracestate`, not in the event.)

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Event;

/// One record of the log. The payload stays JSON text until [`Envelope::decode`] turns it
/// into the typed event in one pass (no intermediate JSON tree: the projector decodes every
/// record of the log, and the tree's allocations were its largest cost).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u16,
    pub id: Uuid,
    /// Milliseconds since the Unix epoch, from the writer's clock.
    pub occurred_at_ms: i64,
    pub payload: Box<serde_json::value::RawValue>,
}

impl PartialEq for Envelope {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.version == other.version
            && self.id == other.id
            && self.occurred_at_ms == other.occurred_at_ms
            && self.payload.get() == other.payload.get()
    }
}

/// What a reader makes of an envelope.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // transient: decoded and applied at once
pub enum Decoded {
    Known(Event),
    /// A type or version this build does not know: skip it, with a warning.
    Unknown {
        kind: String,
        version: u16,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("record is not an event envelope: {0}")]
    Envelope(serde_json::Error),
    #[error("payload of {kind} v{version} does not decode: {source}")]
    Payload {
        kind: String,
        version: u16,
        source: serde_json::Error,
    },
}

impl Envelope {
    /// Wraps an event. `id` and `occurred_at_ms` come from the caller (no clock or RNG here).
    pub fn new(event: &Event, id: Uuid, occurred_at_ms: i64) -> Self {
        let (kind, payload) = event.to_parts();
        Self {
            kind: kind.to_owned(),
            version: event.version(),
            id,
            occurred_at_ms,
            payload,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice(bytes).map_err(DecodeError::Envelope)
    }

    /// Decodes the payload; unknown types and versions are not an error.
    pub fn decode(&self) -> Result<Decoded, DecodeError> {
        match Event::from_parts(&self.kind, self.version, &self.payload) {
            None => Ok(Decoded::Unknown {
                kind: self.kind.clone(),
                version: self.version,
            }),
            Some(Ok(event)) => Ok(Decoded::Known(event)),
            Some(Err(source)) => Err(DecodeError::Payload {
                kind: self.kind.clone(),
                version: self.version,
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientRevoked, Event};

    #[test]
    fn round_trips_and_skips_unknown() {
        let event = Event::ClientRevoked(ClientRevoked {
            client_id: "c1".into(),
            revoked_before_ms: 1_000,
        });
        let env = Envelope::new(&event, Uuid::nil(), 5);
        let back = Envelope::from_bytes(&env.to_bytes()).unwrap();
        assert_eq!(back.decode().unwrap(), Decoded::Known(event));

        let mut future = back.clone();
        future.kind = "TokenTeleported".into();
        assert!(matches!(future.decode().unwrap(), Decoded::Unknown { .. }));
        future.kind = "ClientRevoked".into();
        future.version = 99;
        assert!(matches!(future.decode().unwrap(), Decoded::Unknown { .. }));
    }

    #[test]
    fn bad_payload_is_an_error_not_a_panic() {
        let env = Envelope {
            kind: "ClientRevoked".into(),
            version: 1,
            id: Uuid::nil(),
            occurred_at_ms: 0,
            payload: serde_json::value::to_raw_value(&serde_json::json!({"nope": true})).unwrap(),
        };
        assert!(env.decode().is_err());
        assert!(Envelope::from_bytes(b"\xff\x00garbage").is_err());
    }
}
