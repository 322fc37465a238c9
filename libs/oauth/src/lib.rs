//! The token service's application layer. [`TokenService`] authenticates clients, runs the
//! grants, revokes, introspects and administers, appending every change to the [`EventLog`]
//! before it answers and reading only from the [`StateStore`]. No HTTP here: the handlers in
//! `tokend` extract, call one method, and map the result.
//!
//! [`EventLog`]: tokend_domain::EventLog
//! [`StateStore`]: tokend_domain::StateStore

mod admin;
mod authorize;
pub mod browser;
mod client_auth;
mod error;
mod grants;
mod introspect;
mod revoke;
mod scope;
pub mod secrets;
mod service;

pub use admin::{ClientInfo, NewClient, NewUser, RegisteredClient, valid_id};
pub use authorize::{AuthorizeError, AuthorizeRequest};
pub use client_auth::ClientCredentials;
pub use error::{OAuthError, Result};
pub use grants::{Grant, TokenRequest, TokenResponse};
pub use introspect::Introspection;
pub use revoke::Consistency;
pub use service::{Settings, TokenService};

/// Grant types this build implements.
pub const GRANT_TYPES: &[&str] = &[
    "authorization_code",
    "client_credentials",
    "refresh_token",
    "password",
];

#[cfg(test)]
mod tests;
