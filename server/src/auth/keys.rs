//! Public keys of RS256 and ES256 tokens: from a PEM file (`--jwt-public-key`) or a JSON Web
//! Key Set (`--jwt-jwks-url`, RFC 7517). Each key is parsed strictly when it is loaded — a
//! key that is no valid RSA (2048 bits or more) or P-256 public key is refused then — since
//! jsonwebtoken itself only looks at a key's bytes when a token is checked, and a bad key
//! file must stop the start, not make every token fail later.

use ahash::AHashMap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// One verification key and the one algorithm it verifies.
#[derive(Clone)]
pub struct PublicKey {
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// A PEM public key file: an RSA key (SPKI `PUBLIC KEY` or PKCS#1 `RSA PUBLIC KEY`) for
/// RS256, or a P-256 key (SPKI) for ES256.
pub fn from_pem(text: &str) -> Result<PublicKey, String> {
    use p256::pkcs8::DecodePublicKey as _;
    use rsa::pkcs1::DecodeRsaPublicKey as _;
    use rsa::traits::PublicKeyParts as _;
    let text = text.trim();
    if !text.starts_with("-----BEGIN ") {
        return Err("not a PEM file (no \"-----BEGIN\" line)".into());
    }
    if text.contains("PRIVATE KEY-----") {
        return Err("this is a private key: give the server the public key only".into());
    }
    if let Ok(key) = p256::PublicKey::from_public_key_pem(text) {
        return Ok(ec_key(&key));
    }
    let rsa = rsa::RsaPublicKey::from_public_key_pem(text)
        .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(text))
        .map_err(|e| {
            format!("neither an RSA nor a P-256 (prime256v1) public key in PEM form ({e})")
        })?;
    if rsa.size() * 8 < MIN_RSA_BITS {
        return Err(format!(
            "the RSA key has {} bits; at least {MIN_RSA_BITS} are required",
            rsa.size() * 8
        ));
    }
    Ok(rsa_key(&rsa.n().to_bytes_be(), &rsa.e().to_bytes_be()))
}

fn rsa_key(n: &[u8], e: &[u8]) -> PublicKey {
    PublicKey {
        alg: Algorithm::RS256,
        key: DecodingKey::from_rsa_raw_components(n, e),
    }
}

fn ec_key(key: &p256::PublicKey) -> PublicKey {
    use p256::elliptic_curve::sec1::ToEncodedPoint as _;
    PublicKey {
        alg: Algorithm::ES256,
        // jsonwebtoken's EC verification takes the uncompressed SEC1 point.
        key: DecodingKey::from_ec_der(key.to_encoded_point(false).as_bytes()),
    }
}

/// The usable keys of a JWKS: those with a `kid` by it, the others in a list.
#[derive(Clone, Default)]
pub struct KeySet {
    pub by_kid: AHashMap<String, PublicKey>,
    pub unnamed: Vec<PublicKey>,
}

impl KeySet {
    pub fn len(&self) -> usize {
        self.by_kid.len() + self.unnamed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// Parses a JWKS document. Keys that are not RS256/ES256 signing keys (encryption keys,
/// other algorithms and curves) are skipped and named in the second value; a document
/// that is not a JWKS, or holds no usable key, is an error.
pub fn parse_jwks(body: &[u8]) -> Result<(KeySet, Vec<String>), String> {
    let set: JwkSet = serde_json::from_slice(body)
        .map_err(|e| format!("not a JSON Web Key Set ({{\"keys\": [...]}}): {e}"))?;
    let mut keys = KeySet::default();
    let mut skipped = Vec::new();
    for (i, value) in set.keys.into_iter().enumerate() {
        let name = value
            .get("kid")
            .and_then(|k| k.as_str())
            .map_or_else(|| format!("#{i}"), |kid| format!("{kid:?}"));
        match serde_json::from_value::<Jwk>(value)
            .map_err(|e| e.to_string())
            .and_then(|jwk| jwk_key(&jwk).map(|key| (jwk.kid, key)))
        {
            Ok((Some(kid), key)) => {
                keys.by_kid.insert(kid, key);
            }
            Ok((None, key)) => keys.unnamed.push(key),
            Err(why) => skipped.push(format!("key {name}: {why}")),
        }
    }
    if keys.is_empty() {
        let why = if skipped.is_empty() {
            "the set is empty".to_owned()
        } else {
            skipped.join("; ")
        };
        return Err(format!("no usable RS256 or ES256 signing key: {why}"));
    }
    Ok((keys, skipped))
}

fn jwk_key(jwk: &Jwk) -> Result<PublicKey, String> {
    if let Some(usage) = jwk.usage.as_deref().filter(|u| *u != "sig") {
        return Err(format!("\"use\" is {usage:?}, not \"sig\""));
    }
    let b64 = |field: &str, v: &Option<String>| -> Result<Vec<u8>, String> {
        let v = v.as_deref().ok_or_else(|| format!("no {field:?}"))?;
        URL_SAFE_NO_PAD
            .decode(v.trim_end_matches('='))
            .map_err(|_| format!("{field:?} is not base64url"))
    };
    let key = match jwk.kty.as_str() {
        "RSA" => {
            use rsa::traits::PublicKeyParts as _;
            let (n, e) = (b64("n", &jwk.n)?, b64("e", &jwk.e)?);
            let rsa = rsa::RsaPublicKey::new(
                rsa::BigUint::from_bytes_be(&n),
                rsa::BigUint::from_bytes_be(&e),
            )
            .map_err(|e| format!("not a valid RSA public key ({e})"))?;
            if rsa.size() * 8 < MIN_RSA_BITS {
                return Err(format!("an RSA key of {} bits", rsa.size() * 8));
            }
            rsa_key(&n, &e)
        }
        "EC" => {
            if jwk.crv.as_deref() != Some("P-256") {
                return Err(format!("curve {:?}: only P-256 (ES256) is taken", jwk.crv));
            }
            let (x, y) = (b64("x", &jwk.x)?, b64("y", &jwk.y)?);
            if x.len() != 32 || y.len() != 32 {
                return Err("x and y must be 32 bytes each".into());
            }
            let mut point = vec![0x04];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let key = p256::PublicKey::from_sec1_bytes(&point)
                .map_err(|_| "not a point on P-256".to_owned())?;
            ec_key(&key)
        }
        other => return Err(format!("key type {other:?}: only RSA and EC are taken")),
    };
    match jwk.alg.as_deref() {
        None => Ok(key),
        Some("RS256") if key.alg == Algorithm::RS256 => Ok(key),
        Some("ES256") if key.alg == Algorithm::ES256 => Ok(key),
        Some(alg) => Err(format!(
            "\"alg\" {alg:?}: only RS256 (RSA) and ES256 (P-256) are taken"
        )),
    }
}
