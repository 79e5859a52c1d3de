//! One connection's membership of a room: who it is, what it subscribed to, and what its
//! protocol wants of the room ([`Traits`]), told by its dialect when it joins.

use super::event::Sequenced;
use super::subscriptions::Subscriptions;
use rookery_protocol::pact::{public_properties, Member, Pos, Profile, Role};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Which codec encodes a member's frames: a tag the shell gives each joiner. The engine only
/// groups recipients by it, so an event is encoded once per codec present.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CodecId(pub u8);

/// What a member's protocol wants of the room beyond what every member gets. Each dialect
/// declares its traits; the engine follows them without knowing the dialect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traits {
    /// Sees every member join, leave and change (but its own join) without subscribing
    /// (websockets.do's `PRESENCE:*` events).
    pub always_sees_presence: bool,
    /// Is greeted with the list of the members already there (websockets.do's `CONNECTED`).
    /// Off for the others: listing a large room for every joiner costs O(members).
    pub greeted_with_members: bool,
    /// Stays connected when the room refuses it, told by a reply (Lambda's `joinFailure`),
    /// instead of being closed with 1013.
    pub stays_when_refused: bool,
}

/// Who a connection is: one value shared by the connection (on its core) and its
/// memberships (on their rooms' cores). A connection that changes identity (Lambda's `join`,
/// jac's `change_user`) gets a new one; a membership keeps the one it joined with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The public id: Pact's `profile.id`, websockets.do's `clientID`, jac's `client_id`,
    /// Lambda's `senderId`: what admin calls and targeted sends name.
    pub public_id: String,
    /// The authenticated user (the JWT `sub`), if any.
    pub user: Option<String>,
}

impl Identity {
    /// Whom votes count for: the authenticated user, else the connection itself.
    pub fn user_id(&self) -> &str {
        self.user.as_deref().unwrap_or(&self.public_id)
    }
}

/// Who is joining: decided by the connection's core (identity, transport facts).
#[derive(Debug, Clone)]
pub struct Joiner {
    pub identity: Arc<Identity>,
    pub codec: CodecId,
    pub traits: Traits,
    pub role: Role,
    /// Pact's `profile.connectionDetails`.
    pub details: Value,
    /// Why the connection's token was refused, told right after the greeting.
    pub token_error: Option<String>,
}

/// One connection's membership.
#[derive(Debug)]
pub struct MemberState {
    pub identity: Arc<Identity>,
    pub codec: CodecId,
    pub traits: Traits,
    pub suffix: u64,
    pub properties: Map<String, Value>,
    pub subscriptions: Subscriptions,
    pub role: Role,
    /// The joiner's connection details as JSON text: a parsed map costs ~600 bytes per
    /// member (a B-tree node), the text ~40, and it is read only for `profile`.
    details: Box<str>,
    /// Start of the current presence-update window, and updates made in it.
    presence_window_start: u64,
    presence_updates: u32,
    /// While a `resume` waits for the store: the live events held back for after the
    /// replay (boxed: most members never resume).
    pub replay: Option<Box<Vec<Sequenced>>>,
}

impl MemberState {
    pub fn new(joiner: &Joiner, suffix: u64) -> MemberState {
        MemberState {
            identity: joiner.identity.clone(),
            codec: joiner.codec,
            traits: joiner.traits,
            suffix,
            properties: Map::new(),
            subscriptions: Subscriptions::default(),
            role: joiner.role,
            details: joiner.details.to_string().into_boxed_str(),
            presence_window_start: 0,
            presence_updates: 0,
            replay: None,
        }
    }

    /// The public id.
    pub fn id(&self) -> &str {
        &self.identity.public_id
    }

    /// Whom votes count for.
    pub fn user_id(&self) -> &str {
        self.identity.user_id()
    }

    /// The member as others see it.
    pub fn public(&self) -> Member {
        Member {
            id: self.id().to_owned(),
            suffix: self.suffix,
            properties: public_properties(&self.properties),
        }
    }

    /// The member as it sees itself, with its room's position.
    pub fn profile(&self, pos: Pos) -> Box<Profile> {
        Box::new(Profile {
            suffix: self.suffix,
            properties: self.properties.clone(),
            id: self.id().to_owned(),
            connection_details: serde_json::from_str(&self.details).unwrap_or(Value::Null),
            role: self.role,
            pos: Some(pos),
        })
    }

    /// Counts a property/presence update at `now_ms`; false once the window's allowance
    /// (`allowed` per `window_ms`) is used up.
    pub fn take_update(&mut self, now_ms: u64, allowed: u32, window_ms: u64) -> bool {
        if now_ms >= self.presence_window_start + window_ms {
            self.presence_window_start = now_ms;
            self.presence_updates = 0;
        }
        if self.presence_updates >= allowed {
            return false;
        }
        self.presence_updates += 1;
        true
    }
}
