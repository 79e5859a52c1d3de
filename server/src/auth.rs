//! Identity: user tokens (JWT: HS256 with `--jwt-secret`, RS256/ES256 with
//! `--jwt-public-key` or the identity provider's `--jwt-jwks-url`; `aud`/`iss` checked when
//! configured), SLIP's tokens and Pact's admin `authenticate` check. Everything but the JWKS
//! fetch ([`jwks`]) is a pure function of its inputs.

pub mod jwks;
pub mod keys;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use keys::PublicKey;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Why a token was not accepted; the connection stays anonymous. Each says what is wrong
/// and never echoes a secret (a key id or an algorithm name is the token's own, cut short).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (its \"nbf\" is in the future)")]
    NotYetValid,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error(
        "the token is signed with {alg}, which this server does not accept (it accepts {accepted})"
    )]
    WrongAlgorithm { alg: String, accepted: String },
    #[error("the token's key id (\"kid\" {0}) is not among the identity provider's keys")]
    UnknownKid(String),
    #[error("the identity provider's keys (--jwt-jwks-url) have not been fetched yet")]
    KeysUnavailable,
    #[error("the token's audience (\"aud\") is not one this server accepts")]
    WrongAudience,
    #[error("the token's issuer (\"iss\") is not one this server accepts")]
    WrongIssuer,
    #[error("the token has no {0:?} claim, which this server requires")]
    MissingClaim(String),
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token has no string \"sub\" claim")]
    NoSubject,
    #[error("tokens are not accepted: the server has no --jwt-secret, --jwt-public-key or --jwt-jwks-url")]
    Disabled,
}

impl TokenError {
    /// Whether fresh keys from the identity provider could change the answer.
    pub fn awaits_keys(&self) -> bool {
        matches!(
            self,
            TokenError::UnknownKid(_) | TokenError::KeysUnavailable
        )
    }
}

/// A token's user, and when its rights end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub user: String,
    /// `exp`, in epoch milliseconds, when the token has one.
    pub exp_ms: Option<u64>,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<f64>,
}

/// A value of the token's own (kid, alg) as an error may show it: short, printable.
fn shown(value: &str) -> String {
    let cut: String = value.chars().take(64).filter(|c| !c.is_control()).collect();
    format!("{cut:?}")
}

/// Verifies user tokens.
#[derive(Clone, Default)]
pub struct Verifier {
    hmac: Option<DecodingKey>,
    public: Option<PublicKey>,
    jwks: Option<Arc<jwks::Jwks>>,
    audience: Vec<String>,
    issuer: Vec<String>,
}

/// The comma-separated values of a flag, trimmed, empty ones dropped.
fn list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Verifier {
    /// `secret`: the HS256 key; `None` refuses every token.
    pub fn new(secret: Option<&str>) -> Verifier {
        Verifier {
            hmac: secret.map(|s| DecodingKey::from_secret(s.as_bytes())),
            ..Verifier::default()
        }
    }

    /// The verifier the configuration asks for. A public key file that cannot be read or
    /// holds no valid key, or a JWKS URL that is no http(s) URL, is an error naming the
    /// flag (the server does not start); the JWKS itself is fetched in the background.
    pub fn from_config(config: &crate::config::Config) -> Result<Verifier, String> {
        let mut verifier = Verifier::new(config.jwt_secret.as_deref())
            .with_audience(config.jwt_audience.as_deref())
            .with_issuer(config.jwt_issuer.as_deref());
        if let Some(path) = &config.jwt_public_key {
            let shown = path.display();
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--jwt-public-key {shown}: cannot read it ({e})"))?;
            let key =
                keys::from_pem(&text).map_err(|e| format!("--jwt-public-key {shown}: {e}"))?;
            tracing::info!(file = %shown, alg = ?key.alg, "token public key loaded");
            verifier.public = Some(key);
        }
        if let Some(url) = &config.jwt_jwks_url {
            verifier.jwks = Some(jwks::Jwks::start(url)?);
        }
        Ok(verifier)
    }

    /// Checks the token settings without starting anything (the key file is read and
    /// parsed, the JWKS URL parsed): what `rookery check-config` and the start refuse.
    pub fn check_config(config: &crate::config::Config) -> Result<(), String> {
        if let Some(path) = &config.jwt_public_key {
            let shown = path.display();
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--jwt-public-key {shown}: cannot read it ({e})"))?;
            keys::from_pem(&text).map_err(|e| format!("--jwt-public-key {shown}: {e}"))?;
        }
        if let Some(url) = &config.jwt_jwks_url {
            jwks::check_url(url)?;
        }
        Ok(())
    }

    /// With an RS256/ES256 public key (tests; the server reads `--jwt-public-key`).
    pub fn with_public_key(mut self, key: PublicKey) -> Verifier {
        self.public = Some(key);
        self
    }

    /// With the identity provider's key set.
    pub fn with_jwks(mut self, jwks: Arc<jwks::Jwks>) -> Verifier {
        self.jwks = Some(jwks);
        self
    }

    /// Accepts only tokens whose `aud` is one of these (comma-separated; none: any).
    pub fn with_audience(mut self, audience: Option<&str>) -> Verifier {
        self.audience = list(audience);
        self
    }

    /// Accepts only tokens whose `iss` is one of these (comma-separated; none: any).
    pub fn with_issuer(mut self, issuer: Option<&str>) -> Verifier {
        self.issuer = list(issuer);
        self
    }

    /// The algorithms this verifier accepts, for error messages.
    fn accepted(&self) -> String {
        let mut algs = Vec::new();
        if self.hmac.is_some() {
            algs.push("HS256");
        }
        if self.jwks.is_some() {
            algs.extend(["RS256", "ES256"]);
        } else if let Some(key) = &self.public {
            algs.push(if key.alg == Algorithm::RS256 {
                "RS256"
            } else {
                "ES256"
            });
        }
        algs.join(", ")
    }

    /// The user (`sub`) of a valid token and its expiry. An unknown key id is refused
    /// here; [`Verifier::verify_waiting`] waits for the provider's keys first.
    pub fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        if self.hmac.is_none() && self.public.is_none() && self.jwks.is_none() {
            return Err(TokenError::Disabled);
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| TokenError::Malformed(format!("not a JWT ({e})")))?;
        let wrong_alg = || TokenError::WrongAlgorithm {
            alg: shown(&format!("{:?}", header.alg)),
            accepted: self.accepted(),
        };
        let candidates: Vec<DecodingKey> = match header.alg {
            Algorithm::HS256 => vec![self.hmac.clone().ok_or_else(wrong_alg)?],
            alg @ (Algorithm::RS256 | Algorithm::ES256) => {
                self.public_keys(alg, header.kid.as_deref(), wrong_alg)?
            }
            _ => return Err(wrong_alg()),
        };
        let validation = self.validation(header.alg);
        let mut last = TokenError::BadSignature;
        for key in &candidates {
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => return Self::verified(data.claims),
                Err(e) => {
                    last = Self::error(e);
                    if last != TokenError::BadSignature {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    /// [`Verifier::verify`], but a token naming a key the identity provider's cached set
    /// lacks waits for a refresh of the set first (rate-limited: see [`jwks`]). Awaits a
    /// channel: the core goes on meanwhile.
    pub async fn verify_waiting(&self, token: &str) -> Result<Verified, TokenError> {
        match self.verify(token) {
            Err(e) if e.awaits_keys() => match self.key_refresh() {
                Some(done) => {
                    let _ = done.recv_async().await;
                    self.verify(token)
                }
                None => Err(e),
            },
            other => other,
        }
    }

    /// A refresh of the identity provider's keys to wait for (`None`: no JWKS, or one was
    /// made too recently).
    pub fn key_refresh(&self) -> Option<flume::Receiver<()>> {
        self.jwks.as_ref()?.refresh()
    }

    /// The keys that may have signed an RS256/ES256 token: the JWKS key its `kid` names,
    /// else the key file's; without a `kid`, every key of the algorithm.
    fn public_keys(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
        wrong_alg: impl Fn() -> TokenError,
    ) -> Result<Vec<DecodingKey>, TokenError> {
        let file = self
            .public
            .as_ref()
            .filter(|k| k.alg == alg)
            .map(|k| k.key.clone());
        let Some(jwks) = &self.jwks else {
            return file.map(|k| vec![k]).ok_or_else(wrong_alg);
        };
        let missing = match kid {
            Some(kid) => match jwks.lookup(kid) {
                jwks::Lookup::Found(key) if key.alg == alg => return Ok(vec![key.key]),
                jwks::Lookup::Found(_) => return Err(wrong_alg()),
                jwks::Lookup::Unknown => TokenError::UnknownKid(shown(kid)),
                jwks::Lookup::NotLoaded => TokenError::KeysUnavailable,
            },
            None => match jwks.keys() {
                None => TokenError::KeysUnavailable,
                Some(set) => {
                    let all = set.by_kid.values().chain(&set.unnamed);
                    let keys: Vec<DecodingKey> = file
                        .clone()
                        .into_iter()
                        .chain(all.filter(|k| k.alg == alg).map(|k| k.key.clone()))
                        .collect();
                    if keys.is_empty() {
                        return Err(wrong_alg());
                    }
                    return Ok(keys);
                }
            },
        };
        file.map(|k| vec![k]).ok_or(missing)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        // `exp` and `nbf` are checked when present but not required; `sub` is checked by us.
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        validation.validate_nbf = true;
        if self.audience.is_empty() {
            // An identity provider's tokens carry an `aud`: without --jwt-audience any is taken.
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.audience);
            validation.required_spec_claims.insert("aud".into());
        }
        if !self.issuer.is_empty() {
            validation.set_issuer(&self.issuer);
            validation.required_spec_claims.insert("iss".into());
        }
        validation
    }

    fn error(e: jsonwebtoken::errors::Error) -> TokenError {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::InvalidAudience => TokenError::WrongAudience,
            ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
            ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim.clone()),
            ErrorKind::InvalidAlgorithm => TokenError::BadSignature,
            other => TokenError::Malformed(format!("{other:?}")),
        }
    }

    fn verified(claims: Claims) -> Result<Verified, TokenError> {
        let exp_ms = claims.exp.map(|s| (s.max(0.0) * 1000.0) as u64);
        match claims.sub {
            Some(sub) if !sub.is_empty() => Ok(Verified { user: sub, exp_ms }),
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
    if secrets_equal(expected.as_bytes(), key.to_ascii_lowercase().as_bytes()) {
        Ok(())
    } else {
        Err("wrong key")
    }
}

/// Whether a secret given by a client equals the one expected, in time that tells nothing
/// of either: both are hashed first (so even their lengths stay hidden) and the digests
/// compared with `subtle`'s constant-time equality.
pub fn secrets_equal(given: &[u8], expected: &[u8]) -> bool {
    let given = Sha256::digest(given);
    let expected = Sha256::digest(expected);
    bool::from(given.ct_eq(&expected))
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
        let user = |t: &str| v.verify(t).map(|v| v.user);
        assert_eq!(user(&token(json!({"sub":"u1"}), "k")), Ok("u1".into()));
        let exp = now_s() + 60;
        assert_eq!(
            v.verify(&token(json!({"sub":"u1","exp": exp}), "k")),
            Ok(Verified {
                user: "u1".into(),
                exp_ms: Some(exp * 1000)
            })
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

    const RSA1: &str = include_str!("../tests/fixtures/rsa1.key");
    const RSA1_PUB: &str = include_str!("../tests/fixtures/rsa1.pub");
    const RSA1_PKCS1: &str = include_str!("../tests/fixtures/rsa1.pkcs1.pub");
    const RSA2: &str = include_str!("../tests/fixtures/rsa2.key");
    const EC1: &str = include_str!("../tests/fixtures/ec1.key");
    const EC1_PUB: &str = include_str!("../tests/fixtures/ec1.pub");
    const EC2: &str = include_str!("../tests/fixtures/ec2.key");

    /// A token signed with a private PEM key, `kid` in its header when given.
    fn signed(
        alg: Algorithm,
        private: &str,
        kid: Option<&str>,
        claims: serde_json::Value,
    ) -> String {
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(private.as_bytes()).unwrap(),
            _ => EncodingKey::from_ec_pem(private.as_bytes()).unwrap(),
        };
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        encode(&header, &claims, &key).unwrap()
    }

    /// A JWKS holding the public halves of these private keys, by kid.
    fn jwks_of(keys: &[(&str, Algorithm, &str)]) -> Vec<u8> {
        let keys: Vec<serde_json::Value> = keys
            .iter()
            .map(|(kid, alg, private)| {
                let key = match alg {
                    Algorithm::RS256 => EncodingKey::from_rsa_pem(private.as_bytes()).unwrap(),
                    _ => EncodingKey::from_ec_pem(private.as_bytes()).unwrap(),
                };
                let mut jwk = serde_json::to_value(
                    jsonwebtoken::jwk::Jwk::from_encoding_key(&key, *alg).unwrap(),
                )
                .unwrap();
                jwk["kid"] = json!(kid);
                jwk["use"] = json!("sig");
                jwk
            })
            .collect();
        serde_json::to_vec(&json!({ "keys": keys })).unwrap()
    }

    #[test]
    fn rs256_and_es256_with_a_public_key_file() {
        let claims = json!({"sub":"ann"});
        for (public, private, alg) in [
            (RSA1_PUB, RSA1, Algorithm::RS256),
            (RSA1_PKCS1, RSA1, Algorithm::RS256),
            (EC1_PUB, EC1, Algorithm::ES256),
        ] {
            let v = Verifier::default().with_public_key(keys::from_pem(public).unwrap());
            let user = |t: &str| v.verify(t).map(|v| v.user);
            assert_eq!(
                user(&signed(alg, private, None, claims.clone())),
                Ok("ann".into())
            );
            // Another key of the same kind: a bad signature.
            let other = if alg == Algorithm::RS256 { RSA2 } else { EC2 };
            assert_eq!(
                user(&signed(alg, other, None, claims.clone())),
                Err(TokenError::BadSignature)
            );
            // HS256 is not accepted without --jwt-secret, whatever the secret (the public
            // key's own text, for one: the classic algorithm confusion).
            let confused = token(claims.clone(), public);
            assert!(
                matches!(user(&confused), Err(TokenError::WrongAlgorithm { .. })),
                "{:?}",
                user(&confused)
            );
        }
        // An ES256 token against an RSA key, and the other way round.
        let rsa = Verifier::default().with_public_key(keys::from_pem(RSA1_PUB).unwrap());
        let e = rsa
            .verify(&signed(Algorithm::ES256, EC1, None, claims.clone()))
            .unwrap_err();
        assert_eq!(e.to_string(), "the token is signed with \"ES256\", which this server does not accept (it accepts RS256)");
        // HS256 and RS256 side by side.
        let both = Verifier::new(Some("k")).with_public_key(keys::from_pem(RSA1_PUB).unwrap());
        assert!(both.verify(&token(claims.clone(), "k")).is_ok());
        assert!(both
            .verify(&signed(Algorithm::RS256, RSA1, None, claims))
            .is_ok());
    }

    #[test]
    fn bad_key_files_are_refused_with_the_reason() {
        let malformed = include_str!("../tests/fixtures/malformed.pub");
        for (text, why) in [
            ("", "not a PEM file"),
            ("hello", "not a PEM file"),
            (malformed, "neither an RSA nor a P-256"),
            (RSA1, "private key"),
            (EC1, "private key"),
        ] {
            let e = keys::from_pem(text)
                .err()
                .unwrap_or_else(|| panic!("{text:?} accepted"));
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn audience_issuer_and_not_before_are_checked() {
        let now = now_s();
        let v = Verifier::new(Some("k"))
            .with_audience(Some("app, other-app"))
            .with_issuer(Some("https://idp.example"));
        let check = |claims: serde_json::Value| v.verify(&token(claims, "k")).map(|v| v.user);
        let good = json!({"sub":"u","aud":"app","iss":"https://idp.example"});
        assert_eq!(check(good), Ok("u".into()));
        let list = json!({"sub":"u","aud":["x","other-app"],"iss":"https://idp.example"});
        assert_eq!(check(list), Ok("u".into()));
        let aud = json!({"sub":"u","aud":"else","iss":"https://idp.example"});
        assert_eq!(check(aud), Err(TokenError::WrongAudience));
        let iss = json!({"sub":"u","aud":"app","iss":"https://evil.example"});
        assert_eq!(check(iss), Err(TokenError::WrongIssuer));
        let no_aud = json!({"sub":"u","iss":"https://idp.example"});
        assert_eq!(check(no_aud), Err(TokenError::MissingClaim("aud".into())));
        // Without --jwt-audience/--jwt-issuer any aud and iss are taken.
        let open = Verifier::new(Some("k"));
        assert!(open
            .verify(&token(json!({"sub":"u","aud":"any","iss":"any"}), "k"))
            .is_ok());
        let later = json!({"sub":"u","nbf": now + 600});
        assert_eq!(
            open.verify(&token(later, "k")).map(|v| v.user),
            Err(TokenError::NotYetValid)
        );
        let started = json!({"sub":"u","nbf": now - 5});
        assert!(open.verify(&token(started, "k")).is_ok());
    }

    #[test]
    fn jwks_keys_by_kid_and_unknown_kids() {
        let body = jwks_of(&[
            ("r1", Algorithm::RS256, RSA1),
            ("e1", Algorithm::ES256, EC1),
        ]);
        let (set, skipped) = keys::parse_jwks(&body).unwrap();
        assert!(skipped.is_empty());
        let v = Verifier::default().with_jwks(jwks::Jwks::preloaded(set));
        let claims = json!({"sub":"kim"});
        let user = |t: &str| v.verify(t).map(|v| v.user);
        assert_eq!(
            user(&signed(Algorithm::RS256, RSA1, Some("r1"), claims.clone())),
            Ok("kim".into())
        );
        assert_eq!(
            user(&signed(Algorithm::ES256, EC1, Some("e1"), claims.clone())),
            Ok("kim".into())
        );
        // No kid: every key of the algorithm is tried.
        assert_eq!(
            user(&signed(Algorithm::RS256, RSA1, None, claims.clone())),
            Ok("kim".into())
        );
        // A kid the set lacks (rotation, or a forgery) waits for keys at the shell.
        let unknown =
            user(&signed(Algorithm::RS256, RSA2, Some("r2"), claims.clone())).unwrap_err();
        assert_eq!(unknown, TokenError::UnknownKid("\"r2\"".into()));
        assert!(unknown.awaits_keys());
        // A known kid with a key of the other algorithm, and a forged signature.
        assert!(matches!(
            user(&signed(Algorithm::ES256, EC1, Some("r1"), claims.clone())),
            Err(TokenError::WrongAlgorithm { .. })
        ));
        assert_eq!(
            user(&signed(Algorithm::RS256, RSA2, Some("r1"), claims)),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn malformed_jwks_documents_say_why() {
        for (body, why) in [
            (&b"not json"[..], "not a JSON Web Key Set"),
            (br#"{"keys":[]}"#, "the set is empty"),
            (
                br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#,
                "key type \"oct\"",
            ),
            (
                br#"{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"}]}"#,
                "key \"a\"",
            ),
            (
                br#"{"keys":[{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}]}"#,
                "only P-256",
            ),
            (
                br#"{"keys":[{"kty":"EC","crv":"P-256","x":"!!","y":"AA"}]}"#,
                "base64url",
            ),
        ] {
            let e = keys::parse_jwks(body)
                .err()
                .unwrap_or_else(|| panic!("accepted"));
            assert!(e.contains(why), "{e}");
        }
        // Encryption keys and other algorithms are skipped; the rest is used.
        let mut doc: serde_json::Value =
            serde_json::from_slice(&jwks_of(&[("r1", Algorithm::RS256, RSA1)])).unwrap();
        doc["keys"]
            .as_array_mut()
            .unwrap()
            .push(json!({"kty":"RSA","use":"enc","kid":"x","n":"AQAB","e":"AQAB"}));
        let (set, skipped) = keys::parse_jwks(&serde_json::to_vec(&doc).unwrap()).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(skipped.len(), 1, "{skipped:?}");
    }

    #[test]
    fn errors_never_echo_long_or_control_characters() {
        let v = Verifier::default().with_jwks(jwks::Jwks::preloaded(keys::KeySet::default()));
        let kid = format!("{}\n{}", "k".repeat(200), "x");
        let e = v
            .verify(&signed(
                Algorithm::RS256,
                RSA1,
                Some(&kid),
                json!({"sub":"u"}),
            ))
            .unwrap_err();
        assert!(e.to_string().len() < 200, "{e}");
        assert!(!e.to_string().contains('\n'));
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
