//! The browser flow in process: authorize → login → consent → code → token, and every error
//! branch (RFC 6749 4.1, RFC 7636).

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};

use crate::harness::{ADMIN, TestNode, basic, form_request};

const REDIRECT: &str = "http://127.0.0.1:8081/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// A browser: a cookie jar over `Router::oneshot`.
struct Browser<'a> {
    node: &'a TestNode,
    cookies: HashMap<String, String>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> String {
        self.headers
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
    fn field(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker).expect(name) + marker.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end]
            .replace("&amp;", "&")
            .replace("&#x2f;", "/")
    }
    /// A query parameter of the redirect.
    fn param(&self, name: &str) -> Option<String> {
        let loc = self.location();
        let query = loc.split_once('?')?.1.to_owned();
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })
    }
}

impl<'a> Browser<'a> {
    fn new(node: &'a TestNode) -> Self {
        Self {
            node,
            cookies: HashMap::new(),
        }
    }

    async fn send(&mut self, mut req: Request<Body>) -> Page {
        let jar: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !jar.is_empty() {
            req.headers_mut()
                .insert(header::COOKIE, jar.join("; ").parse().unwrap());
        }
        let (status, headers, body) = self.node.send_raw(req).await;
        for c in headers.get_all(header::SET_COOKIE) {
            let (kv, _) = c.to_str().unwrap().split_once(';').unwrap();
            let (k, v) = kv.split_once('=').unwrap();
            self.cookies.insert(k.to_owned(), v.to_owned());
        }
        Page {
            status,
            headers,
            body,
        }
    }

    async fn get(&mut self, uri: &str) -> Page {
        self.send(Request::builder().uri(uri).body(Body::empty()).unwrap())
            .await
    }

    async fn post(&mut self, uri: &str, form: &[(&str, &str)]) -> Page {
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| {
                let v =
                    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC);
                format!("{k}={v}")
            })
            .collect();
        let req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body.join("&")))
            .unwrap();
        self.send(req).await
    }

    /// Signs in from the login page of `query`; returns the consent page.
    async fn sign_in(&mut self, query: &str) -> Page {
        let login = self.get(&format!("/oauth/authorize?{query}")).await;
        assert_eq!(login.status, StatusCode::OK, "{}", login.body);
        assert!(login.body.contains("Sign in"), "{}", login.body);
        let password = self.node.password.clone();
        let after = self
            .post(
                "/oauth/authorize/login",
                &[
                    ("csrf", &login.field("csrf")),
                    ("request", &login.field("request")),
                    ("username", "demo"),
                    ("password", &password),
                ],
            )
            .await;
        assert_eq!(after.status, StatusCode::SEE_OTHER, "{}", after.body);
        self.get(&after.location()).await
    }

    /// Logs in and approves (or denies); returns the final redirect to the client.
    async fn flow(&mut self, query: &str, approve: bool) -> Page {
        let consent = self.sign_in(query).await;
        assert_eq!(consent.status, StatusCode::OK);
        assert!(consent.body.contains("Allow access?"));
        let decision = if approve { "approve" } else { "deny" };
        self.post(
            "/oauth/authorize/consent",
            &[
                ("csrf", &consent.field("csrf")),
                ("request", &consent.field("request")),
                ("decision", decision),
            ],
        )
        .await
    }
}

fn query(client_id: &str, extra: &str) -> String {
    format!(
        "response_type=code&client_id={client_id}&redirect_uri={}&scope=read+write&state=xyz&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}",
        percent_encoding::utf8_percent_encode(REDIRECT, percent_encoding::NON_ALPHANUMERIC)
    )
}

async fn redeem(n: &TestNode, auth: Option<&str>, body: &str) -> crate::harness::Reply {
    n.send(form_request("/oauth/token", body, auth)).await
}

fn code_body(code: &str, verifier: &str) -> String {
    format!(
        "grant_type=authorization_code&code={code}&redirect_uri={REDIRECT}&code_verifier={verifier}"
    )
}

#[tokio::test]
async fn code_flow_end_to_end_and_replay_revokes() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let mut b = Browser::new(&n);
    let login = b
        .get(&format!("/oauth/authorize?{}", query(&n.client_id, "")))
        .await;
    assert!(
        login.body.contains("Demo client"),
        "the client's name is shown"
    );
    let csp = login.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(login.headers[header::X_FRAME_OPTIONS], "DENY");
    let cookie = login.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax")
            && !cookie.contains("Secure")
    );

    let back = b.flow(&query(&n.client_id, ""), true).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER);
    assert!(back.location().starts_with(REDIRECT));
    assert_eq!(back.param("state").as_deref(), Some("xyz"));
    let code = back.param("code").unwrap();

    let auth = n.basic();
    let t = redeem(&n, Some(&auth), &code_body(&code, VERIFIER)).await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.json);
    assert_eq!(t.str("scope"), "read write");
    let at = t.str("access_token");
    assert!(!t.str("refresh_token").is_empty());
    let data = n.get("/api/data", Some(&at)).await;
    assert_eq!(data.str("sub"), "demo");

    let replay = redeem(&n, Some(&auth), &code_body(&code, VERIFIER)).await;
    assert_eq!(replay.error(), "invalid_grant");
    assert_eq!(
        n.data_status(&at).await,
        StatusCode::UNAUTHORIZED,
        "replay revokes the first tokens"
    );
}

#[tokio::test]
async fn token_exchange_errors() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let auth = n.basic();
    let code = Browser::new(&n)
        .flow(&query(&n.client_id, ""), true)
        .await
        .param("code")
        .unwrap();

    let wrong = redeem(&n, Some(&auth), &code_body(&code, &"a".repeat(43))).await;
    assert_eq!(wrong.error(), "invalid_grant");
    let missing = format!("grant_type=authorization_code&code={code}&redirect_uri={REDIRECT}");
    assert_eq!(
        redeem(&n, Some(&auth), &missing).await.error(),
        "invalid_request"
    );
    let other_uri = format!(
        "grant_type=authorization_code&code={code}&redirect_uri=http://127.0.0.1:9/x&code_verifier={VERIFIER}"
    );
    assert_eq!(
        redeem(&n, Some(&auth), &other_uri).await.error(),
        "invalid_grant"
    );

    // A code belongs to one client.
    let reg = n
        .json(
            Method::POST,
            "/admin/clients",
            &format!(r#"{{"client_id":"other","name":"Other","grant_types":["authorization_code"],"scopes":["read"],"audiences":["api"],"redirect_uris":["{REDIRECT}"]}}"#),
            Some(ADMIN),
        )
        .await;
    assert_eq!(reg.status, StatusCode::CREATED, "{}", reg.json);
    let other = basic("other", &reg.str("client_secret"));
    assert_eq!(
        redeem(&n, Some(&other), &code_body(&code, VERIFIER))
            .await
            .error(),
        "invalid_grant"
    );
    // Still redeemable by its own client after those failures.
    assert_eq!(
        redeem(&n, Some(&auth), &code_body(&code, VERIFIER))
            .await
            .status,
        StatusCode::OK
    );

    // Codes expire.
    let code = Browser::new(&n)
        .flow(&query(&n.client_id, ""), true)
        .await
        .param("code")
        .unwrap();
    n.clock.advance_secs(61);
    assert_eq!(
        redeem(&n, Some(&auth), &code_body(&code, VERIFIER))
            .await
            .error(),
        "invalid_grant"
    );
}

#[tokio::test]
async fn bad_client_or_redirect_uri_shows_a_page_and_never_redirects() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let mut b = Browser::new(&n);
    for q in [
        query("ghost", ""),
        query(&n.client_id, "").replace("callback", "evil"),
        "response_type=code".to_owned(),
        "a=1&a=2".to_owned(),
    ] {
        let page = b.get(&format!("/oauth/authorize?{q}")).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{q}");
        assert!(page.headers.get(header::LOCATION).is_none());
        assert!(page.body.contains("This request cannot continue"));
    }
}

#[tokio::test]
async fn other_request_errors_redirect_with_error_and_state() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let mut b = Browser::new(&n);
    let cases = [
        (
            query(&n.client_id, "").replace("response_type=code", "response_type=token"),
            "unsupported_response_type",
            true,
        ),
        (
            query(&n.client_id, "").replace("&state=xyz", ""),
            "invalid_request",
            false,
        ),
        (
            query(&n.client_id, "")
                .replace("code_challenge_method=S256", "code_challenge_method=plain"),
            "invalid_request",
            true,
        ),
        (
            query(&n.client_id, "").replace(&format!("&code_challenge={CHALLENGE}"), ""),
            "invalid_request",
            true,
        ),
        (
            query(&n.client_id, "").replace("scope=read+write", "scope=admin"),
            "invalid_scope",
            true,
        ),
    ];
    for (q, error, has_state) in cases {
        let r = b.get(&format!("/oauth/authorize?{q}")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{q}");
        assert!(r.location().starts_with(REDIRECT));
        assert_eq!(r.param("error").as_deref(), Some(error), "{q}");
        assert_eq!(r.param("state").is_some(), has_state, "{q}");
    }
}

#[tokio::test]
async fn denied_consent_returns_access_denied() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let back = Browser::new(&n).flow(&query(&n.client_id, ""), false).await;
    assert_eq!(back.param("error").as_deref(), Some("access_denied"));
    assert_eq!(back.param("state").as_deref(), Some("xyz"));
    assert!(back.param("code").is_none());
}

#[tokio::test]
async fn csrf_token_missing_or_wrong_is_refused() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let mut b = Browser::new(&n);
    let login = b
        .get(&format!("/oauth/authorize?{}", query(&n.client_id, "")))
        .await;
    let request = login.field("request");
    let password = n.password.clone();
    for csrf in ["", "forged-token"] {
        let r = b
            .post(
                "/oauth/authorize/login",
                &[
                    ("csrf", csrf),
                    ("request", &request),
                    ("username", "demo"),
                    ("password", &password),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.body.contains("CSRF"));
        assert!(!b.cookies.contains_key("tokend_session"));
    }
    // A token from another browser (another CSRF cookie) does not pass either.
    let mut other = Browser::new(&n);
    let theirs = other
        .get(&format!("/oauth/authorize?{}", query(&n.client_id, "")))
        .await;
    let r = b
        .post(
            "/oauth/authorize/login",
            &[
                ("csrf", &theirs.field("csrf")),
                ("request", &request),
                ("username", "demo"),
                ("password", &password),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Wrong password: the login page again, 401, no session.
    let r = b
        .post(
            "/oauth/authorize/login",
            &[
                ("csrf", &login.field("csrf")),
                ("request", &request),
                ("username", "demo"),
                ("password", "nope"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("not right"));
    assert!(!b.cookies.contains_key("tokend_session"));
    // Consent without a session: back to the login page.
    let r = b
        .post(
            "/oauth/authorize/consent",
            &[
                ("csrf", &login.field("csrf")),
                ("request", &request),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("Sign in"));
}

#[tokio::test]
async fn public_clients_use_the_code_flow_and_refresh_only() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let body = format!(
        r#"{{"client_id":"spa","name":"Single-page app","public":true,"grant_types":["authorization_code","refresh_token"],"scopes":["read"],"default_scopes":["read"],"audiences":["api"],"redirect_uris":["{REDIRECT}"]}}"#
    );
    let reg = n
        .json(Method::POST, "/admin/clients", &body, Some(ADMIN))
        .await;
    assert_eq!(reg.status, StatusCode::CREATED, "{}", reg.json);
    assert!(reg.json.get("client_secret").is_none());
    let bad = body
        .replace(
            r#""authorization_code","refresh_token""#,
            r#""client_credentials""#,
        )
        .replace("spa", "spa2");
    assert_eq!(
        n.json(Method::POST, "/admin/clients", &bad, Some(ADMIN))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    let q = query("spa", "").replace("scope=read+write", "scope=read");
    let code = Browser::new(&n).flow(&q, true).await.param("code").unwrap();
    let t = redeem(
        &n,
        None,
        &format!("client_id=spa&{}", code_body(&code, VERIFIER)),
    )
    .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.json);
    assert_eq!(n.data_status(&t.str("access_token")).await, StatusCode::OK);

    // The refresh token it was given works (rotated, with reuse detection, like anyone's).
    let refresh = format!(
        "client_id=spa&grant_type=refresh_token&refresh_token={}",
        t.str("refresh_token")
    );
    let rotated = redeem(&n, None, &refresh).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.json);
    assert_ne!(rotated.str("refresh_token"), t.str("refresh_token"));
    // No retry grace for a public client: a second use at once is a replay, and it revokes.
    assert_eq!(redeem(&n, None, &refresh).await.error(), "invalid_grant");
    let next = format!(
        "client_id=spa&grant_type=refresh_token&refresh_token={}",
        rotated.str("refresh_token")
    );
    assert_eq!(redeem(&n, None, &next).await.error(), "invalid_grant");

    // RFC 6749 4.1.3: an authorization request without redirect_uri (the client has one)
    // needs none at the token endpoint; one that named it needs it again.
    let implied = format!(
        "response_type=code&client_id=spa&scope=read&state=s&code_challenge={CHALLENGE}&code_challenge_method=S256"
    );
    let code = Browser::new(&n)
        .flow(&implied, true)
        .await
        .param("code")
        .unwrap();
    let no_uri =
        format!("client_id=spa&grant_type=authorization_code&code={code}&code_verifier={VERIFIER}");
    let t2 = redeem(&n, None, &no_uri).await;
    assert_eq!(t2.status, StatusCode::OK, "{}", t2.json);
    let code = Browser::new(&n).flow(&q, true).await.param("code").unwrap();
    let no_uri =
        format!("client_id=spa&grant_type=authorization_code&code={code}&code_verifier={VERIFIER}");
    assert_eq!(redeem(&n, None, &no_uri).await.error(), "invalid_grant");

    let cc = redeem(&n, None, "client_id=spa&grant_type=client_credentials").await;
    assert_eq!(cc.error(), "unauthorized_client");
    let intro = n
        .send(form_request(
            "/oauth/introspect",
            &format!("client_id=spa&token={}", t.str("access_token")),
            None,
        ))
        .await;
    assert_eq!(intro.error(), "invalid_client");

    let m = n.get("/.well-known/oauth-authorization-server", None).await;
    assert_eq!(
        m.str("authorization_endpoint"),
        "http://127.0.0.1:8080/oauth/authorize"
    );
    assert_eq!(
        m.json["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        m.json["response_types_supported"],
        serde_json::json!(["code"])
    );
}

#[tokio::test]
async fn logout_and_log_out_everywhere_end_the_browser_session() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let q = query(&n.client_id, "");
    let authorize = format!("/oauth/authorize?{q}");
    let mut b = Browser::new(&n);
    let consent = b.sign_in(&q).await;
    assert!(consent.body.contains("Allow access?"));
    assert!(
        b.get(&authorize).await.body.contains("Allow access?"),
        "the session holds"
    );

    // "Log out everywhere" ends the browser session too, not only the tokens.
    let revoked = n
        .json(Method::POST, "/admin/subjects/demo/revoke", "", Some(ADMIN))
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert!(b.get(&authorize).await.body.contains("Sign in"));

    // A new sign-in (a millisecond later: the watermark covers its own millisecond), then
    // the sign-out button of the consent page.
    n.clock.advance_ms(1);
    let consent = b.sign_in(&q).await;
    let kept = b.cookies.clone(); // what a thief could have copied
    let out = b
        .post("/oauth/logout", &[("csrf", &consent.field("csrf"))])
        .await;
    assert_eq!(out.status, StatusCode::OK);
    assert!(out.body.contains("signed out"));
    assert!(b.get(&authorize).await.body.contains("Sign in"));
    // Ended on the server, not only in this browser: the copied cookie no longer works.
    let mut thief = Browser::new(&n);
    thief.cookies = kept;
    assert!(thief.get(&authorize).await.body.contains("Sign in"));

    // Without the CSRF token, nothing is ended.
    n.clock.advance_ms(1);
    b.sign_in(&q).await;
    let forged = b.post("/oauth/logout", &[("csrf", "forged")]).await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
    assert!(b.get(&authorize).await.body.contains("Allow access?"));
}

#[tokio::test]
async fn the_login_form_is_rate_limited_per_user() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let mut c = crate::harness::config(dir.path());
    c.rate_limit.password_per_min_per_user = 2;
    let n = TestNode::with_config(&c).await;
    let mut b = Browser::new(&n);
    let login = b
        .get(&format!("/oauth/authorize?{}", query(&n.client_id, "")))
        .await;
    let attempt = |password: &'static str| {
        [
            ("csrf", login.field("csrf")),
            ("request", login.field("request")),
            ("username", "demo".to_owned()),
            ("password", password.to_owned()),
        ]
    };
    for _ in 0..2 {
        let form = attempt("wrong-password");
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = b.post("/oauth/authorize/login", &form).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let form = attempt("wrong-password");
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = b.post("/oauth/authorize/login", &form).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.body.contains("Too many sign-in attempts"), "{}", r.body);
    assert!(r.headers.get(header::RETRY_AFTER).is_some());
}
