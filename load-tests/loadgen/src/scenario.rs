//! The scenarios: what each request is, and the tokens a scenario needs made before the
//! measured window (issued on one node, presented to the others).

use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request};

use crate::drive::{Plan, Shot, Target};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// `client_credentials` grants (tokend).
    Issue,
    /// `GET /api/data` with tokens from the pool (tokend: signature and revocation check).
    Validate,
    /// `GET /data` on the example resource server (the SDK: signature and revocation check)
    /// with tokens from the issuer's pool.
    ResourceData,
    /// RFC 7662 introspection of tokens from the pool (tokend).
    Introspect,
    /// The bare reference: sign a token and nothing else (`reference-server`).
    Sign,
    /// The bare reference: verify a token's signature and nothing else (`reference-server`).
    Verify,
    /// The same, with tokens a node issued (`reference-server --jwks` with the node's key set):
    /// the very tokens the node's own validation is measured with.
    VerifyIssued,
    /// The seed tutorial's service: `POST /login` for a token.
    SeedLogin,
    /// The seed tutorial's service: `GET /api/data` with its tokens.
    SeedData,
}

/// The demo client (tokend's `client_credentials` and introspection).
pub struct Client {
    pub id: String,
    pub secret: String,
}

impl Client {
    fn basic(&self) -> anyhow::Result<HeaderValue> {
        let pair = format!("{}:{}", self.id, self.secret);
        let mut value = HeaderValue::from_str(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        ))?;
        value.set_sensitive(true);
        Ok(value)
    }
}

struct Prepared {
    scenario: Scenario,
    basic: Option<HeaderValue>,
    /// `Bearer …` values, or introspection bodies, one per pool token.
    pool: Vec<(HeaderValue, Bytes)>,
}

fn request(
    method: Method,
    target: &Target,
    path: &str,
    body: Bytes,
) -> anyhow::Result<Request<Full<Bytes>>> {
    Ok(Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, target.authority.as_str())
        .body(Full::new(body))?)
}

const FORM: HeaderValue = HeaderValue::from_static("application/x-www-form-urlencoded");
const JSON: HeaderValue = HeaderValue::from_static("application/json");
const SEED_LOGIN: &str = r#"{"username":"alice","password":"wonderland"}"#;

impl Prepared {
    fn build(&self, n: u64, target: &Target) -> anyhow::Result<Shot> {
        let pooled = || {
            let i = usize::try_from(n).unwrap_or(0) % self.pool.len().max(1);
            self.pool.get(i).context("empty token pool")
        };
        let basic = || self.basic.clone().context("no client");
        let (request, contains): (_, Option<&'static [u8]>) = match self.scenario {
            Scenario::Issue => {
                let mut r = request(
                    Method::POST,
                    target,
                    "/oauth/token",
                    Bytes::from_static(b"grant_type=client_credentials"),
                )?;
                r.headers_mut().insert(AUTHORIZATION, basic()?);
                r.headers_mut().insert(CONTENT_TYPE, FORM);
                (r, Some(b"\"access_token\""))
            }
            Scenario::Validate
            | Scenario::Verify
            | Scenario::VerifyIssued
            | Scenario::SeedData
            | Scenario::ResourceData => {
                let path = match self.scenario {
                    Scenario::Verify | Scenario::VerifyIssued => "/verify",
                    Scenario::ResourceData => "/data",
                    _ => "/api/data",
                };
                let mut r = request(Method::GET, target, path, Bytes::new())?;
                r.headers_mut().insert(AUTHORIZATION, pooled()?.0.clone());
                (r, None)
            }
            Scenario::Introspect => {
                let mut r = request(
                    Method::POST,
                    target,
                    "/oauth/introspect",
                    pooled()?.1.clone(),
                )?;
                r.headers_mut().insert(AUTHORIZATION, basic()?);
                r.headers_mut().insert(CONTENT_TYPE, FORM);
                (r, Some(b"\"active\":true"))
            }
            Scenario::Sign => (
                request(Method::POST, target, "/sign", Bytes::new())?,
                Some(b"\"access_token\""),
            ),
            Scenario::SeedLogin => {
                let mut r = request(
                    Method::POST,
                    target,
                    "/login",
                    Bytes::from_static(SEED_LOGIN.as_bytes()),
                )?;
                r.headers_mut().insert(CONTENT_TYPE, JSON);
                (r, Some(b"\"access_token\""))
            }
        };
        Ok(Shot {
            request,
            status: 200,
            contains,
        })
    }
}

impl Plan for Prepared {
    fn shot(&self, n: u64, target: &Target) -> Shot {
        self.build(n, target).unwrap_or_else(|_| Shot {
            // Unreachable with a prepared pool; an unanswerable request counts as failed.
            request: Request::new(Full::new(Bytes::new())),
            status: 0,
            contains: None,
        })
    }
}

/// Gets one token from `issuer` the way the scenario's target hands them out.
async fn one_token(
    http: &reqwest::Client,
    scenario: Scenario,
    issuer: &str,
    client: Option<&Client>,
) -> anyhow::Result<String> {
    let response = match scenario {
        Scenario::Validate
        | Scenario::Introspect
        | Scenario::ResourceData
        | Scenario::VerifyIssued => {
            let client = client.context("give --client-id and --client-secret")?;
            http.post(format!("{issuer}/oauth/token"))
                .basic_auth(&client.id, Some(&client.secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await?
        }
        Scenario::Verify => http.post(format!("{issuer}/sign")).send().await?,
        Scenario::SeedData => {
            http.post(format!("{issuer}/login"))
                .header("content-type", "application/json")
                .body(SEED_LOGIN)
                .send()
                .await?
        }
        _ => bail!("{scenario:?} needs no tokens"),
    };
    let status = response.status();
    let body: serde_json::Value = response.json().await?;
    match body["access_token"].as_str() {
        Some(token) if status.is_success() => Ok(token.to_owned()),
        _ => bail!("{issuer} answered {status} without a token: {body}"),
    }
}

/// Makes the scenario's plan: for the validating scenarios, `pool` tokens from `issuer` first.
pub async fn prepare(
    scenario: Scenario,
    issuer: &str,
    client: Option<&Client>,
    pool: usize,
) -> anyhow::Result<Arc<dyn Plan>> {
    let basic = client.map(Client::basic).transpose()?;
    let needs_pool = matches!(
        scenario,
        Scenario::Validate
            | Scenario::Introspect
            | Scenario::Verify
            | Scenario::VerifyIssued
            | Scenario::SeedData
            | Scenario::ResourceData
    );
    let mut tokens = Vec::new();
    if needs_pool {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()?;
        let mut made = futures::stream::iter(0..pool.max(1))
            .map(|_| one_token(&http, scenario, issuer, client))
            .buffer_unordered(32);
        while let Some(token) = made.next().await {
            tokens.push(token?);
        }
    }
    let pool = tokens
        .into_iter()
        .map(|t| {
            let mut bearer = HeaderValue::from_str(&format!("Bearer {t}"))?;
            bearer.set_sensitive(true);
            Ok((bearer, Bytes::from(format!("token={t}"))))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Arc::new(Prepared {
        scenario,
        basic,
        pool,
    }))
}
