//! The MPM's record of a client connection, in each of its forms: a socket
//! without a conn_rec (`NewSocket`: just accepted, or idle and dehydrated),
//! a whole connection (`Conn`), and either one waiting in a pollset
//! (`Waiting`). How a record is made, parked, given back and closed; what
//! happens to it between those is the state machine's (`crate::connection`).

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::ffi::httpd::{self, ConnState, Connection, SbHandle};
use crate::ffi::pool::Pool;
use crate::ffi::socket::{self, ClientSocket};
use crate::ffi::{log, sys};
use crate::poller::Interest;
use crate::timers::Wait;

use super::runtime::Runtime;
use super::task::Worker;

use sys::conn_state_e_CONN_STATE_PROCESSING as PROCESSING;
use sys::conn_state_e_CONN_STATE_SUSPENDED as SUSPENDED;

/// A client socket without a conn_rec: just accepted, or an idle
/// keep-alive connection whose conn_rec and pool were let go.
pub struct NewSocket {
    pub origin: Origin,
    /// Known to the workers' pollset already.
    pub registered: bool,
    /// Its request head did not arrive in time (see `connection::expired`).
    pub head_expired: bool,
    /// The SO_RCVLOWAT raised while part of a head waits, 0 when not
    /// raised (see `connection::wait`).
    pub lowat: u32,
    /// How many bytes of its head the first look saw (`head_progress`).
    pub head_first: u16,
    /// Accepted on an HTTP listener (listener::speaks_http).
    pub http: bool,
    /// How long its request head may take: its server's limit, in
    /// `Runtime::heads`.
    pub(crate) head: u32,
    /// In lingering close (see `connection::end_idle`).
    pub(crate) lingering: bool,
    /// Known to the listener's pollset, where it waits in lingering close.
    pub(crate) draining: bool,
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
        NewSocket { origin, registered, head_expired: false, lowat: 0, head_first: 0, http, head, lingering: false, draining: false }
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

    /// Bytes of a request head received since the first ones (0 for an
    /// idle connection): the progress of a head that did not come whole,
    /// which its first packet says nothing about (a slowloris client sends
    /// most of a head at once, then a byte now and then). The receive
    /// low-water mark is raised one past the bytes received.
    pub fn head_progress(&self) -> usize {
        let (lowat, first) = match self {
            Waiting::Conn(c) => (c.lowat, c.head_first),
            Waiting::New(n) => (n.lowat, n.head_first),
        };
        (lowat.saturating_sub(1) as usize).saturating_sub(usize::from(first))
    }

    pub fn lower_rcvlowat(&mut self) {
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

/// The MPM's side of a connection. It lives in a Box, which never moves:
/// httpd's `c->cs` points into its `state` for the whole life of the
/// connection.
pub struct Conn {
    /// Written by httpd and modules through `c->cs` while we hold the Box,
    /// and by httpd's hooks (see `ConnState`).
    pub(crate) state: ConnState,
    pub(crate) c: Connection,
    pub(crate) sock: ClientSocket,
    pub(crate) fd: RawFd,
    pub(crate) sbh: SbHandle,
    /// Known to the workers' pollset (armed there at least once).
    pub(crate) registered: bool,
    /// Known to the listener's pollset, where it waits in lingering close.
    pub(crate) draining: bool,
    /// Modules were told it left its worker (and not told it came back).
    pub(crate) suspended: bool,
    /// The SO_RCVLOWAT raised while part of a head waits, 0 when not
    /// raised (see `connection::wait`).
    pub(crate) lowat: u32,
    /// As NewSocket's.
    pub(crate) head_first: u16,
    /// Accepted on an HTTP listener: only then do its requests wait for
    /// their head in the pollset, and may it be dehydrated between them.
    pub(crate) http: bool,
    /// How long a request head may take: its base server's limit, in
    /// `Runtime::heads`.
    pub(crate) head: u32,
    pub(crate) linger_since: Option<Instant>,
    /// Owns everything above that httpd allocated; dropped last.
    pub(crate) pool: Pool,
}

/// Microseconds as httpd counts timeouts, negative ones as none.
pub fn usecs(t: i64) -> Duration {
    Duration::from_micros(t.max(0) as u64)
}

impl Conn {
    pub fn open(rt: &Runtime, w: &Worker, new: NewSocket) -> Option<Box<Conn>> {
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
            state: ConnState::new(ka, io),
            c,
            sock,
            fd: sock.fd(),
            sbh: parts.sbh,
            registered,
            draining: false,
            suspended: false,
            lowat: 0,
            head_first: 0,
            http,
            head,
            linger_since: None,
            pool,
        });
        c.attach(&conn.state, w.thread);
        if !c.pre_connection(sock) {
            log::error(sys::APLOG_DEBUG, 0, "AH00469: process_socket: connection aborted");
            conn.close(rt);
            return None;
        }
        if head_expired {
            conn.head_timed_out();
        }
        Some(conn)
    }

    pub fn state(&self) -> sys::conn_state_e {
        self.state.state()
    }

    pub fn set_state(&self, s: sys::conn_state_e) {
        self.state.set_state(s)
    }

    /// The direction a module asked to wait for, reset for the next round.
    pub fn take_sense(&self, default: Interest) -> Interest {
        match self.state.take_sense() {
            sys::conn_sense_e_CONN_SENSE_WANT_READ => Interest::Read,
            sys::conn_sense_e_CONN_SENSE_WANT_WRITE => Interest::Write,
            _ => default,
        }
    }

    pub fn wants_read(&self) -> bool {
        self.state.sense() == sys::conn_sense_e_CONN_SENSE_WANT_READ
    }

    pub fn fd(&self) -> RawFd {
        self.fd
    }

    pub fn is_lingering(&self) -> bool {
        self.linger_since.is_some()
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
    pub fn release_pool(&mut self) {
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
            ka_timeout: self.state.keepalive_timeout(),
            io_timeout: self.state.io_timeout(),
        };
        self.release_pool();
        let Conn { pool, .. } = *self;
        rt.recycle(pool);
        Ok(NewSocket::new(Origin::Idle(Box::new(d)), true, true, self.head))
    }

    /// The client has sent something not read yet.
    pub fn input_waiting(&self) -> bool {
        let mut byte = [0u8; 1];
        matches!(socket::peek(self.fd, &mut byte), Ok(1))
    }

    /// The parked connection goes back to a worker.
    pub fn resume(&mut self, w: &Worker) {
        self.sbh.update(w.slot, w.index);
        self.c.resume(w.thread, w.conn_id, self.sbh);
        self.suspended = false;
    }

    pub fn park(mut self: Box<Self>, rt: &Runtime, wait: Wait, timeout: Duration, since: Instant, interest: Interest) {
        self.suspend_hooks();
        rt.park(Waiting::Conn(self), wait, timeout, since, interest);
    }

    /// The connection leaves its worker (suspend_connection hooks).
    pub fn suspend_hooks(&mut self) {
        if !self.suspended {
            self.c.suspend();
            self.suspended = true;
        }
    }

    /// SUSPENDED: a module owns the connection until one of its timed
    /// callbacks moves it on; it waits in the runtime's suspended set.
    pub fn suspend(mut self: Box<Self>, rt: &Runtime) {
        self.suspend_hooks();
        rt.suspend(self);
    }

    /// A request head did not arrive by its deadline (mod_reqtimeout's header
    /// limit, or Timeout), and no worker waited for it: httpd reads what came
    /// and its reads time out where they would wait, so that it answers (408
    /// when the request line came, and logs it) exactly as when its own timer
    /// runs out, as stock does.
    pub fn head_timed_out(&self) {
        self.c.time_out_waiting_reads();
        self.state.set_late_head();
        self.set_state(PROCESSING);
    }

    /// Whether a module moved a suspended connection on (perhaps from
    /// another thread than the one that looks).
    pub fn still_suspended(&self) -> bool {
        self.state.state_now() == SUSPENDED
    }
}

/// Brings a raised receive low-water mark back to 1 before anything else
/// reads the socket (else APR's waits would wait for those bytes too).
pub fn lower_rcvlowat(fd: RawFd, raised: &mut u32) {
    if std::mem::take(raised) != 0 {
        socket::set_rcvlowat(fd, 1);
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
