//! What is sent into a room from outside a member's requests, or to members of every
//! dialect at once: emits, publishes, admin broadcasts and config changes.

use super::{Context, Room};
use crate::engine::command::Emit;
use crate::engine::emit::{sample, EmitOutcome, Targets};
use crate::engine::event::{Reply, RoomEvent};
use crate::engine::member::MemberState;
use crate::engine::outbox::{Audience, Change, Op, Outbox, Scope, Send};
use crate::engine::subscriptions::Topic;
use crate::ids::ConnId;
use serde_json::Value;

impl Room {
    /// Sends an emit's payload to its targets, each in its dialect, and keeps it in the
    /// room's history. Returns the connections and ids it went to, or why not.
    pub fn emit(
        &mut self,
        emit: &Emit,
        context: Context<'_>,
        out: &mut Outbox,
    ) -> Result<Vec<String>, EmitOutcome> {
        if context.sequencer {
            return self.emit_everywhere(emit, context, out);
        }
        let members: Vec<(ConnId, &MemberState)> =
            self.members.iter().map(|(c, m)| (*c, m)).collect();
        let (chosen, scope) = match &emit.targets {
            Targets::All => (members, Scope::Room),
            Targets::Random(0) => return Err(EmitOutcome::NoClients),
            Targets::Random(n) if *n > members.len() => {
                return Err(EmitOutcome::NotEnoughClients {
                    wanted: *n,
                    connected: members.len(),
                })
            }
            Targets::Random(n) => {
                let picked: Vec<_> = sample(members.len(), *n, emit.seed)
                    .into_iter()
                    .map(|i| members[i])
                    .collect();
                let ids = picked.iter().map(|(_, m)| m.id().to_owned()).collect();
                (picked, Scope::Members(ids))
            }
            Targets::Ids(ids) => {
                let picked: Vec<_> = members
                    .into_iter()
                    .filter(|(_, m)| ids.iter().any(|id| id == m.id()))
                    .collect();
                if picked.is_empty() {
                    return Err(EmitOutcome::NoClients);
                }
                (picked, Scope::Members(ids.clone()))
            }
        };
        let mut audience = Audience::default();
        for (conn, member) in &chosen {
            audience.add(member.codec, *conn);
        }
        let sent = chosen.iter().map(|(_, m)| m.id().to_owned()).collect();
        let event = RoomEvent::Publish {
            data: emit.payload.clone().into(),
            sender: "server".to_owned(),
            event_id: emit.event_id.clone(),
            requires_ack: emit.require_ack,
        };
        self.fan_out_to(event, audience, scope, context, out);
        Ok(sent)
    }

    /// [`Room::emit`] with a sequencer: the targets are chosen among the members of every
    /// node (this one's and the copy of the others'), and the event is proposed for them.
    fn emit_everywhere(
        &mut self,
        emit: &Emit,
        context: Context<'_>,
        out: &mut Outbox,
    ) -> Result<Vec<String>, EmitOutcome> {
        let mut ids: Vec<String> = self.members.values().map(|m| m.id().to_owned()).collect();
        ids.extend(self.others.values().map(|m| m.id.clone()));
        let (chosen, scope) = match &emit.targets {
            Targets::All => (ids, Scope::Room),
            Targets::Random(0) => return Err(EmitOutcome::NoClients),
            Targets::Random(n) if *n > ids.len() => {
                return Err(EmitOutcome::NotEnoughClients {
                    wanted: *n,
                    connected: ids.len(),
                })
            }
            Targets::Random(n) => {
                let picked: Vec<String> = sample(ids.len(), *n, emit.seed)
                    .into_iter()
                    .map(|i| ids[i].clone())
                    .collect();
                (picked.clone(), Scope::Members(picked))
            }
            Targets::Ids(wanted) => {
                let picked: Vec<String> =
                    ids.into_iter().filter(|id| wanted.contains(id)).collect();
                if picked.is_empty() {
                    return Err(EmitOutcome::NoClients);
                }
                (picked, Scope::Members(wanted.clone()))
            }
        };
        let event = RoomEvent::Publish {
            data: emit.payload.clone().into(),
            sender: "server".to_owned(),
            event_id: emit.event_id.clone(),
            requires_ack: emit.require_ack,
        };
        self.fan_out_to(event, Audience::default(), scope, context, out);
        Ok(chosen)
    }

    /// Stores the config and sends it to every member.
    pub fn set_config(&mut self, config: String, context: Context<'_>, out: &mut Outbox) {
        if context.sequencer {
            let event = RoomEvent::Config {
                config: config.clone(),
            };
            return self.propose(event, Scope::Room, Op::Config(config), context, out);
        }
        out.changes.push(Change::Config {
            room: self.name.clone(),
            config: config.clone(),
        });
        self.config = Some(config.clone());
        self.fan_out(RoomEvent::Config { config }, Scope::Room, context, out);
    }

    /// Sends `{type: kind, data}` to every member, each in its dialect, or only to
    /// subscribers of topic `to`.
    pub fn broadcast(
        &mut self,
        to: Option<&str>,
        kind: String,
        data: Value,
        context: Context<'_>,
        out: &mut Outbox,
    ) {
        let scope = match to {
            None => Scope::Room,
            Some(topic) => {
                let topic = Topic::parse(topic);
                Scope::Topic {
                    kind: topic.kind.into(),
                    id: topic.id,
                }
            }
        };
        let data = data.into();
        self.fan_out(RoomEvent::Broadcast { kind, data }, scope, context, out);
    }

    /// Publishes `data` to every member, each in its dialect; the sender, if a member, is
    /// then told it went out (after its own copy).
    pub fn publish(
        &mut self,
        sender: Option<ConnId>,
        sender_label: String,
        data: Value,
        event_id: String,
        context: Context<'_>,
        out: &mut Outbox,
    ) {
        let event = RoomEvent::Publish {
            data: data.into(),
            sender: sender_label,
            event_id,
            requires_ack: false,
        };
        let proposed = out.proposals.len();
        self.fan_out(event, Scope::Room, context, out);
        if let Some(sender) = sender {
            if let Some(member) = self.members.get(&sender) {
                let published = Send::Reply {
                    to: sender,
                    codec: member.codec,
                    reply: Reply::Published,
                };
                // With a sequencer, after its own copy comes back.
                match out.proposals[proposed..].last_mut() {
                    Some(proposal) => proposal.replies.push(published),
                    None => out.sends.push(published),
                }
            }
        }
    }
}
