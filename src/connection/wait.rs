//! Where a parked connection goes when its wait ends: its event fired
//! (`ready`), its deadline passed (`expired`), it was just accepted
//! (`accepted`), it idled long enough to give its pool back
//! (`dehydrate_idle`), or the child began a graceful stop
//! (`end_idle_sessions`, `shorten_lingering`). Request heads are looked at here, without a
//! conn_rec, before a worker is given the connection.

use std::os::fd::RawFd;
use std::time::Instant;

use crate::engine::{NewSocket, Origin, Runtime, Task, Waiting, lower_rcvlowat, usecs};
use crate::ffi::httpd::VirtualHost;
use crate::ffi::socket;
use crate::head;
use crate::poller::Interest;
use crate::timers::Wait;

use super::{LINGER_SHORT_TIME, PROCESSING, linger};

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
                    if new.lowat == 0 {
                        new.head_first = first_bytes(bytes);
                    }
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
        // A protocol's session (h2) that its client woke after the child
        // began to stop is ended as an idle one is then: its module says
        // goodbye in the lingering close (GOAWAY, the last stream it took).
        // Stock runs it instead, and mod_http2, no longer accepting
        // streams, answers the new ones with a GOAWAY whose error code is
        // nghttp2's -902.
        Wait::KeepAlive | Wait::KeepAliveWhole if rt.stopping() && !conn.c.speaks_http1() => Some(Task::Shutdown(conn)),
        Wait::KeepAlive | Wait::KeepAliveWhole | Wait::Idle | Wait::Head => {
            // Other protocols' bytes are the module's, whatever they look like.
            if let Some(Look::Wait(bytes)) = peek.filter(|_| conn.http).map(|buf| look(conn.fd, buf, conn.lowat)) {
                // Bytes of a head have come: from now on the head's limit
                // bounds the wait, counted from the first of them.
                let since = if wait == Wait::Head { since } else { Instant::now() };
                let t = rt.heads.get(conn.head).after(bytes);
                if conn.lowat == 0 {
                    conn.head_first = first_bytes(bytes);
                }
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

/// A head's first bytes, as kept for `Waiting::head_progress` (a head is
/// at most a peek buffer's worth, far below the cap).
fn first_bytes(bytes: usize) -> u16 {
    u16::try_from(bytes).unwrap_or(u16::MAX)
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

/// Gives the connections already in a (normal) lingering close the short
/// time, counted from when it began, when the child begins to stop: stock
/// does the same to its lingering queue once it is dying.
pub fn shorten_lingering(rt: &Runtime) {
    let lingering = {
        let mut parked = rt.parked.lock().unwrap_or_else(|e| e.into_inner());
        parked.take_where(Wait::Linger, |_| true)
    };
    for (item, since) in lingering {
        rt.park(item, Wait::Linger, LINGER_SHORT_TIME, since, Interest::Read);
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
        let timeout = usecs(conn.state.keepalive_timeout());
        match conn.dehydrate(rt) {
            Ok(new) => rt.park(Waiting::New(new), Wait::Idle, timeout, since, Interest::Read),
            Err(conn) => rt.park(Waiting::Conn(conn), Wait::KeepAliveWhole, timeout, since, Interest::Read),
        }
    }
    n
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

/// Closes a waiting connection to make room in the connection budget (on
/// the listener): a socket without a conn_rec at once, whatever part of a
/// head it sent (that is what the room is taken back from); an idle one as
/// at its KeepAliveTimeout; a whole connection by lingering close on a
/// worker, which runs its modules' pre_close hooks.
pub fn evict(rt: &Runtime, item: Waiting, wait: Wait) {
    match item {
        Waiting::New(new) if wait == Wait::Idle => end_idle(rt, new),
        Waiting::New(new) => new.close(rt),
        Waiting::Conn(mut conn) => {
            lower_rcvlowat(conn.fd, &mut conn.lowat);
            rt.shutdown(conn);
        }
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
            conn.head_timed_out();
            rt.push(Task::Resume(conn));
        }
        (Waiting::Conn(conn), _) => rt.shutdown(conn),
    }
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
