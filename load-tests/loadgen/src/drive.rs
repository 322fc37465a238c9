//! Drives requests over a fixed set of HTTP/1.1 keep-alive connections and records every
//! latency in HDR histograms (overall, and per second for the timeline).
//!
//! - Closed model (no `rate`): each connection sends its next request as soon as the last one
//!   is answered, the way wrk and oha measure the most a target can serve.
//! - Open model (`rate`): each connection sends on a fixed schedule (its share of the rate),
//!   and a latency is measured from when the request was *due*, not from when it was sent, so a
//!   target that falls behind shows its queueing (no coordinated omission, as in wrk2).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// What one request should look like and what its answer must be.
pub struct Shot {
    pub request: Request<Full<Bytes>>,
    pub status: u16,
    /// Bytes the answer's body must contain (else the answer is counted wrong).
    pub contains: Option<&'static [u8]>,
}

/// Makes the `n`-th request of the run (`n` counts across connections, for rotating pools).
pub trait Plan: Send + Sync {
    fn shot(&self, n: u64, target: &Target) -> Shot;
}

/// One server to send to.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// `host:port`, for the `Host` header.
    pub authority: String,
}

impl Target {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let authority = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let addr = authority
            .parse()
            .with_context(|| format!("{url}: give http://IP:PORT (loopback)"))?;
        anyhow::ensure!(
            SocketAddr::ip(&addr).is_loopback(),
            "{url}: load goes to loopback addresses only"
        );
        Ok(Self { addr, authority })
    }
}

pub struct Settings {
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Requests per second over all connections (open model); `None` for the closed model.
    pub rate: Option<f64>,
}

/// What the connections saw during the measured window.
pub struct Tally {
    pub latency: Histogram<u64>,
    /// Per second of the measured window: (answers, latency histogram).
    pub seconds: Vec<Histogram<u64>>,
    pub failed: u64,
    pub wrong: u64,
}

const MAX_MICROS: u64 = 60_000_000;

/// How long past the window a request in flight is waited for.
const GRACE: Duration = Duration::from_secs(5);

fn histogram(figures: u8) -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, MAX_MICROS, figures)?)
}

impl Tally {
    fn new(seconds: usize) -> anyhow::Result<Self> {
        Ok(Self {
            latency: histogram(3)?,
            seconds: (0..seconds)
                .map(|_| histogram(2))
                .collect::<anyhow::Result<_>>()?,
            failed: 0,
            wrong: 0,
        })
    }

    fn merge(&mut self, other: &Tally) -> anyhow::Result<()> {
        self.latency.add(&other.latency)?;
        for (mine, theirs) in self.seconds.iter_mut().zip(&other.seconds) {
            mine.add(theirs)?;
        }
        self.failed += other.failed;
        self.wrong += other.wrong;
        Ok(())
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(target: &Target) -> anyhow::Result<Sender> {
    let stream = tokio::net::TcpStream::connect(target.addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

enum Outcome {
    Right,
    Wrong,
    Failed,
}

async fn fire(sender: &mut Sender, shot: Shot) -> Outcome {
    let Ok(response) = sender.send_request(shot.request).await else {
        return Outcome::Failed;
    };
    let status = response.status().as_u16();
    let Ok(body) = response.into_body().collect().await else {
        return Outcome::Failed;
    };
    if status != shot.status {
        return Outcome::Failed;
    }
    match shot.contains {
        Some(needle) if !body.to_bytes().windows(needle.len()).any(|w| w == needle) => {
            Outcome::Wrong
        }
        _ => Outcome::Right,
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "a measurement: Instant is the point"
)]
fn now() -> Instant {
    Instant::now()
}

/// One connection's loop until the end of the window.
async fn connection(
    target: Target,
    plan: Arc<dyn Plan>,
    counter: Arc<AtomicU64>,
    (measure_from, end): (Instant, Instant),
    interval: Option<Duration>,
    seconds: usize,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::new(seconds)?;
    let mut sender = connect(&target).await?;
    let mut due = now();
    loop {
        match interval {
            Some(_) => tokio::time::sleep_until(due.into()).await,
            None => due = now(),
        }
        if due >= end {
            return Ok(tally);
        }
        if sender.ready().await.is_err() {
            // The server closed the connection after its last answer (no keep-alive, or an
            // idle limit): not a failure, open another.
            sender = reconnect(&target, end).await?;
        }
        let shot = plan.shot(counter.fetch_add(1, Ordering::Relaxed), &target);
        // A target that stops answering cannot hold the run past its window.
        let Ok(outcome) =
            tokio::time::timeout_at((end + GRACE).into(), fire(&mut sender, shot)).await
        else {
            tally.failed += 1;
            return Ok(tally);
        };
        let done = now();
        // From when the request was due: in the open model that includes any wait behind
        // earlier answers.
        let micros = u64::try_from(done.saturating_duration_since(due).as_micros())
            .unwrap_or(MAX_MICROS)
            .max(1);
        if let Some(interval) = interval {
            due += interval;
        }
        let measured = (measure_from..end).contains(&done);
        match outcome {
            Outcome::Failed => {
                if measured {
                    tally.failed += 1;
                }
                sender = reconnect(&target, end).await?;
            }
            Outcome::Right | Outcome::Wrong if measured => {
                tally.latency.saturating_record(micros);
                let second = usize::try_from((done - measure_from).as_secs()).unwrap_or(0);
                if let Some(h) = tally.seconds.get_mut(second) {
                    h.saturating_record(micros);
                }
                if matches!(outcome, Outcome::Wrong) {
                    tally.wrong += 1;
                }
            }
            Outcome::Right | Outcome::Wrong => {}
        }
    }
}

/// A connection after a failure: a failed request may have closed it (an error answer, a
/// reset), so open a fresh one; give up only when the window is over.
async fn reconnect(target: &Target, end: Instant) -> anyhow::Result<Sender> {
    loop {
        match connect(target).await {
            Ok(sender) => return Ok(sender),
            Err(error) if now() >= end => return Err(error),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Runs the plan against the targets (connection `i` goes to target `i % targets.len()`).
pub async fn drive(
    plan: Arc<dyn Plan>,
    targets: &[Target],
    settings: &Settings,
) -> anyhow::Result<Tally> {
    anyhow::ensure!(
        !targets.is_empty() && settings.connections > 0,
        "nothing to drive"
    );
    let seconds = usize::try_from(settings.duration.as_secs().max(1))?;
    let start = now();
    let window = (
        start + settings.warmup,
        start + settings.warmup + settings.duration,
    );
    let interval = settings
        .rate
        .filter(|r| *r > 0.0)
        .map(|rate| Duration::from_secs_f64(settings.connections as f64 / rate));
    let counter = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..settings.connections)
        .map(|i| {
            tokio::spawn(connection(
                targets[i % targets.len()].clone(),
                plan.clone(),
                counter.clone(),
                window,
                interval,
                seconds,
            ))
        })
        .collect();
    let progress = tokio::spawn(progress(counter.clone(), start, window.1));
    let mut total = Tally::new(seconds)?;
    for task in tasks {
        total.merge(&task.await??)?;
    }
    progress.abort();
    Ok(total)
}

/// A line a second on stderr while the run lasts: elapsed time and requests sent in the
/// last second (the warm-up included).
#[allow(clippy::print_stderr, reason = "the progress display")]
async fn progress(sent: Arc<AtomicU64>, start: Instant, end: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = 0;
    while now() < end {
        tick.tick().await;
        let total = sent.load(Ordering::Relaxed);
        eprintln!(
            "  {:>3.0} s  {:>7} requests/s",
            (now() - start).as_secs_f64(),
            total - last
        );
        last = total;
    }
}
