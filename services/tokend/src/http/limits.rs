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

/// Past this many keys in one limiter, recovered keys are dropped at once rather than at the
/// next minute's pruning (a flood of made-up client ids or addresses cannot grow it far).
const MAX_KEYS: usize = 100_000;

/// What all ids that cannot exist share (too long, odd characters): one budget.
const NO_SUCH_CLIENT: &str = "";

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
        let key = if tokend_oauth::valid_id(client_id) {
            client_id
        } else {
            NO_SUCH_CLIENT
        };
        self.check(self.client.as_ref(), &key.to_owned())
    }

    /// One password check for `user` from `peer`.
    pub fn password(&self, peer: Option<IpAddr>, user: &str) -> Result<(), Limited> {
        if let Some(peer) = peer {
            self.check(self.address.as_ref(), &network(peer))?;
        }
        let user = if tokend_oauth::valid_id(user) {
            user
        } else {
            NO_SUCH_CLIENT
        };
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
        if limiter.len() > MAX_KEYS {
            limiter.retain_recent();
        }
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

/// The budget an address draws on: itself for IPv4, its /64 for IPv6 (one host holds a
/// whole /64, so keying by address would hand it 2^64 budgets).
fn network(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
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
    fn an_ipv6_host_cannot_escape_by_changing_its_interface_id() {
        let l = limits(true);
        let addr = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(l.password(addr("2001:db8::1"), "u1").is_ok());
        assert!(l.password(addr("2001:db8::2"), "u2").is_ok());
        assert!(l.password(addr("2001:db8::ffff:3"), "u3").is_err());
        assert!(
            l.password(addr("2001:db8:0:1::1"), "u4").is_ok(),
            "another /64"
        );
    }

    #[test]
    fn made_up_ids_share_one_budget() {
        let l = limits(true);
        let long = "x".repeat(5000);
        for _ in 0..3 {
            assert!(l.client(&long).is_ok());
        }
        assert!(
            l.client("not valid!").is_err(),
            "the same budget as the long one"
        );
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
