//! The echo endpoint (`--echo-path`, off unless configured): every text and binary message
//! is sent back whole, with the same opcode, and nothing else happens.
//!
//! It exists for conformance runs (the Autobahn|Testsuite's fuzzing client wants an echo
//! server): its connections take exactly the path of a room connection — the same reads,
//! frame following, protocol context, limits, send queue and writes — and only what a whole
//! message leads to differs. It has no rooms, no greeting and no error frames; the
//! heartbeat is the default protocol ping.

use crate::dialect::session::{Action, Actions, Session};
use crate::dialect::{Peer, Refusal, Wire};
use crate::engine::{Reply, Sequenced};
use crate::frame;
use crate::http::Request;
use crate::ids::random_token;
use bytes::Bytes;

pub struct Echo;

impl crate::dialect::Protocol for Echo {
    /// No fixed endpoint: the router serves `--echo-path` with this dialect, when set.
    fn endpoint(&self, _segments: &[&str], _req: &Request, _now_ms: u64) -> Option<Option<String>> {
        None
    }

    fn on_text(&self, _session: &Session<'_>, text: &mut [u8], out: &mut Actions) {
        out.push(Action::Send(frame::text(text)));
    }

    fn takes_binary(&self) -> bool {
        true
    }

    fn on_binary(&self, _session: &Session<'_>, data: &[u8], out: &mut Actions) {
        out.push(Action::Send(frame::binary(data)));
    }

    /// Never in a room: no event reaches it.
    fn event(&self, _event: &Sequenced) -> Option<Wire> {
        None
    }

    fn reply(&self, _reply: &Reply) -> Option<Wire> {
        None
    }

    fn new_public_id(&self, _user: Option<&str>, _now_ms: u64) -> String {
        random_token(16)
    }

    /// An echo has no error frame: a message over the rate is dropped silently.
    fn refusal(&self, _refusal: Refusal, _peer: &Peer<'_>) -> Option<Bytes> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Verifier;
    use crate::config::Config;
    use crate::dialect::{Dialect, Protocol};
    use crate::ids::ConnId;

    fn session_with<T>(f: impl FnOnce(&Session<'_>) -> T) -> T {
        let config = Config::local();
        let verifier = Verifier::new(None);
        f(&Session {
            conn: ConnId(1),
            peer: Peer {
                public_id: "p",
                user: None,
                latency_ms: 0,
            },
            rooms: &[],
            now_ms: 0,
            config: &config,
            verifier: &verifier,
            keys_awaited: false,
        })
    }

    fn sent(out: &Actions) -> Vec<Bytes> {
        out.iter()
            .map(|a| match a {
                Action::Send(frame) => frame.clone(),
                other => panic!("only sends expected, got {other:?}"),
            })
            .collect()
    }

    #[test]
    fn text_and_binary_come_back_whole_with_their_opcode() {
        let echo = Dialect::Echo.protocol();
        let mut out = Actions::new();
        session_with(|s| {
            echo.on_text(s, &mut b"not json".to_vec(), &mut out);
            echo.on_binary(s, &[0, 1, 0xff], &mut out);
        });
        assert_eq!(
            sent(&out),
            vec![frame::text(b"not json"), frame::binary(&[0, 1, 0xff])]
        );
        assert!(echo.takes_binary());
    }

    #[test]
    fn it_is_no_fixed_endpoint() {
        let req = Request {
            method: "GET".into(),
            path: "/echo".into(),
            query: Vec::new(),
            headers: Vec::new(),
            version: 1,
            body: Vec::new(),
        };
        assert_eq!(Echo.endpoint(&["echo"], &req, 0), None);
        assert_eq!(Dialect::of_endpoint(&["echo"], &req, 0), None);
    }
}
