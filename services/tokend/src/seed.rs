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
    if !projection_ready(svc).await?.is_empty() {
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

/// The registered clients, once the projection can say (in cluster mode the projector may
/// still be restoring it): waits at most a minute.
async fn projection_ready(svc: &TokenService) -> anyhow::Result<Vec<tokend_oauth::ClientInfo>> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match svc.clients().await {
            Ok(clients) => return Ok(clients),
            Err(tokend_oauth::OAuthError::Unavailable)
                if tokio::time::Instant::now() < deadline =>
            {
                tracing::info!("Waiting for the projection before seeding the demo client.");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => anyhow::bail!("cannot read the projection to seed the demo: {e}"),
        }
    }
}
