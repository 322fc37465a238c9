//! The production [`StateStore`](tokend_domain::StateStore): the projection in Redis.
//!
//! Applying an event and recording its partition offset happen in one Lua script
//! (`apply.lua`), so they are atomic; the script applies only the partition's next offset
//! (older: duplicate, newer: gap), which makes redelivery a no-op and lets the projector find
//! where to resume. The script reproduces `tokend_domain::Projection::apply` exactly; the
//! integration tests compare the two on the same events.
//!
//! # Key layout
//! Everything lives under a base prefix `P` (`redis.key_prefix`). `P:active` names the live
//! generation (`g0` when absent); a `rebuild` fills a new generation and switches the pointer.
//! Inside a generation `G`:
//!
//! | key | type | holds | expires |
//! | --- | --- | --- | --- |
//! | `P:G:offsets` | hash | partition → next offset to apply | never |
//! | `P:G:tok:{jti}` | hash | active access token: sub, client_id, family_id, iat, exp | at `exp` |
//! | `P:G:rev:{jti}` | string | revoked access token | at its `exp` |
//! | `P:G:rt:{digest}` | hash | refresh token by SHA-256: family_id, sub, client_id, scope, aud, iat, exp, used_by | at its `exp` |
//! | `P:G:fam:{id}` | hash | token family: sub, client_id, revoked | with its last member |
//! | `P:G:famj:{id}` / `famr:{id}` | set | the family's `jti`s / refresh digests | with its last member |
//! | `P:G:subfam:{sub}` / `clifam:{client}` | set | families of a subject / client (session index) | with its last member |
//! | `P:G:wm:sub:{sub}` / `wm:cli:{client}` | string | "revoked before" watermark, ms | never (one per revoked subject/client) |
//! | `P:G:code:{digest}` | hash | authorization code: client_id, sub, redirect_uri, scope, aud, code_challenge, exp, family_id, redeemed_by | at its `exp` |
//! | `P:G:client:{id}` | hash | `json` (the registration), `disabled` | never |
//! | `P:G:clients` | set | client ids | never |
//! | `P:G:user:{name}` | hash | `password_hash`, `disabled` | never |
//!
//! The revocation check on the validation path is one `MGET` of `rev:{jti}`, `wm:sub:{sub}`
//! and `wm:cli:{client}`. All of a generation's keys are addressed from one script, so this
//! layout needs a single Redis (or a primary with replicas), not Redis Cluster.

mod generation;
mod revocation;
mod settings;
mod store;

pub use revocation::RedisRevocation;
pub use settings::RedisSettings;
pub use store::RedisStore;
