//! A node on a temporary data directory with a manual clock, driven through `Router::oneshot`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine;
use http_body_util::BodyExt;
use tokend::{Config, Node};
use tokend_domain::ManualClock;
use tower::ServiceExt;

pub const ADMIN: &str = "test-admin-token";

pub struct TestNode {
    pub node: Node,
    pub clock: Arc<ManualClock>,
    pub client_id: String,
    pub client_secret: String,
    pub password: String,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub json: serde_json::Value,
}

impl Reply {
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or_default()
    }
    pub fn str(&self, key: &str) -> String {
        self.json[key].as_str().unwrap_or_default().to_owned()
    }
    pub fn header(&self, name: header::HeaderName) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

pub fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.storage.data_dir = dir.to_path_buf();
    config.storage.fsync = false;
    config.grants.password = true;
    config.seed.demo = true;
    config.admin.token = Some(ADMIN.into());
    config.tokens.leeway_secs = 0;
    config.server.cors_allowed_origins = vec!["http://app.test".into()];
    config
}

impl TestNode {
    pub async fn start(dir: &std::path::Path) -> Self {
        Self::with_config(&config(dir)).await
    }

    pub async fn with_config(config: &Config) -> Self {
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let node = Node::start(config, clock.clone()).await.unwrap();
        let demo = node.demo.as_ref().expect("a fresh data dir seeds the demo");
        Self {
            client_id: demo.client_id.clone(),
            client_secret: demo.client_secret.clone(),
            password: demo.password.clone(),
            node,
            clock,
        }
    }

    /// Stops the node and starts it again with `config`, on the same clock, keeping the
    /// demo's credentials.
    pub async fn restart(self, config: &Config) -> anyhow::Result<Self> {
        let TestNode {
            node,
            clock,
            client_id,
            client_secret,
            password,
        } = self;
        drop(node);
        let node = Node::start(config, clock.clone()).await?;
        Ok(Self {
            node,
            clock,
            client_id,
            client_secret,
            password,
        })
    }

    /// Status, headers and body text (for pages and redirects).
    pub async fn send_raw(
        &self,
        req: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let resp = self.node.router.clone().oneshot(req).await.unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    pub async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.node.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let json = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!("not JSON ({status}): {}", String::from_utf8_lossy(&bytes))
            })
        };
        Reply {
            status,
            headers,
            json,
        }
    }

    pub fn basic(&self) -> String {
        basic(&self.client_id, &self.client_secret)
    }

    /// A form POST authenticated with `client_secret_basic`.
    pub async fn form(&self, path: &str, body: &str) -> Reply {
        self.send(form_request(path, body, Some(&self.basic())))
            .await
    }

    pub async fn get(&self, path: &str, bearer: Option<&str>) -> Reply {
        let mut req = Request::builder().method(Method::GET).uri(path);
        if let Some(t) = bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: &str,
        bearer: Option<&str>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(t) = bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        self.send(req.body(Body::from(body.to_owned())).unwrap())
            .await
    }

    /// The password grant for the demo user.
    pub async fn password_grant(&self) -> Reply {
        let r = self.password_grant_raw().await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        r
    }

    /// The demo user's password grant, whatever it answers.
    pub async fn password_grant_raw(&self) -> Reply {
        let body = format!(
            "grant_type=password&username=demo&password={}",
            self.password
        );
        self.form("/oauth/token", &body).await
    }

    /// GET with the admin token.
    pub async fn get_admin(&self, path: &str) -> Reply {
        let req = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
            .body(Body::empty())
            .unwrap();
        self.send(req).await
    }

    pub async fn active(&self, token: &str) -> bool {
        let r = self
            .form("/oauth/introspect", &format!("token={token}"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        r.json["active"].as_bool().unwrap()
    }

    pub async fn data_status(&self, token: &str) -> StatusCode {
        self.get("/api/data", Some(token)).await.status
    }
}

pub fn basic(id: &str, secret: &str) -> String {
    let raw = format!("{id}:{secret}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

pub fn form_request(path: &str, body: &str, authorization: Option<&str>) -> Request<Body> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(a) = authorization {
        req = req.header(header::AUTHORIZATION, a);
    }
    req.body(Body::from(body.to_owned())).unwrap()
}
