//! The demo client and user of the embedded default, made on first start.

use tokend_oauth::secrets::{Secret, random_token};
use tokend_oauth::{GRANT_TYPES, NewClient, NewUser, TokenService};

/// Where the demo client's authorization codes go (the README's example client app).
pub const DEMO_REDIRECT_URI: &str = "http://127.0.0.1:8081/callback";

/// Shown once, at the start that created them.
pub struct DemoSecrets {
    pub client_id: String,
    pub client_secret: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for DemoSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoSecrets")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

pub async fn demo(svc: &TokenService, client_id: &str) -> anyhow::Result<Option<DemoSecrets>> {
    if !svc.clients().await?.is_empty() {
        return Ok(None);
    }
    let client = svc
        .register_client(NewClient {
            client_id: Some(client_id.to_owned()),
            name: "Demo client".into(),
            grant_types: GRANT_TYPES.iter().map(|g| (*g).to_owned()).collect(),
            scopes: vec!["read".into(), "write".into()],
            default_scopes: vec!["read".into()],
            audiences: vec!["api".into()],
            redirect_uris: vec![DEMO_REDIRECT_URI.into()],
            public: false,
        })
        .await?;
    let password: String = random_token().chars().take(20).collect();
    svc.create_user(NewUser {
        username: "demo".into(),
        password: Secret::new(password.clone()),
    })
    .await?;
    Ok(Some(DemoSecrets {
        client_id: client.client.client_id,
        client_secret: client.client_secret.unwrap_or_default(),
        username: "demo".into(),
        password,
    }))
}
