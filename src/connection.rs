//! A client connection and its state machine (stock event's
//! process_socket): what a worker does with it, and where it waits next.

use std::cell::UnsafeCell;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use crate::child::{Mode, Runtime};
use crate::ffi::httpd::{self, Connection, Request, SbHandle, VirtualHost};
use crate::ffi::pool::Pool;
use crate::ffi::socket::{self, ClientSocket};
use crate::ffi::{log, score, sys};
use crate::poller::Interest;
use crate::head;
use crate::timers::Wait;

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
    pub func: unsafe extern "C" fn(*mut std::ffi::c_void),
    pub baton: crate::ffi::SendPtr<std::ffi::c_void>,
}

/// A client socket without a conn_rec: just accepted, or an idle
/// keep-alive connection whose conn_rec and pool were let go.
pub struct NewSocket {
    pub origin: Origin,
    /// Known to the workers' pollset already.
    pub registered: bool,
    /// Its request head did not arrive in time (see `expired`).
    pub head_expired: bool,
    /// The SO_RCVLOWAT raised while part of a head waits, 0 when not
    /// raised (see `wait_for_more`).
    pub lowat: u32,
    /// Accepted on an HTTP listener (listener::speaks_http).
    pub http: bool,
    /// How long its request head may take: its server's limit, in
    /// `Runtime::heads`.
    head: u32,
    /// In lingering close (see `end_idle`).
    lingering: bool,
    /// Known to the listener's pollset, where it waits in lingering close.
    draining: bool,
}

pub enum Origin {
    /// Just accepted, in the transaction pool it was accepted into.
    Accepted(ClientSocket, Pool),
    Idle(Box<Dehydrated>),
}

/// What is kept of a keep-alive connection idle long enough to give its
/// memory back: a few hundred bytes instead of its pool (see `dehydrate`).
pub struct Dehydrated {
    fd: RawFd,
    addrs: socket::Addrs,
    /// Requests served so far, for MaxKeepAliveRequests.
    keepalives: i32,
    ka_timeout: i64,
    io_timeout: i64,
}

impl NewSocket {
    /// A socket just accepted; its head limit is that of its server (see
    /// `accepted`).
    pub fn accepted(sock: ClientSocket, pool: Pool, http: bool) -> Self {
        NewSocket::new(Origin::Accepted(sock, pool), false, http, 0)
    }

    fn new(origin: Origin, registered: bool, http: bool, head: u32) -> Self {
        NewSocket { origin, registered, head_expired: false, lowat: 0, http, head, lingering: false, draining: false }
    }

    pub fn fd(&self) -> RawFd {
        match &self.origin {
            Origin::Accepted(s, _) => s.fd(),
            Origin::Idle(d) => d.fd,
        }
    }

    /// Closes a socket that has no connection (any more).
    pub fn close(self, rt: &Runtime) {
        match self.origin {
            Origin::Accepted(sock, pool) => {
                sock.close();
                rt.recycle(pool);
            }
            Origin::Idle(d) => socket::close_fd(d.fd),
        }
        rt.connection_closed(self.lingering);
    }
}

/// What can wait in the workers' pollset.
pub enum Waiting {
    Conn(Box<Conn>),
    New(NewSocket),
}

impl Waiting {
    pub fn fd(&self) -> RawFd {
        match self {
            Waiting::Conn(c) => c.fd,
            Waiting::New(n) => n.fd(),
        }
    }

    fn lower_rcvlowat(&mut self) {
        match self {
            Waiting::Conn(c) => lower_rcvlowat(c.fd, &mut c.lowat),
            Waiting::New(n) => lower_rcvlowat(n.fd(), &mut n.lowat),
        }
    }

    /// Marks the fd as known to the pollset that `wait` uses; returns
    /// whether it already was.
    pub fn mark_registered(&mut self, wait: Wait) -> bool {
        let flag = match self {
            Waiting::Conn(c) if wait == Wait::Linger => &mut c.draining,
            Waiting::Conn(c) => &mut c.registered,
            Waiting::New(n) if wait == Wait::Linger => &mut n.draining,
            Waiting::New(n) => &mut n.registered,
        };
        std::mem::replace(flag, true)
    }
}

/// Who runs a connection now: a worker thread and its scoreboard slot.
pub struct Worker {
    pub slot: usize,
    pub index: usize,
    pub thread: *mut sys::apr_thread_t,
    pub conn_id: i64,
}

/// The MPM's side of a connection. `cs` comes first: httpd's `c->cs` points
/// at it for the whole life of the connection (the Box never moves).
#[repr(C)]
pub struct Conn {
    /// Written by httpd and modules through `c->cs` while we hold the Box.
    cs: UnsafeCell<sys::conn_state_t>,
    c: Connection,
    sock: ClientSocket,
    fd: RawFd,
    sbh: SbHandle,
    /// KeepAliveTimeout and Timeout of the last request's virtual host (µs),
    /// set from httpd's post_read_request hook.
    ka_timeout: AtomicI64,
    io_timeout: AtomicI64,
    /// Its reads time out instead of waiting (`head_timed_out`), until the
    /// request's head turns out complete (post_read_request).
    late_head: AtomicBool,
    /// Known to the workers' pollset (armed there at least once).
    registered: bool,
    /// Known to the listener's pollset, where it waits in lingering close.
    draining: bool,
    /// Modules were told it left its worker (and not told it came back).
    suspended: bool,
    /// The SO_RCVLOWAT raised while part of a head waits, 0 when not
    /// raised (see `wait_for_more`).
    lowat: u32,
    /// Accepted on an HTTP listener: only then do its requests wait for
    /// their head in the pollset, and may it be dehydrated between them.
    http: bool,
    /// How long a request head may take: its base server's limit, in
    /// `Runtime::heads`.
    head: u32,
    linger_since: Option<Instant>,
    /// Owns everything above that httpd allocated; dropped last.
    pool: Pool,
}

// SAFETY: a Conn is owned by exactly one thread at a time (a worker, or the
// listener's parked set) and moves between them whole; the raw pointers
// (sbh, and httpd's objects behind `c` and `sock`) live in its own pool.
unsafe impl Send for Conn {}

fn usecs(t: i64) -> Duration {
    Duration::from_micros(t.max(0) as u64)
}

impl Conn {
    fn open(rt: &Runtime, w: &Worker, new: NewSocket) -> Option<Box<Conn>> {
        let NewSocket { origin, registered, head_expired, http, head, .. } = new;
        let (sock, pool, idle) = match origin {
            Origin::Accepted(sock, pool) => (sock, pool, None),
            Origin::Idle(mut d) => {
                let pool = match rt.pool() {
                    Ok(p) => p,
                    Err(rv) => {
                        log::error(sys::APLOG_CRIT, rv, "AH03097: Failed to create transaction pool");
                        socket::close_fd(d.fd);
                        rt.connection_closed(false);
                        return None;
                    }
                };
                let Some(sock) = ClientSocket::adopt(d.fd, &mut d.addrs, &pool) else {
                    socket::close_fd(d.fd);
                    rt.connection_closed(false);
                    rt.recycle(pool);
                    return None;
                };
                (sock, pool, Some(d))
            }
        };
        let parts = httpd::connection_parts(&pool, w.slot, w.index);
        let Some(c) = Connection::create(&pool, sock, w.conn_id, &parts) else {
            sock.close();
            rt.connection_closed(false);
            rt.recycle(pool);
            return None;
        };
        let (ka, io) = match &idle {
            Some(d) => {
                c.set_keepalives(d.keepalives);
                (d.ka_timeout, d.io_timeout)
            }
            None => httpd::server_timeouts(),
        };
        let conn = Box::new(Conn {
            cs: UnsafeCell::new(sys::conn_state_t {
                state: PROCESSING,
                sense: sys::conn_sense_e_CONN_SENSE_DEFAULT,
            }),
            c,
            sock,
            fd: sock.fd(),
            sbh: parts.sbh,
            ka_timeout: AtomicI64::new(ka),
            io_timeout: AtomicI64::new(io),
            late_head: AtomicBool::new(false),
            registered,
            draining: false,
            suspended: false,
            lowat: 0,
            http,
            head,
            linger_since: None,
            pool,
        });
        c.attach(conn.cs.get(), NonNull::from(&*conn).cast(), w.thread);
        if !c.pre_connection(sock) {
            log::error(sys::APLOG_DEBUG, 0, "AH00469: process_socket: connection aborted");
            conn.close(rt);
            return None;
        }
        if head_expired {
            head_timed_out(&conn);
        }
        Some(conn)
    }

    fn state(&self) -> sys::conn_state_e {
        // SAFETY: no other thread touches cs; httpd writes it only from
        // calls we make on this thread.
        unsafe { (*self.cs.get()).state }
    }

    fn set_state(&self, s: sys::conn_state_e) {
        // SAFETY: as in state().
        unsafe { (*self.cs.get()).state = s }
    }

    /// The direction a module asked to wait for, reset for the next round.
    fn take_sense(&self, default: Interest) -> Interest {
        // SAFETY: as in state().
        let sense = unsafe { std::mem::replace(&mut (*self.cs.get()).sense, sys::conn_sense_e_CONN_SENSE_DEFAULT) };
        match sense {
            sys::conn_sense_e_CONN_SENSE_WANT_READ => Interest::Read,
            sys::conn_sense_e_CONN_SENSE_WANT_WRITE => Interest::Write,
            _ => default,
        }
    }

    fn wants_read(&self) -> bool {
        // SAFETY: as in state().
        unsafe { (*self.cs.get()).sense == sys::conn_sense_e_CONN_SENSE_WANT_READ }
    }

    pub fn fd(&self) -> RawFd {
        self.fd
    }

    pub fn is_lingering(&self) -> bool {
        self.linger_since.is_some()
    }

    /// Called (through httpd's post_read_request hook) with the timeouts of
    /// the request's virtual host.
    pub fn set_timeouts(&self, keepalive: i64, io: i64) {
        self.ka_timeout.store(keepalive, Ordering::Relaxed);
        self.io_timeout.store(io, Ordering::Relaxed);
    }

    /// Logs a change of the connection's state at a trace level, in
    /// stock's words ("closing connection from state 6"); nothing is
    /// formatted when that level is off.
    pub fn trace(&self, level: u32, what: &str) {
        if log::enabled(level) {
            log::conn(level, self.c, &format!("{what} from state {}", self.state()));
        }
    }

    /// Closes the socket and gives the pool back for the next connection.
    /// The pool is cleared (running modules' cleanups, which may look at
    /// `c->cs`) while this Conn still exists.
    #[allow(clippy::boxed_local, reason = "a Conn lives boxed: httpd holds pointers into it")]
    pub fn close(mut self: Box<Self>, rt: &Runtime) {
        self.trace(sys::APLOG_TRACE6, "closing connection");
        self.sock.close();
        self.release_pool();
        let lingering = self.linger_since.is_some();
        let Conn { pool, .. } = *self;
        rt.connection_closed(lingering);
        rt.recycle(pool);
    }

    /// Clears the pool. A parked connection is suspended as far as modules
    /// know: they are told it resumes first, as stock does before cleanup.
    fn release_pool(&mut self) {
        if std::mem::take(&mut self.suspended) {
            self.c.resume_for_cleanup();
        }
        self.pool.clear();
    }

    /// Lets an idle keep-alive connection's conn_rec and pool go, keeping
    /// only its socket (still armed in epoll) and what the next request
    /// needs: an idle connection then costs a few hundred bytes instead of
    /// tens of KiB. Only connections on which nothing but httpd's core
    /// keeps state qualify (`Connection::only_core_state`): a TLS or HTTP/2
    /// session, the PROXY protocol's client address or a module's
    /// per-connection state cannot be rebuilt, so those stay whole.
    pub fn dehydrate(mut self: Box<Self>, rt: &Runtime) -> Result<NewSocket, Box<Conn>> {
        if !self.http || !self.c.only_core_state() {
            return Err(self);
        }
        let (fd, addrs) = self.sock.steal(&self.pool);
        let d = Dehydrated {
            fd,
            addrs,
            keepalives: self.c.keepalives(),
            ka_timeout: self.ka_timeout.load(Ordering::Relaxed),
            io_timeout: self.io_timeout.load(Ordering::Relaxed),
        };
        self.release_pool();
        let Conn { pool, .. } = *self;
        rt.recycle(pool);
        Ok(NewSocket::new(Origin::Idle(Box::new(d)), true, true, self.head))
    }

    /// The client has sent something not read yet.
    fn input_waiting(&self) -> bool {
        let mut byte = [0u8; 1];
        matches!(socket::peek(self.fd, &mut byte), Ok(1))
    }

    /// The parked connection goes back to a worker.
    fn resume(&mut self, w: &Worker) {
        self.sbh.update(w.slot, w.index);
        self.c.resume(w.thread, w.conn_id, self.sbh);
        self.suspended = false;
    }

    fn park(mut self: Box<Self>, rt: &Runtime, wait: Wait, timeout: Duration, since: Instant, interest: Interest) {
        self.suspend_hooks();
        rt.park(Waiting::Conn(self), wait, timeout, since, interest);
    }

    /// The connection leaves its worker (suspend_connection hooks).
    fn suspend_hooks(&mut self) {
        if !self.suspended {
            self.c.suspend();
            self.suspended = true;
        }
    }

    /// SUSPENDED: a module owns the connection until one of its timed
    /// callbacks moves it on; it waits in the runtime's suspended set.
    fn suspend(mut self: Box<Self>, rt: &Runtime) {
        self.suspend_hooks();
        rt.suspend(self);
    }

    /// Whether a module moved a suspended connection on. Read from another
    /// thread than the one that wrote it (a callback's), hence volatile.
    pub fn still_suspended(&self) -> bool {
        // SAFETY: cs is ours; a racing write is an aligned int store.
        unsafe { std::ptr::addr_of!((*self.cs.get()).state).read_volatile() == SUSPENDED }
    }
}

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
                let t = usecs(conn.io_timeout.load(Ordering::Relaxed));
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
                        let t = usecs(conn.io_timeout.load(Ordering::Relaxed));
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
                let t = usecs(conn.ka_timeout.load(Ordering::Relaxed));
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
pub fn linger(rt: &Runtime, conn: Box<Conn>) {
    match socket::drain(conn.fd) {
        Ok(false) => {
            let t = if conn.state() == LINGER_SHORT { LINGER_SHORT_TIME } else { LINGER_NORMAL_TIME };
            let since = conn.linger_since.unwrap_or_else(Instant::now);
            // Parked directly: the connection is already suspended.
            rt.park(Waiting::Conn(conn), Wait::Linger, t, since, Interest::Read);
        }
        _ => conn.close(rt),
    }
}

/// A parked connection's event fired (on a worker, or on the listener for
/// a lingering close): what to run now, if anything, or it waits on.
/// `peek` is a buffer for looking at request heads, `None` when the admin
/// turned that off (AsyncRequestHead Off) or the peer finished sending.
pub fn ready(rt: &Runtime, item: Waiting, wait: Wait, since: Instant, peek: Option<&mut [u8]>) -> Option<Task> {
    let mut conn = match item {
        Waiting::New(new) if wait == Wait::Linger => {
            linger_socket(rt, new, since);
            return None;
        }
        Waiting::New(mut new) => {
            match peek.filter(|_| new.http).map(|buf| look(new.fd(), buf, new.lowat)) {
                Some(Look::Wait(bytes)) => {
                    let since = if wait == Wait::Head { since } else { Instant::now() };
                    new.lowat = wait_for_more(new.fd(), bytes, new.lowat);
                    let t = rt.heads.get(new.head).after(bytes);
                    rt.park(Waiting::New(new), Wait::Head, t, since, Interest::Read);
                }
                Some(Look::Closed) => new.close(rt),
                _ => {
                    lower_rcvlowat(new.fd(), &mut new.lowat);
                    return Some(Task::New(new));
                }
            }
            return None;
        }
        Waiting::Conn(conn) => conn,
    };
    match wait {
        Wait::Linger => {
            linger(rt, conn);
            None
        }
        Wait::KeepAlive | Wait::KeepAliveWhole | Wait::Idle | Wait::Head => {
            // Other protocols' bytes are the module's, whatever they look like.
            if let Some(Look::Wait(bytes)) = peek.filter(|_| conn.http).map(|buf| look(conn.fd, buf, conn.lowat)) {
                // Bytes of a head have come: from now on the head's limit
                // bounds the wait, counted from the first of them.
                let since = if wait == Wait::Head { since } else { Instant::now() };
                let t = rt.heads.get(conn.head).after(bytes);
                conn.lowat = wait_for_more(conn.fd, bytes, conn.lowat);
                rt.park(Waiting::Conn(conn), Wait::Head, t, since, Interest::Read);
                return None;
            }
            lower_rcvlowat(conn.fd, &mut conn.lowat);
            conn.set_state(PROCESSING);
            Some(Task::Resume(conn))
        }
        Wait::WaitIo => {
            conn.set_state(PROCESSING);
            Some(Task::Resume(conn))
        }
        Wait::WriteCompletion => Some(Task::Resume(conn)),
    }
}

/// Brings a raised receive low-water mark back to 1 before anything else
/// reads the socket (else APR's waits would wait for those bytes too).
fn lower_rcvlowat(fd: RawFd, raised: &mut u32) {
    if std::mem::take(raised) != 0 {
        socket::set_rcvlowat(fd, 1);
    }
}

/// Epoll reports a socket readable as long as unread data is there, so a
/// partial head would wake a worker again at once, for ever: the
/// receive low-water mark is raised past what has come, so that only more
/// of the head (or the end of the stream) wakes it. Returns the mark set
/// (0: none; a mark already raised stays as it is until lowered).
fn wait_for_more(fd: RawFd, bytes: usize, raised: u32) -> u32 {
    if bytes == 0 {
        return raised;
    }
    // A head is at most a peek buffer's worth (request_head_cap).
    let mark = u32::try_from(bytes + 1).unwrap_or(u32::MAX);
    socket::set_rcvlowat(fd, mark as usize);
    mark
}

/// A graceful stop begins: each idle keep-alive connection whose protocol
/// is not HTTP/1.x (an HTTP/2 session) is ended now, as stock ends them,
/// so that its module says goodbye (h2: GOAWAY with the last stream it
/// took) and its client goes to the new generation at once. HTTP/1.x ones
/// wait on: the next request is answered with `Connection: close` (or the
/// connection ends at its KeepAliveTimeout), so that no client races a
/// request against our FIN.
pub fn end_idle_sessions(rt: &Runtime) {
    let session = |item: &Waiting| matches!(item, Waiting::Conn(c) if !c.c.speaks_http1());
    let idle = {
        let mut parked = rt.parked.lock().unwrap_or_else(|e| e.into_inner());
        let mut idle = parked.take_where(Wait::KeepAlive, session);
        idle.extend(parked.take_where(Wait::KeepAliveWhole, session));
        rt.publish(&parked);
        idle
    };
    for (item, _) in idle {
        if let Waiting::Conn(conn) = item {
            rt.shutdown(conn);
        }
    }
}

/// Dehydrates, on the listener, the plain keep-alive connections idle since
/// before `idle_since`; they wait on with the same deadline. Returns how
/// many pools were given back.
pub fn dehydrate_idle(rt: &Runtime, idle_since: Instant) -> usize {
    let old = rt.parked.lock().unwrap_or_else(|e| e.into_inner()).take_oldest(Wait::KeepAlive, usize::MAX, idle_since);
    let n = old.len();
    for (item, since) in old {
        let Waiting::Conn(conn) = item else { continue };
        let timeout = usecs(conn.ka_timeout.load(Ordering::Relaxed));
        match conn.dehydrate(rt) {
            Ok(new) => rt.park(Waiting::New(new), Wait::Idle, timeout, since, Interest::Read),
            Err(conn) => rt.park(Waiting::Conn(conn), Wait::KeepAliveWhole, timeout, since, Interest::Read),
        }
    }
    n
}

/// A request head did not arrive by its deadline (mod_reqtimeout's header
/// limit, or Timeout), and no worker waited for it: httpd reads what came
/// and its reads time out where they would wait, so that it answers (408
/// when the request line came, and logs it) exactly as when its own timer
/// runs out, as stock does.
fn head_timed_out(conn: &Conn) {
    conn.c.time_out_waiting_reads();
    conn.late_head.store(true, Ordering::Relaxed);
    conn.set_state(PROCESSING);
}

/// Ends a dehydrated idle connection (at its KeepAliveTimeout, or shed
/// under load) as stock ends an idle one, on the listener: a request that
/// arrived meanwhile is served; else a lingering close (our FIN, then
/// what the client still sends is drained), so that a request on its way
/// meets no reset.
pub fn end_idle(rt: &Runtime, mut new: NewSocket) {
    let mut byte = [0u8; 1];
    match socket::peek(new.fd(), &mut byte) {
        Ok(1) => rt.push(Task::New(new)),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && socket::shutdown_write(new.fd()) => {
            new.lingering = true;
            rt.lingering_started();
            linger_socket(rt, new, Instant::now());
        }
        // The client has closed, or the socket failed.
        _ => new.close(rt),
    }
}

/// Drains a connection-less socket in lingering close; it waits in the
/// listener's pollset (short lingering close, as for whole connections
/// that end idle) until the client's FIN.
fn linger_socket(rt: &Runtime, new: NewSocket, since: Instant) {
    match socket::drain(new.fd()) {
        Ok(false) => rt.park(Waiting::New(new), Wait::Linger, LINGER_SHORT_TIME, since, Interest::Read),
        _ => new.close(rt),
    }
}

/// A parked connection's deadline passed (on the listener thread).
pub fn expired(rt: &Runtime, mut item: Waiting, wait: Wait) {
    item.lower_rcvlowat();
    match (item, wait) {
        (Waiting::New(new), Wait::Idle) => end_idle(rt, new),
        (Waiting::New(new), Wait::Linger) => new.close(rt),
        // A worker makes the conn_rec with which httpd answers the late head.
        (Waiting::New(mut new), _) => {
            new.head_expired = true;
            rt.push(Task::New(new));
        }
        (Waiting::Conn(conn), Wait::Linger) => conn.close(rt),
        (Waiting::Conn(conn), Wait::Head) => {
            head_timed_out(&conn);
            rt.push(Task::Resume(conn));
        }
        (Waiting::Conn(conn), _) => rt.shutdown(conn),
    }
}

/// The head limit of each server, from the configuration: the header
/// stage of mod_reqtimeout's settings for it when that module is loaded,
/// else its `Timeout`.
pub fn head_limits() -> head::HeadLimits {
    let reqtimeout = httpd::module_loaded(c"mod_reqtimeout.c");
    let servers = httpd::directive_by_server("RequestReadTimeout");
    let main = servers.first().map(|(_, args)| args.clone()).unwrap_or_default();
    head::HeadLimits::new(servers.iter().map(|(s, own)| {
        (s.key(), head::HeadLimit::for_server(reqtimeout, own, &main, usecs(s.timeouts().1)))
    }))
}

enum Look {
    Go,
    /// Part of a head, this many bytes so far.
    Wait(usize),
    Closed,
}

/// Peeks at what the client sent (nothing is consumed). `raised` is the
/// receive low-water mark set while the head waited (0: none).
fn look(fd: RawFd, buf: &mut [u8], raised: u32) -> Look {
    match socket::peek(fd, buf) {
        Ok(0) => Look::Closed,
        // Woken with less than the mark: the kernel does that when the
        // receive buffer is full (a head larger than it, or than a small
        // ReceiveBufferSize). Only reading makes room: httpd reads it, as
        // stock would, instead of a worker waking for it again and again.
        Ok(n) if n < raised as usize => Look::Go,
        Ok(n) if head::scan(&buf[..n], buf.len()) == head::Head::Partial => Look::Wait(n),
        Ok(_) => Look::Go,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && raised == 0 => Look::Wait(0),
        // Let the worker meet the error where httpd reports it.
        Err(_) => Look::Go,
    }
}

/// A just-accepted socket waits in the pollset for its request head, which
/// the worker its first bytes wake looks at. With AsyncRequestHead Off, or
/// on a listener of another protocol than HTTP (whose server may speak
/// first), it goes to a worker at once, as in stock.
pub fn accepted(rt: &Runtime, mut new: NewSocket) {
    if !rt.async_head || !new.http {
        return rt.push(Task::New(new));
    }
    if let Origin::Accepted(sock, _) = &new.origin {
        new.head = rt.heads.index_of(VirtualHost::of_connection(*sock).key());
    }
    let t = rt.heads.get(new.head).after(0);
    rt.park(Waiting::New(new), Wait::Head, t, Instant::now(), Interest::Read);
}

/// httpd's post_read_request hook: the request's virtual host decides the
/// keep-alive timeout of what follows.
pub fn post_read_request(r: Request) {
    let Some(c) = r.connection() else { return };
    let me = c.mpm_data().cast::<Conn>();
    if me.is_null() {
        return;
    }
    // SAFETY: mpm_data is the Conn attached to this conn_rec, alive while
    // its request runs; set_timeouts and late_head only touch atomics.
    let me = unsafe { &*me };
    // The head came complete after all (just after its deadline): the
    // request's body is waited for as usual.
    if me.late_head.swap(false, Ordering::Relaxed) {
        c.wait_in_reads();
    }
    let (ka, io) = r.timeouts();
    me.set_timeouts(ka, io);
}

/// A connection switched protocol without a request: take `s`'s timeouts.
pub fn switch_server(c: Connection, s: VirtualHost) {
    let me = c.mpm_data().cast::<Conn>();
    if me.is_null() {
        return;
    }
    let (ka, io) = s.timeouts();
    // SAFETY: as in post_read_request.
    unsafe { (*me).set_timeouts(ka, io) };
}

/// httpd's pre_connection hook: a secondary connection (an HTTP/2 stream)
/// gets its own state instead of sharing its master's.
pub fn pre_connection(c: Connection) {
    if let Some(master) = c.master() {
        let cs = c.state_ptr();
        if cs.is_null() || cs == master.state_ptr() {
            c.give_own_state();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle keep-alive connection costs besides its socket: its
    /// dehydrated record and its place in the parked set.
    #[test]
    fn an_idle_connection_stays_small() {
        // A Box or the socket with a few flags; both addresses and counters.
        assert!(std::mem::size_of::<Waiting>() <= 32, "Waiting: {} bytes", std::mem::size_of::<Waiting>());
        assert!(std::mem::size_of::<Dehydrated>() <= 288, "Dehydrated: {} bytes", std::mem::size_of::<Dehydrated>());
    }
}
