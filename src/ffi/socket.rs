//! Client and listening sockets: APR's socket objects (which httpd's core
//! needs) and the raw descriptor operations the MPM does itself.

use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::ptr::{self, NonNull};

use super::pool::Pool;
use super::sys;

/// An accepted client socket; the transaction pool owns it.
#[derive(Debug, Clone, Copy)]
pub struct ClientSocket(NonNull<sys::apr_socket_t>);

// SAFETY: moves between threads with its connection; one user at a time.
unsafe impl Send for ClientSocket {}
// SAFETY: the only cross-thread use is `shutdown`, a syscall on the fd.
unsafe impl Sync for ClientSocket {}

fn os_fd(s: *mut sys::apr_socket_t) -> RawFd {
    let mut fd: sys::apr_os_sock_t = -1;
    // SAFETY: s is a live apr socket; apr_os_sock_get only reads it.
    unsafe { sys::apr_os_sock_get(&mut fd, s) };
    fd
}

impl ClientSocket {
    pub fn as_ptr(self) -> *mut sys::apr_socket_t {
        self.0.as_ptr()
    }

    pub fn fd(self) -> RawFd {
        os_fd(self.as_ptr())
    }

    /// 0 makes APR's I/O on it non-blocking, as the lingering drain needs.
    pub fn set_timeout(self, usecs: sys::apr_interval_time_t) {
        // SAFETY: live socket owned by the caller's connection.
        unsafe { sys::apr_socket_timeout_set(self.as_ptr(), usecs) };
    }

    /// Clears APR_INCOMPLETE_READ, which would make a short read retry.
    pub fn allow_short_reads(self) {
        // SAFETY: as in set_timeout.
        unsafe { sys::apr_socket_opt_set(self.as_ptr(), sys::APR_INCOMPLETE_READ as i32, 0) };
    }

    pub fn close(self) {
        // SAFETY: the connection is done with the socket; APR marks it
        // closed so the pool cleanup does not close the fd again.
        unsafe { sys::apr_socket_close(self.as_ptr()) };
    }
}

/// Reads and discards whatever the client sent, without blocking.
/// `Ok(true)`: the client closed; `Ok(false)`: nothing more for now.
pub fn drain(fd: RawFd) -> io::Result<bool> {
    let mut buf = [0u8; 2048];
    loop {
        // SAFETY: buf is valid for its length; the fd is a connected socket.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        match n {
            0 => return Ok(true),
            n if n > 0 => continue,
            _ => {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(false),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
        }
    }
}

/// Ends both directions of a socket another thread may be blocked on, so
/// that thread's read or write fails at once (an ungraceful stop).
pub fn shutdown(fd: RawFd) {
    // SAFETY: shutdown on a descriptor has no memory effects.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// Ends our side of the stream (lingering close): the client sees our FIN
/// and may still send. False when the socket is already unusable.
pub fn shutdown_write(fd: RawFd) -> bool {
    // SAFETY: shutdown on a descriptor has no memory effects.
    unsafe { libc::shutdown(fd, libc::SHUT_WR) == 0 }
}

/// A listening socket of httpd's (`ap_listen_rec`).
#[derive(Debug, Clone, Copy)]
pub struct Listener(NonNull<sys::ap_listen_rec>);

// SAFETY: listen records live in pconf for the generation and are only read.
unsafe impl Send for Listener {}
// SAFETY: as above.
unsafe impl Sync for Listener {}

/// The outcome of one accept.
pub enum Accepted {
    Socket(ClientSocket),
    /// Nothing to accept (another child won, or the client went away).
    Nothing,
    /// Out of descriptors or memory (EMFILE, ENFILE, ENOMEM...).
    Shortage(sys::apr_status_t),
}

impl Listener {
    /// Walks a listener list.
    ///
    /// # Safety
    /// `head` is null or the head of a list of live listen records (they live
    /// in pconf for the whole generation).
    pub unsafe fn list(head: *mut sys::ap_listen_rec) -> Vec<Listener> {
        let mut out = Vec::new();
        let mut lr = head;
        while let Some(l) = NonNull::new(lr) {
            out.push(Listener(l));
            // SAFETY: caller vouches for the list.
            lr = unsafe { (*lr).next };
        }
        out
    }

    pub fn as_ptr(self) -> *mut sys::ap_listen_rec {
        self.0.as_ptr()
    }

    pub fn fd(self) -> RawFd {
        // SAFETY: live listen record; sd is its socket.
        os_fd(unsafe { (*self.as_ptr()).sd })
    }

    /// The protocol of the Listen directive that made it (httpd lowercases
    /// it, and fills in "https" for port 443, else "http", when none is
    /// given); `None` for a record made without one.
    pub fn protocol(self) -> Option<String> {
        // SAFETY: live listen record; protocol is null or a C string in the
        // same (process or pconf) pool.
        let p = unsafe { (*self.as_ptr()).protocol };
        // SAFETY: checked non-null just before; NUL-terminated by apr_pstrdup.
        (!p.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }

    /// A listener must never block the thread that accepts: with several
    /// children on one socket, readiness does not mean a connection is left.
    pub fn set_nonblocking(self) {
        // SAFETY: live listen record and socket.
        unsafe { sys::apr_socket_opt_set((*self.as_ptr()).sd, sys::APR_SO_NONBLOCK as i32, 1) };
    }

    /// Accepts one connection into `pool` through the listener's accept
    /// function (ap_unixd_accept), as every httpd MPM does.
    pub fn accept(self, pool: &Pool) -> Accepted {
        let mut csd: *mut libc::c_void = ptr::null_mut();
        // SAFETY: the record and pool are live; accept_func writes csd.
        let rv = unsafe {
            match (*self.as_ptr()).accept_func {
                Some(f) => f(&mut csd, self.as_ptr(), pool.as_ptr()),
                None => sys::ap_unixd_accept(&mut csd, self.as_ptr(), pool.as_ptr()),
            }
        };
        match NonNull::new(csd.cast::<sys::apr_socket_t>()) {
            Some(s) => Accepted::Socket(ClientSocket(s)),
            None if rv == sys::APR_EGENERAL as i32 => Accepted::Shortage(rv),
            None => Accepted::Nothing,
        }
    }
}

impl ClientSocket {
    /// # Safety
    /// `p` is a live apr socket owned by a transaction pool.
    pub unsafe fn from_raw(p: *mut sys::apr_socket_t) -> Option<Self> {
        NonNull::new(p).map(ClientSocket)
    }
}

/// Copies what the client sent into `buf` without consuming it.
pub fn peek(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for its length; MSG_PEEK leaves the data queued.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// The client's address and port, for the log ("?" when the socket has
/// none any more).
pub fn peer(fd: RawFd) -> String {
    // SAFETY: fd is an open socket of ours; ManuallyDrop keeps the borrowed
    // stream from closing it.
    let stream = std::mem::ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
    stream.peer_addr().map_or_else(|_| "?".into(), |a| a.to_string())
}

/// A client socket's two addresses, kept while the connection has no APR
/// socket object (a dehydrated idle keep-alive connection).
pub struct Addrs {
    local: libc::sockaddr_storage,
    remote: libc::sockaddr_storage,
    family: i32,
}

fn copy_addr(s: *mut sys::apr_socket_t, which: sys::apr_interface_e, out: &mut libc::sockaddr_storage) -> i32 {
    let mut sa: *mut sys::apr_sockaddr_t = ptr::null_mut();
    // SAFETY: live socket; the sockaddr it returns lives in the socket's pool
    // and is copied out (salen bytes, at most the storage size) at once.
    unsafe {
        if sys::apr_socket_addr_get(&mut sa, which, s) != 0 || sa.is_null() {
            return 0;
        }
        let len = ((*sa).salen as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
        ptr::copy_nonoverlapping(ptr::addr_of!((*sa).sa).cast::<u8>(), (out as *mut libc::sockaddr_storage).cast::<u8>(), len);
        (*sa).family
    }
}

impl ClientSocket {
    /// Takes the descriptor away from APR: the socket object (and its pool)
    /// can then go without closing it. Returns the fd and its addresses.
    pub fn steal(self, pool: &Pool) -> (RawFd, Addrs) {
        // SAFETY: all-zero sockaddr_storage is a valid (AF_UNSPEC) value.
        let mut addrs: Addrs = unsafe { std::mem::zeroed() };
        addrs.family = copy_addr(self.as_ptr(), sys::apr_interface_e_APR_REMOTE, &mut addrs.remote);
        copy_addr(self.as_ptr(), sys::apr_interface_e_APR_LOCAL, &mut addrs.local);
        let fd = self.fd();
        let mut none: sys::apr_os_sock_t = -1;
        let mut s = self.as_ptr();
        // SAFETY: on an existing socket apr_os_sock_put only replaces its
        // descriptor; with -1 the pool cleanup's close fails with EBADF and
        // closes nothing (APR's cleanup function is private, so it cannot be
        // killed instead; valgrind warns about that close(-1)).
        unsafe { sys::apr_os_sock_put(&mut s, &mut none, pool.as_ptr()) };
        (fd, addrs)
    }

    /// Wraps a descriptor taken by `steal` in a new APR socket in `pool`,
    /// which owns (and will close) it from then on.
    pub fn adopt(fd: RawFd, addrs: &mut Addrs, pool: &Pool) -> Option<ClientSocket> {
        let mut os: sys::apr_os_sock_t = fd;
        let mut info = sys::apr_os_sock_info_t {
            os_sock: &mut os,
            local: (&mut addrs.local as *mut libc::sockaddr_storage).cast(),
            remote: (&mut addrs.remote as *mut libc::sockaddr_storage).cast(),
            family: addrs.family,
            type_: libc::SOCK_STREAM,
            protocol: libc::IPPROTO_TCP,
        };
        let mut s = ptr::null_mut();
        // SAFETY: info points to valid addresses for the call; APR copies them.
        let rv = unsafe { sys::apr_os_sock_make(&mut s, &mut info, pool.as_ptr()) };
        if rv != 0 { None } else { NonNull::new(s).map(ClientSocket) }
    }
}

/// Readiness to read is reported only once `bytes` are waiting (and at
/// end of stream): a partial request head then wakes the listener when
/// more of it arrives, not again at once for what is already there.
pub fn set_rcvlowat(fd: RawFd, bytes: usize) {
    let v = i32::try_from(bytes.max(1)).unwrap_or(i32::MAX);
    // SAFETY: setsockopt with a valid int of its size.
    unsafe {
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVLOWAT, (&v as *const i32).cast(), std::mem::size_of::<i32>() as u32)
    };
}

/// Closes a descriptor no APR object owns.
pub fn close_fd(fd: RawFd) {
    // SAFETY: the caller owns fd and does not use it after.
    unsafe { libc::close(fd) };
}

/// This process's soft limit of open descriptors (RLIMIT_NOFILE), `None`
/// when it cannot be read.
pub fn open_files_limit() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct it is given and nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0).then_some(lim.rlim_cur)
}

/// Gives freed heap memory back to the system (glibc keeps it otherwise).
pub fn trim_heap() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
}
