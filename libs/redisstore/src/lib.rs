//! The production [`StateStore`](tokend_domain::StateStore): the projection in Redis.
//!
//! - **Apply** is batched per partition ([`RedisStore::apply_records`]): one round trip reads
//!   the partition's next offset and every record the batch touches, the domain's own
//!   `State::apply` computes the result (there is no second copy of the projection logic),
//!   and one small script (`write.lua`) writes the changed records and the new offset if the
//!   offset and the live generation are still what was read; the refresh tokens, codes and
//!   families it changed then go to their shards ([`bulk`]). Records applied before are
//!   passed over; a batch past the next offset is a gap and changes nothing.
//! - **Reads fail closed**: every query is one round trip that also reads the generation
//!   pointer and the generation's `ready` marker (and the marker of every shard it reads).
//!   No pointer or no marker (Redis restarted empty, `FLUSHALL`, a generation still being
//!   filled, a shard's master that lost its data) is `StoreError::NotReady`, which nodes
//!   answer with 503, never with "not revoked" or `invalid_client`.
//! - **The revocation check** is one round trip to the base slot: `MGET` of `rev:{jti}`,
//!   `fam:{sid}`, `wm:sub:{sub}`, `wm:cli:{client}` (with the pointer and the marker in the
//!   same pipeline); none at all on a node or SDK whose revocation mirror ([`mirror`]) is
//!   current. A refresh token's check also reads its family's shard.
//! - **Near-caches** on nodes and resource servers follow the projector's change stream
//!   ([`changes`]): the client cache ([`clients`]) and the revocation mirror ([`mirror`]).
//!
//! # Key layout
//! Everything lives under a base `P`: the key prefix (`redis.key_prefix`) in braces,
//! `{tokend}`, a hash tag that puts every key of it in one Redis Cluster slot
//! (`connection.rs`); and 256 shards `S` = `{tokend:00}` … `{tokend:ff}` for the records that
//! grow with the number of live grants ([`bulk`]): a record's shard is the first byte of the
//! SHA-256 of its id, so a cluster spreads them over its masters. Records live under `P:G:`
//! or `S:G:` for generation `G`. Values are JSON unless noted; times are seconds unless
//! marked ms.
//!
//! | key | holds | expires |
//! | --- | --- | --- |
//! | `P:live` | name of the live generation | never |
//! | `P:G:offsets` | hash: partition → next offset to apply | never |
//! | `P:G:pending` | hash: partition → its last batch's shard writes, until written | |
//! | `P:G:pending_from` | hash: partition → that batch's first offset (readers' applied offset) | |
//! | `P:G:complete` | hash: partitions applied to the log's end since `G` began | never |
//! | `P:G:ready` | `1`: every partition is complete; readers may answer | never |
//! | `P:G:rev:{jti}` | revoked access token: its `exp` (number) | at the token's `exp` |
//! | `P:G:fam:{id}` | a revoked token family's copy (the revocation check reads it) | at `until` |
//! | `P:G:wm:sub:{sub}` | "revoked before" watermark of a subject, ms (number) | never |
//! | `P:G:wm:cli:{client}` | "revoked before" watermark of a client, ms (number) | never |
//! | `P:G:client:{id}` | registration and `disabled` | never |
//! | `P:G:clients` | set of client ids | never |
//! | `P:G:user:{name}` | password hash (argon2id PHC) and `disabled` | never |
//! | `P:G:revocations` | sorted set: the names of the records the revocation check reads (`rev:`, revoked `fam:`, `wm:`, `revkid:`) by expiry | members trimmed as they expire |
//! | `P:G:index` | `1`: every write to `G` kept `revocations` (made by this build) | never |
//! | `P:live:changes` | pub/sub channel of the live generation's changes | |
//! | `P:mirrors:sync` | strict revocations' barrier counter | never |
//! | `P:mirrors:leases`, `P:mirrors:acks` | hash: mirror → lease renewed (ms), barrier acknowledged | lapsed entries removed after a minute |
//! | `S:G:ready` | `1`: the shard holds what was written to it (gone: its master lost its data) | never |
//! | `S:G:fam:{id}` | token family: `revoked`, `until` | at `until`, its last token's expiry (at least a day after its writing, for replays, as `rt:` and `code:`) |
//! | `S:G:rt:{digest}` | refresh token by SHA-256: family, subject, client, scope, `aud`, `iat`, `exp`, `auth_time_ms`, `used_by` | at its `exp` |
//! | `S:G:code:{digest}` | authorization code: client, subject, redirect URI, scope, `aud`, challenge, `exp`, family, `auth_time_ms`, `redeemed_by` | at its `exp` |
//!
//! An access token with no refresh token (client credentials) costs no key at all until it
//! is revoked; one with a refresh token costs `rt:` and `fam:` in a shard. Revoking a family,
//! a subject or a client writes one key in the base slot whatever the number of tokens. The
//! base slot holds no record per live grant: revocations, watermarks, clients and users.
//!
//! Every record is written by events of one partition only, so a batch's read-compute-write
//! is safe with one projector per partition and still correct while a rebalance briefly
//! gives a partition two: the offset check lets exactly one of them write each range
//! ([`bulk`] says why the shards' writes, which come after it, stay exact).

mod apply;
pub mod bulk;
pub mod changes;
pub mod clients;
mod connection;
mod generation;
mod keys;
pub mod mirror;
mod reads;
mod revocation;
mod settings;
mod store;

pub use generation::{Activation, FENCE_MS, PartitionState, new_generation_name};
pub use revocation::RedisRevocation;
pub use settings::RedisSettings;
pub use store::{RedisStore, base_key};
