//! The browser flow as a person meets it: headless Chromium (Debian's, driven over WebDriver by
//! fantoccini) opens a small example client app, is sent to the token node's login page, signs
//! in, approves, and lands back on the client, which exchanges the code and calls `/api/data`.
//! Denying shows the client `access_denied`. Screenshots of the login and consent pages go to
//! `target/test-artifacts/`. Everything listens on 127.0.0.1; Chromium runs with background
//! networking off so it reaches nothing but loopback.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::{Html, Redirect};
use axum::routing::get;
use fantoccini::{Client, ClientBuilder, Locator};
use tokend::{Config, Node, SystemClock};

use crate::harness::ADMIN;

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

struct ChromeDriver(Child);

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The example client: `/start` sends the browser to the authorization endpoint; `/callback`
/// exchanges the code (with the PKCE verifier) and shows what `/api/data` answered.
#[derive(Clone)]
struct App {
    issuer: String,
    client_id: String,
    client_secret: String,
    redirect_uri: String,
    http: reqwest::Client,
}

async fn start(State(app): State<Arc<App>>) -> Redirect {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    Redirect::to(&format!(
        "{}/oauth/authorize?response_type=code&client_id={}&redirect_uri={}&scope=read+write&state=st-42&code_challenge={CHALLENGE}&code_challenge_method=S256",
        app.issuer,
        enc(&app.client_id),
        enc(&app.redirect_uri)
    ))
}

async fn callback(
    State(app): State<Arc<App>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Html<String> {
    if let Some(error) = q.get("error") {
        return Html(format!("<h1 id=result>error: {error}</h1>"));
    }
    assert_eq!(q.get("state").map(String::as_str), Some("st-42"));
    let token: serde_json::Value = app
        .http
        .post(format!("{}/oauth/token", app.issuer))
        .basic_auth(&app.client_id, Some(&app.client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", q["code"].as_str()),
            ("redirect_uri", app.redirect_uri.as_str()),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let at = token["access_token"].as_str().unwrap_or_default();
    let data: serde_json::Value = app
        .http
        .get(format!("{}/api/data", app.issuer))
        .bearer_auth(at)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Html(format!(
        "<h1 id=result>signed in as {}</h1>",
        data["sub"].as_str().unwrap_or("?")
    ))
}

async fn chromium() -> (ChromeDriver, Client) {
    let chromedriver = "/usr/bin/chromedriver";
    assert!(
        std::path::Path::new(chromedriver).exists(),
        "Debian's chromium-driver is not installed: infra/scripts/test.sh installs it"
    );
    let port = tokend_free_port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let driver = ChromeDriver(child);
    let profile = tempfile::tempdir().unwrap().keep();
    let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", "--window-size=900,820",
                format!("--user-data-dir={}", profile.display()),
            ]
        }
    }))
    .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    // Two TLS backends are linked (reqwest, fantoccini): pick one for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    for _ in 0..100 {
        if let Ok(client) = ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            return (driver, client);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not answer on {url}");
}

fn tokend_free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn text(c: &Client, css: &str) -> String {
    c.wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn sign_in(c: &Client, app: &str, password: &str, shots: bool) {
    c.goto(&format!("{app}/start")).await.unwrap();
    c.wait()
        .for_element(Locator::Css("#username"))
        .await
        .unwrap();
    if shots {
        std::fs::write(artifacts().join("login.png"), c.screenshot().await.unwrap()).unwrap();
    }
    c.find(Locator::Css("#username"))
        .await
        .unwrap()
        .send_keys("demo")
        .await
        .unwrap();
    c.find(Locator::Css("#password"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    c.find(Locator::Css("#sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("#approve"))
        .await
        .unwrap();
    if shots {
        std::fs::write(
            artifacts().join("consent.png"),
            c.screenshot().await.unwrap(),
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_logs_in_approves_and_the_client_gets_a_working_token() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let mut config: Config = crate::harness::config(dir.path());
    config.tokens.issuer = issuer.clone();
    let node = Node::start(&config, Arc::new(SystemClock)).await.unwrap();
    let password = node.demo.as_ref().unwrap().password.clone();
    let router = node.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    // Register the example client for its callback URL.
    let app_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_url = format!("http://{}", app_listener.local_addr().unwrap());
    let http = reqwest::Client::new();
    let reg: serde_json::Value = http
        .post(format!("{issuer}/admin/clients"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({
            "client_id": "photo-app", "name": "Photo Printing App",
            "grant_types": ["authorization_code", "refresh_token"],
            "scopes": ["read", "write"], "audiences": ["api"],
            "redirect_uris": [format!("{app_url}/callback")],
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let app = Arc::new(App {
        issuer: issuer.clone(),
        client_id: "photo-app".into(),
        client_secret: reg["client_secret"].as_str().unwrap().to_owned(),
        redirect_uri: format!("{app_url}/callback"),
        http,
    });
    let router = axum::Router::new()
        .route("/start", get(start))
        .route("/callback", get(callback))
        .with_state(app);
    tokio::spawn(async move { axum::serve(app_listener, router).await.unwrap() });

    let (_driver, c) = chromium().await;
    sign_in(&c, &app_url, &password, true).await;
    let consent = c.source().await.unwrap();
    assert!(
        consent.contains("Photo Printing App")
            && consent.contains("read")
            && consent.contains("write")
    );
    c.find(Locator::Css("#approve"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text(&c, "#result").await, "signed in as demo");
    assert!(
        c.current_url()
            .await
            .unwrap()
            .as_str()
            .starts_with(&app_url)
    );

    // Same browser, still signed in: straight to consent; deny this time.
    c.goto(&format!("{app_url}/start")).await.unwrap();
    c.wait()
        .for_element(Locator::Css("#deny"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text(&c, "#result").await, "error: access_denied");
    c.close().await.unwrap();
}
