//! In-process HTTP tests of the token node (one binary: every file in `tests/` links anew).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Every test's limit: a hang fails fast with the test's name.
pub const LIMIT_SECS: u64 = 120;

mod admin;
mod authorize;
mod bad_input;
mod browser;
mod harness;
mod limits;
mod oauth;
mod restart;
mod seed;
mod tls;
