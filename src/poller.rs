//! A small, honest epoll layer: two sets per child.
//!
//! - `Poller`, the listener's: listening sockets, the pipe of death, an
//!   eventfd that wakes the listener, and connections in lingering close,
//!   which the listener drains itself (a closing connection never wakes a
//!   worker).
//! - `ConnPoll`, the workers': every parked client connection, armed
//!   one-shot. Workers take ready connections from it themselves (one idle
//!   worker waits in it, see queue::Baton), so a request is served by the
//!   thread its arrival woke, or by a worker that just finished another,
//!   with no hand-off between threads. Re-parking costs a single epoll_ctl
//!   (MOD), not the remove/add pair of stock event. Its `bell` tells the
//!   workers that the task queue has an item, its `halt` that they are to
//!   look at the queue and exit.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use crate::ffi::epoll::{Epoll, EventFd};
use crate::timers::Token;

pub use crate::ffi::epoll::{Event, Events};

/// Token of the listener's waker.
pub const WAKER: u64 = Token::MAX + 1;
/// Token of the pipe of death.
pub const POD: u64 = Token::MAX + 2;
/// Tokens of listening sockets: LISTENER_BASE + index.
pub const LISTENER_BASE: u64 = Token::MAX + 3;
/// Token of the workers' bell (in `ConnPoll`).
pub const BELL: u64 = Token::MAX + 1;
/// Token of the workers' halt (in `ConnPoll`).
pub const HALT: u64 = Token::MAX + 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    Read,
    Write,
}

/// Arms a connection for one event. `registered` says whether the fd is
/// already known to this set (then MOD, else ADD).
fn arm(epoll: &Epoll, fd: RawFd, token: Token, interest: Interest, registered: bool) -> io::Result<()> {
    let dir = match interest {
        Interest::Read => libc::EPOLLIN | libc::EPOLLRDHUP,
        Interest::Write => libc::EPOLLOUT,
    };
    let events = (dir | libc::EPOLLONESHOT) as u32;
    let op = if registered { libc::EPOLL_CTL_MOD } else { libc::EPOLL_CTL_ADD };
    epoll.ctl(op, fd, events, token.0)
}

pub struct Poller {
    epoll: Epoll,
    waker: EventFd,
}

impl Poller {
    pub fn new() -> io::Result<Self> {
        let p = Poller { epoll: Epoll::new()?, waker: EventFd::new()? };
        p.epoll.ctl(libc::EPOLL_CTL_ADD, p.waker.fd(), libc::EPOLLIN as u32, WAKER)?;
        Ok(p)
    }

    /// Watches a listening socket. Not EPOLLEXCLUSIVE: the one child woken
    /// could be one that stops accepting at that moment (its connection
    /// limit), and the connection would wait in the backlog until another
    /// arrives; every child of the bucket is woken instead, and the ones
    /// that lose the race get EAGAIN from their non-blocking accept.
    pub fn add_listener(&self, fd: RawFd, index: usize) -> io::Result<()> {
        self.epoll.ctl(libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32, LISTENER_BASE + index as u64)
    }

    /// Switches a watched listening socket to edge-triggered (`edges`): an
    /// event for each connection that arrives, none for those that wait;
    /// or back to level-triggered.
    pub fn listener_edges(&self, fd: RawFd, index: usize, edges: bool) -> io::Result<()> {
        let et = if edges { libc::EPOLLET as u32 } else { 0 };
        self.epoll.ctl(libc::EPOLL_CTL_MOD, fd, libc::EPOLLIN as u32 | et, LISTENER_BASE + index as u64)
    }

    /// Watches the pipe of death (level-triggered, not exclusive, for the
    /// same reason as listeners: every message must reach a child that
    /// reads it).
    pub fn add_pod(&self, fd: RawFd) -> io::Result<()> {
        self.epoll.ctl(libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32, POD)
    }

    /// The waker's descriptor, for a signal handler (write is
    /// async-signal-safe).
    pub fn waker_fd(&self) -> RawFd {
        self.waker.fd()
    }

    pub fn remove(&self, fd: RawFd) -> io::Result<()> {
        self.epoll.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Arms a lingering connection, which the listener drains itself (see
    /// `arm`).
    pub fn arm(&self, fd: RawFd, token: Token, interest: Interest, registered: bool) -> io::Result<()> {
        arm(&self.epoll, fd, token, interest, registered)
    }

    /// Waits for events; `None` waits until one arrives or `wake` is called.
    pub fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        self.epoll.wait(events, timeout)
    }

    /// Makes a concurrent or the next `wait` return.
    pub fn wake(&self) {
        self.waker.signal();
    }

    /// Resets the waker after it fired.
    pub fn reset_waker(&self) {
        self.waker.reset();
    }
}

pub struct ConnPoll {
    epoll: Epoll,
    bell: EventFd,
    halt: EventFd,
}

impl ConnPoll {
    pub fn new() -> io::Result<Self> {
        let p = ConnPoll { epoll: Epoll::new()?, bell: EventFd::new()?, halt: EventFd::new()? };
        // Edge-triggered: every ring is one event for one waiter, never a
        // herd; the worker that takes it looks at the queue.
        p.epoll.ctl(libc::EPOLL_CTL_ADD, p.bell.fd(), (libc::EPOLLIN | libc::EPOLLET) as u32, BELL)?;
        // Level-triggered and never reset: once halted, every wait returns.
        p.epoll.ctl(libc::EPOLL_CTL_ADD, p.halt.fd(), libc::EPOLLIN as u32, HALT)?;
        Ok(p)
    }

    /// Arms a connection for one event (see `arm`).
    pub fn arm(&self, fd: RawFd, token: Token, interest: Interest, registered: bool) -> io::Result<()> {
        arm(&self.epoll, fd, token, interest, registered)
    }

    /// Waits for events (a worker: one at a time, so that none is held
    /// back from the other workers); `None` waits until one comes.
    pub fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        self.epoll.wait(events, timeout)
    }

    /// Tells the worker polling (or the next one to poll) to look at the
    /// task queue.
    pub fn ring(&self) {
        self.bell.signal();
    }

    /// Takes a ring (keeps the eventfd's counter from growing).
    pub fn answer(&self) {
        self.bell.reset();
    }

    /// Wakes every worker, now and in every later wait.
    pub fn halt(&self) {
        self.halt.signal();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn one_shot_fires_once_until_rearmed() {
        let p = ConnPoll::new().unwrap();
        let (a, mut b) = UnixStream::pair().unwrap();
        let tok = Token(7);
        p.arm(a.as_raw_fd(), tok, Interest::Read, false).unwrap();
        b.write_all(b"x").unwrap();
        let mut ev = Events::with_capacity(8);
        p.wait(&mut ev, Some(Duration::from_secs(1))).unwrap();
        let got: Vec<_> = ev.iter().collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].token, 7);
        assert!(got[0].readable);
        p.wait(&mut ev, Some(Duration::from_millis(20))).unwrap();
        assert_eq!(ev.iter().count(), 0, "one-shot: disarmed after firing");
        p.arm(a.as_raw_fd(), Token(8), Interest::Read, true).unwrap();
        p.wait(&mut ev, Some(Duration::from_secs(1))).unwrap();
        assert_eq!(ev.iter().next().unwrap().token, 8);
    }

    #[test]
    fn waker_interrupts_wait() {
        let p = std::sync::Arc::new(Poller::new().unwrap());
        let p2 = p.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            p2.wake();
        });
        let mut ev = Events::with_capacity(8);
        p.wait(&mut ev, Some(Duration::from_secs(10))).unwrap();
        assert_eq!(ev.iter().next().unwrap().token, WAKER);
        p.reset_waker();
        p.wait(&mut ev, Some(Duration::from_millis(10))).unwrap();
        assert_eq!(ev.iter().count(), 0);
        t.join().unwrap();
    }

    /// Waits on `p` from `n` threads at once; returns the tokens each got.
    fn waiters(p: &std::sync::Arc<ConnPoll>, n: usize, then: impl FnOnce()) -> Vec<Option<u64>> {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || {
                    let mut ev = Events::with_capacity(1);
                    p.wait(&mut ev, Some(Duration::from_millis(500))).unwrap();
                    ev.iter().next().map(|e| e.token)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        then();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    #[test]
    fn a_ring_wakes_one_idle_worker_and_halt_wakes_all() {
        let p = std::sync::Arc::new(ConnPoll::new().unwrap());
        let got = waiters(&p, 3, || p.ring());
        assert_eq!(got.iter().filter(|t| **t == Some(BELL)).count(), 1, "{got:?}");
        assert_eq!(got.iter().filter(|t| t.is_none()).count(), 2, "{got:?}");
        p.answer();
        let got = waiters(&p, 3, || p.halt());
        assert!(got.iter().all(|t| *t == Some(HALT)), "{got:?}");
    }
}
