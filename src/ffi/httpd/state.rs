//! What httpd and modules reach of the MPM's record of a connection.

use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use crate::ffi::sys;

/// What httpd and modules reach of the MPM's record of a connection: the
/// conn_state_t `c->cs` points at, written by them while the connection
/// runs, and what httpd's hooks tell the MPM about its requests. It lives
/// in that record, which never moves, for as long as the conn_rec.
pub struct ConnState {
    pub(super) cs: UnsafeCell<sys::conn_state_t>,
    /// KeepAliveTimeout and Timeout of the last request's virtual host (µs),
    /// set from httpd's post_read_request hook.
    keepalive: AtomicI64,
    io: AtomicI64,
    /// Its reads time out instead of waiting, until the request's head
    /// turns out complete (post_read_request).
    late_head: AtomicBool,
}

impl ConnState {
    pub fn new(keepalive: i64, io: i64) -> Self {
        ConnState {
            cs: UnsafeCell::new(sys::conn_state_t {
                state: sys::conn_state_e_CONN_STATE_PROCESSING,
                sense: sys::conn_sense_e_CONN_SENSE_DEFAULT,
            }),
            keepalive: AtomicI64::new(keepalive),
            io: AtomicI64::new(io),
            late_head: AtomicBool::new(false),
        }
    }

    pub fn state(&self) -> sys::conn_state_e {
        // SAFETY: httpd writes cs only from calls the thread that runs the
        // connection makes, which is the caller.
        unsafe { (*self.cs.get()).state }
    }

    pub fn set_state(&self, s: sys::conn_state_e) {
        // SAFETY: as in state().
        unsafe { (*self.cs.get()).state = s }
    }

    /// The state as a module's thread may just have written it (a
    /// suspended connection moved on from elsewhere), hence volatile.
    pub fn state_now(&self) -> sys::conn_state_e {
        // SAFETY: cs is ours; a racing write is an aligned int store.
        unsafe { ptr::addr_of!((*self.cs.get()).state).read_volatile() }
    }

    /// The direction a module asked to wait for, reset for the next round.
    pub fn take_sense(&self) -> sys::conn_sense_e {
        // SAFETY: as in state().
        unsafe { std::mem::replace(&mut (*self.cs.get()).sense, sys::conn_sense_e_CONN_SENSE_DEFAULT) }
    }

    pub fn sense(&self) -> sys::conn_sense_e {
        // SAFETY: as in state().
        unsafe { (*self.cs.get()).sense }
    }

    pub fn keepalive_timeout(&self) -> i64 {
        self.keepalive.load(Ordering::Relaxed)
    }

    pub fn io_timeout(&self) -> i64 {
        self.io.load(Ordering::Relaxed)
    }

    /// Called (through httpd's post_read_request hook) with the timeouts of
    /// the request's virtual host.
    pub fn set_timeouts(&self, keepalive: i64, io: i64) {
        self.keepalive.store(keepalive, Ordering::Relaxed);
        self.io.store(io, Ordering::Relaxed);
    }

    pub fn set_late_head(&self) {
        self.late_head.store(true, Ordering::Relaxed);
    }

    /// Whether the head was late, and from now on it is not.
    pub fn take_late_head(&self) -> bool {
        self.late_head.swap(false, Ordering::Relaxed)
    }
}
