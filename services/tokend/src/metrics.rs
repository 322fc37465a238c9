//! The token node's metrics (besides the HTTP ones, `tokend_telemetry::http::measured`):
//! tokens issued by grant, revocations by kind, and the signing-key schedule. Label values
//! are fixed sets, never client input.

use std::sync::Weak;

use tokend_redis::mirror::Mirror;
use tokend_telemetry::{AsyncInstrument, KeyValue, counter, global};

use crate::keys::KeyManager;

/// A token response was handed out for `grant_type` (one of the grants the node accepts).
pub fn token_issued(grant_type: &'static str) {
    counter!(
        "tokend",
        "tokend.tokens.issued",
        "token responses handed out, by grant"
    )
    .add(1, &[KeyValue::new("grant_type", grant_type)]);
}

/// A revocation was accepted: `token`, `logout`, `subject`, `client`, `client_disabled`,
/// `user_disabled` or `signing_key`.
pub fn revocation(kind: &'static str) {
    counter!(
        "tokend",
        "tokend.revocations",
        "revocations accepted, by kind"
    )
    .add(1, &[KeyValue::new("kind", kind)]);
}

/// Gauges of the signing-key schedule, read from the key manager when metrics are collected.
pub fn watch_keys(keys: Weak<KeyManager>) {
    let meter = global::meter("tokend");
    let age = keys.clone();
    meter
        .i64_observable_gauge("tokend.signing_key.age")
        .with_unit("s")
        .with_description("time since the active signing key's epoch began (when it started signing, or would have for a key adopted late)")
        .with_callback(move |o| {
            if let Some((age, _)) = age.upgrade().and_then(|k| k.schedule_now()) {
                o.observe(age, &[]);
            }
        })
        .build();
    meter
        .i64_observable_gauge("tokend.signing_key.next_rotation")
        .with_unit("s")
        .with_description("time until the next key signs")
        .with_callback(move |o| {
            if let Some((_, next)) = keys.upgrade().and_then(|k| k.schedule_now()) {
                o.observe(next, &[]);
            }
        })
        .build();
}

/// Gauges of the revocation mirror (cluster nodes): whether it answers, what it holds, and
/// how often it stepped aside.
pub fn watch_mirror(mirror: Weak<Mirror>) {
    let meter = global::meter("tokend");
    meter
        .i64_observable_gauge("tokend.revocation_mirror.current")
        .with_description("1 while the revocation mirror answers revocation checks from memory, 0 while they read Redis")
        .with_callback(reading(&mirror, |m| i64::from(m.is_current())))
        .build();
    meter
        .u64_observable_gauge("tokend.revocation_mirror.entries")
        .with_description("revocation records the mirror holds")
        .with_callback(reading(&mirror, |m| m.len() as u64))
        .build();
    meter
        .u64_observable_counter("tokend.revocation_mirror.fallbacks")
        .with_description("revocation checks that read Redis because the mirror could not answer")
        .with_callback(reading(&mirror, Mirror::fallbacks))
        .build();
    meter
        .u64_observable_counter("tokend.revocation_mirror.step_asides")
        .with_description("times the revocation mirror stopped answering (stream broken, generation changed, lease lost, overflow)")
        .with_callback(reading(&mirror, Mirror::step_asides))
        .build();
}

/// A callback that observes one reading of the mirror while it exists.
fn reading<T: 'static>(
    mirror: &Weak<Mirror>,
    read: fn(&Mirror) -> T,
) -> impl Fn(&dyn AsyncInstrument<T>) + Send + Sync + 'static {
    let mirror = mirror.clone();
    move |o| {
        if let Some(m) = mirror.upgrade() {
            o.observe(read(&m), &[]);
        }
    }
}
