//! Tokens and keys: Ed25519 signing keys (RFC 8037), sealed under an operator's key-encryption
//! key, a [`Keyring`] of keys in states next / active / retired, RFC 9068 access tokens signed
//! and verified with `ed25519-dalek` (keys held decoded in memory), and the JWKS.

mod cache;
mod claims;
mod key;
mod keyring;
mod rotation;
mod seal;
mod verify;

pub use cache::{VERIFIED_TOKENS_DEFAULT, VerifiedTokens};
pub use claims::{AccessClaims, CLIENT_CREDENTIALS};
pub use key::{KeyPair, KeyState};
pub use keyring::{Keyring, KeyringError, SharedKeyring};
pub use rotation::{Adopted, KeyRecord, PUBLICATION_MARGIN_SECS, Rotation, RotationError};
pub use seal::{Kek, SEAL_VERSION, SealError, SealedKey, SealedSecret, SecretsRoot};
pub use verify::{KeyLookup, PublicKeySet, VerifyError, VerifyPolicy, token_kid};

/// The JOSE `typ` of an RFC 9068 access token.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

#[cfg(test)]
mod tests;
