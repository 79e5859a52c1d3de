//! One connection's membership of a room: who it is, what it subscribed to, and what its
//! protocol wants of the room ([`Traits`]), told by its dialect when it joins.

use super::event::Sequenced;
use super::subscriptions::Subscriptions;
use rookery_protocol::pact::{public_properties, Member, Pos, Profile, Role};
use serde_json::{Map, Value};
use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
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

/// A room's key for a member's user: the member's [`Identity`], compared and hashed by
/// [`Identity::user_id`] (looked up by a `&str` of it). The identity is shared with the
/// membership already, so counting a room's users allocates no string per member.
#[derive(Debug, Clone)]
pub struct UserKey(pub Arc<Identity>);

impl PartialEq for UserKey {
    fn eq(&self, other: &UserKey) -> bool {
        self.0.user_id() == other.0.user_id()
    }
}

impl Eq for UserKey {}

impl Hash for UserKey {
    /// As `str` hashes, so that a `&str` finds the key ([`Borrow`]).
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.user_id().hash(state)
    }
}

impl Borrow<str> for UserKey {
    fn borrow(&self) -> &str {
        self.0.user_id()
    }
}

/// Where a connection came from: Pact's `profile.connectionDetails` (`{"ip", "core"}`),
/// kept as values (20 bytes in the member record) rather than as JSON text (a string of
/// ~30 bytes and its allocation per member).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionDetails {
    /// The peer's address.
    pub ip: IpAddr,
    /// The core that holds the connection.
    pub core: u16,
}

impl ConnectionDetails {
    /// As Pact's profile shows them.
    pub fn to_json(self) -> Value {
        serde_json::json!({"ip": self.ip.to_string(), "core": self.core})
    }
}

/// Who is joining: decided by the connection's core (identity, transport facts).
#[derive(Debug, Clone)]
pub struct Joiner {
    pub identity: Arc<Identity>,
    pub codec: CodecId,
    pub traits: Traits,
    pub role: Role,
    /// Pact's `profile.connectionDetails` (none for a join made after the connect: the
    /// profile shows `null`).
    pub details: Option<ConnectionDetails>,
    /// Why the connection's token was refused, told right after the greeting.
    pub token_error: Option<String>,
}

/// One connection's membership.
///
/// Kept small: a room holds one per member in B-tree nodes that ascending connection ids
/// leave about half full, so each byte here costs about two per member. What few members
/// use (properties, the presence-update window) is boxed in [`Extra`], made on first use;
/// `bench/RESULTS.md` ("where an idle connection's bytes go") has the accounting.
#[derive(Debug)]
pub struct MemberState {
    pub identity: Arc<Identity>,
    pub subscriptions: Subscriptions,
    pub suffix: u64,
    extra: Option<Box<Extra>>,
    /// While a `resume` waits for the store: the live events held back for after the
    /// replay (boxed: most members never resume).
    pub replay: Option<Box<Vec<Sequenced>>>,
    details: Option<ConnectionDetails>,
    pub codec: CodecId,
    pub traits: Traits,
    pub role: Role,
}

/// What a member has once it sets properties or updates its presence.
#[derive(Debug, Default)]
struct Extra {
    properties: Map<String, Value>,
    /// Start of the current presence-update window, and updates made in it.
    presence_window_start: u64,
    presence_updates: u32,
}

/// The properties of a member that set none.
static NO_PROPERTIES: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

impl MemberState {
    pub fn new(joiner: &Joiner, suffix: u64) -> MemberState {
        MemberState {
            identity: joiner.identity.clone(),
            subscriptions: Subscriptions::default(),
            suffix,
            extra: None,
            replay: None,
            details: joiner.details,
            codec: joiner.codec,
            traits: joiner.traits,
            role: joiner.role,
        }
    }

    /// The member's properties (Pact `login`, websockets.do `PRESENCE`).
    pub fn properties(&self) -> &Map<String, Value> {
        self.extra
            .as_ref()
            .map_or(&NO_PROPERTIES, |e| &e.properties)
    }

    /// Replaces the member's properties.
    pub fn set_properties(&mut self, properties: Map<String, Value>) {
        self.extra.get_or_insert_default().properties = properties;
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
            properties: public_properties(self.properties()),
        }
    }

    /// The member as it sees itself, with its room's position.
    pub fn profile(&self, pos: Pos) -> Box<Profile> {
        Box::new(Profile {
            suffix: self.suffix,
            properties: self.properties().clone(),
            id: self.id().to_owned(),
            connection_details: self.details.map_or(Value::Null, ConnectionDetails::to_json),
            role: self.role,
            pos: Some(pos),
        })
    }

    /// Counts a property/presence update at `now_ms`; false once the window's allowance
    /// (`allowed` per `window_ms`) is used up.
    pub fn take_update(&mut self, now_ms: u64, allowed: u32, window_ms: u64) -> bool {
        let extra = self.extra.get_or_insert_default();
        if now_ms >= extra.presence_window_start + window_ms {
            extra.presence_window_start = now_ms;
            extra.presence_updates = 0;
        }
        if extra.presence_updates >= allowed {
            return false;
        }
        extra.presence_updates += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ahash::AHashMap;

    fn identity(public_id: &str, user: Option<&str>) -> Arc<Identity> {
        Arc::new(Identity {
            public_id: public_id.into(),
            user: user.map(Into::into),
        })
    }

    fn member(details: Option<ConnectionDetails>) -> MemberState {
        let joiner = Joiner {
            identity: identity("c1", Some("alice")),
            codec: CodecId(0),
            traits: Traits::default(),
            role: Role::User,
            details,
            token_error: None,
        };
        MemberState::new(&joiner, 7)
    }

    fn pos() -> Pos {
        Pos {
            epoch: "e".into(),
            seq: 1,
        }
    }

    #[test]
    fn a_user_key_is_the_user_whatever_the_connection() {
        let mut users: AHashMap<UserKey, u32> = AHashMap::new();
        *users
            .entry(UserKey(identity("c1", Some("alice"))))
            .or_insert(0) += 1;
        *users
            .entry(UserKey(identity("c2", Some("alice"))))
            .or_insert(0) += 1;
        *users.entry(UserKey(identity("c3", None))).or_insert(0) += 1;
        assert_eq!(users.len(), 2, "two connections of alice, one anonymous");
        assert_eq!(users.get("alice"), Some(&2), "found by the user id's text");
        assert_eq!(
            users.get("c3"),
            Some(&1),
            "an anonymous user is its connection"
        );
        assert_eq!(
            users.get("c1"),
            None,
            "alice's connection ids are not users"
        );
    }

    #[test]
    fn the_profile_shows_the_connection_details_as_pact_does() {
        let details = ConnectionDetails {
            ip: "127.0.0.1".parse().unwrap(),
            core: 1,
        };
        let with = member(Some(details)).profile(pos());
        assert_eq!(
            with.connection_details,
            serde_json::json!({"ip": "127.0.0.1", "core": 1})
        );
        let v6 = ConnectionDetails {
            ip: "::1".parse().unwrap(),
            core: 0,
        };
        assert_eq!(v6.to_json()["ip"], "::1");
        let without = member(None).profile(pos());
        assert_eq!(without.connection_details, Value::Null);
    }

    #[test]
    fn properties_and_the_update_window_live_apart_until_used() {
        let mut m = member(None);
        assert!(m.properties().is_empty());
        assert!(
            m.extra.is_none(),
            "nothing boxed for a member that set nothing"
        );
        let mut props = Map::new();
        props.insert("name".into(), "a".into());
        m.set_properties(props.clone());
        assert_eq!(m.properties(), &props);
        assert_eq!(m.public().suffix, 7);
        // Two updates per 1000 ms: the third is refused until the window turns.
        assert!(m.take_update(5, 2, 1000));
        assert!(m.take_update(6, 2, 1000));
        assert!(!m.take_update(999, 2, 1000));
        assert!(m.take_update(1005, 2, 1000));
        assert_eq!(
            m.properties(),
            &props,
            "the window leaves the properties alone"
        );
    }

    /// The member record is what a room holds per member, about twice over in B-tree
    /// nodes: a field added here shows up in every idle connection's cost.
    #[test]
    fn a_member_record_stays_small() {
        let size = std::mem::size_of::<MemberState>();
        assert!(size <= 80, "MemberState grew to {size} B");
    }
}
