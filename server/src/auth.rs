//! Identity: JWT verification (HS256 by default, the key from `--jwt-secret`) and Pact's
//! admin `authenticate` check. Pure functions of their inputs; time is an argument.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Why a token was not accepted; the connection stays anonymous.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token has no string \"sub\" claim")]
    NoSubject,
    #[error("tokens are not accepted: the server has no --jwt-secret")]
    Disabled,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
}

/// Verifies user tokens.
#[derive(Clone)]
pub struct Verifier {
    key: Option<DecodingKey>,
    validation: Validation,
}

impl Verifier {
    /// `secret`: the HS256 key; `None` refuses every token.
    pub fn new(secret: Option<&str>) -> Verifier {
        let mut validation = Validation::new(Algorithm::HS256);
        // `exp` is checked when present but not required; `sub` is checked by us.
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        Verifier {
            key: secret.map(|s| DecodingKey::from_secret(s.as_bytes())),
            validation,
        }
    }

    /// The user id (`sub`) of a valid token.
    pub fn verify(&self, token: &str) -> Result<String, TokenError> {
        let key = self.key.as_ref().ok_or(TokenError::Disabled)?;
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                other => TokenError::Malformed(format!("{other:?}")),
            }
        })?;
        match data.claims.sub {
            Some(sub) if !sub.is_empty() => Ok(sub),
            _ => Err(TokenError::NoSubject),
        }
    }
}

/// A SLIP token's claims. `iss` and `aud` scope it and are required; `iat` and `exp` are
/// optional, as RFC 7519 has them (a backend signing with PyJWT gets no `iat` unless it
/// asks): `exp`, when present, is checked.
#[derive(serde::Serialize, Deserialize)]
struct SlipClaims {
    iss: String,
    aud: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
}

/// A SLIP token (HS256, issuer `slip-sockets`, audience `aud`, valid one minute).
pub fn slip_token(secret: &str, aud: &str, now_s: u64) -> String {
    let claims = SlipClaims {
        iss: crate::dialect::slip::ISSUER.into(),
        aud: aud.into(),
        iat: Some(now_s),
        exp: Some(now_s + 60),
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing cannot fail")
}

/// Checks a SLIP token: signature, issuer `slip-sockets`, audience `aud`, and not expired
/// when it has an `exp` (no registered claim but those two is required).
pub fn verify_slip_token(secret: &str, aud: &str, token: &str) -> bool {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["iss", "aud"]);
    validation.set_issuer(&[crate::dialect::slip::ISSUER]);
    validation.set_audience(&[aud]);
    validation.leeway = 0;
    jsonwebtoken::decode::<SlipClaims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .is_ok()
}

/// Strips a leading `Bearer ` (any case, any spacing) from a token given by message.
pub fn strip_bearer(value: &str) -> &str {
    let value = value.trim();
    match value.split_once(char::is_whitespace) {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => value,
    }
}

/// Pact's admin check: `key == hex(sha256(room + ts + signing_key))`, `ts` within ±5 min.
pub fn verify_pact_admin(
    room: &str,
    ts: i64,
    key: &str,
    signing_key: &str,
    now_ms: u64,
) -> Result<(), &'static str> {
    const SKEW_MS: i64 = 5 * 60 * 1000;
    if (now_ms as i64 - ts).abs() > SKEW_MS {
        return Err("wrong timestamp: more than 5 minutes from the server's clock");
    }
    let expected = pact_admin_key(room, ts, signing_key);
    let matches = expected.len() == key.len()
        && expected
            .bytes()
            .zip(key.to_ascii_lowercase().bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if matches {
        Ok(())
    } else {
        Err("wrong key")
    }
}

/// `hex(sha256(room + ts + signing_key))`.
pub fn pact_admin_key(room: &str, ts: i64, signing_key: &str) -> String {
    let digest = Sha256::digest(format!("{room}{ts}{signing_key}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn token(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn now_s() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn valid_expired_forged_and_malformed_tokens() {
        let v = Verifier::new(Some("k"));
        assert_eq!(v.verify(&token(json!({"sub":"u1"}), "k")), Ok("u1".into()));
        assert_eq!(
            v.verify(&token(json!({"sub":"u1","exp": now_s() + 60}), "k")),
            Ok("u1".into())
        );
        assert_eq!(
            v.verify(&token(json!({"sub":"u1","exp": now_s() - 10}), "k")),
            Err(TokenError::Expired)
        );
        assert_eq!(
            v.verify(&token(json!({"sub":"u1"}), "other")),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            v.verify(&token(json!({"name":"x"}), "k")),
            Err(TokenError::NoSubject)
        );
        assert!(matches!(v.verify("garbage"), Err(TokenError::Malformed(_))));
        assert_eq!(
            Verifier::new(None).verify(&token(json!({"sub":"u"}), "k")),
            Err(TokenError::Disabled)
        );
    }

    #[test]
    fn slip_tokens_check_issuer_audience_and_expiry() {
        let now = now_s();
        let t = slip_token("s", "ControlEvent", now);
        assert!(verify_slip_token("s", "ControlEvent", &t));
        assert!(
            !verify_slip_token("s", "WebSocketEvent", &t),
            "wrong audience"
        );
        assert!(!verify_slip_token("other", "ControlEvent", &t), "wrong key");
        let old = slip_token("s", "ControlEvent", now - 120);
        assert!(!verify_slip_token("s", "ControlEvent", &old), "expired");
        let foreign = token(json!({"iss":"x","aud":"ControlEvent","exp":now+60}), "s");
        assert!(
            !verify_slip_token("s", "ControlEvent", &foreign),
            "wrong issuer"
        );
        // Optional registered claims stay optional (PyJWT signs no `iat` by default).
        let iss = crate::dialect::slip::ISSUER;
        let no_iat = token(json!({"iss":iss,"aud":"ControlEvent","exp":now+60}), "s");
        assert!(verify_slip_token("s", "ControlEvent", &no_iat), "no iat");
        let bare = token(json!({"iss":iss,"aud":"ControlEvent"}), "s");
        assert!(
            verify_slip_token("s", "ControlEvent", &bare),
            "no iat, no exp"
        );
        let no_aud = token(json!({"iss":iss,"exp":now+60}), "s");
        assert!(
            !verify_slip_token("s", "ControlEvent", &no_aud),
            "aud is required"
        );
        let no_iss = token(json!({"aud":"ControlEvent","exp":now+60}), "s");
        assert!(
            !verify_slip_token("s", "ControlEvent", &no_iss),
            "iss is required"
        );
        let expired = token(json!({"iss":iss,"aud":"ControlEvent","exp":now-5}), "s");
        assert!(
            !verify_slip_token("s", "ControlEvent", &expired),
            "exp is checked"
        );
        let odd_iat = token(
            json!({"iss":iss,"aud":"ControlEvent","iat":"yesterday"}),
            "s",
        );
        assert!(
            !verify_slip_token("s", "ControlEvent", &odd_iat),
            "a malformed iat"
        );
    }

    #[test]
    fn bearer_prefix_is_optional() {
        assert_eq!(strip_bearer("Bearer abc"), "abc");
        assert_eq!(strip_bearer("bearer   abc "), "abc");
        assert_eq!(strip_bearer("abc"), "abc");
    }

    #[test]
    fn pact_admin_key_and_skew() {
        let now = 1_700_000_000_000u64;
        let key = pact_admin_key("lobby", now as i64, "sign");
        assert_eq!(key.len(), 64);
        assert!(verify_pact_admin("lobby", now as i64, &key, "sign", now).is_ok());
        assert!(verify_pact_admin("lobby", now as i64, &key.to_uppercase(), "sign", now).is_ok());
        assert!(verify_pact_admin("other", now as i64, &key, "sign", now).is_err());
        let old = now as i64 - 6 * 60 * 1000;
        let stale = pact_admin_key("lobby", old, "sign");
        assert!(verify_pact_admin("lobby", old, &stale, "sign", now).is_err());
        let skewed = now as i64 + 4 * 60 * 1000;
        let ok = pact_admin_key("lobby", skewed, "sign");
        assert!(verify_pact_admin("lobby", skewed, &ok, "sign", now).is_ok());
    }
}
