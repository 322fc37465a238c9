//! Rate limits (`governor`'s GCRA, keyed): per client id on the token, introspection and
//! revocation endpoints; per source address and per user name on every password check (the
//! password grant, `/login`, the login form). An excess answers `429` with `Retry-After`.
//!
//! Limits are per node: a shared counter would put a Redis round trip on every request, the
//! very cost this design keeps off the hot path. Behind a load balancer that spreads evenly,
//! a cluster of N nodes allows N times a node's limit; set them accordingly. The per-address
//! limit sees the address that connects: behind a proxy, that is the proxy (keep the
//! per-user limit, or limit at the proxy).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::RateLimit;

type Keyed<K> = DefaultKeyedRateLimiter<K>;

/// Over a limit: try again after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after_secs: u64,
}

pub struct Limits {
    client: Option<Keyed<String>>,
    address: Option<Keyed<IpAddr>>,
    user: Option<Keyed<String>>,
    clock: DefaultClock,
}

fn keyed<K: Clone + std::hash::Hash + Eq>(enabled: bool, quota: Option<Quota>) -> Option<Keyed<K>> {
    enabled.then_some(quota).flatten().map(Keyed::keyed)
}

fn per_minute(n: u32) -> Option<Quota> {
    NonZeroU32::new(n).map(Quota::per_minute)
}

impl Limits {
    pub fn new(c: &RateLimit) -> Self {
        let client = NonZeroU32::new(c.client_per_sec).map(|rate| {
            Quota::per_second(rate).allow_burst(NonZeroU32::new(c.client_burst).unwrap_or(rate))
        });
        Self {
            client: keyed(c.enabled, client),
            address: keyed(c.enabled, per_minute(c.password_per_min_per_address)),
            user: keyed(c.enabled, per_minute(c.password_per_min_per_user)),
            clock: DefaultClock::default(),
        }
    }

    /// One token, introspection or revocation request of `client_id` (authenticated or not:
    /// guessing a client's secret is limited too).
    pub fn client(&self, client_id: &str) -> Result<(), Limited> {
        self.check(self.client.as_ref(), &client_id.to_owned())
    }

    /// One password check for `user` from `peer`.
    pub fn password(&self, peer: Option<IpAddr>, user: &str) -> Result<(), Limited> {
        if let Some(peer) = peer {
            self.check(self.address.as_ref(), &peer)?;
        }
        self.check(self.user.as_ref(), &user.to_owned())
    }

    fn check<K: Clone + std::hash::Hash + Eq>(
        &self,
        limiter: Option<&Keyed<K>>,
        key: &K,
    ) -> Result<(), Limited> {
        let Some(limiter) = limiter else {
            return Ok(());
        };
        limiter.check_key(key).map_err(|not_until| {
            let wait: Duration = not_until.wait_time_from(self.clock.now());
            Limited {
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            }
        })
    }

    /// Forgets keys whose limit has fully recovered (memory stays bounded by recent keys).
    pub fn prune(&self) {
        if let Some(l) = &self.client {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.address {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.user {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(enabled: bool) -> Limits {
        Limits::new(&RateLimit {
            enabled,
            client_per_sec: 1,
            client_burst: 3,
            password_per_min_per_address: 2,
            password_per_min_per_user: 3,
        })
    }

    #[test]
    fn bursts_pass_then_excess_is_told_when_to_retry() {
        let l = limits(true);
        for _ in 0..3 {
            assert_eq!(l.client("app"), Ok(()));
        }
        let limited = l.client("app").unwrap_err();
        assert!((1..=2).contains(&limited.retry_after_secs), "{limited:?}");
        assert_eq!(l.client("other"), Ok(()), "each client has its own budget");
    }

    #[test]
    fn password_checks_are_limited_per_address_and_per_user() {
        let l = limits(true);
        let (a, b) = (
            Some("127.0.0.1".parse().unwrap()),
            Some("127.0.0.2".parse().unwrap()),
        );
        assert!(l.password(a, "alice").is_ok());
        assert!(l.password(a, "bob").is_ok());
        assert!(l.password(a, "carol").is_err(), "third from one address");
        assert!(l.password(b, "alice").is_ok());
        assert!(l.password(b, "alice").is_ok());
        assert!(l.password(None, "alice").is_err(), "fourth for one user");
    }

    #[test]
    fn off_means_off() {
        let l = limits(false);
        for _ in 0..100 {
            assert!(l.client("app").is_ok());
            assert!(l.password(None, "alice").is_ok());
        }
    }
}
