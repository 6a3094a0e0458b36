//! How a child stops: its mode (running, graceful, ungraceful), only ever
//! made harsher; stops asked for by signal; and the main thread's watch
//! that runs the child_stopping hooks when one begins.

use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};

use crate::ffi::pool::Pool;
use crate::ffi::{epoll, httpd, retained, socket, sys};

use super::runtime::Runtime;

/// How far a child is in stopping; it only ever moves down this list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Mode {
    Running = 0,
    Graceful = 1,
    Ungraceful = 2,
}

impl Runtime {
    pub fn mode(&self) -> Mode {
        match self.mode.load(Ordering::Acquire) {
            0 => Mode::Running,
            1 => Mode::Graceful,
            _ => Mode::Ungraceful,
        }
    }

    pub fn stopping(&self) -> bool {
        self.mode() != Mode::Running
    }

    /// Starts stopping this child (only ever towards a harsher mode).
    pub fn stop(&self, mode: Mode) {
        let prev = self.mode.fetch_max(mode as u8, Ordering::AcqRel);
        if prev >= mode as u8 {
            return;
        }
        retained::mpm().mpm_state = sys::AP_MPMQ_STOPPING as i32;
        if mode == Mode::Ungraceful {
            // Unblock workers stuck in a read or write of a client socket.
            for w in &self.workers {
                let fd = w.fd.load(Ordering::Acquire);
                if fd >= 0 {
                    socket::shutdown(fd);
                }
            }
        }
        self.poller.wake();
        self.ring_stop_bell();
    }

    fn ring_stop_bell(&self) {
        let _g = self.stop_bell.0.lock().unwrap_or_else(|e| e.into_inner());
        self.stop_bell.1.notify_all();
    }

    /// The listener has returned: no stop can be asked for any more.
    pub fn listener_finished(&self) {
        self.listener_done.store(true, Ordering::SeqCst);
        self.ring_stop_bell();
    }
}

/// A stop asked for by signal: 0 none, else a `Mode`. Signal handlers can
/// only store atomics and write to the listener's eventfd.
static SIGNALLED: AtomicU8 = AtomicU8::new(0);
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// Called by the child's signal handlers: the listener stops the child.
pub fn signalled(mode: Mode) {
    SIGNALLED.fetch_max(mode as u8, Ordering::SeqCst);
    epoll::signal(WAKE_FD.load(Ordering::SeqCst));
}

/// Signals from now on wake `rt`'s listener.
pub fn catch_signals(rt: &Runtime) {
    SIGNALLED.store(0, Ordering::SeqCst);
    WAKE_FD.store(rt.poller.waker_fd(), Ordering::SeqCst);
}

/// The stop a signal asked for, if any (read by the listener when woken).
pub fn signalled_stop() -> Option<Mode> {
    match SIGNALLED.load(Ordering::SeqCst) {
        1 => Some(Mode::Graceful),
        2 => Some(Mode::Ungraceful),
        _ => None,
    }
}

/// Runs the child_stopping hooks as soon as the child starts to stop, and
/// again if a graceful stop turns ungraceful, as stock's signal_threads
/// does: modules (mod_http2) wake or abort their sessions then, not after
/// every connection has drained. On the main thread, as in stock for a
/// stop from the parent: whichever thread asked for the stop (the listener,
/// mostly) carries on with it meanwhile. Returns once the listener has
/// ended, when no stop can come any more.
pub fn watch_stop(rt: &Runtime, pchild: &Pool) {
    let mut told = Mode::Running;
    let mut g = rt.stop_bell.0.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let mode = rt.mode();
        if mode > told {
            drop(g);
            httpd::run_child_stopping(pchild, mode == Mode::Graceful);
            told = mode;
            g = rt.stop_bell.0.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        if rt.listener_done.load(Ordering::SeqCst) {
            return;
        }
        g = rt.stop_bell.1.wait(g).unwrap_or_else(|e| e.into_inner());
    }
}
