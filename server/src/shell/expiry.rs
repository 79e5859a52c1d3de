//! Token expiry of open connections: a connection whose token has an `exp` is told
//! `token_expired` when it passes and closed (4001 "token expired") unless it presents a
//! fresh token within `--token-grace-ms`.
//!
//! The deadlines live on a timer wheel of the core's, advanced by the connection ticker
//! (`ticker.rs`) with the ping wheel: no timer or task per connection, and a connection
//! whose token has no `exp` (or that has no token) costs nothing — it is in neither the
//! wheel nor the map. Sans-IO: time is an argument; the shell carries out what [`due`]
//! returns.
//!
//! [`due`]: TokenClocks::due

use crate::ids::ConnId;
use crate::wheel::Wheel;
use ahash::AHashMap;

/// Where one connection's token stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Clock {
    /// Valid until `exp_ms`.
    Valid { exp_ms: u64 },
    /// Expired and told so; closed at `close_ms` unless refreshed.
    Expired { close_ms: u64 },
}

/// What is due for a connection now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Its token just expired: tell it, it has until `close_ms`.
    Tell { close_ms: u64 },
    /// Its grace ran out: close it.
    Close,
}

/// One core's token deadlines.
pub struct TokenClocks {
    wheel: Wheel<ConnId>,
    clocks: AHashMap<ConnId, Clock>,
    grace_ms: u64,
}

impl TokenClocks {
    pub fn new(tick_ms: u64, slots: usize, now_ms: u64, grace_ms: u64) -> TokenClocks {
        TokenClocks {
            wheel: Wheel::new(tick_ms, slots, now_ms),
            clocks: AHashMap::new(),
            grace_ms,
        }
    }

    /// The connection's token now ends at `exp_ms` (`None`: its rights never end, and it
    /// is forgotten). A refresh during the grace cancels the close.
    pub fn watch(&mut self, conn: ConnId, exp_ms: Option<u64>) {
        match exp_ms {
            None => {
                self.clocks.remove(&conn);
            }
            Some(exp_ms) => {
                self.clocks.insert(conn, Clock::Valid { exp_ms });
                self.wheel.schedule(exp_ms, conn);
            }
        }
    }

    /// Forgets a connection that is gone (its entries on the wheel then fire for nothing).
    pub fn forget(&mut self, conn: ConnId) {
        self.clocks.remove(&conn);
    }

    /// Connections watched.
    pub fn len(&self) -> usize {
        self.clocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clocks.is_empty()
    }

    /// Moves what is due at `now_ms` into `out`. An entry whose connection was refreshed
    /// (or forgotten) since it was scheduled is stale and skipped: every state has an
    /// entry of its own at its own deadline.
    pub fn due(&mut self, now_ms: u64, fired: &mut Vec<ConnId>, out: &mut Vec<(ConnId, Due)>) {
        self.wheel.advance(now_ms, fired);
        for conn in fired.drain(..) {
            match self.clocks.get(&conn).copied() {
                Some(Clock::Valid { exp_ms }) if exp_ms <= now_ms => {
                    let close_ms = now_ms + self.grace_ms;
                    self.clocks.insert(conn, Clock::Expired { close_ms });
                    self.wheel.schedule(close_ms, conn);
                    out.push((conn, Due::Tell { close_ms }));
                }
                Some(Clock::Expired { close_ms }) if close_ms <= now_ms => {
                    self.clocks.remove(&conn);
                    out.push((conn, Due::Close));
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(clocks: &mut TokenClocks, now: u64) -> Vec<(ConnId, Due)> {
        let (mut fired, mut out) = (Vec::new(), Vec::new());
        clocks.due(now, &mut fired, &mut out);
        out
    }

    #[test]
    fn expiry_tells_then_closes_after_the_grace() {
        let a = ConnId::new(0, 1);
        let mut c = TokenClocks::new(10, 8, 0, 100);
        c.watch(a, Some(50));
        assert!(run(&mut c, 40).is_empty());
        assert_eq!(run(&mut c, 50), vec![(a, Due::Tell { close_ms: 150 })]);
        assert!(run(&mut c, 140).is_empty());
        assert_eq!(run(&mut c, 150), vec![(a, Due::Close)]);
        assert!(c.is_empty());
        assert!(run(&mut c, 1000).is_empty());
    }

    #[test]
    fn a_refresh_within_the_grace_cancels_the_close() {
        let a = ConnId::new(0, 1);
        let mut c = TokenClocks::new(10, 8, 0, 100);
        c.watch(a, Some(50));
        assert_eq!(run(&mut c, 50).len(), 1);
        c.watch(a, Some(500));
        assert!(run(&mut c, 150).is_empty(), "the close entry is stale");
        assert_eq!(run(&mut c, 500), vec![(a, Due::Tell { close_ms: 600 })]);
    }

    #[test]
    fn a_refresh_before_expiry_moves_it_and_none_forgets() {
        let (a, b) = (ConnId::new(0, 1), ConnId::new(0, 2));
        let mut c = TokenClocks::new(10, 8, 0, 100);
        c.watch(a, Some(50));
        c.watch(a, Some(300));
        c.watch(b, Some(60));
        c.watch(b, None);
        assert!(run(&mut c, 100).is_empty());
        assert_eq!(run(&mut c, 300), vec![(a, Due::Tell { close_ms: 400 })]);
        c.forget(a);
        assert!(run(&mut c, 400).is_empty());
        assert!(c.is_empty());
    }
}
