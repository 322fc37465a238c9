//! The projector's change stream, and the task that follows it for a node's near-caches.
//!
//! One pub/sub channel, `{prefix}:live:changes`. The projector publishes from the same Lua
//! script as each write to the live generation, so a message is never sent for a write that
//! did not happen, and Redis delivers messages to a subscriber in the order they were
//! published:
//!
//! - `c <id>`: client `id` changed;
//! - `r <expire-at> <written> <value> <name>`: a record the revocation check reads (a revoked
//!   token, a revoked family, a watermark, a revoked signing key) now holds `value`, in its
//!   stored form; it expires at `expire-at` (seconds, 0 never) and was written at `written`
//!   (Redis's clock, µs);
//! - `*`: the live generation changed (a rebuild's switch, a projection started afresh);
//! - `? <n>`: a strict revocation's barrier `n` (see [`crate::mirror`]).
//!
//! Anything else reads as `*`: a message this build does not understand drops everything.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::{FutureExt, StreamExt};

use crate::clients::ClientCache;
use crate::connection::Origin;
use crate::mirror::Mirror;

/// The message that drops everything.
pub(crate) const FLUSH: &str = "*";

pub(crate) fn channel(base: &str) -> String {
    format!("{}:changes", crate::store::pointer_key(base))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change<'a> {
    Flush,
    Client(&'a str),
    Record {
        expires_at: i64,
        written_us: i64,
        value: &'a str,
        name: &'a str,
    },
    Barrier(u64),
}

fn record(rest: &str) -> Option<Change<'_>> {
    let (at, rest) = rest.split_once(' ')?;
    let (written, rest) = rest.split_once(' ')?;
    let (value, name) = rest.split_once(' ')?;
    Some(Change::Record {
        expires_at: at.parse().ok()?,
        written_us: written.parse().ok()?,
        value,
        name,
    })
}

pub(crate) fn parse(payload: &str) -> Change<'_> {
    let change = match payload.split_once(' ') {
        Some(("c", id)) => Some(Change::Client(id)),
        Some(("r", rest)) => record(rest),
        Some(("?", n)) => n.parse().ok().map(Change::Barrier),
        _ => None,
    };
    change.unwrap_or(Change::Flush)
}

/// What follows the stream, held weakly: the task ends once they are all dropped.
pub(crate) struct Followers {
    pub clients: Option<Weak<ClientCache>>,
    pub mirror: Option<Weak<Mirror>>,
}

struct Live {
    clients: Option<Arc<ClientCache>>,
    mirror: Option<Arc<Mirror>>,
}

impl Followers {
    fn upgrade(&self) -> Option<Live> {
        let live = Live {
            clients: self.clients.as_ref().and_then(Weak::upgrade),
            mirror: self.mirror.as_ref().and_then(Weak::upgrade),
        };
        (live.clients.is_some() || live.mirror.is_some()).then_some(live)
    }
}

impl Live {
    /// Applies one message; returns whether it dropped everything. Barriers are gathered in
    /// `barrier`, to be acknowledged once for a burst.
    fn handle(&self, message: &redis::Msg, barrier: &mut Option<u64>) -> bool {
        let payload: String = message.get_payload().unwrap_or_default();
        match parse(&payload) {
            Change::Flush => {
                if let Some(c) = &self.clients {
                    c.changed(None);
                }
                if let Some(m) = &self.mirror {
                    m.step_aside();
                }
                return true;
            }
            Change::Client(id) => {
                if let Some(c) = &self.clients {
                    c.changed(Some(id));
                }
            }
            Change::Record {
                expires_at,
                written_us,
                value,
                name,
            } => {
                if let Some(m) = &self.mirror {
                    m.record(name, value, expires_at);
                    crate::mirror::observe_delay(written_us);
                }
            }
            Change::Barrier(n) => *barrier = Some(barrier.unwrap_or(0).max(n)),
        }
        false
    }

    /// Subscribed on the node with this run id (`Some`), or not subscribed.
    fn set_live(&self, node: Option<&str>) {
        if let Some(c) = &self.clients {
            c.set_live(node.is_some());
        }
        if let Some(m) = &self.mirror {
            if node.is_none() {
                m.step_aside();
            }
            m.subscribed_on(node.unwrap_or_default());
        }
    }
}

/// Follows the stream for `followers` until they are dropped, subscribing again (with a
/// backoff) whenever it breaks.
pub(crate) fn start(origin: Origin, channel: String, followers: Followers) {
    tokio::spawn(follow(origin, channel, followers));
}

async fn follow(origin: Origin, channel: String, followers: Followers) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match subscribe(&origin, &channel, &followers).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(error) => {
                tracing::warn!(%error, "Near-caches: no change stream from Redis; reads go to Redis until it is back.");
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        let Some(live) = followers.upgrade() else {
            return;
        };
        live.set_live(None);
        drop(live);
        tokio::time::sleep(backoff).await;
    }
}

/// How often a subscription is checked: the revocation mirror's lease, then a ping on it (a
/// connection Redis closed shows only this way). A change lost with a closed connection is
/// served from the client cache at most about this long, plus [`PING_LIMIT`] for a
/// connection gone silent; the mirror stops answering by its lease.
const CHECK_EVERY: Duration = Duration::from_millis(250);
const PING_LIMIT: Duration = Duration::from_secs(1);
/// The most messages read in one go after a ping (the task yields between checks).
const DRAIN_MAX: usize = 100_000;

/// One subscription, until it breaks (or the followers are dropped). It is made on the node
/// that runs the projection's scripts (in a cluster, the master of its slot), whose run id the
/// mirror's lease then checks: messages published before a ping's answer have been delivered
/// only on the node that published them.
async fn subscribe(
    origin: &Origin,
    channel: &str,
    followers: &Followers,
) -> redis::RedisResult<()> {
    let subscribed = tokio::time::timeout(PING_LIMIT, async {
        let client = origin.node(channel).await?;
        let node = run_id(&client).await?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        redis::RedisResult::Ok((pubsub, node))
    });
    let Ok(subscribed) = subscribed.await else {
        return Ok(()); // no answer (a frozen Redis): try again after the backoff
    };
    let (pubsub, node) = subscribed?;
    let (mut sink, mut messages) = pubsub.split();
    match followers.upgrade() {
        Some(live) => live.set_live(Some(&node)),
        None => return Ok(()),
    }
    // The first tick is at once: the mirror loads as soon as it is subscribed. A long load
    // delays the next ticks rather than firing them in a burst.
    let mut check = tokio::time::interval(CHECK_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            message = messages.next() => message,
            _ = check.tick() => {
                let Some(live) = followers.upgrade() else {
                    return Ok(());
                };
                // The mirror's lease first, then the ping, then everything queued before its
                // answer; only then does the mirror answer on the lease (see `crate::mirror`).
                let renewed = match &live.mirror {
                    Some(mirror) => mirror.renew().await,
                    None => None,
                };
                if live.mirror.as_ref().is_some_and(|m| m.elsewhere()) {
                    // A failover moved the scripts: subscribe there (after the backoff, and
                    // said, should subscribing keep reaching another node than the scripts).
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "the revocation mirror's lease ran on another Redis node than its subscription",
                    )));
                }
                match tokio::time::timeout(PING_LIMIT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return Err(error),
                    Err(_) => return Ok(()), // silent: subscribe afresh
                }
                // Everything published before the ping was answered is queued by now; read
                // all of it (unconstrained: tokio's cooperative budget would stop the loop
                // early with messages still queued).
                let mut barrier = None;
                let drained = tokio::task::unconstrained(async {
                    for _ in 0..DRAIN_MAX {
                        match messages.next().now_or_never() {
                            Some(Some(message)) => {
                                live.handle(&message, &mut barrier);
                            }
                            _ => return true,
                        }
                    }
                    false
                })
                .await;
                if let Some(mirror) = &live.mirror {
                    mirror.acknowledge(barrier).await;
                    // Not all of it read (a flood): no new serving window this time.
                    if let (Some(renewed), true) = (renewed, drained) {
                        mirror.serve(renewed);
                    }
                }
                continue;
            }
        };
        let Some(first) = first else {
            return Ok(()); // the connection is gone
        };
        let Some(live) = followers.upgrade() else {
            return Ok(());
        };
        let mut barrier = None;
        let mut flushed = live.handle(&first, &mut barrier);
        while let Some(Some(message)) = messages.next().now_or_never() {
            flushed |= live.handle(&message, &mut barrier);
        }
        if let Some(mirror) = &live.mirror {
            mirror.acknowledge(barrier).await;
        }
        if flushed {
            check.reset_immediately(); // reload from the new generation soon
        }
    }
}

/// The run id of the node `client` connects to (a restarted Redis has a new one).
async fn run_id(client: &redis::Client) -> redis::RedisResult<String> {
    let mut con = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut con)
        .await?;
    info.lines()
        .find_map(|line| line.strip_prefix("run_id:"))
        .map(|id| id.trim().to_owned())
        .ok_or_else(|| redis::RedisError::from((redis::ErrorKind::Parse, "no run_id in INFO")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_and_anything_unknown_drops_everything() {
        assert_eq!(parse("c app 1"), Change::Client("app 1"));
        assert_eq!(
            parse("r 17 5000 {\"revoked\":true,\"until\":9} fam:a b"),
            Change::Record {
                expires_at: 17,
                written_us: 5000,
                value: "{\"revoked\":true,\"until\":9}",
                name: "fam:a b"
            }
        );
        assert_eq!(parse("? 42"), Change::Barrier(42));
        for unknown in [
            "*",
            "app",
            "r x 1 1 rev:j",
            "r 1 1",
            "r 1 x 1 rev:j",
            "? x",
            "",
        ] {
            assert_eq!(parse(unknown), Change::Flush, "{unknown}");
        }
    }
}
