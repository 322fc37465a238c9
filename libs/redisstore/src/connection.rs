//! One connection type for a single Redis (or a primary with replicas) and a Redis Cluster,
//! and where the change stream is read from in each.
//!
//! Every key of the projection carries a hash tag: the base slot's `{P}` or a shard's
//! `{P:xx}`. Every script addresses one of them; reads that span several go through
//! [`Batch`], one pipeline per tag. The same commands run on a single Redis and on a cluster,
//! where the cluster client sends them to each slot's master and follows it through
//! failovers.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, ConnectionAddr, ConnectionInfo, Pipeline, RedisFuture, RedisResult, Value};

use crate::RedisSettings;

#[derive(Clone)]
pub(crate) enum Con {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Con {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Con::Single(c) => c.req_packed_command(cmd),
            Con::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Con::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Con::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Con::Single(c) => c.get_db(),
            Con::Cluster(c) => c.get_db(),
        }
    }
}

impl Con {
    /// Every key matching `pattern` on every master (on a single Redis, of the one Redis).
    pub(crate) async fn scan(&self, pattern: &str) -> RedisResult<Vec<String>> {
        let Con::Cluster(cluster) = self else {
            return scan_node(&mut self.clone(), None, pattern).await;
        };
        let mut cluster = cluster.clone();
        let mut slots = redis::cmd("CLUSTER");
        slots.arg("SLOTS");
        let entries: Vec<Vec<Value>> =
            redis::from_redis_value(slots.query_async(&mut cluster).await?).map_err(parsing)?;
        let mut masters: Vec<(String, u16)> = entries.into_iter().filter_map(master).collect();
        masters.sort_unstable();
        masters.dedup();
        let mut keys = Vec::new();
        for (host, port) in masters {
            let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
            keys.append(&mut scan_node(&mut self.clone(), Some(route), pattern).await?);
        }
        Ok(keys)
    }

    /// Waits, for at most `timeout`, until what this connection wrote to each master has
    /// reached one of its replicas (a master without replicas: at once), so that a failover
    /// keeps it. `false` when some master's replicas did not acknowledge in time.
    pub(crate) async fn replicated(&self, timeout: Duration) -> RedisResult<bool> {
        let Con::Cluster(cluster) = self else {
            return replicated_on(&mut self.clone(), None, timeout).await;
        };
        let mut slots = redis::cmd("CLUSTER");
        slots.arg("SLOTS");
        let entries: Vec<Vec<Value>> =
            redis::from_redis_value(slots.query_async(&mut cluster.clone()).await?)
                .map_err(parsing)?;
        let mut masters: Vec<(String, u16)> = entries.into_iter().filter_map(master).collect();
        masters.sort_unstable();
        masters.dedup();
        let acknowledged =
            futures::future::try_join_all(masters.into_iter().map(|(host, port)| {
                let route =
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                let mut con = self.clone();
                async move { replicated_on(&mut con, Some(route), timeout).await }
            }))
            .await?;
        Ok(acknowledged.into_iter().all(|ok| ok))
    }
}

/// `ROLE`, then `WAIT 1` if the node has replicas, on one node.
async fn replicated_on(
    con: &mut Con,
    route: Option<RoutingInfo>,
    timeout: Duration,
) -> RedisResult<bool> {
    let mut ask = async |cmd: Cmd| match (&mut *con, &route) {
        (Con::Cluster(c), Some(route)) => c.route_command(cmd, route.clone()).await,
        (con, _) => cmd.query_async(con).await,
    };
    let role: Vec<Value> =
        redis::from_redis_value(ask(redis::cmd("ROLE")).await?).map_err(parsing)?;
    let replicas = match role.get(2) {
        Some(Value::Array(replicas)) => replicas.len(),
        _ => 0, // not a master: nothing to wait for here
    };
    if replicas == 0 {
        return Ok(true);
    }
    let mut wait = redis::cmd("WAIT");
    wait.arg(1).arg(
        u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1),
    );
    let acknowledged: i64 = redis::from_redis_value(ask(wait).await?).map_err(parsing)?;
    Ok(acknowledged >= 1)
}

async fn scan_node(
    con: &mut Con,
    route: Option<RoutingInfo>,
    pattern: &str,
) -> RedisResult<Vec<String>> {
    let (mut keys, mut cursor) = (Vec::new(), 0u64);
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        let reply = match (&mut *con, &route) {
            (Con::Cluster(c), Some(route)) => c.route_command(scan, route.clone()).await?,
            _ => scan.query_async(con).await?,
        };
        let (next, mut page): (u64, Vec<String>) =
            redis::from_redis_value(reply).map_err(parsing)?;
        keys.append(&mut page);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// The route to the master of `key`'s slot, and the slot.
async fn master_of(con: &mut ClusterConnection, key: &str) -> RedisResult<(RoutingInfo, u16)> {
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(con)
        .await?;
    Ok((to_master(Route::new(slot, SlotAddr::Master)), slot))
}

fn to_master(route: Route) -> RoutingInfo {
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route))
}

/// Where a near-cache subscribes: the single Redis, or the master that holds the projection's
/// slot in a cluster (found again at every subscription, so a failover moves it).
#[derive(Clone)]
pub(crate) enum Origin {
    Single(redis::Client),
    Cluster {
        seed: ConnectionInfo,
        con: ClusterConnection,
    },
}

impl Origin {
    /// A client of the node that runs the scripts writing `channel`'s slot.
    pub(crate) async fn node(&self, channel: &str) -> RedisResult<redis::Client> {
        let (seed, con) = match self {
            Origin::Single(client) => return Ok(client.clone()),
            Origin::Cluster { seed, con } => (seed, con),
        };
        let mut con = con.clone();
        // Asked of the slot's master itself: its own view of who serves the slot.
        let (master, slot) = master_of(&mut con, channel).await?;
        let mut slots = redis::cmd("CLUSTER");
        slots.arg("SLOTS");
        let entries: Vec<Vec<Value>> =
            redis::from_redis_value(con.route_command(slots, master).await?).map_err(parsing)?;
        let (host, port) = entries
            .into_iter()
            .find_map(|entry| serving(entry, slot))
            .ok_or_else(|| protocol("no master serves the projection's slot"))?;
        redis::Client::open(seed.clone().set_addr(with_node(seed.addr(), host, port)))
    }
}

/// The master of a `CLUSTER SLOTS` entry (`[start, end, [host, port, id], replicas...]`),
/// if the entry covers `slot`.
fn serving(entry: Vec<Value>, slot: u16) -> Option<(String, u16)> {
    let mut fields = entry.iter();
    let start: u16 = redis::from_redis_value(fields.next()?.clone()).ok()?;
    let end: u16 = redis::from_redis_value(fields.next()?.clone()).ok()?;
    (start..=end)
        .contains(&slot)
        .then(|| master(entry))
        .flatten()
}

/// The master of a `CLUSTER SLOTS` entry.
fn master(entry: Vec<Value>) -> Option<(String, u16)> {
    let mut node = redis::from_redis_value::<Vec<Value>>(entry.into_iter().nth(2)?)
        .ok()?
        .into_iter();
    let host: String = redis::from_redis_value(node.next()?).ok()?;
    let port: u16 = redis::from_redis_value(node.next()?).ok()?;
    Some((host, port))
}

fn with_node(addr: &ConnectionAddr, host: String, port: u16) -> ConnectionAddr {
    match addr {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host, port),
    }
}

fn parsing(e: redis::ParsingError) -> redis::RedisError {
    protocol(&e.to_string())
}

fn protocol(what: &str) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Parse,
        "unexpected cluster reply",
        what.to_owned(),
    ))
}

/// Connects as `settings` say: `redis.cluster` takes `redis.url` as a comma-separated list
/// of seed nodes. Commands that get no answer within `response_timeout_ms` fail.
pub(crate) async fn connect(settings: &RedisSettings) -> RedisResult<(Con, Origin)> {
    let timeout = Duration::from_millis(settings.response_timeout_ms);
    let mut nodes = settings.nodes()?;
    if settings.cluster {
        let seed = nodes.first().cloned().ok_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no seed node"))
        })?;
        let con = ClusterClientBuilder::new(nodes)
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(2)
            .max_retry_wait(1000)
            .build()?
            .get_async_connection()
            .await?;
        let origin = Origin::Cluster {
            seed,
            con: con.clone(),
        };
        return Ok((Con::Cluster(con), origin));
    }
    let node = nodes.pop().ok_or_else(|| {
        redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no Redis URL"))
    })?;
    let client = redis::Client::open(node)?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(timeout))
        .set_connection_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    let con = client.get_connection_manager_with_config(config).await?;
    Ok((Con::Single(con), Origin::Single(client)))
}

/// Commands for several slots, sent as one round trip: one pipeline on a single Redis; on a
/// cluster (whose client takes a pipeline for one slot only) one pipeline per hash tag, all
/// at once. The replies come back in the order the commands were added. Commands added after
/// [`Batch::then`] run after every command before it has answered (on a cluster, one more
/// round trip; on a single Redis the pipeline's order already says so).
#[derive(Default)]
pub(crate) struct Batch {
    /// (phase, tag) → the pipeline and where its replies go.
    parts: Vec<(usize, String, Pipeline, Vec<usize>)>,
    phase: usize,
    count: usize,
}

impl Batch {
    /// Adds `cmd`, whose keys all carry the hash tag of `key` (`{…}`).
    pub(crate) fn add(&mut self, key: &str, cmd: Cmd) -> &mut Self {
        let tag = tag_of(key);
        let phase = self.phase;
        let index = match self
            .parts
            .iter()
            .position(|(p, t, _, _)| *p == phase && t == tag)
        {
            Some(index) => index,
            None => {
                self.parts
                    .push((phase, tag.to_owned(), redis::pipe(), Vec::new()));
                self.parts.len() - 1
            }
        };
        let (_, _, pipe, positions) = &mut self.parts[index];
        pipe.add_command(cmd);
        positions.push(self.count);
        self.count += 1;
        self
    }

    /// What is added from now on runs after what was added before.
    pub(crate) fn then(&mut self) -> &mut Self {
        self.phase += 1;
        self
    }

    pub(crate) async fn run(self, con: &Con) -> RedisResult<Vec<Value>> {
        let mut ordered = vec![Value::Nil; self.count];
        if let Con::Single(_) = con {
            let mut all = redis::pipe();
            let mut order = Vec::with_capacity(self.count);
            for (_, _, pipe, positions) in &self.parts {
                for (cmd, position) in pipe.cmd_iter().zip(positions) {
                    all.add_command(cmd.clone());
                    order.push(*position);
                }
            }
            let values: Vec<Value> = all.query_async(&mut con.clone()).await?;
            for (value, position) in values.into_iter().zip(order) {
                ordered[position] = value;
            }
            return Ok(ordered);
        }
        for phase in 0..=self.phase {
            let parts: Vec<_> = self.parts.iter().filter(|p| p.0 == phase).collect();
            let replies = futures::future::try_join_all(parts.iter().map(|(_, _, pipe, _)| {
                let mut con = con.clone();
                async move { pipe.query_async::<Vec<Value>>(&mut con).await }
            }))
            .await?;
            for ((_, _, _, positions), values) in parts.iter().zip(replies) {
                for (value, position) in values.into_iter().zip(positions) {
                    ordered[*position] = value;
                }
            }
        }
        Ok(ordered)
    }
}

/// The hash tag of a key: up to its first `}` (the whole key when it has none).
fn tag_of(key: &str) -> &str {
    key.find('}').map_or(key, |end| &key[..=end])
}
