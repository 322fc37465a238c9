//! Scope and audience resolution: a request may narrow what a client (or a grant) allows,
//! never widen it.

use crate::{OAuthError, Result};

/// RFC 6749 3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// The space-separated list the request asked for, within `allowed`; `default` when the
/// request did not ask. `what` names the parameter in errors.
pub(crate) fn resolve(
    requested: Option<&str>,
    allowed: &[String],
    default: &[String],
    what: &str,
) -> Result<Vec<String>> {
    let Some(requested) = requested.filter(|r| !r.trim().is_empty()) else {
        return Ok(default.to_vec());
    };
    let mut out: Vec<String> = Vec::new();
    for item in requested.split(' ').filter(|s| !s.is_empty()) {
        if !valid_token(item) {
            return Err(OAuthError::InvalidScope(format!("malformed {what} value")));
        }
        if !allowed.iter().any(|a| a == item) {
            return Err(OAuthError::InvalidScope(format!(
                "{what} '{item}' is not allowed for this client"
            )));
        }
        if !out.iter().any(|o| o == item) {
            out.push(item.to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn narrows_defaults_and_refuses_more() {
        let allowed = s(&["read", "write"]);
        let default = s(&["read"]);
        assert_eq!(resolve(None, &allowed, &default, "scope").unwrap(), default);
        assert_eq!(
            resolve(Some(""), &allowed, &default, "scope").unwrap(),
            default
        );
        assert_eq!(
            resolve(Some("write read write"), &allowed, &default, "scope").unwrap(),
            s(&["write", "read"])
        );
        assert!(matches!(
            resolve(Some("read admin"), &allowed, &default, "scope"),
            Err(OAuthError::InvalidScope(_))
        ));
        assert!(matches!(
            resolve(Some("re\"ad"), &allowed, &default, "scope"),
            Err(OAuthError::InvalidScope(_))
        ));
    }
}
