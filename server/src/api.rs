//! Parsing of the HTTP API's request bodies and parameters (emit, admin broadcast,
//! notify). Pure functions, so that the fuzz targets and unit tests reach them directly.

use crate::engine::emit::Targets;
use serde_json::{Map, Value};

/// A refused request: its status, error code and message (`{"error":{"code","message"}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        status: 400,
        code,
        message: message.into(),
    }
}

/// A JSON body.
pub fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad("invalid_json", format!("body is not JSON: {e}")))
}

/// `POST /api/rooms/:room/broadcast`: `{type, data?, to?}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Broadcast {
    pub kind: String,
    pub data: Value,
    pub to: Option<String>,
}

pub fn broadcast_body(body: &[u8]) -> Result<Broadcast, ApiError> {
    let Value::Object(mut body) = json_body(body)? else {
        return Err(bad("invalid_body", "expected {type, data, to?}"));
    };
    let Some(Value::String(kind)) = body.remove("type") else {
        return Err(bad("invalid_body", "\"type\" must be a string"));
    };
    let to = match body.remove("to") {
        None | Some(Value::Null) => None,
        Some(Value::String(to)) if !to.is_empty() => Some(to),
        Some(_) => return Err(bad("invalid_body", "\"to\" must be a string")),
    };
    Ok(Broadcast {
        kind,
        data: body.remove("data").unwrap_or(Value::Null),
        to,
    })
}

/// `POST /api/notify`: `{users?, channels?, clients?, data}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Notify {
    pub users: Vec<String>,
    pub channels: Vec<String>,
    pub clients: Vec<String>,
    pub data: Value,
}

pub fn notify_body(body: &[u8]) -> Result<Notify, ApiError> {
    let Value::Object(mut body) = json_body(body)? else {
        return Err(bad(
            "invalid_body",
            "expected {users?, channels?, clients?, data}",
        ));
    };
    let mut list = |field: &str| -> Result<Vec<String>, ApiError> {
        match body.remove(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(items
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()),
            Some(_) => Err(bad(
                "invalid_body",
                format!("\"{field}\" must be a list of strings"),
            )),
        }
    };
    let (users, channels, clients) = (list("users")?, list("channels")?, list("clients")?);
    if users.is_empty() && channels.is_empty() && clients.is_empty() {
        return Err(bad(
            "invalid_body",
            "name at least one user, channel or client",
        ));
    }
    let Some(data) = body.remove("data").filter(|d| !d.is_null()) else {
        return Err(bad("invalid_body", "\"data\" is required"));
    };
    Ok(Notify {
        users,
        channels,
        clients,
        data,
    })
}

/// Query parameters of `/emit` that steer it rather than belong to the payload.
pub const EMIT_CONTROLS: [&str; 2] = ["clients", "require-ack"];

/// The `?clients=` parameter: a count of random clients, or a list of ids.
pub fn targets(value: Option<&str>) -> Result<Targets, ApiError> {
    let Some(value) = value else {
        return Ok(Targets::All);
    };
    let value = value.trim();
    if !value.is_empty()
        && value
            .trim_start_matches('-')
            .bytes()
            .all(|b| b.is_ascii_digit())
    {
        return match value.parse::<usize>() {
            Ok(0) | Err(_) => Err(bad(
                "invalid_clients",
                "clients must be a positive count or a list of client ids",
            )),
            Ok(n) => Ok(Targets::Random(n)),
        };
    }
    let ids: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if ids.is_empty() {
        return Err(bad("invalid_clients", "clients names no client"));
    }
    Ok(Targets::Ids(ids))
}

/// `?require-ack=`: a real boolean.
pub fn boolean(value: Option<&str>) -> Result<bool, ApiError> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("false" | "0" | "no") => Ok(false),
        Some("" | "true" | "1" | "yes") => Ok(true),
        Some(_) => Err(bad(
            "invalid_require_ack",
            "require-ack must be true or false",
        )),
    }
}

/// The payload of an emit: the JSON body of a POST, or the query parameters (minus the
/// control ones, all strings) of a GET. Empty payloads are refused.
pub fn emit_payload(
    post: bool,
    query: &[(String, String)],
    body: &[u8],
) -> Result<Value, ApiError> {
    let payload = if post {
        if body.is_empty() {
            Value::Null
        } else {
            json_body(body)?
        }
    } else {
        let fields: Map<String, Value> = query
            .iter()
            .filter(|(k, _)| !EMIT_CONTROLS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        Value::Object(fields)
    };
    let empty = match &payload {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    };
    if empty {
        return Err(bad("empty_payload", "No payload provided."));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn clients_parameter() {
        assert_eq!(targets(None).unwrap(), Targets::All);
        assert_eq!(targets(Some("3")).unwrap(), Targets::Random(3));
        assert!(targets(Some("0")).is_err());
        assert!(targets(Some("-2")).is_err());
        assert!(targets(Some("99999999999999999999999")).is_err());
        assert!(targets(Some(" , ")).is_err());
        assert_eq!(
            targets(Some("client_a, client_b")).unwrap(),
            Targets::Ids(vec!["client_a".into(), "client_b".into()])
        );
    }

    #[test]
    fn require_ack_is_a_real_boolean() {
        assert!(!boolean(Some("false")).unwrap());
        assert!(boolean(Some("TRUE")).unwrap());
        assert!(!boolean(None).unwrap());
        assert!(boolean(Some("maybe")).is_err());
    }

    #[test]
    fn emit_payloads() {
        let q = vec![
            ("a".to_owned(), "1".to_owned()),
            ("clients".to_owned(), "2".to_owned()),
        ];
        assert_eq!(emit_payload(false, &q, b"").unwrap(), json!({"a":"1"}));
        assert_eq!(
            emit_payload(false, &q[1..], b"").unwrap_err().code,
            "empty_payload"
        );
        assert_eq!(
            emit_payload(true, &[], b"").unwrap_err().code,
            "empty_payload"
        );
        assert_eq!(
            emit_payload(true, &[], b"{}").unwrap_err().code,
            "empty_payload"
        );
        assert_eq!(
            emit_payload(true, &[], b"{x").unwrap_err().code,
            "invalid_json"
        );
        assert_eq!(emit_payload(true, &[], b"[1]").unwrap(), json!([1]));
    }

    #[test]
    fn admin_bodies() {
        assert_eq!(
            broadcast_body(br#"{"type":"t","data":1,"to":"x"}"#).unwrap(),
            Broadcast {
                kind: "t".into(),
                data: json!(1),
                to: Some("x".into())
            }
        );
        assert!(broadcast_body(br#"{"data":1}"#).is_err());
        assert!(broadcast_body(br#"{"type":"t","to":3}"#).is_err());
        assert!(broadcast_body(b"[]").is_err());
        let n = notify_body(br#"{"users":["u"],"data":{"a":1}}"#).unwrap();
        assert_eq!(n.users, vec!["u".to_owned()]);
        assert!(notify_body(br#"{"data":{}}"#).is_err());
        assert!(notify_body(br#"{"users":[1],"data":{}}"#).is_err());
        assert!(notify_body(br#"{"users":["u"]}"#).is_err());
    }
}
