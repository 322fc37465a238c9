//! Key names and the value encoding of each record kind.

use tokend_domain::{Key, Record, StoreError};

/// The Redis key of a record, under a generation prefix `P:G:`.
pub(crate) fn record_key(prefix: &str, key: &Key) -> String {
    let (kind, id) = match key {
        Key::Client(id) => ("client:", id),
        Key::User(id) => ("user:", id),
        Key::Family(id) => ("fam:", id),
        Key::Refresh(id) => ("rt:", id),
        Key::Code(id) => ("code:", id),
        Key::RevokedToken(id) => ("rev:", id),
        Key::SubjectWatermark(id) => ("wm:sub:", id),
        Key::ClientWatermark(id) => ("wm:cli:", id),
        Key::RevokedKey(id) => ("revkid:", id),
    };
    format!("{prefix}{kind}{id}")
}

/// The key a record name (a Redis key without its generation prefix) stands for.
pub(crate) fn parse_name(name: &str) -> Option<Key> {
    type Make = fn(String) -> Key;
    // Longer prefixes first: "revkid:" before "rev:".
    const KINDS: [(&str, Make); 9] = [
        ("client:", Key::Client),
        ("user:", Key::User),
        ("fam:", Key::Family),
        ("rt:", Key::Refresh),
        ("code:", Key::Code),
        ("revkid:", Key::RevokedKey),
        ("rev:", Key::RevokedToken),
        ("wm:sub:", Key::SubjectWatermark),
        ("wm:cli:", Key::ClientWatermark),
    ];
    KINDS
        .iter()
        .find_map(|(prefix, make)| name.strip_prefix(prefix).map(|id| make(id.to_owned())))
}

/// The stored form: JSON of the record, or the bare number for watermarks and revoked
/// tokens (the hot path reads those).
pub(crate) fn encode(record: &Record) -> String {
    let json = match record {
        Record::RevokedToken(n) | Record::Watermark(n) | Record::RevokedKey(n) => {
            return n.to_string();
        }
        Record::Client(c) => serde_json::to_string(c),
        Record::User(u) => serde_json::to_string(u),
        Record::Family(f) => serde_json::to_string(f),
        Record::Refresh(r) => serde_json::to_string(r),
        Record::Code(c) => serde_json::to_string(c),
    };
    // Serialising plain data with string keys cannot fail.
    json.unwrap_or_default()
}

/// The record stored under `key`. A value that does not decode (damaged, or written by a
/// newer build) is an error, never "absent": absent would read as "not revoked".
pub(crate) fn decode(key: &Key, value: &str) -> Result<Record, StoreError> {
    parse(key, value).ok_or_else(|| {
        StoreError::Unavailable(format!("a stored {} record does not decode", kind(key)))
    })
}

fn kind(key: &Key) -> &'static str {
    match key {
        Key::Client(_) => "client",
        Key::User(_) => "user",
        Key::Family(_) => "family",
        Key::Refresh(_) => "refresh token",
        Key::Code(_) => "code",
        Key::RevokedToken(_) => "revoked token",
        Key::SubjectWatermark(_) | Key::ClientWatermark(_) => "watermark",
        Key::RevokedKey(_) => "revoked signing key",
    }
}

fn parse(key: &Key, value: &str) -> Option<Record> {
    Some(match key {
        Key::RevokedToken(_) => Record::RevokedToken(value.parse().ok()?),
        Key::RevokedKey(_) => Record::RevokedKey(value.parse().ok()?),
        Key::SubjectWatermark(_) | Key::ClientWatermark(_) => {
            Record::Watermark(value.parse().ok()?)
        }
        Key::Client(_) => Record::Client(serde_json::from_str(value).ok()?),
        Key::User(_) => Record::User(serde_json::from_str(value).ok()?),
        Key::Family(_) => Record::Family(serde_json::from_str(value).ok()?),
        Key::Refresh(_) => Record::Refresh(serde_json::from_str(value).ok()?),
        Key::Code(_) => Record::Code(serde_json::from_str(value).ok()?),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokend_domain::model::FamilyRecord;

    #[test]
    fn records_round_trip() {
        let cases = [
            (Key::RevokedToken("j".into()), Record::RevokedToken(17)),
            (Key::SubjectWatermark("s".into()), Record::Watermark(-3)),
            (Key::RevokedKey("k".into()), Record::RevokedKey(5)),
            (
                Key::Family("f".into()),
                Record::Family(FamilyRecord {
                    revoked: true,
                    until: 9,
                }),
            ),
        ];
        for (key, record) in cases {
            assert_eq!(decode(&key, &encode(&record)).unwrap(), record);
        }
        assert!(decode(&Key::RevokedToken("j".into()), "garbled").is_err());
        assert!(decode(&Key::Family("f".into()), "not json").is_err());
        assert_eq!(
            record_key("p:g:", &Key::ClientWatermark("c".into())),
            "p:g:wm:cli:c"
        );
    }

    #[test]
    fn names_parse_back_to_their_keys() {
        let keys = [
            Key::Client("a:b".into()),
            Key::User("u".into()),
            Key::Family("f".into()),
            Key::Refresh("r".into()),
            Key::Code("c".into()),
            Key::RevokedToken("j".into()),
            Key::RevokedKey("k".into()),
            Key::SubjectWatermark("s".into()),
            Key::ClientWatermark("c".into()),
        ];
        for key in keys {
            assert_eq!(parse_name(&record_key("", &key)), Some(key));
        }
        assert_eq!(parse_name("ready"), None);
    }
}
