//! Client authentication (RFC 6749 2.3): `client_secret_basic` or `client_secret_post`,
//! checked against the keyed digest in constant time.

use tokend_domain::model::Client;

use crate::secrets::Secret;
use crate::{OAuthError, Result, TokenService};

/// The credentials a request presented.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub client_id: String,
    pub secret: Option<Secret>,
    /// The credentials came in an `Authorization: Basic` header.
    pub via_basic: bool,
}

impl TokenService {
    /// The registered, enabled client these credentials prove; public clients present no
    /// secret.
    pub async fn authenticate(&self, creds: &ClientCredentials) -> Result<Client> {
        let fail = OAuthError::InvalidClient {
            basic: creds.via_basic,
        };
        let client = self.store.client(&creds.client_id).await?;
        let Some(client) = client.filter(|c| !c.disabled) else {
            // Spend the same time as a real check, so ids cannot be probed by timing.
            if let Some(secret) = &creds.secret {
                let _ = self.hasher.verify(secret.expose(), &"0".repeat(64));
            }
            return Err(fail);
        };
        let ok = match (&client.secret_digest, &creds.secret) {
            (Some(digest), Some(secret)) => self.hasher.verify(secret.expose(), digest),
            (None, None) => true,
            _ => false,
        };
        if ok { Ok(client) } else { Err(fail) }
    }
}
