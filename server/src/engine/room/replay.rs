//! Resume and history (SPEC §5.3): a member that reconnects gets what it missed from the
//! room's history, in order, or — when that cannot be done exactly — fresh snapshots and
//! `recovered: false`, so it is never silently wrong.
//!
//! The history is the store's: the room asks the shell for a page ([`Read`]) and finishes
//! when the answer comes back ([`Room::read_done`]). Meanwhile the live events for a
//! resuming member are held back, so they reach it after the replay, in `seq` order.

use super::requests::Refusal;
use super::{covers, Context, Room};
use crate::engine::command::ReadResult;
use crate::engine::event::{ErrorCode, Reply, RoomEvent, Sequenced};
use crate::engine::history::{Entry, HistoryQuery, Read, ReadFor};
use crate::engine::member::MemberState;
use crate::engine::outbox::{Audience, Outbox, Scope};
use crate::ids::ConnId;
use serde_json::Value;

impl Room {
    /// A member's `resume` from position (`epoch`, `seq`): answered at once when nothing
    /// was missed or the epoch is not this room's; otherwise a read of the missed events is
    /// asked for and the member's live events are held until it is answered.
    pub(super) fn resume(
        &mut self,
        conn: ConnId,
        reference: &Option<Value>,
        epoch: &str,
        seq: u64,
        context: Context<'_>,
        out: &mut Outbox,
    ) -> Result<(), Refusal> {
        let same_epoch = epoch == &*self.epoch;
        if same_epoch && seq > self.seq {
            let message = format!("position {seq} is ahead of the room (at {})", self.seq);
            return Err((ErrorCode::InvalidData, message));
        }
        if self.members[&conn].replay.is_some() {
            let message = "a resume is already in progress".to_owned();
            return Err((ErrorCode::InvalidData, message));
        }
        let missed = self.seq - seq.min(self.seq);
        if !same_epoch || missed > context.limits.history_size as u64 {
            self.reload(conn, reference.clone(), Vec::new(), out);
            return Ok(());
        }
        if missed == 0 {
            let codec = self.members[&conn].codec;
            let resumed = Reply::Resumed {
                reference: reference.clone(),
                recovered: true,
                missed: 0,
                pos: self.position(),
            };
            out.reply(conn, codec, resumed);
            return Ok(());
        }
        let member = self.members.get_mut(&conn).expect("checked by apply");
        member.replay = Some(Box::default());
        self.replaying += 1;
        out.reads.push(Read {
            room: self.name.clone(),
            conn,
            query: HistoryQuery {
                after: Some(seq),
                before: Some(self.seq + 1),
                ..HistoryQuery::last(missed as usize)
            }
            .within_ttl(context.now_ms, context.limits.history_ttl_ms),
            purpose: ReadFor::Resume {
                reference: reference.clone(),
                after: seq,
                until: self.seq,
            },
        });
        Ok(())
    }

    /// A member's `history` request: up to `limit` events (at most the history size),
    /// before `before` when given.
    pub(super) fn read_history(
        &mut self,
        conn: ConnId,
        reference: &Option<Value>,
        limit: usize,
        before: Option<u64>,
        context: Context<'_>,
        out: &mut Outbox,
    ) {
        let limit = limit.min(context.limits.history_size);
        if limit == 0 || before == Some(0) {
            let codec = self.members[&conn].codec;
            let page = Reply::History {
                reference: reference.clone(),
                events: Vec::new(),
                pos: self.position(),
            };
            out.reply(conn, codec, page);
            return;
        }
        out.reads.push(Read {
            room: self.name.clone(),
            conn,
            query: HistoryQuery {
                before,
                ..HistoryQuery::last(limit)
            }
            .within_ttl(context.now_ms, context.limits.history_ttl_ms),
            purpose: ReadFor::History {
                reference: reference.clone(),
            },
        });
    }

    /// The store answered a read this room asked for.
    pub fn read_done(&mut self, read: Read, result: ReadResult, out: &mut Outbox) {
        let conn = read.conn;
        let Some(member) = self.members.get(&conn) else {
            // It left meanwhile (`leave` let go of its hold).
            return;
        };
        let codec = member.codec;
        match read.purpose {
            ReadFor::History { reference } => {
                let reply = match result {
                    Ok(page) => Reply::History {
                        reference,
                        events: page
                            .events
                            .into_iter()
                            .filter(|e| visible(&e.scope, member))
                            .map(|e| e.event)
                            .collect(),
                        pos: self.position(),
                    },
                    Err(error) => {
                        tracing::warn!(room = %self.name, %error, "a history read failed");
                        Reply::Error {
                            reference,
                            code: ErrorCode::Unavailable,
                            message: "history is unavailable: try again later".into(),
                        }
                    }
                };
                out.reply(conn, codec, reply);
            }
            ReadFor::Resume {
                reference,
                after,
                until,
            } => {
                let member = self.members.get_mut(&conn).expect("checked above");
                let Some(held) = member.replay.take() else {
                    return;
                };
                self.replaying -= 1;
                let page = match result {
                    Ok(page) if self.is_complete(&page.events, page.oldest, after, until) => {
                        page.events
                    }
                    Ok(_) => return self.reload(conn, reference, *held, out),
                    Err(error) => {
                        tracing::warn!(room = %self.name, %error, "a resume's read failed");
                        return self.reload(conn, reference, *held, out);
                    }
                };
                let member = &self.members[&conn];
                let mut missed = 0;
                for entry in page {
                    if covers(&entry.scope, conn, member) {
                        missed += 1;
                        out.event(entry.event, just(codec, conn));
                    }
                }
                for event in *held {
                    out.event(event, just(codec, conn));
                }
                let resumed = Reply::Resumed {
                    reference,
                    recovered: true,
                    missed,
                    pos: self.position(),
                };
                out.reply(conn, codec, resumed);
            }
        }
    }

    /// Whether `events` are exactly this epoch's `after + 1 ..= until`, every one kept.
    fn is_complete(&self, events: &[Entry], oldest: Option<u64>, after: u64, until: u64) -> bool {
        oldest.is_some_and(|oldest| oldest <= after + 1)
            && events.len() as u64 == until - after
            && events.iter().zip(after + 1..).all(|(entry, seq)| {
                entry
                    .event
                    .position
                    .as_ref()
                    .is_some_and(|p| p.seq == seq && p.epoch == self.epoch)
            })
    }

    /// What was missed cannot be replayed: the held events go first (state events among
    /// them are superseded by what follows), then what a fresh subscriber gets — the config
    /// and a snapshot of each subscription — then `recovered: false`.
    fn reload(
        &mut self,
        conn: ConnId,
        reference: Option<Value>,
        held: Vec<Sequenced>,
        out: &mut Outbox,
    ) {
        let member = &self.members[&conn];
        let codec = member.codec;
        for event in held {
            out.event(event, just(codec, conn));
        }
        let config = RoomEvent::Config {
            config: self.config().to_owned(),
        };
        out.reply(conn, codec, Reply::Snapshot(config));
        for topic in member.subscriptions.topics() {
            self.send_snapshot(conn, &topic, out);
        }
        let resumed = Reply::Resumed {
            reference,
            recovered: false,
            missed: 0,
            pos: self.position(),
        };
        out.reply(conn, codec, resumed);
    }

    /// Takes the members in the middle of a replay out of `audience`, holding `event` for
    /// each of them.
    pub(super) fn hold_for_replay(&mut self, audience: &mut Audience, event: &Sequenced) {
        for (_, conns) in audience.groups.iter_mut() {
            conns.retain(
                |conn| match self.members.get_mut(conn).and_then(|m| m.replay.as_mut()) {
                    Some(held) => {
                        held.push(event.clone());
                        false
                    }
                    None => true,
                },
            );
        }
    }
}

/// An audience of one.
fn just(codec: crate::engine::member::CodecId, conn: ConnId) -> Audience {
    let mut audience = Audience::default();
    audience.add(codec, conn);
    audience
}

/// Whether a history page shows an event to `member`: anything but an event targeted at
/// other members (a history page is not limited to the member's subscriptions).
fn visible(scope: &Scope, member: &MemberState) -> bool {
    match scope {
        Scope::Members(ids) => ids.iter().any(|id| id == member.id()),
        _ => true,
    }
}
