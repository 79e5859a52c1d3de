//! A per-connection token bucket for inbound messages. Sans-IO: time is an argument.

/// What to do with one inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the rate: handle it.
    Pass,
    /// Over the rate: drop it. `first` is true for the first drop of a run, which is
    /// answered with an error frame (later drops of the run are silent).
    Drop { first: bool },
    /// A run of drops as long as the burst: the connection is abusive; close it.
    Close,
}

/// In `f32`s: every connection holds one (24 bytes, not 40), and a burst or a rate of
/// messages is a small number that an `f32` holds exactly enough.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    /// Tokens per millisecond; 0 disables the limit.
    per_ms: f32,
    burst: f32,
    tokens: f32,
    /// Messages dropped in a row.
    drops: u32,
    last_ms: u64,
}

impl TokenBucket {
    /// `rate` messages per second, at most `burst` at once; `rate == 0` never limits.
    pub fn new(rate: u32, burst: u32, now_ms: u64) -> TokenBucket {
        let burst = burst.max(1) as f32;
        TokenBucket {
            per_ms: rate as f32 / 1000.0,
            burst,
            tokens: burst,
            last_ms: now_ms,
            drops: 0,
        }
    }

    pub fn check(&mut self, now_ms: u64) -> Verdict {
        if self.per_ms == 0.0 {
            return Verdict::Pass;
        }
        let elapsed = now_ms.saturating_sub(self.last_ms) as f32;
        self.last_ms = now_ms.max(self.last_ms);
        self.tokens = (self.tokens + elapsed * self.per_ms).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.drops = 0;
            return Verdict::Pass;
        }
        self.drops += 1;
        if self.drops as f32 >= self.burst {
            Verdict::Close
        } else {
            Verdict::Drop {
                first: self.drops == 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_drops_then_closes() {
        let mut b = TokenBucket::new(10, 3, 0);
        for _ in 0..3 {
            assert_eq!(b.check(0), Verdict::Pass);
        }
        assert_eq!(b.check(0), Verdict::Drop { first: true });
        assert_eq!(b.check(0), Verdict::Drop { first: false });
        assert_eq!(b.check(0), Verdict::Close);
    }

    #[test]
    fn tokens_refill_with_time_and_reset_the_run() {
        let mut b = TokenBucket::new(10, 2, 0);
        b.check(0);
        b.check(0);
        assert_eq!(b.check(0), Verdict::Drop { first: true });
        assert_eq!(b.check(100), Verdict::Pass, "10/s: one token after 100 ms");
        assert_eq!(b.check(100), Verdict::Drop { first: true }, "a new run");
        assert_eq!(b.check(10_000), Verdict::Pass);
        assert_eq!(
            b.check(10_000),
            Verdict::Pass,
            "refill is capped at the burst"
        );
        assert_eq!(b.check(10_000), Verdict::Drop { first: true });
    }

    #[test]
    fn zero_rate_never_limits() {
        let mut b = TokenBucket::new(0, 1, 0);
        for _ in 0..1000 {
            assert_eq!(b.check(0), Verdict::Pass);
        }
    }
}
