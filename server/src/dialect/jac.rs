//! The `jac` dialect (jac-cloud's websocket, seed 002): one channel per connection, events
//! that target users, channels or clients with a raw `data` object, `change_user`, and
//! `walker` events for a backend.

mod protocol;
mod session;

pub use protocol::Jac;

use super::Peer;
use crate::backend::{BackendError, BackendResponse};
use crate::engine::{Reply, RoomEvent, Sequenced};
use crate::frame;
use crate::http::Request;
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

/// The root id of a connection without a valid token.
pub const PUBLIC_ROOT: &str = "n::000000000000000000000001";

/// Most ids one event may target.
pub const MAX_TARGETS: usize = 1000;

/// A decoded client event.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    /// `{"type":"connection"}`: send the connection event again.
    Connection,
    /// Trigger a walker on the backend.
    Walker {
        walker: String,
        response: bool,
        context: Map<String, Value>,
        node: Option<String>,
    },
    /// `data` to every connection of these users.
    User {
        root_ids: Vec<String>,
        data: Map<String, Value>,
    },
    /// `data` to every connection in these channels.
    Channel {
        channel_ids: Vec<String>,
        data: Map<String, Value>,
    },
    /// `data` to these connections.
    Client {
        client_ids: Vec<String>,
        data: Map<String, Value>,
    },
    /// Re-authenticate: a token (with or without `Bearer `), or none for the public user.
    ChangeUser { token: Option<String> },
}

/// One problem with an event, in the shape pydantic reports (what jac clients know).
#[derive(Debug, PartialEq, Serialize)]
pub struct FieldError {
    pub loc: Vec<String>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

fn field_error(loc: &str, msg: impl Into<String>, kind: &'static str) -> FieldError {
    FieldError {
        loc: vec![loc.to_owned()],
        msg: msg.into(),
        kind,
    }
}

/// Decodes one text frame; `text` is scratch space (simd-json parses in place).
pub fn decode(text: &mut [u8]) -> Result<Inbound, Vec<FieldError>> {
    let value: Value = super::json::from_slice(text).map_err(|e| {
        vec![field_error(
            "body",
            format!("invalid JSON: {e}"),
            "json_invalid",
        )]
    })?;
    let Value::Object(mut event) = value else {
        return Err(vec![field_error(
            "body",
            "an event must be a JSON object",
            "dict_type",
        )]);
    };
    let kind = match event.remove("type") {
        Some(Value::String(kind)) => kind,
        Some(_) => {
            return Err(vec![field_error(
                "type",
                "type must be a string",
                "string_type",
            )])
        }
        None => return Err(vec![field_error("type", "Field required", "missing")]),
    };
    match kind.as_str() {
        "connection" => Ok(Inbound::Connection),
        "change_user" => match event.remove("token") {
            None | Some(Value::Null) => Ok(Inbound::ChangeUser { token: None }),
            Some(Value::String(t)) => Ok(Inbound::ChangeUser { token: Some(t) }),
            Some(_) => Err(vec![field_error(
                "token",
                "token must be a string",
                "string_type",
            )]),
        },
        "walker" => {
            let mut errors = Vec::new();
            let walker = match event.remove("walker") {
                Some(Value::String(w)) if !w.is_empty() => w,
                Some(_) => {
                    errors.push(field_error(
                        "walker",
                        "walker must be a non-empty string",
                        "string_type",
                    ));
                    String::new()
                }
                None => {
                    errors.push(field_error("walker", "Field required", "missing"));
                    String::new()
                }
            };
            let response = match event.remove("response") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => b,
                Some(_) => {
                    errors.push(field_error(
                        "response",
                        "response must be a boolean",
                        "bool_type",
                    ));
                    false
                }
            };
            let context = match event.remove("context") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(c)) => c,
                Some(_) => {
                    errors.push(field_error(
                        "context",
                        "context must be an object",
                        "dict_type",
                    ));
                    Map::new()
                }
            };
            let node = match event.remove("node") {
                None | Some(Value::Null) => None,
                Some(Value::String(n)) => Some(n),
                Some(_) => {
                    errors.push(field_error("node", "node must be a string", "string_type"));
                    None
                }
            };
            if errors.is_empty() {
                Ok(Inbound::Walker {
                    walker,
                    response,
                    context,
                    node,
                })
            } else {
                Err(errors)
            }
        }
        "user" | "channel" | "client" => {
            let field = match kind.as_str() {
                "user" => "root_ids",
                "channel" => "channel_ids",
                _ => "client_ids",
            };
            let mut errors = Vec::new();
            let ids = match event.remove(field) {
                Some(Value::Array(items)) if items.is_empty() => {
                    errors.push(field_error(
                        field,
                        "List should have at least 1 item",
                        "too_short",
                    ));
                    Vec::new()
                }
                Some(Value::Array(items)) if items.len() > MAX_TARGETS => {
                    errors.push(field_error(
                        field,
                        format!("at most {MAX_TARGETS} ids"),
                        "too_long",
                    ));
                    Vec::new()
                }
                Some(Value::Array(items)) => {
                    let total = items.len();
                    let ids: Vec<String> = items
                        .into_iter()
                        .filter_map(|v| match v {
                            Value::String(s) => Some(s),
                            _ => None,
                        })
                        .collect();
                    if ids.len() != total {
                        errors.push(field_error(field, "ids must be strings", "string_type"));
                    }
                    ids
                }
                Some(_) => {
                    errors.push(field_error(
                        field,
                        "Input should be a valid list",
                        "list_type",
                    ));
                    Vec::new()
                }
                None => {
                    errors.push(field_error(field, "Field required", "missing"));
                    Vec::new()
                }
            };
            let data = match event.remove("data") {
                Some(Value::Object(d)) => d,
                Some(_) => {
                    errors.push(field_error(
                        "data",
                        "Input should be a valid dictionary",
                        "dict_type",
                    ));
                    Map::new()
                }
                None => {
                    errors.push(field_error("data", "Field required", "missing"));
                    Map::new()
                }
            };
            if !errors.is_empty() {
                return Err(errors);
            }
            Ok(match kind.as_str() {
                "user" => Inbound::User {
                    root_ids: ids,
                    data,
                },
                "channel" => Inbound::Channel {
                    channel_ids: ids,
                    data,
                },
                _ => Inbound::Client {
                    client_ids: ids,
                    data,
                },
            })
        }
        other => {
            let mut shown = other.to_owned();
            shown.truncate(64);
            Err(vec![field_error(
                "type",
                format!(
                    "unknown event type {shown:?}: expected connection, walker, user, channel, client or change_user"
                ),
                "union_tag_invalid",
            )])
        }
    }
}

/// `{"type":"connection","data":{client_id, root_id, channel_id}}`.
pub fn connection(client_id: &str, root_id: &str, channel_id: &str) -> Bytes {
    let event = serde_json::json!({
        "type": "connection",
        "data": {"client_id": client_id, "root_id": root_id, "channel_id": channel_id},
    });
    frame::text(event.to_string().as_bytes())
}

/// `{"type":"error","error":[{loc, msg, type}…]}`: structured, never internals.
pub fn error(errors: &[FieldError]) -> Bytes {
    let event = serde_json::json!({"type": "error", "error": errors});
    frame::text(event.to_string().as_bytes())
}

/// A one-problem error frame.
pub fn error_one(loc: &str, msg: &str, kind: &'static str) -> Bytes {
    error(&[field_error(loc, msg, kind)])
}

/// `{"type":"walker","error":..}` as jac-cloud reports walker failures.
pub fn walker_error(message: &str) -> Bytes {
    let event = serde_json::json!({"type": "walker", "error": message});
    frame::text(event.to_string().as_bytes())
}

/// jac's `connection` event: `client_id`, `root_id` (the user, or the public root),
/// `channel_id`.
pub fn connection_event(peer: &Peer<'_>, channel: Option<&str>) -> Bytes {
    let root = peer.user.unwrap_or(PUBLIC_ROOT);
    connection(peer.public_id, root, channel.unwrap_or_default())
}

/// A new id in jac-cloud's format, `"<unix seconds>:<uuid hex>"`.
pub fn new_id(now_ms: u64) -> String {
    format!("{}:{}", now_ms / 1000, uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dec(s: &str) -> Result<Inbound, Vec<FieldError>> {
        decode(&mut s.as_bytes().to_vec())
    }

    fn codes(s: &str) -> Vec<&'static str> {
        dec(s).unwrap_err().into_iter().map(|e| e.kind).collect()
    }

    #[test]
    fn seed_events_decode() {
        assert_eq!(dec(r#"{"type":"connection"}"#), Ok(Inbound::Connection));
        assert_eq!(
            dec(r#"{"type":"user","root_ids":["n::672b"],"data":{"val":1}}"#),
            Ok(Inbound::User {
                root_ids: vec!["n::672b".into()],
                data: json!({"val":1}).as_object().unwrap().clone()
            })
        );
        assert!(matches!(
            dec(
                r#"{"type":"channel","channel_ids":["anystring"],"data":{"type":"chat","data":{}}}"#
            ),
            Ok(Inbound::Channel { .. })
        ));
        assert!(matches!(
            dec(r#"{"type":"client","client_ids":["1:f4"],"data":{}}"#),
            Ok(Inbound::Client { .. })
        ));
        assert_eq!(
            dec(r#"{"type":"change_user","token":"bearer x"}"#),
            Ok(Inbound::ChangeUser {
                token: Some("bearer x".into())
            })
        );
        assert_eq!(
            dec(r#"{"type":"change_user"}"#),
            Ok(Inbound::ChangeUser { token: None })
        );
        assert_eq!(
            dec(r#"{"type":"walker","walker":"w","response":true,"context":{"val":1}}"#),
            Ok(Inbound::Walker {
                walker: "w".into(),
                response: true,
                context: json!({"val":1}).as_object().unwrap().clone(),
                node: None
            })
        );
    }

    #[test]
    fn validation_errors_are_structured() {
        assert_eq!(codes("nope"), vec!["json_invalid"]);
        assert_eq!(codes("[]"), vec!["dict_type"]);
        assert_eq!(codes(r#"{"data":{}}"#), vec!["missing"]);
        assert_eq!(codes(r#"{"type":"dance"}"#), vec!["union_tag_invalid"]);
        assert_eq!(
            codes(r#"{"type":"user","root_ids":[],"data":{}}"#),
            vec!["too_short"]
        );
        assert_eq!(codes(r#"{"type":"user","data":{}}"#), vec!["missing"]);
        assert_eq!(
            codes(r#"{"type":"channel","channel_ids":"a","data":{}}"#),
            vec!["list_type"]
        );
        assert_eq!(
            codes(r#"{"type":"client","client_ids":["a"],"data":[1]}"#),
            vec!["dict_type"]
        );
        assert_eq!(
            codes(r#"{"type":"client","client_ids":["a"]}"#),
            vec!["missing"]
        );
        assert_eq!(
            codes(r#"{"type":"user","root_ids":[],"data":"x"}"#),
            vec!["too_short", "dict_type"]
        );
        assert_eq!(
            codes(r#"{"type":"user","root_ids":["a",1],"data":{}}"#),
            vec!["string_type"]
        );
        assert_eq!(codes(r#"{"type":"walker"}"#), vec!["missing"]);
        assert_eq!(
            codes(r#"{"type":"walker","walker":"w","context":[]}"#),
            vec!["dict_type"]
        );
        assert_eq!(
            codes(r#"{"type":"change_user","token":5}"#),
            vec!["string_type"]
        );
        let frame = error(&dec(r#"{"type":"user"}"#).unwrap_err());
        let start = if frame[1] == 126 { 4 } else { 2 };
        let v: Value = serde_json::from_slice(&frame[start..]).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"][0]["loc"], json!(["root_ids"]));
    }

    #[test]
    fn ids_have_jac_clouds_shape() {
        let id = new_id(1_730_887_348_000);
        let (ts, hex) = id.split_once(':').unwrap();
        assert_eq!(ts, "1730887348");
        assert_eq!(hex.len(), 32);
    }
}
