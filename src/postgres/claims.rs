//! Reading the database user name out of an Entra access token's claims.
//!
//! Only names are read; the token is never logged or returned. The signature is not checked:
//! the server checks the token, this only picks the name to log in as.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

/// The PostgreSQL user an Entra token stands for: a managed identity's name (the last segment
/// of `xms_mirid`), else a person's `upn`, `preferred_username` or `unique_name`.
pub(crate) fn user_from_token(token: &str) -> Option<(String, &'static str)> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    if let Some(name) = claims["xms_mirid"]
        .as_str()
        .and_then(|id| id.rsplit('/').next())
        .filter(|n| !n.is_empty())
    {
        return Some((name.to_owned(), "xms_mirid"));
    }
    for claim in ["upn", "preferred_username", "unique_name"] {
        if let Some(name) = claims[claim].as_str().filter(|n| !n.is_empty()) {
            return Some((name.to_owned(), claim));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(claims: &str) -> String {
        format!("h.{}.s", URL_SAFE_NO_PAD.encode(claims))
    }

    #[test]
    fn managed_identity_name_comes_from_xms_mirid() {
        let t = token(
            r#"{"xms_mirid":"/subscriptions/x/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/my-app-id","upn":"nope"}"#,
        );
        assert_eq!(user_from_token(&t), Some(("my-app-id".into(), "xms_mirid")));
    }

    #[test]
    fn people_use_upn_then_preferred_username() {
        assert_eq!(
            user_from_token(&token(r#"{"upn":"ann@contoso.com"}"#)).unwrap().0,
            "ann@contoso.com"
        );
        assert_eq!(
            user_from_token(&token(r#"{"preferred_username":"bob@contoso.com"}"#))
                .unwrap()
                .0,
            "bob@contoso.com"
        );
    }

    #[test]
    fn garbage_gives_none() {
        assert_eq!(user_from_token("not-a-jwt"), None);
        assert_eq!(user_from_token(&token("{}")), None);
        assert_eq!(user_from_token("a.!!!.c"), None);
    }
}
