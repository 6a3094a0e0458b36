//! The connection state machine (stock event's process_socket): what a
//! worker does with a task, and where a connection waits next. This file
//! runs a connection through its states on a worker (`serve`); `wait` is
//! what happens when a wait ends (an event, a deadline, a graceful stop);
//! `hooks` are httpd's hooks that tell a connection about its requests.

mod hooks;
mod wait;

use std::time::{Duration, Instant};

use crate::engine::{Conn, Mode, Runtime, Task, Waiting, Worker, usecs};
use crate::ffi::{httpd, log, score, socket, sys};
use crate::poller::Interest;
use crate::timers::Wait;

pub use hooks::{head_limits, post_read_request, pre_connection, switch_server};
pub use wait::{accepted, dehydrate_idle, end_idle, end_idle_sessions, evict, expired, ready, shorten_lingering};

use sys::conn_state_e_CONN_STATE_ASYNC_WAITIO as ASYNC_WAITIO;
use sys::conn_state_e_CONN_STATE_KEEPALIVE as KEEPALIVE;
use sys::conn_state_e_CONN_STATE_LINGER as LINGER;
use sys::conn_state_e_CONN_STATE_LINGER_NORMAL as LINGER_NORMAL;
use sys::conn_state_e_CONN_STATE_LINGER_SHORT as LINGER_SHORT;
use sys::conn_state_e_CONN_STATE_PROCESSING as PROCESSING;
use sys::conn_state_e_CONN_STATE_SUSPENDED as SUSPENDED;
use sys::conn_state_e_CONN_STATE_WRITE_COMPLETION as WRITE_COMPLETION;

/// How long a worker serves one connection's back-to-back requests (the
/// next one already read by httpd's pipeline check) while nobody polls for
/// the others. Then the connection the pollset has had ready longest joins
/// the queue, and this one queues behind it and whatever else waits there:
/// the same threads, taking turns. Without that, a client that answers
/// each response at once (or pipelines) kept its worker for up to
/// MaxKeepAliveRequests requests, and
/// when all of a child's busy workers were so held its other ready
/// connections waited: 40-90 ms under the benchmark's scenario 1, without
/// end if MaxKeepAliveRequests is 0. Calling an idle worker to poll
/// instead put more threads than cores in the middle of requests: p99 3x.
const SERVE_ON_SLICE: Duration = Duration::from_micros(500);

/// Lingering close waits this long for the client's FIN...
const LINGER_NORMAL_TIME: Duration = Duration::from_secs(30);
/// ...or this long when a module asked for a short linger (mod_reqtimeout).
const LINGER_SHORT_TIME: Duration = Duration::from_secs(2);

/// Runs one task on a worker thread. `peek` is the worker's buffer for
/// looking at request heads.
pub fn serve(rt: &Runtime, w: &Worker, task: Task, peek: &mut [u8]) {
    match task {
        Task::Ready(r) => {
            // No peek when the peer has finished sending: what it sent is
            // all there will be, so it goes to httpd.
            let look = (rt.async_head && !r.closed).then_some(peek);
            if let Some(task) = ready(rt, r.item, r.wait, r.since, look) {
                serve(rt, w, task, &mut []);
            }
        }
        Task::New(new) => {
            if let Some(conn) = Conn::open(rt, w, new) {
                advance(rt, conn);
            }
        }
        Task::Callback(cb) => {
            // A suspended connection this callback moves on (mod_dialup's
            // last pulse) goes back to a worker once it has returned.
            let n = rt.callback_started();
            httpd::run_timed_callback(cb.func, cb.baton);
            rt.callback_returned(n);
        }
        Task::Resume(mut conn) => {
            conn.resume(w);
            advance(rt, conn);
        }
        Task::Shutdown(mut conn) => {
            conn.resume(w);
            // An idle keep-alive connection (shed, or at its timeout) whose
            // next request came while this task waited is served, not cut.
            if conn.state() == KEEPALIVE && conn.c.speaks_http1() && conn.input_waiting() {
                conn.set_state(PROCESSING);
                return advance(rt, conn);
            }
            if !conn.is_lingering() {
                conn.c.set_note(c"short-lingering-close");
                conn.set_state(LINGER);
            }
            lingering_close(rt, conn);
        }
    }
}

/// Moves a connection through its states until it waits or is closed.
fn advance(rt: &Runtime, mut conn: Box<Conn>) {
    // Since when this worker serves the connection's requests back to back.
    let mut serving_on: Option<Instant> = None;
    loop {
        let state = conn.state();
        if (LINGER..=LINGER_SHORT).contains(&state) {
            return lingering_close(rt, conn);
        }
        if state == PROCESSING || conn.c.clogging_input() {
            process(&conn);
            continue;
        }
        match state {
            ASYNC_WAITIO => {
                score::update_handle(conn.sbh, sys::SERVER_BUSY_READ);
                let interest = conn.take_sense(Interest::Read);
                let t = usecs(conn.state.io_timeout());
                return conn.park(rt, Wait::WaitIo, t, Instant::now(), interest);
            }
            WRITE_COMPLETION => {
                score::update_handle(conn.sbh, sys::SERVER_BUSY_WRITE);
                match conn.c.flush_nonblocking() {
                    Err(rv) => {
                        log::error(sys::APLOG_DEBUG, rv, "AH00470: network write failure in core output filter");
                        conn.set_state(LINGER);
                    }
                    Ok(after) if after.pending_output || conn.wants_read() => {
                        let interest = conn.take_sense(Interest::Write);
                        let t = usecs(conn.state.io_timeout());
                        return conn.park(rt, Wait::WriteCompletion, t, Instant::now(), interest);
                    }
                    // A child stopping gracefully still keeps the connection
                    // its response promised to keep: the client may already
                    // be sending the next request, which is answered with
                    // "Connection: close" (or the connection ends at its
                    // KeepAliveTimeout).
                    Ok(after) if !after.keepalive || after.aborted || rt.mode() == Mode::Ungraceful => {
                        conn.set_state(LINGER)
                    }
                    Ok(after) if after.pending_input => {
                        conn.set_state(PROCESSING);
                        let since = *serving_on.get_or_insert_with(Instant::now);
                        if since.elapsed() >= SERVE_ON_SLICE && !rt.baton.held() {
                            // What the pollset has ready joins the queue
                            // (new connections, events the listener
                            // collected) even when that is not empty: the
                            // queue may hold only other such connections.
                            if let Some(r) = rt.ready_now() {
                                rt.queue.push(Task::Ready(r));
                            }
                            if !rt.queue.is_empty() {
                                conn.suspend_hooks();
                                rt.queue.push(Task::Resume(conn));
                                return;
                            }
                            serving_on = None;
                        }
                    }
                    Ok(_) => conn.set_state(KEEPALIVE),
                }
            }
            // A child stopping gracefully ends a protocol's session that
            // falls idle (h2: its streams done), as stock does (its write
            // completion lingers instead of keeping alive once the listener
            // may exit), so that the module says goodbye (see
            // `end_idle_sessions`). Serving what its client sent meanwhile
            // was tried: mod_http2, whose workers child_stopping has begun
            // to stop, then fails the new streams (GOAWAY with nghttp2's
            // -902, not an HTTP/2 error code), which is worse for the
            // client than streams refused by a clean GOAWAY.
            KEEPALIVE if rt.stopping() && !conn.c.speaks_http1() => conn.set_state(LINGER),
            KEEPALIVE => {
                score::update_handle(conn.sbh, sys::SERVER_BUSY_KEEPALIVE);
                conn.take_sense(Interest::Read);
                let t = usecs(conn.state.keepalive_timeout());
                // Whether it can be dehydrated is decided only if it stays
                // idle that long (`dehydrate_idle`), not for every request.
                let wait = if conn.http { Wait::KeepAlive } else { Wait::KeepAliveWhole };
                return conn.park(rt, wait, t, Instant::now(), Interest::Read);
            }
            SUSPENDED => return conn.suspend(rt),
            _ => conn.set_state(LINGER),
        }
    }
}

/// Runs the protocol handlers and normalises the state they leave, as
/// stock does: anything unexpected ends in lingering close.
fn process(conn: &Conn) {
    conn.set_state(PROCESSING);
    let mut rc = conn.c.process();
    if rc == sys::DONE {
        rc = sys::OK as i32;
    }
    if rc == sys::OK as i32 {
        match conn.state() {
            PROCESSING => conn.set_state(LINGER),
            KEEPALIVE => conn.set_state(WRITE_COMPLETION),
            _ => {}
        }
    }
    let state = conn.state();
    let expected = [LINGER, ASYNC_WAITIO, WRITE_COMPLETION, SUSPENDED].contains(&state);
    if rc != sys::OK as i32 || !expected {
        log::error(sys::APLOG_DEBUG, 0, &format!(
            "AH10111: process_socket: connection processing returned {rc} (state {state}): closing"));
        conn.set_state(LINGER);
    } else if conn.c.aborted() {
        conn.set_state(LINGER);
    }
}

/// Starts lingering close on a worker (pre_close hooks, shutdown for
/// writing), then lets the listener drain the client without a thread.
fn lingering_close(rt: &Runtime, mut conn: Box<Conn>) {
    if conn.linger_since.is_none() {
        conn.trace(sys::APLOG_TRACE6, "lingering close");
        conn.linger_since = Some(Instant::now());
        rt.lingering_started();
        conn.sock.set_timeout(LINGER_SHORT_TIME.as_micros() as i64);
        if conn.c.start_lingering_close() {
            return conn.close(rt);
        }
        conn.sock.set_timeout(0);
        conn.sock.allow_short_reads();
        let short = conn.c.note(c"short-lingering-close");
        conn.set_state(if short { LINGER_SHORT } else { LINGER_NORMAL });
        conn.take_sense(Interest::Read);
    }
    conn.suspend_hooks();
    linger(rt, conn);
}

/// Drains what the client sent; closes at its FIN, or parks until more
/// arrives or the linger time is over. Runs on a worker or the listener.
/// A stopping child lingers the short time only, as stock's does once it
/// is dying, so that a client keeping its end open does not hold it for
/// 30 s (see `wait::shorten_lingering` for those already lingering).
pub fn linger(rt: &Runtime, conn: Box<Conn>) {
    match socket::drain(conn.fd) {
        Ok(false) => {
            let short = conn.state() == LINGER_SHORT || rt.stopping();
            let t = if short { LINGER_SHORT_TIME } else { LINGER_NORMAL_TIME };
            let since = conn.linger_since.unwrap_or_else(Instant::now);
            // Parked directly: the connection is already suspended.
            rt.park(Waiting::Conn(conn), Wait::Linger, t, since, Interest::Read);
        }
        _ => conn.close(rt),
    }
}
