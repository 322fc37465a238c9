//! Server-rendered pages of the browser flow (minijinja, auto-escaped), their security headers,
//! and the login-session and CSRF cookies.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::Environment;
use serde::Serialize;
use tokend_domain::Clock;
use tokend_oauth::browser::{BrowserKeys, Session};

use crate::Config;

const SESSION_COOKIE: &str = "tokend_session";
const CSRF_COOKIE: &str = "tokend_csrf";
const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'";

pub struct Browser {
    pub keys: BrowserKeys,
    clock: Arc<dyn Clock>,
    env: Environment<'static>,
    secure: bool,
    session_ttl_secs: i64,
}

fn describe(scope: String) -> String {
    match scope.as_str() {
        "read" => "read your data".into(),
        "write" => "change your data".into(),
        other => format!("use the \u{201c}{other}\u{201d} permission"),
    }
}

/// The value of cookie `name` in the request.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

impl Browser {
    #[allow(clippy::expect_used)] // the templates are compiled in; a broken one fails every test
    pub fn new(keys: BrowserKeys, clock: Arc<dyn Clock>, config: &Config) -> Self {
        let mut env = Environment::new();
        for (name, source) in [
            ("layout.html", include_str!("../../templates/layout.html")),
            ("login.html", include_str!("../../templates/login.html")),
            ("consent.html", include_str!("../../templates/consent.html")),
            ("error.html", include_str!("../../templates/error.html")),
            (
                "signed_out.html",
                include_str!("../../templates/signed_out.html"),
            ),
        ] {
            env.add_template(name, source).expect("a valid template");
        }
        env.add_function("describe", describe);
        Self {
            keys,
            clock,
            env,
            secure: config.tokens.issuer.starts_with("https://"),
            session_ttl_secs: config.tokens.session_ttl_secs,
        }
    }

    fn set_cookie(&self, name: &str, value: &str, max_age: i64) -> Option<HeaderValue> {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
        ))
        .ok()
    }

    /// Renders `template` with the pages' security headers.
    pub fn page(&self, status: StatusCode, template: &str, ctx: impl Serialize) -> Response {
        let html = self
            .env
            .get_template(template)
            .and_then(|t| t.render(ctx))
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, template, "Page did not render.");
                "<!doctype html><title>Error</title><p>Internal error.</p>".to_owned()
            });
        let mut r = (status, axum::response::Html(html)).into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.secure {
            // The issuer is https: browsers must never come back over plain HTTP.
            h.insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000"),
            );
        }
        r
    }

    pub fn error_page(&self, status: StatusCode, message: &str) -> Response {
        self.page(status, "error.html", minijinja::context! { message })
    }

    /// The browser's CSRF cookie (a new one when it has none) and the token for its forms.
    pub fn csrf(&self, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
        match cookie(headers, CSRF_COOKIE).filter(|c| !c.is_empty()) {
            Some(c) => (self.keys.csrf_token(&c), None),
            None => {
                let c = tokend_oauth::secrets::random_id();
                let set = self.set_cookie(CSRF_COOKIE, &c, self.session_ttl_secs);
                (self.keys.csrf_token(&c), set)
            }
        }
    }

    pub fn csrf_ok(&self, headers: &HeaderMap, token: Option<&str>) -> bool {
        let cookie = cookie(headers, CSRF_COOKIE).unwrap_or_default();
        token.is_some_and(|t| self.keys.csrf_ok(&cookie, t))
    }

    /// The authentic, unexpired session of the request's cookie (whether it was ended since
    /// is `TokenService::session_active`'s to say).
    pub fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let value = cookie(headers, SESSION_COOKIE)?;
        self.keys.session_of(&value, self.clock.now_secs())
    }

    /// A new session for `user`, signed in now, and its cookie.
    pub fn login_cookie(&self, user: &str) -> Option<HeaderValue> {
        let session = Session {
            user: user.to_owned(),
            sid: tokend_oauth::secrets::random_id(),
            auth_time_ms: self.clock.now_ms(),
            exp: self.clock.now_secs() + self.session_ttl_secs,
        };
        self.set_cookie(
            SESSION_COOKIE,
            &self.keys.session(&session),
            self.session_ttl_secs,
        )
    }

    /// Removes the session cookie.
    pub fn logout_cookie(&self) -> Option<HeaderValue> {
        self.set_cookie(SESSION_COOKIE, "", 0)
    }
}

/// Adds `Set-Cookie` headers to a response.
pub fn with_cookies(
    mut r: Response,
    cookies: impl IntoIterator<Item = Option<HeaderValue>>,
) -> Response {
    for c in cookies.into_iter().flatten() {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

/// Adds `Retry-After` (seconds) to a response.
pub fn with_retry_after(mut r: Response, secs: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// A `303 See Other` to `uri` with `params` added to its query.
pub fn redirect(uri: &str, params: &[(&str, &str)]) -> Response {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const QUERY: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, QUERY)))
        .collect();
    let sep = if uri.contains('?') { '&' } else { '?' };
    let location = if query.is_empty() {
        uri.to_owned()
    } else {
        format!("{uri}{sep}{}", query.join("&"))
    };
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
