//! A coarse per-core timer wheel for connection deadlines (pings, close grace).
//!
//! Thousands of connections each needing a check every ~25 s would mean thousands of OS
//! timers or sleeping tasks; instead each core keeps one wheel of `slots` buckets of `tick_ms`
//! each, and one ticker task advances it. Scheduling and expiry are O(1) per entry; a
//! deadline further away than one turn of the wheel simply stays in its bucket until its
//! turn comes. Sans-IO: time is an argument, so it is tested without sleeping.

#[derive(Debug)]
pub struct Wheel<T> {
    tick_ms: u64,
    slots: Vec<Vec<(u64, T)>>,
    /// The next tick whose bucket has not been examined yet.
    next_tick: u64,
    len: usize,
}

impl<T> Wheel<T> {
    pub fn new(tick_ms: u64, slots: usize, now_ms: u64) -> Self {
        let tick_ms = tick_ms.max(1);
        Wheel {
            tick_ms,
            slots: (0..slots.max(1)).map(|_| Vec::new()).collect(),
            next_tick: now_ms / tick_ms,
            len: 0,
        }
    }

    pub fn tick_ms(&self) -> u64 {
        self.tick_ms
    }

    /// Number of pending entries.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fires `item` at the first tick at or after `at_ms`.
    pub fn schedule(&mut self, at_ms: u64, item: T) {
        // Never into a bucket already passed: it would wait a whole turn.
        let tick = (at_ms.div_ceil(self.tick_ms)).max(self.next_tick);
        let slot = (tick % self.slots.len() as u64) as usize;
        self.slots[slot].push((tick * self.tick_ms, item));
        self.len += 1;
    }

    /// Moves every entry due at or before `now_ms` into `due`, in deadline order per bucket.
    pub fn advance(&mut self, now_ms: u64, due: &mut Vec<T>) {
        let now_tick = now_ms / self.tick_ms;
        let turns = self.slots.len() as u64;
        // Past one full turn every bucket has been examined once: no need to loop further.
        let first = self.next_tick.max((now_tick + 1).saturating_sub(turns));
        for tick in first..=now_tick {
            let slot = &mut self.slots[(tick % turns) as usize];
            let mut i = 0;
            while i < slot.len() {
                if slot[i].0 <= now_ms {
                    due.push(slot.swap_remove(i).1);
                    self.len -= 1;
                } else {
                    i += 1;
                }
            }
        }
        self.next_tick = self.next_tick.max(now_tick + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_at_the_first_tick_after_the_deadline() {
        let mut w = Wheel::new(100, 8, 0);
        w.schedule(250, "a");
        let mut due = Vec::new();
        w.advance(299, &mut due);
        assert!(due.is_empty());
        w.advance(300, &mut due);
        assert_eq!(due, vec!["a"]);
        assert!(w.is_empty());
    }

    #[test]
    fn deadlines_beyond_one_turn_wait_for_their_turn() {
        let mut w = Wheel::new(10, 4, 0);
        w.schedule(100, 1);
        let mut due = Vec::new();
        for now in (0..100).step_by(10) {
            w.advance(now, &mut due);
            assert!(due.is_empty(), "fired early at {now}");
        }
        w.advance(100, &mut due);
        assert_eq!(due, vec![1]);
    }

    #[test]
    fn a_late_advance_catches_up_on_everything() {
        let mut w = Wheel::new(10, 4, 0);
        for at in [5, 15, 25, 35, 45, 1000] {
            w.schedule(at, at);
        }
        let mut due = Vec::new();
        w.advance(500, &mut due);
        due.sort();
        assert_eq!(due, vec![5, 15, 25, 35, 45]);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn scheduling_in_the_past_fires_on_the_next_advance() {
        let mut w = Wheel::new(10, 4, 1000);
        let mut due = Vec::new();
        w.advance(1000, &mut due);
        w.schedule(0, 'x');
        w.advance(1010, &mut due);
        assert_eq!(due, vec!['x']);
    }
}
