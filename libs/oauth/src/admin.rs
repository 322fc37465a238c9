//! Administration: clients (the service makes their secrets and shows each once), users
//! (argon2id), and "revoke everything" for a subject or a client.

use serde::{Deserialize, Serialize};
use tokend_domain::model::Client;
use tokend_events::{
    ClientDisabled, ClientRegistered, ClientRevoked, SigningKeyRevoked, SubjectRevoked,
    UserCreated, UserDisabled,
};

use crate::secrets::{self, Secret};
use crate::{Consistency, GRANT_TYPES, OAuthError, Result, TokenService};

/// A client registration request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    /// Chosen by the service when absent.
    #[serde(default)]
    pub client_id: Option<String>,
    pub name: String,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    /// Scopes granted when a request names none; within `scopes`.
    #[serde(default)]
    pub default_scopes: Vec<String>,
    pub audiences: Vec<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// A public client (a browser or mobile app) has no secret; it may only use the
    /// authorization code grant with PKCE (and refresh tokens).
    #[serde(default)]
    pub public: bool,
}

/// A client as the admin API shows it: its settings, never its secret's digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientInfo {
    pub client_id: String,
    pub name: String,
    pub public: bool,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub default_scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub disabled: bool,
}

impl From<Client> for ClientInfo {
    fn from(c: Client) -> Self {
        Self {
            public: c.is_public(),
            client_id: c.client_id,
            name: c.name,
            grant_types: c.grant_types,
            scopes: c.scopes,
            default_scopes: c.default_scopes,
            audiences: c.audiences,
            redirect_uris: c.redirect_uris,
            disabled: c.disabled,
        }
    }
}

/// The registered client and, this once, its secret.
#[derive(Serialize)]
pub struct RegisteredClient {
    #[serde(flatten)]
    pub client: ClientInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

impl std::fmt::Debug for RegisteredClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredClient")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    pub password: Secret,
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// Identifiers: 1 to 128 characters of `A-Z a-z 0-9 - _ . @ :`.
/// A client id or user name: 1-128 characters of `A-Z a-z 0-9 - _ . @ :`.
pub fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@:".contains(c))
}

fn valid_redirect_uri(uri: &str) -> bool {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
        && !uri.contains('#')
        && !uri.contains(char::is_whitespace)
}

fn bad(msg: impl Into<String>) -> OAuthError {
    OAuthError::InvalidRequest(msg.into())
}

impl TokenService {
    pub async fn register_client(&self, new: NewClient) -> Result<RegisteredClient> {
        let client_id = new.client_id.unwrap_or_else(secrets::random_id);
        if !valid_id(&client_id) {
            return Err(bad(
                "client_id must be 1-128 characters of A-Z a-z 0-9 - _ . @ :",
            ));
        }
        if new.name.trim().is_empty() || new.name.len() > 200 {
            return Err(bad("name must be 1-200 characters"));
        }
        if let Some(g) = new
            .grant_types
            .iter()
            .find(|g| !GRANT_TYPES.contains(&g.as_str()))
        {
            return Err(bad(format!("unsupported grant type '{g}'")));
        }
        if new.grant_types.is_empty() {
            return Err(bad("grant_types must not be empty"));
        }
        if let Some(s) = new.scopes.iter().find(|s| s.is_empty() || s.contains(' ')) {
            return Err(bad(format!("malformed scope '{s}'")));
        }
        if let Some(s) = new.default_scopes.iter().find(|s| !new.scopes.contains(s)) {
            return Err(bad(format!("default scope '{s}' is not among the scopes")));
        }
        if new.audiences.is_empty()
            || new
                .audiences
                .iter()
                .any(|a| a.is_empty() || a.contains(' '))
        {
            return Err(bad(
                "audiences must be a non-empty list of names without spaces",
            ));
        }
        let code_flow = new.grant_types.iter().any(|g| g == "authorization_code");
        if new.public
            && (!code_flow
                || new
                    .grant_types
                    .iter()
                    .any(|g| g != "authorization_code" && g != "refresh_token"))
        {
            return Err(bad(
                "a public client may only use authorization_code (and refresh_token)",
            ));
        }
        if code_flow && new.redirect_uris.is_empty() {
            return Err(bad("the authorization_code grant needs redirect_uris"));
        }
        if let Some(u) = new.redirect_uris.iter().find(|u| !valid_redirect_uri(u)) {
            return Err(bad(format!(
                "redirect URI '{u}' must be an absolute http(s) URL without a fragment"
            )));
        }
        if self.store.client(&client_id).await?.is_some() {
            return Err(OAuthError::Conflict(format!(
                "client '{client_id}' already exists"
            )));
        }
        let secret = (!new.public).then(secrets::random_token);
        let event = ClientRegistered {
            client_id: client_id.clone(),
            name: new.name,
            secret_digest: secret.as_ref().map(|s| self.hasher.digest(s)),
            grant_types: new.grant_types,
            scopes: new.scopes,
            default_scopes: new.default_scopes,
            audiences: new.audiences,
            redirect_uris: new.redirect_uris,
        };
        let position = self.append(event.clone()).await?;
        // The log decides between two registrations of one id (say on two nodes, or before
        // the projection had the first): the first wins, and only its caller hears 201.
        self.await_consistency(position, Some(Consistency::Applied))
            .await?;
        let stored = self.store.client(&client_id).await?;
        // (Compared as registered: a disable since then does not make it someone else's.)
        if stored.map(|c| Client {
            disabled: false,
            ..c
        }) != Some(Client::from(&event))
        {
            return Err(OAuthError::Conflict(format!(
                "client '{client_id}' already exists"
            )));
        }
        let client = ClientInfo {
            client_id: event.client_id,
            name: event.name,
            public: event.secret_digest.is_none(),
            grant_types: event.grant_types,
            scopes: event.scopes,
            default_scopes: event.default_scopes,
            audiences: event.audiences,
            redirect_uris: event.redirect_uris,
            disabled: false,
        };
        Ok(RegisteredClient {
            client,
            client_secret: secret,
        })
    }

    pub async fn clients(&self) -> Result<Vec<ClientInfo>> {
        Ok(self
            .store
            .clients()
            .await?
            .into_iter()
            .map(ClientInfo::from)
            .collect())
    }

    /// A "revoked before" watermark: every grant begun up to and including this millisecond.
    fn watermark_now(&self) -> i64 {
        self.clock.now_ms() + 1
    }

    pub async fn disable_client(&self, client_id: &str) -> Result<()> {
        self.store
            .client(client_id)
            .await?
            .ok_or_else(|| OAuthError::NotFound(format!("no client '{client_id}'")))?;
        let position = self
            .append(ClientDisabled {
                client_id: client_id.to_owned(),
                revoked_before_ms: self.watermark_now(),
            })
            .await?;
        self.await_consistency(position, None).await
    }

    pub async fn create_user(&self, new: NewUser) -> Result<()> {
        if !valid_id(&new.username) {
            return Err(bad(
                "username must be 1-128 characters of A-Z a-z 0-9 - _ . @ :",
            ));
        }
        let len = new.password.expose().chars().count();
        if !(8..=1024).contains(&len) {
            return Err(bad("password must be 8-1024 characters"));
        }
        if self.store.user(&new.username).await?.is_some() {
            return Err(OAuthError::Conflict(format!(
                "user '{}' already exists",
                new.username
            )));
        }
        let password = new.password;
        let hash = self
            .password_work(move || secrets::hash_password(password.expose()))
            .await?
            .ok_or(OAuthError::Internal)?;
        let position = self
            .append(UserCreated {
                username: new.username.clone(),
                password_hash: hash.clone(),
            })
            .await?;
        // As for clients: the first creation of a name wins (each hash has its own salt).
        self.await_consistency(position, Some(Consistency::Applied))
            .await?;
        match self.store.user(&new.username).await? {
            Some(u) if u.password_hash == hash => Ok(()),
            _ => Err(OAuthError::Conflict(format!(
                "user '{}' already exists",
                new.username
            ))),
        }
    }

    pub async fn disable_user(&self, username: &str) -> Result<()> {
        self.store
            .user(username)
            .await?
            .ok_or_else(|| OAuthError::NotFound(format!("no user '{username}'")))?;
        let position = self
            .append(UserDisabled {
                username: username.to_owned(),
                revoked_before_ms: self.watermark_now(),
            })
            .await?;
        self.await_consistency(position, None).await
    }

    /// "Log out everywhere": every token of `sub` issued up to now.
    pub async fn revoke_subject(&self, sub: &str) -> Result<()> {
        if sub.is_empty() {
            return Err(bad("subject must not be empty"));
        }
        let position = self
            .append(SubjectRevoked {
                sub: sub.to_owned(),
                revoked_before_ms: self.watermark_now(),
            })
            .await?;
        self.await_consistency(position, None).await
    }

    /// Every token of the client issued up to now.
    pub async fn revoke_client_tokens(&self, client_id: &str) -> Result<()> {
        self.store
            .client(client_id)
            .await?
            .ok_or_else(|| OAuthError::NotFound(format!("no client '{client_id}'")))?;
        let position = self
            .append(ClientRevoked {
                client_id: client_id.to_owned(),
                revoked_before_ms: self.watermark_now(),
            })
            .await?;
        self.await_consistency(position, None).await
    }

    /// Emergency: every token the signing key `kid` signed is revoked, through the log and
    /// under the same consistency as any revocation. (Withdrawing the key from the key set is
    /// the key log's part.)
    pub async fn revoke_signing_key(&self, kid: &str) -> Result<()> {
        let position = self
            .append(SigningKeyRevoked {
                kid: kid.to_owned(),
                at_ms: self.clock.now_ms(),
            })
            .await?;
        self.await_consistency(position, None).await
    }
}
