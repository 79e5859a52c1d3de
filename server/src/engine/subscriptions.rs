//! A member's subscriptions: `type` (everything of that type) or `type:id` (one id).

use ahash::AHashSet;
use rookery_protocol::pact::types;
use std::borrow::Cow;

/// The kinds the dialects subscribe to: a member's subscription to one of them names it
/// without a string of its own (most members hold one, `chat`: an allocation each, saved).
const KNOWN_KINDS: [&str; 6] = [
    types::CHAT,
    types::POLL,
    types::EPHEMERAL_POLL,
    types::COUNTER,
    types::BROADCAST,
    types::PRESENCE,
];

/// `kind` as a subscription keeps it: borrowed when it is a known kind.
fn kept_kind(kind: &str) -> Cow<'static, str> {
    match KNOWN_KINDS.iter().find(|known| **known == kind) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(kind.to_owned()),
    }
}

/// What a `subscribe`/`unsubscribe` names. The id is everything after the first `:`, so ids
/// may themselves contain `:`; a missing id (or the id `all`) means the whole type, as in Pact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topic {
    pub kind: String,
    pub id: Option<String>,
}

impl Topic {
    pub fn parse(text: &str) -> Topic {
        match text.split_once(':') {
            Some((kind, id)) if id != "all" => Topic {
                kind: kind.to_owned(),
                id: Some(id.to_owned()),
            },
            Some((kind, _)) => Topic {
                kind: kind.to_owned(),
                id: None,
            },
            None => Topic {
                kind: text.to_owned(),
                id: None,
            },
        }
    }
}

#[derive(Default, Debug)]
struct KindSubscription {
    all: bool,
    /// Boxed, and only once an id is subscribed: most members subscribe to whole types, and
    /// an empty set inline would cost every one of them ~50 bytes.
    ids: Option<Box<AHashSet<String>>>,
}

impl KindSubscription {
    fn has_id(&self, id: &str) -> bool {
        self.ids.as_ref().is_some_and(|ids| ids.contains(id))
    }

    fn id_count(&self) -> usize {
        self.ids.as_ref().map_or(0, |ids| ids.len())
    }
}

/// Kept apart from the property bag (unlike seed-era Pact, where `login` wiped them).
///
/// The kinds are a short list searched in order, not a hash map: a member holds a few (the
/// per-connection subscription limit bounds them), and a one-entry hash map costs ~400
/// bytes per member where the list costs ~60. A boxed slice (16 bytes in the member record,
/// not a `Vec`'s 24): kinds are added and dropped rarely, and each change makes it anew.
#[derive(Default, Debug)]
pub struct Subscriptions {
    kinds: Box<[(Cow<'static, str>, KindSubscription)]>,
}

impl Subscriptions {
    fn get(&self, kind: &str) -> Option<&KindSubscription> {
        self.kinds.iter().find(|(k, _)| k == kind).map(|(_, s)| s)
    }

    fn remove(&mut self, kind: &str) {
        let mut kinds = std::mem::take(&mut self.kinds).into_vec();
        kinds.retain(|(k, _)| k != kind);
        self.kinds = kinds.into_boxed_slice();
    }

    pub fn subscribe(&mut self, topic: &Topic) {
        let at = match self.kinds.iter().position(|(k, _)| *k == topic.kind) {
            Some(at) => at,
            None => {
                // One at a time: most members hold one or two kinds.
                let mut kinds = std::mem::take(&mut self.kinds).into_vec();
                kinds.reserve_exact(1);
                kinds.push((kept_kind(&topic.kind), KindSubscription::default()));
                self.kinds = kinds.into_boxed_slice();
                self.kinds.len() - 1
            }
        };
        let entry = &mut self.kinds[at].1;
        match &topic.id {
            None => entry.all = true,
            Some(id) => {
                entry.ids.get_or_insert_default().insert(id.clone());
            }
        }
    }

    /// `type` drops the whole type, its ids included; `type:id` drops only that id.
    pub fn unsubscribe(&mut self, topic: &Topic) {
        match &topic.id {
            None => self.remove(&topic.kind),
            Some(id) => {
                let entry = self.kinds.iter_mut().find(|(k, _)| *k == topic.kind);
                if let Some((_, entry)) = entry {
                    if let Some(ids) = entry.ids.as_mut() {
                        ids.remove(id);
                        if ids.is_empty() {
                            entry.ids = None;
                        }
                    }
                    if !entry.all && entry.ids.is_none() {
                        self.remove(&topic.kind);
                    }
                }
            }
        }
    }

    /// Whether an event of `kind` (about `id`, if it has one) should reach this member.
    pub fn wants(&self, kind: &str, id: Option<&str>) -> bool {
        match self.get(kind) {
            None => false,
            Some(entry) => entry.all || id.is_some_and(|id| entry.has_id(id)),
        }
    }

    /// Whether exactly this topic is already subscribed.
    pub fn has(&self, topic: &Topic) -> bool {
        match (self.get(&topic.kind), &topic.id) {
            (None, _) => false,
            (Some(k), None) => k.all,
            (Some(k), Some(id)) => k.has_id(id),
        }
    }

    /// Every topic subscribed, as `subscribe` named them.
    pub fn topics(&self) -> Vec<Topic> {
        let mut topics = Vec::new();
        for (kind, entry) in self.kinds.iter() {
            if entry.all {
                topics.push(Topic {
                    kind: kind.to_string(),
                    id: None,
                });
            }
            for id in entry.ids.iter().flat_map(|ids| ids.iter()) {
                topics.push(Topic {
                    kind: kind.to_string(),
                    id: Some(id.clone()),
                });
            }
        }
        topics
    }

    pub fn len(&self) -> usize {
        self.kinds
            .iter()
            .map(|(_, k)| k.id_count() + usize::from(k.all))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_everything_after_the_first_colon() {
        assert_eq!(
            Topic::parse("poll:a:b"),
            Topic {
                kind: "poll".into(),
                id: Some("a:b".into())
            }
        );
        assert_eq!(Topic::parse("chat").id, None);
        assert_eq!(Topic::parse("poll:all").id, None);
    }

    #[test]
    fn unsubscribing_a_type_drops_its_ids() {
        let mut s = Subscriptions::default();
        s.subscribe(&Topic::parse("counter:a"));
        s.subscribe(&Topic::parse("counter:b"));
        assert!(s.wants("counter", Some("a")));
        assert!(!s.wants("counter", Some("c")));
        s.unsubscribe(&Topic::parse("counter"));
        assert!(!s.wants("counter", Some("a")));
        assert!(s.is_empty());
    }

    #[test]
    fn unsubscribing_an_id_keeps_the_whole_type_subscription() {
        let mut s = Subscriptions::default();
        s.subscribe(&Topic::parse("poll"));
        s.subscribe(&Topic::parse("poll:x"));
        s.unsubscribe(&Topic::parse("poll:x"));
        assert!(s.wants("poll", Some("x")));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn id_subscription_does_not_receive_untargeted_events() {
        let mut s = Subscriptions::default();
        s.subscribe(&Topic::parse("chat:room2"));
        assert!(!s.wants("chat", None));
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    #[test]
    fn known_kinds_are_kept_without_a_string_and_others_with_one() {
        assert!(matches!(kept_kind("chat"), Cow::Borrowed("chat")));
        assert!(matches!(kept_kind("presence"), Cow::Borrowed("presence")));
        assert!(matches!(kept_kind("chatter"), Cow::Owned(ref k) if k == "chatter"));
        let mut subs = Subscriptions::default();
        subs.subscribe(&Topic::parse("chat"));
        subs.subscribe(&Topic::parse("custom:7"));
        assert!(subs.wants("chat", None));
        assert!(subs.wants("custom", Some("7")));
        assert!(!subs.wants("custom", Some("8")));
        assert_eq!(
            subs.topics(),
            vec![Topic::parse("chat"), Topic::parse("custom:7")]
        );
        subs.unsubscribe(&Topic::parse("chat"));
        assert!(!subs.wants("chat", None));
        assert_eq!(subs.len(), 1);
    }
}
