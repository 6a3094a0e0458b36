//! Suspended connections (CONN_STATE_SUSPENDED) and when they may go back
//! to a worker.
//!
//! A module that suspends a request owns its connection until it moves the
//! state on (mod_dialup: `ap_process_request_after_handler` from its last
//! timed callback sets WRITE_COMPLETION). httpd 2.4 has no
//! `ap_mpm_resume_suspended` for the module to say when it is done with the
//! connection (trunk's event MPM has it; 2.4's stock event never takes a
//! suspended connection back at all), so the state is all there is to go
//! by, and the module may still be using the connection just after setting
//! it. A moved connection is therefore resumed only once every timed
//! callback that was running when the move was first seen has returned:
//! the one that moved it is among them. A callback started after that
//! cannot be the mover and does not hold it up.

/// The suspended connections of a child and the timed callbacks running
/// there, kept together under one lock so that a move seen is never
/// attributed to a callback set that misses its mover.
pub struct Suspended<T> {
    held: Vec<Held<T>>,
    /// Sequence numbers of the timed callbacks running now.
    running: Vec<u64>,
    /// The sequence number of the next callback to start.
    next: u64,
}

struct Held<T> {
    conn: T,
    /// Seen moved on while the callbacks numbered below this had started:
    /// it waits for those of them still running (None: not seen moved).
    moved_before: Option<u64>,
}

impl<T> Default for Suspended<T> {
    fn default() -> Self {
        Suspended { held: Vec::new(), running: Vec::new(), next: 0 }
    }
}

impl<T> Suspended<T> {
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    pub fn push(&mut self, conn: T) {
        self.held.push(Held { conn, moved_before: None });
    }

    /// A timed callback starts; returns its number for `callback_returned`.
    pub fn callback_started(&mut self) -> u64 {
        let n = self.next;
        self.next += 1;
        self.running.push(n);
        n
    }

    pub fn callback_returned(&mut self, n: u64) {
        if let Some(i) = self.running.iter().position(|&r| r == n) {
            self.running.swap_remove(i);
        }
    }

    /// Takes the connections that `moved` says a module moved on and that
    /// no callback which may have moved them still runs.
    pub fn take_moved(&mut self, moved: impl Fn(&T) -> bool) -> Vec<T> {
        let oldest_running = self.running.iter().copied().min().unwrap_or(u64::MAX);
        let next = self.next;
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.held.len() {
            let h = &mut self.held[i];
            if !moved(&h.conn) {
                // Not moved (or moved back): any earlier sighting is void.
                h.moved_before = None;
                i += 1;
                continue;
            }
            if oldest_running >= *h.moved_before.get_or_insert(next) {
                out.push(self.held.swap_remove(i).conn);
            } else {
                i += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    struct C {
        id: u32,
        moved: Cell<bool>,
    }

    fn conn(id: u32) -> C {
        C { id, moved: Cell::new(false) }
    }

    fn ids(v: Vec<&C>) -> Vec<u32> {
        let mut ids: Vec<u32> = v.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        ids
    }

    fn take(s: &mut Suspended<&C>) -> Vec<u32> {
        ids(s.take_moved(|c| c.moved.get()))
    }

    #[test]
    fn not_moved_stays() {
        let a = conn(1);
        let mut s = Suspended::default();
        s.push(&a);
        assert!(take(&mut s).is_empty());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn moved_with_no_callback_running_goes_at_once() {
        let a = conn(1);
        let mut s = Suspended::default();
        s.push(&a);
        a.moved.set(true);
        assert_eq!(take(&mut s), vec![1]);
        assert!(s.is_empty());
    }

    #[test]
    fn moved_while_its_callback_runs_waits_for_it_to_return() {
        let a = conn(1);
        let mut s = Suspended::default();
        s.push(&a);
        let mover = s.callback_started();
        let other = s.callback_started();
        a.moved.set(true);
        // The other callback returning first must not let it go.
        s.callback_returned(other);
        assert!(take(&mut s).is_empty());
        s.callback_returned(mover);
        assert_eq!(take(&mut s), vec![1]);
    }

    #[test]
    fn callbacks_started_after_the_move_was_seen_do_not_hold_it() {
        let a = conn(1);
        let mut s = Suspended::default();
        s.push(&a);
        let mover = s.callback_started();
        a.moved.set(true);
        assert!(take(&mut s).is_empty());
        let later = s.callback_started();
        s.callback_returned(mover);
        assert_eq!(take(&mut s), vec![1], "the callback started after the sighting cannot have moved it");
        s.callback_returned(later);
    }

    #[test]
    fn moved_back_before_its_callbacks_returned_is_seen_afresh() {
        let a = conn(1);
        let mut s = Suspended::default();
        s.push(&a);
        let first = s.callback_started();
        a.moved.set(true);
        assert!(take(&mut s).is_empty());
        a.moved.set(false);
        assert!(take(&mut s).is_empty());
        s.callback_returned(first);
        let second = s.callback_started();
        a.moved.set(true);
        assert!(take(&mut s).is_empty(), "the second callback may be moving it");
        s.callback_returned(second);
        assert_eq!(take(&mut s), vec![1]);
    }

    #[test]
    fn only_the_moved_ones_go() {
        let (a, b, c) = (conn(1), conn(2), conn(3));
        let mut s = Suspended::default();
        for x in [&a, &b, &c] {
            s.push(x);
        }
        a.moved.set(true);
        c.moved.set(true);
        assert_eq!(take(&mut s), vec![1, 3]);
        assert_eq!(s.len(), 1);
        b.moved.set(true);
        assert_eq!(take(&mut s), vec![2]);
    }
}
