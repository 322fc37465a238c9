//! The resource-server SDK. A [`Verifier`] checks an access token the way every validator of
//! this service must: signature with the key named by `kid` → `typ`/`iss`/`aud`/`exp`/`nbf`
//! → one revocation lookup. Keys ([`KeySet`]) and revocation state ([`RevocationCheck`]) sit
//! behind traits, so a token node, a remote resource server and a unit test plug in their own.
//! With the `axum` feature, [`Bearer`] is an extractor that answers RFC 6750 401s itself; with
//! `remote`, [`RemoteKeys`] discovers and caches an issuer's JWKS for a remote resource server.

mod clock;
#[cfg(feature = "axum")]
mod extract;
#[cfg(feature = "remote")]
mod remote;
mod verifier;

pub use clock::SystemClock;
#[cfg(feature = "axum")]
pub use extract::{Bearer, BearerRejection};
#[cfg(feature = "remote")]
pub use remote::{RemoteError, RemoteKeys, RemoteOptions};
pub use verifier::{KeySet, NoRevocation, Rejection, RevocationCheck, Verifier, revocation_query};
