//! Extractors that turn every kind of bad input into an RFC 6749 error: the form body of the
//! OAuth endpoints (content type, UTF-8, duplicates, size), JSON bodies, and the client's
//! credentials (`client_secret_basic` or `client_secret_post`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::percent_decode;
use serde::de::DeserializeOwned;
use tokend_oauth::ClientCredentials;
use tokend_oauth::secrets::Secret;

use super::error::{ApiError, bad_request};

/// An `application/x-www-form-urlencoded` body with every parameter at most once.
#[derive(Default)]
pub struct OAuthForm(HashMap<String, String>);

impl OAuthForm {
    /// A parameter; an empty value counts as absent (RFC 6749 3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn require(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name)
            .ok_or_else(|| bad_request(format!("missing parameter '{name}'")))
    }

    pub fn secret(&self, name: &str) -> Result<Secret, ApiError> {
        self.require(name).map(Secret::new)
    }

    pub fn into_map(self) -> HashMap<String, String> {
        self.0
    }

    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let mut map = HashMap::new();
        for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let mut kv = pair.splitn(2, |b| *b == b'=');
            let key = decode(kv.next().unwrap_or_default())?;
            let value = decode(kv.next().unwrap_or_default())?;
            if map.insert(key.clone(), value).is_some() {
                return Err(bad_request(format!("parameter '{key}' is repeated")));
            }
        }
        Ok(Self(map))
    }
}

fn decode(raw: &[u8]) -> Result<String, ApiError> {
    let plus_as_space: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    percent_decode(&plus_as_space)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| bad_request("the form body is not valid UTF-8"))
}

fn has_content_type(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(expected))
}

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            bad_request("the request body could not be read")
        }
    })
}

/// The address the request came from, when the server knows it (`ConnectInfo`).
pub struct Peer(pub Option<IpAddr>);

fn peer(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(peer(&parts.extensions)))
    }
}

/// The form body plus the headers (for client authentication) and the peer address.
pub struct OAuthRequest {
    pub form: OAuthForm,
    pub headers: HeaderMap,
    pub peer: Option<IpAddr>,
}

impl<S: Send + Sync> FromRequest<S> for OAuthRequest {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_content_type(req.headers(), "application/x-www-form-urlencoded") {
            return Err(bad_request(
                "the content type must be application/x-www-form-urlencoded",
            ));
        }
        let headers = req.headers().clone();
        let peer = peer(req.extensions());
        let bytes = body_bytes(req, state).await?;
        Ok(Self {
            form: OAuthForm::parse(&bytes)?,
            headers,
            peer,
        })
    }
}

impl OAuthRequest {
    /// RFC 6749 2.3.1: HTTP Basic (form-urlencoded id and secret) or both in the body; never
    /// both methods at once.
    pub fn client(&self) -> Result<ClientCredentials, ApiError> {
        let basic = self
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| parse_basic(v.to_str().unwrap_or_default()))
            .transpose()?;
        let form_id = self.form.get("client_id");
        let form_secret = self.form.get("client_secret");
        match basic {
            Some((id, secret)) => {
                if form_secret.is_some() {
                    return Err(bad_request("use one client authentication method, not two"));
                }
                if form_id.is_some_and(|f| f != id) {
                    return Err(bad_request(
                        "client_id does not match the Authorization header",
                    ));
                }
                Ok(ClientCredentials {
                    client_id: id,
                    secret: Some(secret),
                    via_basic: true,
                })
            }
            None => {
                let client_id =
                    form_id.ok_or(ApiError::OAuth(tokend_oauth::OAuthError::InvalidClient {
                        basic: false,
                    }))?;
                Ok(ClientCredentials {
                    client_id: client_id.to_owned(),
                    secret: form_secret.map(Secret::new),
                    via_basic: false,
                })
            }
        }
    }
}

fn parse_basic(value: &str) -> Result<(String, Secret), ApiError> {
    let invalid = || ApiError::OAuth(tokend_oauth::OAuthError::InvalidClient { basic: true });
    let (scheme, rest) = value.split_once(' ').ok_or_else(invalid)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(invalid());
    }
    let decoded = STANDARD.decode(rest.trim()).map_err(|_| invalid())?;
    let text = String::from_utf8(decoded).map_err(|_| invalid())?;
    let (id, secret) = text.split_once(':').ok_or_else(invalid)?;
    let id = decode(id.as_bytes()).map_err(|_| invalid())?;
    let secret = decode(secret.as_bytes()).map_err(|_| invalid())?;
    if id.is_empty() {
        return Err(invalid());
    }
    Ok((id, Secret::new(secret)))
}

/// A JSON body with RFC 6749-shaped errors for every way it can be wrong.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_content_type(req.headers(), "application/json") {
            return Err(bad_request("the content type must be application/json"));
        }
        let bytes = body_bytes(req, state).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| bad_request(format!("invalid JSON body: {}", json_error(&e))))
    }
}

/// Serde's message without echoing input values (which may be secrets).
fn json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            format!("malformed JSON at line {} column {}", e.line(), e.column())
        }
        Category::Data => {
            let msg = e.to_string();
            // "missing field `x`" / "unknown field `x`" name fields, not values.
            if msg.contains("field") {
                msg.split(" at line")
                    .next()
                    .unwrap_or("wrong shape")
                    .to_owned()
            } else {
                "a field has the wrong type".to_owned()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_parsing_decodes_and_refuses_duplicates_and_bad_utf8() {
        let f = OAuthForm::parse(b"grant_type=client_credentials&scope=read+write&x=%41").unwrap();
        assert_eq!(f.get("scope"), Some("read write"));
        assert_eq!(f.get("x"), Some("A"));
        assert!(OAuthForm::parse(b"a=1&a=2").is_err());
        assert!(OAuthForm::parse(b"a=%ff").is_err());
        assert!(OAuthForm::parse(b"a=").unwrap().get("a").is_none());
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = format!("Basic {}", STANDARD.encode("my%3Aapp:s%2Bcr+t"));
        let (id, secret) = parse_basic(&header).unwrap();
        assert_eq!(id, "my:app");
        assert_eq!(secret.expose(), "s+cr t");
        assert!(parse_basic("Basic !!!").is_err());
        assert!(parse_basic("Bearer x").is_err());
    }
}
