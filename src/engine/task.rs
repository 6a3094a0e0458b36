//! What a worker is given to do, and who it is.

use std::time::Instant;

use crate::ffi::{SendPtr, httpd, sys};
use crate::timers::Wait;

use super::conn::{Conn, NewSocket, Waiting};

/// Work for a worker thread.
pub enum Task {
    /// A just-accepted socket, before httpd has a conn_rec for it.
    New(NewSocket),
    /// A parked connection that became ready.
    Resume(Box<Conn>),
    /// A parked connection to end (timeout, child stopping): lingering
    /// close, which runs modules' pre_close hooks, hence on a worker.
    Shutdown(Box<Conn>),
    /// A timed callback a module registered.
    Callback(Callback),
    /// A parked connection's event, collected by the listener while every
    /// worker was busy.
    Ready(Ready),
}

/// A parked connection taken out of the pollset on its event.
pub struct Ready {
    pub item: Waiting,
    pub wait: Wait,
    pub since: Instant,
    /// The peer has finished sending (or the socket failed).
    pub closed: bool,
}

/// A module's timed callback and its argument.
pub struct Callback {
    pub func: httpd::TimedCallback,
    pub baton: SendPtr<std::ffi::c_void>,
}

/// Who runs a connection now: a worker thread and its scoreboard slot.
pub struct Worker {
    pub slot: usize,
    pub index: usize,
    pub thread: *mut sys::apr_thread_t,
    pub conn_id: i64,
}
