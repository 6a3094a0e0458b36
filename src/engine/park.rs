//! Where connections wait and how they come back: parking in a pollset
//! with a deadline, taking a ready one out, the task queue, deferred
//! closes, the suspended set, and modules' timed callbacks.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::ffi::{log, score, sys};
use crate::poller::{BELL, Event, Events, HALT, Interest};
use crate::suspend::Suspended;
use crate::timers::{Token, Wait};

use super::conn::{Conn, Waiting};
use super::runtime::Runtime;
use super::task::{Callback, Ready, Task};

impl Runtime {
    /// Parks a connection in the pollset with a deadline. Arming happens
    /// under the parked-set lock so that a worker woken by its event (or
    /// the listener) can never take the connection before it is armed.
    pub fn park(&self, mut item: Waiting, wait: Wait, timeout: Duration, since: Instant, interest: Interest) {
        let fd = item.fd();
        let registered = item.mark_registered(wait);
        let deadline = since + timeout;
        let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        let token = parked.insert(item, wait, timeout, since);
        // Lingering closes wait in the listener's set: it drains them.
        let armed = if wait == Wait::Linger {
            self.poller.arm(fd, token, interest, registered)
        } else {
            self.conns.arm(fd, token, interest, registered)
        };
        if let Err(e) = armed {
            let item = parked.remove(token).map(|(c, _, _)| c);
            drop(parked);
            log::error(sys::APLOG_ERR, e.raw_os_error().unwrap_or(0), "AH03093: pollset add failure, closing connection");
            match item {
                Some(Waiting::Conn(c)) => c.close(self),
                Some(Waiting::New(n)) => n.close(self),
                None => {}
            }
            return;
        }
        self.publish(&parked);
        drop(parked);
        self.wake_for(deadline);
    }

    /// Wakes the listener if it sleeps past `deadline`.
    pub(super) fn wake_for(&self, deadline: Instant) {
        let at = deadline.saturating_duration_since(self.epoch).as_nanos() as u64;
        if at < self.next_wakeup.load(Ordering::SeqCst) {
            self.poller.wake();
        }
    }

    /// Queues a task and wakes an idle worker for it.
    pub fn push(&self, task: Task) {
        self.queue.push(task);
        self.conns.ring();
    }

    /// Takes a parked connection whose event fired, if it is still parked:
    /// the listener may have taken it first (timeout, shedding,
    /// dehydration), and then the event is stale.
    pub fn take_ready(&self, token: Token, closed: bool) -> Option<Ready> {
        let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        let (item, wait, since) = parked.remove(token)?;
        self.publish(&parked);
        Some(Ready { item, wait, since, closed })
    }

    /// The parked connection that has been ready longest, if any, taken
    /// without waiting.
    pub fn ready_now(&self) -> Option<Ready> {
        let mut events = Events::with_capacity(1);
        self.conns.wait(&mut events, Some(Duration::ZERO)).ok()?;
        let ev = events.iter().next()?;
        self.ready_from(ev)
    }

    /// The connection behind an event of the workers' pollset, for whoever
    /// collects events there for others (not to serve themselves).
    pub fn ready_from(&self, ev: Event) -> Option<Ready> {
        match ev.token {
            // Not ours: a worker may have just gone idle and wait for it.
            BELL => {
                self.conns.ring();
                None
            }
            HALT => None,
            t => self.take_ready(Token(t), ev.closed),
        }
    }

    /// Gives a parked connection to a worker for (short) lingering close.
    pub fn shutdown(&self, conn: Box<Conn>) {
        conn.trace(sys::APLOG_TRACE6, "deferring close");
        self.shutdowns_queued.fetch_add(1, Ordering::AcqRel);
        self.push(Task::Shutdown(conn));
    }

    /// A module suspended `conn`. A timed callback may already have moved
    /// it on while its worker was still getting here (suspend_connection
    /// hooks), with no later event to notice: that is looked at now.
    pub fn suspend(&self, conn: Box<Conn>) {
        self.with_suspended(|s| s.push(conn));
    }

    /// A timed callback starts: connections it moves on wait for its
    /// `callback_returned`.
    pub fn callback_started(&self) -> u64 {
        // No look at the suspended set here: a move seen now would have
        // to wait for this callback too, which cannot have made it.
        self.suspended.lock().unwrap_or_else(|e| e.into_inner()).callback_started()
    }

    /// Resumes what the callback numbered `n` (and any other mover that
    /// is done) moved on.
    pub fn callback_returned(&self, n: u64) {
        self.with_suspended(|s| s.callback_returned(n));
    }

    /// Resumes suspended connections moved on outside timed callbacks (a
    /// module's own thread, another connection's request): the listener
    /// looks every SUSPENDED_RECHECK while any is suspended.
    pub fn resume_moved(&self) {
        if self.has_suspended() {
            self.with_suspended(|_| ());
        }
    }

    pub fn has_suspended(&self) -> bool {
        self.suspended_count() > 0
    }

    pub fn suspended_count(&self) -> u32 {
        self.suspended_count.load(Ordering::Acquire)
    }

    /// Runs `f` on the suspended set, then queues every connection that
    /// may go back to a worker now (see `crate::suspend`).
    fn with_suspended(&self, f: impl FnOnce(&mut Suspended<Box<Conn>>)) {
        let moved = {
            let mut s = self.suspended.lock().unwrap_or_else(|e| e.into_inner());
            let before = s.len();
            f(&mut s);
            let moved = if s.is_empty() { Vec::new() } else { s.take_moved(|c| !c.still_suspended()) };
            if s.len() != before {
                self.suspended_count.store(s.len() as u32, Ordering::Release);
                score::set_suspended(self.slot, s.len() as u32);
            }
            moved
        };
        for conn in moved {
            self.push(Task::Resume(conn));
        }
    }

    /// `ap_mpm_register_timed_callback`: runs `cb` on a worker after `delay`.
    pub fn register_callback(&self, delay: Duration, cb: Callback) {
        let at = Instant::now() + delay;
        self.schedule.lock().unwrap_or_else(|e| e.into_inner()).push(at, cb);
        self.wake_for(at);
    }
}
