//! The listener thread: accepts connections, watches parked ones, enforces
//! their deadlines, and hands ready work to the workers. It never waits for
//! a worker, so timeouts keep running however busy the workers are.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::child::{Mode, Runtime};
use crate::connection::{self, Task};
use crate::ffi::socket::{Accepted, Listener};
use crate::ffi::{httpd, log, score, sys};
use crate::poller::{Events, LISTENER_BASE, WAKER};
use crate::timers::{Token, Wait};

/// How long accepting pauses after running out of descriptors or memory.
const SHORTAGE_BACKOFF: Duration = Duration::from_millis(500);

struct Accepting<'a> {
    listeners: &'a [Listener],
    /// Registered in the pollset.
    on: bool,
    closed: bool,
    backoff_until: Option<Instant>,
    shortage_logged: bool,
}

impl Accepting<'_> {
    fn set(&mut self, rt: &Runtime, on: bool) {
        if on == self.on || self.closed {
            return;
        }
        for (i, l) in self.listeners.iter().enumerate() {
            let r = if on { rt.poller.add_listener(l.fd(), i) } else { rt.poller.remove(l.fd()) };
            if let Err(e) = r {
                log::error(sys::APLOG_ERR, e.raw_os_error().unwrap_or(0), "listener pollset update failed");
            }
        }
        self.on = on;
        score::set_not_accepting(rt.slot, i8::from(!on));
    }

    /// Stops accepting for good: closes this bucket's listening sockets.
    fn close(&mut self, rt: &Runtime) {
        self.set(rt, false);
        if !self.closed {
            self.closed = true;
            httpd::close_listeners(Some(self.listeners));
        }
    }
}

pub fn run(rt: &Runtime, listeners: &[Listener]) {
    for l in listeners {
        l.set_nonblocking();
    }
    let mut acc = Accepting { listeners, on: false, closed: false, backoff_until: None, shortage_logged: false };
    acc.set(rt, true);
    let mut events = Events::with_capacity(256);
    let mut stop_seen = false;

    loop {
        match rt.mode() {
            Mode::Ungraceful => break,
            Mode::Graceful => {
                if !stop_seen {
                    stop_seen = true;
                    begin_graceful(rt, &mut acc);
                }
                if rt.connections.load(Ordering::Acquire) == 0 {
                    break;
                }
            }
            Mode::Running => {}
        }

        let now = Instant::now();
        let mut deadline = rt.parked.lock().unwrap_or_else(|e| e.into_inner()).next_expiry();
        if let Some(b) = acc.backoff_until {
            deadline = Some(deadline.map_or(b, |d| d.min(b)));
        }
        rt.next_wakeup.store(
            deadline.map_or(u64::MAX, |d| d.saturating_duration_since(rt.epoch).as_nanos() as u64),
            Ordering::Release,
        );
        let timeout = deadline.map(|d| d.saturating_duration_since(now));
        if let Err(e) = rt.poller.wait(&mut events, timeout) {
            log::error(sys::APLOG_CRIT, e.raw_os_error().unwrap_or(0),
                "epoll_wait failed. Attempting to shutdown process gracefully");
            stop_child(rt, Mode::Graceful);
            continue;
        }

        for ev in events.iter() {
            match ev.token {
                WAKER => rt.poller.reset_waker(),
                t if t >= LISTENER_BASE => {
                    if let Some(l) = listeners.get((t - LISTENER_BASE) as usize) {
                        accept_one(rt, &mut acc, *l);
                    }
                }
                t => dispatch(rt, Token(t)),
            }
        }

        expire(rt);
        if let Some(b) = acc.backoff_until {
            if Instant::now() >= b {
                acc.backoff_until = None;
            }
        }
        let paused = rt.accept_paused.load(Ordering::Acquire);
        if !rt.stopping() && acc.backoff_until.is_none() && paused && !rt.above_limit() {
            rt.accept_paused.store(false, Ordering::Release);
            acc.set(rt, true);
        }
        score::set_counters(rt.slot, rt.counters());
    }

    rt.queue.close();
    if rt.mode() == Mode::Ungraceful {
        drop(rt.queue.drain());
    }
}

/// Asks the main thread to stop the child (it is blocked on the pipe of
/// death; SIGTERM interrupts it).
fn stop_child(rt: &Runtime, mode: Mode) {
    rt.stop(mode);
    // SAFETY: kill on our own pid; the main thread has a no-op handler.
    unsafe { libc::kill(rt.pid, libc::SIGTERM) };
}

/// Graceful stop: no new connections, idle keep-alive ones are ended, and
/// the workers see SERVER_GRACEFUL in the scoreboard.
fn begin_graceful(rt: &Runtime, acc: &mut Accepting) {
    acc.close(rt);
    score::set_quiescing(rt.slot, 1);
    for t in 0..rt.cfg.threads_per_child as usize {
        score::update_worker(rt.slot, t, sys::SERVER_GRACEFUL);
    }
    let idle = rt.parked.lock().unwrap_or_else(|e| e.into_inner()).take_all(Wait::KeepAlive);
    for conn in idle {
        rt.queue.push(Task::Shutdown(conn));
    }
}

fn accept_one(rt: &Runtime, acc: &mut Accepting, l: Listener) {
    if !acc.on || rt.stopping() {
        return;
    }
    if rt.above_limit() {
        rt.accept_paused.store(true, Ordering::Release);
        acc.set(rt, false);
        if log::enabled(sys::APLOG_DEBUG) {
            log::error(sys::APLOG_DEBUG, 0, &format!(
                "Too many open connections ({}), not accepting new conns in this process",
                rt.connections.load(Ordering::Acquire)));
        }
        return;
    }
    let pool = match rt.pool() {
        Ok(p) => p,
        Err(rv) => {
            log::error(sys::APLOG_CRIT, rv, "AH03097: Failed to create transaction pool");
            return shortage(rt, acc);
        }
    };
    match l.accept(&pool) {
        Accepted::Socket(s) => {
            acc.shortage_logged = false;
            rt.connections.fetch_add(1, Ordering::AcqRel);
            rt.queue.push(Task::New(s, pool));
            if rt.conns_left.fetch_sub(1, Ordering::AcqRel) == 1 {
                log::error(sys::APLOG_TRACE1, 0, "Stopping process due to MaxConnectionsPerChild");
                stop_child(rt, Mode::Graceful);
            }
        }
        Accepted::Nothing => rt.recycle(pool),
        Accepted::Shortage(rv) => {
            rt.recycle(pool);
            if !acc.shortage_logged {
                log::error(sys::APLOG_ERR, rv, "out of resources accepting connections; pausing accept");
                acc.shortage_logged = true;
            }
            shortage(rt, acc);
        }
    }
}

/// Out of descriptors or memory: pause accepting for a moment and keep
/// serving the open connections, rather than retiring the child.
fn shortage(rt: &Runtime, acc: &mut Accepting) {
    acc.set(rt, false);
    acc.backoff_until = Some(Instant::now() + SHORTAGE_BACKOFF);
    rt.accept_paused.store(true, Ordering::Release);
}

/// A parked connection is ready: back to a worker, or (lingering close)
/// drained right here.
fn dispatch(rt: &Runtime, token: Token) {
    let taken = rt.parked.lock().unwrap_or_else(|e| e.into_inner()).remove(token);
    if let Some((conn, wait)) = taken {
        connection::ready(rt, conn, wait);
    }
}

/// Connections past their deadline: lingering ones are closed, the others
/// go to a worker for a (short) lingering close.
fn expire(rt: &Runtime) {
    let now = Instant::now();
    let expired = rt.parked.lock().unwrap_or_else(|e| e.into_inner()).expire(now);
    for (conn, wait) in expired {
        match wait {
            Wait::Linger => conn.close(rt),
            _ => rt.queue.push(Task::Shutdown(conn)),
        }
    }
}
