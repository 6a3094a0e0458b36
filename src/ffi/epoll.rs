//! epoll and eventfd, as `crate::poller` uses them: a set, its control and
//! wait calls, and the event buffer.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

fn cvt(rv: libc::c_int) -> io::Result<libc::c_int> {
    if rv < 0 { Err(io::Error::last_os_error()) } else { Ok(rv) }
}

/// One ready descriptor.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub token: u64,
    pub readable: bool,
    pub writable: bool,
    /// Error, hang-up, or the peer shut its sending side down: no more
    /// data will come; the owner finds out what by doing I/O.
    pub closed: bool,
}

/// A buffer for the events one wait returns.
pub struct Events(Vec<libc::epoll_event>);

impl Events {
    pub fn with_capacity(n: usize) -> Self {
        Events(Vec::with_capacity(n.max(1)))
    }

    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.0.iter().map(|e| {
            let bits = e.events;
            Event {
                token: e.u64,
                readable: bits & (libc::EPOLLIN as u32) != 0,
                writable: bits & (libc::EPOLLOUT as u32) != 0,
                closed: bits & ((libc::EPOLLERR | libc::EPOLLHUP | libc::EPOLLRDHUP) as u32) != 0,
            }
        })
    }
}

/// An epoll set.
pub struct Epoll(OwnedFd);

impl Epoll {
    pub fn new() -> io::Result<Self> {
        // SAFETY: a plain syscall; the descriptor is owned from here on.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: fd is a fresh descriptor nobody else owns.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event for the call; a stale or
        // closed fd only yields an error.
        cvt(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut ev) }).map(drop)
    }

    /// Waits for events; `None` waits until one arrives.
    pub fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        // Round up so that a deadline is never reported as not yet reached.
        let ms = timeout.map_or(-1, |t| {
            let ms = t.as_micros().div_ceil(1000);
            ms.min(i32::MAX as u128) as i32
        });
        let cap = events.0.capacity() as i32;
        events.0.clear();
        // SAFETY: the buffer has `cap` slots; the kernel fills `n` of them,
        // and we set the length to exactly that.
        unsafe {
            let n = libc::epoll_wait(self.0.as_raw_fd(), events.0.as_mut_ptr(), cap, ms);
            if n < 0 {
                let e = io::Error::last_os_error();
                return if e.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(e) };
            }
            events.0.set_len(n as usize);
        }
        Ok(())
    }
}

/// An eventfd, to wake a thread waiting in an epoll set.
pub struct EventFd(OwnedFd);

impl EventFd {
    pub fn new() -> io::Result<Self> {
        // SAFETY: a plain syscall; the descriptor is owned from here on.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: fd is a fresh descriptor nobody else owns.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    pub fn signal(&self) {
        signal(self.0.as_raw_fd());
    }

    pub fn reset(&self) {
        let mut buf: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64; non-blocking.
        unsafe { libc::read(self.0.as_raw_fd(), (&mut buf as *mut u64).cast(), 8) };
    }
}

/// Adds one to the counter of eventfd `fd`; async-signal-safe (a write),
/// so a signal handler may call it. A full counter (EAGAIN) is still
/// readable, which is all that matters.
pub fn signal(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64; a stale fd only fails.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}
