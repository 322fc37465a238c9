//! `/oauth/authorize` and its two forms: the login page, the consent page, and the redirect
//! back to the client with a code or an error (RFC 6749 4.1, RFC 7636).

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tokend_oauth::secrets::Secret;
use tokend_oauth::{AuthorizeError, AuthorizeRequest};

use super::AppState;
use super::extract::{OAuthForm, OAuthRequest};
use super::pages::{redirect, with_cookies};

/// Validates the original query string (kept in the forms as `request`).
async fn validate(s: &AppState, query: &str) -> Result<(AuthorizeRequest, String), Response> {
    let params: HashMap<String, String> = OAuthForm::parse(query.as_bytes())
        .map_err(|_| {
            s.browser.error_page(
                StatusCode::BAD_REQUEST,
                "The authorization request is malformed.",
            )
        })?
        .into_map();
    match s.svc.validate_authorize(&params).await {
        Ok(req) => Ok((req, query.to_owned())),
        Err(AuthorizeError::Page(message)) => {
            Err(s.browser.error_page(StatusCode::BAD_REQUEST, &message))
        }
        Err(AuthorizeError::Redirect {
            redirect_uri,
            error,
            description,
            state,
        }) => {
            let mut params = vec![
                ("error", error),
                ("error_description", description.as_str()),
            ];
            if let Some(state) = state.as_deref() {
                params.push(("state", state));
            }
            Err(redirect(&redirect_uri, &params))
        }
        Err(AuthorizeError::Unavailable) => Err(s.browser.error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The service is busy. Please try again in a moment.",
        )),
    }
}

fn login_page(
    s: &AppState,
    headers: &HeaderMap,
    req: &AuthorizeRequest,
    request: &str,
    status: StatusCode,
    error: Option<&str>,
    username: &str,
) -> Response {
    let (csrf, set) = s.browser.csrf(headers);
    let page = s.browser.page(
        status,
        "login.html",
        minijinja::context! { client_name => req.client.name, csrf, request, error, username },
    );
    with_cookies(page, [set])
}

fn consent_page(
    s: &AppState,
    headers: &HeaderMap,
    req: &AuthorizeRequest,
    request: &str,
    user: &str,
) -> Response {
    let (csrf, set) = s.browser.csrf(headers);
    let redirect_host = req
        .redirect_uri
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    let page = s.browser.page(
        StatusCode::OK,
        "consent.html",
        minijinja::context! {
            client_name => req.client.name, scopes => req.scope, csrf, request, user, redirect_host,
        },
    );
    with_cookies(page, [set])
}

/// The logged-in user of this browser, if the session still holds (not logged out, no
/// "log out everywhere" since, the user enabled).
async fn user(s: &AppState, headers: &HeaderMap) -> Option<String> {
    let session = s.browser.session(headers)?;
    s.svc
        .session_active(&session)
        .await
        .ok()?
        .then_some(session.user)
}

/// `POST /oauth/logout` (a form with the CSRF token, as on the consent page): ends the
/// browser's session on every node and removes its cookie.
pub async fn logout(State(s): State<AppState>, form: OAuthRequest) -> Response {
    let (headers, form) = (form.headers, form.form);
    if !s.browser.csrf_ok(&headers, form.get("csrf")) {
        return csrf_failed(&s);
    }
    if let Some(session) = s.browser.session(&headers) {
        if s.svc.logout(&session).await.is_err() {
            // Not ended on the server yet: say so, but remove it from this browser anyway.
            let page = s.browser.error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The service is busy and could not end your session everywhere. Please try again.",
            );
            return with_cookies(page, [s.browser.logout_cookie()]);
        }
        crate::metrics::revocation("logout");
    }
    let page = s
        .browser
        .page(StatusCode::OK, "signed_out.html", minijinja::context! {});
    with_cookies(page, [s.browser.logout_cookie()])
}

pub async fn start(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let (req, request) = match validate(&s, &query.unwrap_or_default()).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match user(&s, &headers).await {
        Some(u) => consent_page(&s, &headers, &req, &request, &u),
        None => login_page(&s, &headers, &req, &request, StatusCode::OK, None, ""),
    }
}

fn csrf_failed(s: &AppState) -> Response {
    s.browser.error_page(
        StatusCode::BAD_REQUEST,
        "The form expired or did not come from this site (CSRF check failed). Start again from the application.",
    )
}

pub async fn login(State(s): State<AppState>, form: OAuthRequest) -> Response {
    let (headers, form, peer) = (form.headers, form.form, form.peer);
    if !s.browser.csrf_ok(&headers, form.get("csrf")) {
        return csrf_failed(&s);
    }
    let request = form.get("request").unwrap_or_default();
    let (req, request) = match validate(&s, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let username = form.get("username").unwrap_or_default();
    if let Err(limited) = s.limits.password(peer, username) {
        let wait = format!(
            "Too many sign-in attempts. Try again in {} seconds.",
            limited.retry_after_secs
        );
        let page = login_page(
            &s,
            &headers,
            &req,
            &request,
            StatusCode::TOO_MANY_REQUESTS,
            Some(&wait),
            username,
        );
        return super::pages::with_retry_after(page, limited.retry_after_secs);
    }
    let password = Secret::new(form.get("password").unwrap_or_default());
    match s.svc.check_user(username, &password).await {
        Ok(()) => with_cookies(
            redirect(&format!("/oauth/authorize?{request}"), &[]),
            [s.browser.login_cookie(username)],
        ),
        Err(tokend_oauth::OAuthError::Unavailable) => s.browser.error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The service is busy. Please try again.",
        ),
        Err(_) => login_page(
            &s,
            &headers,
            &req,
            &request,
            StatusCode::UNAUTHORIZED,
            Some("The user name or password is not right."),
            username,
        ),
    }
}

pub async fn consent(State(s): State<AppState>, form: OAuthRequest) -> Response {
    let (headers, form) = (form.headers, form.form);
    if !s.browser.csrf_ok(&headers, form.get("csrf")) {
        return csrf_failed(&s);
    }
    let (req, request) = match validate(&s, form.get("request").unwrap_or_default()).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(user) = user(&s, &headers).await else {
        return login_page(
            &s,
            &headers,
            &req,
            &request,
            StatusCode::UNAUTHORIZED,
            Some("Please sign in again."),
            "",
        );
    };
    if form.get("decision") != Some("approve") {
        let params = [
            ("error", "access_denied"),
            ("error_description", "the user denied the request"),
            ("state", req.state.as_str()),
        ];
        return redirect(&req.redirect_uri, &params);
    }
    match s.svc.issue_code(&req, &user).await {
        Ok(code) => redirect(&req.redirect_uri, &[("code", &code), ("state", &req.state)]),
        Err(_) => s.browser.error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The service is busy. Please try again.",
        ),
    }
}
