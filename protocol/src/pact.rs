//! The `pact` dialect: message names, payload shapes and error codes.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Message `type` strings, in one place so that server and SDK cannot drift apart.
pub mod types {
    pub const CONFIG: &str = "config";
    pub const PROFILE: &str = "profile";
    pub const LOGIN: &str = "login";
    pub const SUBSCRIBE: &str = "subscribe";
    pub const UNSUBSCRIBE: &str = "unsubscribe";
    pub const CHAT: &str = "chat";
    pub const POLL: &str = "poll";
    pub const EPHEMERAL_POLL: &str = "ephemeralPoll";
    pub const COUNTER: &str = "counter";
    pub const BROADCAST: &str = "broadcast";
    pub const CLOSE: &str = "close";
    pub const PING: &str = "ping";
    pub const PONG: &str = "pong";
    pub const OK: &str = "ok";
    pub const ERROR: &str = "error";
    pub const PRESENCE: &str = "presence";
    pub const PRESENCE_JOINED: &str = "presence:joined";
    pub const PRESENCE_LEFT: &str = "presence:left";
    pub const PRESENCE_UPDATED: &str = "presence:updated";
    pub const AUTHENTICATE: &str = "authenticate";
    pub const ACK: &str = "ack";
    /// Client → server: replay what was missed since a position (SPEC §5.3).
    pub const RESUME: &str = "resume";
    /// Server → client: the answer to `resume`.
    pub const RESUMED: &str = "resumed";
    /// Both ways: a page of the room's history (SPEC §5.3).
    pub const HISTORY: &str = "history";
    /// Client → server: a fresh token for the connection's user, before (or within the
    /// grace after) its token expires: `{"type":"refresh","data":{"token":".."}}`.
    pub const REFRESH: &str = "refresh";
    /// Server → client: the answer to `refresh`: `{"type":"refreshed","data":{"exp":s|null}}`.
    pub const REFRESHED: &str = "refreshed";
}

/// Error codes carried in `{"type":"error","data":{"code":..,"message":..}}`.
pub mod codes {
    /// The frame was not valid JSON, or not a JSON object with a string `type`.
    pub const INVALID_JSON: &str = "invalid_json";
    /// `type` names no message this server knows.
    pub const UNKNOWN_TYPE: &str = "unknown_type";
    /// `data` has the wrong shape for its `type`.
    pub const INVALID_DATA: &str = "invalid_data";
    /// The message needs a role this connection does not have (e.g. `config` without admin).
    pub const FORBIDDEN: &str = "forbidden";
    /// A binary frame was sent to a text-only dialect.
    pub const UNSUPPORTED_DATA: &str = "unsupported_data";
    /// The connection's token was refused; the connection is anonymous. Also a refused
    /// `refresh` (the connection keeps its user until its grace runs out).
    pub const INVALID_TOKEN: &str = "invalid_token";
    /// The connection's token has expired: `refresh` within the grace period, or the
    /// connection is closed with 4001 "token expired".
    pub const TOKEN_EXPIRED: &str = "token_expired";
    /// `authenticate` failed (wrong key, stale timestamp, or no signing key configured).
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// A configured limit was reached (subscriptions per connection, rooms).
    pub const LIMIT_EXCEEDED: &str = "limit_exceeded";
    /// Too many messages (or presence updates) in too short a time.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// The server is overloaded or the operation could not be completed.
    pub const UNAVAILABLE: &str = "unavailable";
}

/// Role of a connection in its room.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    User,
    Admin,
}

/// The private view of one's own connection, sent as `profile`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Profile {
    /// Per-room incrementing number, unique among the room's connections so far.
    pub suffix: u64,
    /// Every property, private (`_`-prefixed) ones included.
    pub properties: Map<String, Value>,
    /// The user id: the JWT `sub` when authenticated, else a per-connection uuid.
    pub id: String,
    /// Facts about the transport (`ip`, `core`), Pact's `request.cf` counterpart.
    #[serde(rename = "connectionDetails")]
    pub connection_details: Value,
    pub role: Role,
    /// The room's stream position when the profile was sent (SPEC §5.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pos: Option<Pos>,
}

/// A room's stream position: `epoch` changes whenever the room's history is lost or reset;
/// `seq` grows by one per lasting event.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Pos {
    pub epoch: String,
    pub seq: u64,
}

/// `resume` data: the last position the client saw.
pub type ResumeData = Pos;

/// `resumed` data: whether everything missed was replayed (`missed` events, each with its
/// `seq`), and the room's position now. With `recovered: false` the server sent fresh
/// snapshots instead: the client must treat its state as reloaded.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Resumed {
    pub recovered: bool,
    pub missed: u64,
    pub pos: Pos,
}

/// `history` request data: up to `limit` events, before `seq` `before` when given.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct HistoryRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
}

/// `history` answer data: events oldest first, each the frame's JSON as it was sent (with
/// its `seq`), and the room's position.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct HistoryPage {
    pub events: Vec<Value>,
    pub pos: Pos,
}

/// The public view of a sender, attached to `chat` events.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PublicUser {
    pub suffix: u64,
    pub properties: Map<String, Value>,
}

/// A room member as presence reports it: one per connection, public properties only.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Member {
    pub id: String,
    pub suffix: u64,
    pub properties: Map<String, Value>,
}

/// `chat` event data.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ChatEvent {
    pub message: Value,
    pub user: PublicUser,
}

/// `poll` / `ephemeralPoll` event data: answers with at least one vote.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PollStats {
    pub id: String,
    pub stats: std::collections::BTreeMap<String, u64>,
}

/// `counter` event data. `V` is a JSON number; the server writes the exact decimal text.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CounterValue<V = serde_json::Number> {
    pub id: String,
    pub value: V,
}

/// `presence` snapshot data, sent on subscribing to `presence`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PresenceSnapshot {
    pub members: Vec<Member>,
    pub count: usize,
}

/// `presence:joined` / `presence:left` / `presence:updated` data.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PresenceDiff {
    pub member: Member,
    pub count: usize,
}

/// `error` data.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ErrorData {
    pub code: String,
    pub message: String,
}

/// Whether a property key is public (sent to others): not `_`-prefixed and not `subscriptions`.
pub fn is_public_property(key: &str) -> bool {
    !key.starts_with('_') && key != "subscriptions"
}

/// The public subset of a property bag.
pub fn public_properties(all: &Map<String, Value>) -> Map<String, Value> {
    all.iter()
        .filter(|(k, _)| is_public_property(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_reserved_keys_are_not_public() {
        let mut all = Map::new();
        all.insert("name".into(), Value::from("ann"));
        all.insert("_email".into(), Value::from("a@x"));
        all.insert("subscriptions".into(), Value::from(1));
        let public = public_properties(&all);
        assert_eq!(public.len(), 1);
        assert!(public.contains_key("name"));
    }

    #[test]
    fn profile_uses_camel_case_connection_details() {
        let p = Profile {
            suffix: 1,
            properties: Map::new(),
            id: "u".into(),
            connection_details: Value::Null,
            role: Role::Admin,
            pos: None,
        };
        let s = serde_json::to_string(&p).unwrap();
        assert!(s.contains("\"connectionDetails\":null"));
        assert!(s.contains("\"role\":\"admin\""));
    }
}
