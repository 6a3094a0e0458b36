//! Safe wrappers over the httpd core calls the MPM makes: process control
//! (pods, reaping, signals), hooks it runs, and the connection operations.

use std::ffi::{CStr, CString, c_void};
use std::os::fd::RawFd;
use std::ptr::{self, NonNull};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, Ordering};

use super::pool::{Pool, PoolRef};
use super::socket::{ClientSocket, Listener};
use super::sys;

/// httpd's main server (`ap_server_conf`).
pub fn server() -> *mut sys::server_rec {
    // SAFETY: copying a global pointer set by httpd before any hook runs.
    unsafe { sys::ap_server_conf }
}

/// `-DNAME` on the command line.
pub fn config_define(name: &CStr) -> bool {
    // SAFETY: valid C string; read-only lookup.
    unsafe { sys::ap_exists_config_define(name.as_ptr()) != 0 }
}

/// Process-lifetime memory kept across restarts (`ap_retained_data_*`),
/// zeroed when first made.
pub fn retained_data(key: &'static CStr, size: usize) -> (*mut c_void, bool) {
    // SAFETY: key is a static C string; the block lives until the process ends.
    unsafe {
        let p = sys::ap_retained_data_get(key.as_ptr());
        if !p.is_null() {
            return (p, false);
        }
        (sys::ap_retained_data_create(key.as_ptr(), size), true)
    }
}

pub fn unixd_retained() -> *mut sys::ap_unixd_mpm_retained_data {
    // SAFETY: returns httpd's process-lifetime structure.
    unsafe { sys::ap_unixd_mpm_get_retained_data() }
}

pub fn detach(daemonize: bool) -> sys::apr_status_t {
    let how = if daemonize { sys::APR_PROC_DETACH_DAEMONIZE } else { sys::APR_PROC_DETACH_FOREGROUND };
    // SAFETY: forks/setsid per APR; no Rust threads exist in the parent.
    unsafe { sys::apr_proc_detach(how as i32) }
}

pub fn fatal_signal_setup(pconf: PoolRef) {
    // SAFETY: main server and pconf are live.
    unsafe { sys::ap_fatal_signal_setup(server(), pconf.as_ptr()) };
}

pub fn listen_pre_config() {
    // SAFETY: resets core's listener globals; no arguments.
    unsafe { sys::ap_listen_pre_config() };
}

/// Opens the Listen sockets; returns how many there are.
pub fn setup_listeners() -> i32 {
    // SAFETY: main server is live.
    unsafe { sys::ap_setup_listeners(server()) }
}

/// Splits the listeners into buckets (ListenCoresBucketsRatio), one list
/// each. `num` in: buckets wanted (0 = let httpd decide).
pub fn duplicate_listeners(pconf: PoolRef, num: i32) -> Result<Vec<Vec<Listener>>, sys::apr_status_t> {
    let mut buckets: *mut *mut sys::ap_listen_rec = ptr::null_mut();
    let mut n = num;
    // SAFETY: out-pointers are valid; the lists live in pconf.
    let rv = unsafe { sys::ap_duplicate_listeners(pconf.as_ptr(), server(), &mut buckets, &mut n) };
    if rv != 0 {
        return Err(rv);
    }
    // SAFETY: httpd returned `n` list heads.
    Ok((0..n as usize).map(|i| unsafe { Listener::list(*buckets.add(i)) }).collect())
}

/// Closes listeners in this process (all of them, or one bucket's).
pub fn close_listeners(bucket: Option<&[Listener]>) {
    match bucket {
        // SAFETY: the head of a live listener list.
        Some(l) if !l.is_empty() => unsafe { sys::ap_close_listeners_ex(l[0].as_ptr()) },
        Some(_) => {}
        // SAFETY: closes core's global list.
        None => unsafe { sys::ap_close_listeners() },
    }
}

/// A pipe of death: how the parent tells a bucket's children to go.
#[derive(Debug, Clone, Copy)]
pub struct Pod(NonNull<sys::ap_pod_t>);

// SAFETY: a pod is a pipe pair in pconf; its operations are syscalls.
unsafe impl Send for Pod {}
// SAFETY: as above.
unsafe impl Sync for Pod {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodSignal {
    None,
    Graceful,
    Restart,
}

impl Pod {
    pub fn open(pconf: PoolRef) -> Result<Pod, sys::apr_status_t> {
        let mut pod = ptr::null_mut();
        // SAFETY: out-pointer valid; the pod lives in pconf.
        let rv = unsafe { sys::ap_mpm_podx_open(pconf.as_ptr(), &mut pod) };
        if rv != 0 {
            return Err(rv);
        }
        Ok(Pod(NonNull::new(pod).expect("ap_mpm_podx_open")))
    }

    pub fn read_fd(self) -> RawFd {
        let mut fd: sys::apr_os_file_t = -1;
        // SAFETY: live pod; pod_in is its read end.
        unsafe { sys::apr_os_file_get(&mut fd, (*self.0.as_ptr()).pod_in) };
        fd
    }

    /// Makes the read end pollable: the children of a bucket share it, so a
    /// read after readiness may find the byte taken by another child and
    /// must not block. Returns the descriptor to watch.
    pub fn pollable_fd(self) -> RawFd {
        let fd = self.read_fd();
        // SAFETY: fcntl on a pipe descriptor we hold.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        fd
    }

    /// Takes one message off the pod, if any (ap_mpm_podx_check's reading,
    /// without blocking).
    pub fn take(self) -> PodSignal {
        let mut c: u8 = 0;
        // SAFETY: reads one byte into a valid u8.
        let n = unsafe { libc::read(self.read_fd(), (&mut c as *mut u8).cast(), 1) };
        match (n, c) {
            (1, sys::AP_MPM_PODX_GRACEFUL_CHAR) => PodSignal::Graceful,
            (1, sys::AP_MPM_PODX_RESTART_CHAR) => PodSignal::Restart,
            _ => PodSignal::None,
        }
    }

    fn mode(graceful: bool) -> sys::ap_podx_restart_t {
        if graceful {
            sys::ap_podx_restart_t_AP_MPM_PODX_GRACEFUL
        } else {
            sys::ap_podx_restart_t_AP_MPM_PODX_RESTART
        }
    }

    /// Asks one (any) child of the bucket to stop.
    pub fn signal(self, graceful: bool) {
        // SAFETY: live pod.
        unsafe { sys::ap_mpm_podx_signal(self.0.as_ptr(), Self::mode(graceful)) };
    }

    /// Asks `n` children of the bucket to stop.
    pub fn signal_all(self, n: i32, graceful: bool) {
        // SAFETY: live pod.
        unsafe { sys::ap_mpm_podx_killpg(self.0.as_ptr(), n, Self::mode(graceful)) };
    }

    /// A child closes the pods of the other buckets.
    pub fn close(self) {
        // SAFETY: live pod; not used after.
        unsafe { sys::ap_mpm_podx_close(self.0.as_ptr()) };
    }
}

pub fn log_pid(pconf: PoolRef) {
    // SAFETY: ap_pid_fname is core's PidFile setting (or null).
    unsafe { sys::ap_log_pid(pconf.as_ptr(), sys::ap_pid_fname) };
}

pub fn remove_pid(pconf: PoolRef) {
    // SAFETY: as in log_pid.
    unsafe { sys::ap_remove_pid(pconf.as_ptr(), sys::ap_pid_fname) };
}

/// Runs pre_mpm (creates the scoreboard).
pub fn run_pre_mpm() -> bool {
    // SAFETY: main server and its process pool are live.
    unsafe { sys::ap_run_pre_mpm((*(*server()).process).pool, sys::ap_scoreboard_e_SB_SHARED) == 0 }
}

pub fn set_signals(pconf: PoolRef, one_process: bool) {
    // SAFETY: installs httpd's parent signal handlers.
    unsafe { sys::ap_unixd_mpm_set_signals(pconf.as_ptr(), one_process as i32) };
}

/// The start-up notices every MPM logs (AH00489, AH00490, command line, and
/// the MPM common lines).
pub fn log_startup_banner(plog: PoolRef) {
    // SAFETY: plain logging calls on live objects.
    unsafe {
        let desc = super::cstr(sys::ap_get_server_description()).to_owned();
        let built = super::cstr(sys::ap_get_server_built()).to_owned();
        super::log::error(sys::APLOG_NOTICE, 0, &format!(
            "AH00489: {desc} (mod_mpm_event_rs {}) configured -- resuming normal operations",
            env!("CARGO_PKG_VERSION")));
        super::log::error(sys::APLOG_INFO, 0, &format!("AH00490: Server built: {built}"));
        sys::ap_log_command_line(plog.as_ptr(), server());
        sys::ap_log_mpm_common(server());
    }
}

/// A reaped child process.
#[derive(Debug, Clone, Copy)]
pub struct Exited {
    pub pid: libc::pid_t,
    /// ap_process_child_status's verdict (APEXIT_* or 0).
    pub status: i32,
    pub signaled: bool,
    proc_: sys::apr_proc_t,
}

impl Exited {
    /// The scoreboard slot of the child, if it had one.
    pub fn slot(&self) -> Option<usize> {
        let mut p = self.proc_;
        // SAFETY: reads the scoreboard for the pid.
        let slot = unsafe { sys::ap_find_child_by_pid(&mut p) };
        usize::try_from(slot).ok()
    }

    /// Offers the pid to APR's other-child registry (piped loggers, cgid);
    /// true when it was one of those.
    pub fn other_child(&self, raw_status: i32) -> bool {
        let mut p = self.proc_;
        // SAFETY: plain registry lookup.
        unsafe { sys::apr_proc_other_child_alert(&mut p, sys::APR_OC_REASON_DEATH as i32, raw_status) == 0 }
    }
}

/// Waits up to a second for a child to exit, running the monitor hook
/// (ap_wait_or_timeout). `None` when the second passed.
pub fn wait_or_timeout(pconf: PoolRef) -> Option<(Exited, i32)> {
    let mut why: sys::apr_exit_why_e = 0;
    let mut status = 0;
    let mut proc_ = sys::apr_proc_t::default();
    // SAFETY: valid out-pointers, live pool and server.
    unsafe { sys::ap_wait_or_timeout(&mut why, &mut status, &mut proc_, pconf.as_ptr(), server()) };
    if proc_.pid == -1 {
        return None;
    }
    // SAFETY: logs the exit reason (core dumps, signals) as httpd does.
    let verdict = unsafe { sys::ap_process_child_status(&mut proc_, why, status) };
    let signaled = why & sys::apr_exit_why_e_APR_PROC_SIGNAL != 0;
    Some((Exited { pid: proc_.pid, status: verdict, signaled, proc_ }, status))
}

pub type ReclaimCallback = unsafe extern "C" fn(slot: i32, pid: libc::pid_t, generation: i32);

/// Waits for all children to exit, escalating to SIGTERM and SIGKILL.
pub fn reclaim_children(cb: ReclaimCallback) {
    // SAFETY: the callback is a valid guarded extern fn of ours.
    unsafe { sys::ap_reclaim_child_processes(1, Some(cb)) };
}

/// Reaps the children that exited already, without waiting.
pub fn relieve_children(cb: ReclaimCallback) {
    // SAFETY: as in reclaim_children.
    unsafe { sys::ap_relieve_child_processes(Some(cb)) };
}

/// Signals one of our children (ap_mpm_safe_kill checks it is ours).
pub fn signal_process(pid: libc::pid_t, sig: i32) {
    // SAFETY: ap_mpm_safe_kill refuses pids that are not our children.
    unsafe { sys::ap_mpm_safe_kill(pid, sig) };
}

pub fn process_alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks existence.
    pid > 0 && unsafe { sys::ap_mpm_safe_kill(pid, 0) } == 0
}

pub fn run_child_status(pid: libc::pid_t, generation: i32, slot: i32, started: bool) {
    let state = if started { sys::mpm_child_status_MPM_CHILD_STARTED } else { sys::mpm_child_status_MPM_CHILD_EXITED };
    // SAFETY: runs httpd's child_status hooks with plain values.
    unsafe { sys::ap_run_child_status(server(), pid, generation, slot, state) };
}

// ---- child process set-up -------------------------------------------------

pub fn fatal_signal_child_setup() {
    // SAFETY: installs httpd's crash handlers for this child.
    unsafe { sys::ap_fatal_signal_child_setup(server()) };
}

pub fn thread_current_after_fork() {
    // SAFETY: resets APR's thread-local current thread after fork.
    unsafe { sys::ap_thread_current_after_fork() };
}

pub fn thread_main_create(pchild: &Pool) -> Result<(), sys::apr_status_t> {
    let mut thd = ptr::null_mut();
    // SAFETY: out-pointer valid; pchild lives for the child.
    match unsafe { sys::ap_thread_main_create(&mut thd, pchild.as_ptr()) } {
        0 => Ok(()),
        rv => Err(rv),
    }
}

pub fn reopen_scoreboard(pchild: &Pool) {
    // SAFETY: attaches this process to the scoreboard shm.
    unsafe { sys::ap_reopen_scoreboard(pchild.as_ptr(), ptr::null_mut(), 0) };
}

pub fn drop_privileges(pchild: &Pool) -> bool {
    // SAFETY: runs the drop_privileges hooks (mod_unixd's setuid).
    unsafe { sys::ap_run_drop_privileges(pchild.as_ptr(), server()) == 0 }
}

/// Blocks every signal in this thread (and threads it creates).
pub fn setup_signal_thread() -> sys::apr_status_t {
    // SAFETY: sets the signal mask.
    unsafe { sys::apr_setup_signal_thread() }
}

pub fn run_child_init(pchild: &Pool) {
    // SAFETY: runs modules' child_init hooks.
    unsafe { sys::ap_run_child_init(pchild.as_ptr(), server()) };
}

pub fn run_child_stopping(pchild: &Pool, graceful: bool) {
    // SAFETY: runs modules' child_stopping hooks.
    unsafe { sys::ap_run_child_stopping(pchild.as_ptr(), graceful as i32) };
}

pub type SignalHandler = unsafe extern "C" fn(i32);

/// Makes `sig` end the process at once, as stock's just_die does.
pub fn die_on_signal(sig: i32) {
    extern "C" fn just_die(_sig: i32) {
        // SAFETY: ends the process at once; async-signal-safe.
        unsafe { libc::_exit(0) };
    }
    set_signal(sig, just_die);
}

pub fn set_signal(sig: i32, handler: SignalHandler) {
    // SAFETY: installs a handler that is async-signal-safe (ours only set
    // atomics or exit).
    unsafe { sys::apr_signal(sig, Some(handler)) };
}

pub fn unblock_signal(sig: i32) {
    // SAFETY: manipulates this thread's signal mask only.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, ptr::null_mut());
    }
}

/// One-process mode: waits in this thread for a terminating signal.
pub fn wait_for_stop_signal(handler: unsafe extern "C" fn(i32) -> i32) {
    // SAFETY: APR's sigwait loop; the handler is a guarded extern fn.
    unsafe { sys::apr_signal_thread(Some(handler)) };
}

/// An APR thread (modules such as mod_lua expect `c->current_thread` to be
/// one), joinable.
pub struct Thread(NonNull<sys::apr_thread_t>);

// SAFETY: the handle is only used to join, from the thread that made it.
unsafe impl Send for Thread {}

/// Starts a thread running `main`, which is given the APR thread it runs
/// on; a panic in it ends the child process (`guard_child_thread`).
pub fn spawn<F: FnOnce(*mut sys::apr_thread_t) + Send + 'static>(pool: &Pool, main: F) -> Result<Thread, sys::apr_status_t> {
    unsafe extern "C" fn start<F: FnOnce(*mut sys::apr_thread_t)>(thd: *mut sys::apr_thread_t, arg: *mut c_void) -> *mut c_void {
        // SAFETY: arg is the Box<F> that spawn made for this thread alone.
        let main = unsafe { Box::from_raw(arg.cast::<F>()) };
        super::guard::guard_child_thread(|| main(thd));
        ptr::null_mut()
    }
    let arg = Box::into_raw(Box::new(main));
    let mut attr = ptr::null_mut();
    let mut thd = ptr::null_mut();
    // SAFETY: out-pointers valid; pool outlives the thread (joined before
    // the pool is destroyed); `start::<F>` takes `arg` for what it is.
    unsafe {
        sys::apr_threadattr_create(&mut attr, pool.as_ptr());
        sys::apr_threadattr_detach_set(attr, 0);
        if sys::ap_thread_stacksize != 0 {
            sys::apr_threadattr_stacksize_set(attr, sys::ap_thread_stacksize);
        }
        let rv = sys::ap_thread_create(&mut thd, attr, Some(start::<F>), arg.cast(), pool.as_ptr());
        if rv != 0 {
            // The thread was not created: the box is still ours.
            drop(Box::from_raw(arg));
            return Err(rv);
        }
    }
    Ok(Thread(NonNull::new(thd).expect("ap_thread_create")))
}

impl Thread {
    pub fn join(self) {
        let mut rv = 0;
        // SAFETY: joins a thread we created, once.
        unsafe { sys::apr_thread_join(&mut rv, self.0.as_ptr()) };
    }
}

// ---- connections ----------------------------------------------------------

/// A connection record made by httpd's core for one of our sockets.
#[derive(Debug, Clone, Copy)]
pub struct Connection(NonNull<sys::conn_rec>);

// SAFETY: moves with its connection between threads; one user at a time.
unsafe impl Send for Connection {}

/// A connection's scoreboard handle, allocated in the connection's pool:
/// whoever holds it holds that pool too.
#[derive(Debug, Clone, Copy)]
pub struct SbHandle(NonNull<sys::ap_sb_handle_t>);

// SAFETY: moves with its connection between threads; one user at a time.
unsafe impl Send for SbHandle {}

impl SbHandle {
    pub fn as_ptr(self) -> *mut sys::ap_sb_handle_t {
        self.0.as_ptr()
    }

    /// Moves the handle to the worker slot now serving the connection.
    pub fn update(self, slot: usize, thread: usize) {
        // SAFETY: made by ap_create_sb_handle in the connection's live pool.
        unsafe { sys::ap_update_sb_handle(self.as_ptr(), slot as i32, thread as i32) };
    }
}

/// What httpd and modules reach of the MPM's record of a connection: the
/// conn_state_t `c->cs` points at, written by them while the connection
/// runs, and what httpd's hooks tell the MPM about its requests. It lives
/// in that record, which never moves, for as long as the conn_rec.
pub struct ConnState {
    cs: UnsafeCell<sys::conn_state_t>,
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

/// Per-connection objects made before the conn_rec itself.
pub struct ConnectionParts {
    pub sbh: SbHandle,
    pub bucket_alloc: *mut sys::apr_bucket_alloc_t,
}

pub fn connection_parts(ptrans: &Pool, slot: usize, thread: usize) -> ConnectionParts {
    let mut sbh = ptr::null_mut();
    // SAFETY: objects allocated in the connection's pool.
    unsafe {
        sys::ap_create_sb_handle(&mut sbh, ptrans.as_ptr(), slot as i32, thread as i32);
        ConnectionParts {
            sbh: SbHandle(NonNull::new(sbh).expect("ap_create_sb_handle")),
            bucket_alloc: sys::apr_bucket_alloc_create(ptrans.as_ptr()),
        }
    }
}

/// What is left to write, and whether the connection may be kept alive.
#[derive(Debug, Clone, Copy)]
pub struct AfterWrite {
    pub pending_output: bool,
    pub pending_input: bool,
    pub keepalive: bool,
    pub aborted: bool,
}

impl Connection {
    /// Runs create_connection hooks (core makes the conn_rec).
    pub fn create(ptrans: &Pool, sock: ClientSocket, id: i64, parts: &ConnectionParts) -> Option<Self> {
        // SAFETY: all objects live in ptrans; httpd returns null on failure.
        let c = unsafe {
            sys::ap_run_create_connection(ptrans.as_ptr(), server(), sock.as_ptr(), id, parts.sbh.as_ptr().cast(), parts.bucket_alloc)
        };
        NonNull::new(c).map(Connection)
    }

    /// # Safety
    /// `c` is a live conn_rec.
    pub unsafe fn from_raw(c: *mut sys::conn_rec) -> Option<Self> {
        NonNull::new(c).map(Connection)
    }

    pub fn as_ptr(self) -> *mut sys::conn_rec {
        self.0.as_ptr()
    }

    /// Points the connection at its MPM state and worker thread.
    pub fn attach(self, state: &ConnState, thread: *mut sys::apr_thread_t) {
        let c = self.as_ptr();
        // SAFETY: live conn_rec; `state` outlives it (it lives in the MPM's
        // record of the connection, freed only after the pool is cleared).
        unsafe {
            (*c).cs = state.cs.get();
            (*c).current_thread = thread;
            set_module_config((*c).conn_config, ptr::from_ref(state).cast_mut().cast());
        }
    }

    /// Runs `f` on the state `attach` gave the connection; `None` when it
    /// has none (a connection of another MPM's making: an HTTP/2 stream).
    pub fn with_state<R>(self, f: impl FnOnce(&ConnState) -> R) -> Option<R> {
        let me = self.mpm_data().cast::<ConnState>();
        // SAFETY: only `attach` stores into our slot, a ConnState alive as
        // long as the conn_rec; what is done with it is atomic or on the
        // thread that runs the connection.
        (!me.is_null()).then(|| f(unsafe { &*me }))
    }

    pub fn resume(self, thread: *mut sys::apr_thread_t, id: i64, sbh: SbHandle) {
        let c = self.as_ptr();
        // SAFETY: live conn_rec owned by the calling worker.
        unsafe {
            (*c).current_thread = thread;
            (*c).id = id;
            (*c).sbh = sbh.as_ptr().cast();
            sys::ap_run_resume_connection(c, ptr::null_mut());
        }
    }

    /// Tells modules the connection leaves its worker; the scoreboard handle
    /// is detached so nothing updates a slot the connection no longer has.
    pub fn suspend(self) {
        let c = self.as_ptr();
        // SAFETY: live conn_rec owned by the calling worker.
        unsafe {
            sys::ap_run_suspend_connection(c, ptr::null_mut());
            (*c).sbh = ptr::null_mut();
        }
    }

    /// Virtual host by address, then pre_connection hooks.
    pub fn pre_connection(self, sock: ClientSocket) -> bool {
        // SAFETY: live conn_rec and socket.
        unsafe {
            sys::ap_update_vhost_given_ip(self.as_ptr());
            let rc = sys::ap_pre_connection(self.as_ptr(), sock.as_ptr().cast());
            rc == sys::OK as i32 || rc == sys::DONE
        }
    }

    pub fn process(self) -> i32 {
        // SAFETY: live conn_rec; runs the protocol handlers.
        unsafe { sys::ap_run_process_connection(self.as_ptr()) }
    }

    /// Whether nothing but httpd's core keeps state for this connection
    /// between two requests, so that a fresh conn_rec built by
    /// pre_connection would serve the next request exactly as this one.
    /// Decided positively: not a secondary connection, nothing in its notes,
    /// every module configuration in `conn_config` and every connection
    /// filter one of those that only core and the modules below set up
    /// afresh for each connection and reset for each request. Anything else
    /// (TLS, HTTP/2, the PROXY protocol's address, a module's connection-
    /// bound authentication, any module we do not know) keeps it whole.
    pub fn only_core_state(self) -> bool {
        /// core, this MPM, mod_reqtimeout (timeouts restarted per request)
        /// and mod_logio (byte counts reset after each request's log line).
        const REBUILT_MODULES: [&CStr; 4] = [c"core.c", c"event.c", c"mod_reqtimeout.c", c"mod_logio.c"];
        /// Their connection filters (httpd stores filter names lower case).
        const REBUILT_FILTERS: [&CStr; 4] = [c"core_in", c"core", c"reqtimeout", c"log_input_output"];
        let c = self.as_ptr();
        // SAFETY: live conn_rec owned by the calling thread; the module list
        // is httpd's, fixed while children run; conn_config has a slot per
        // module index; filter records live as long as the configuration.
        unsafe {
            if !(*c).master.is_null() || sys::apr_is_empty_table((*c).notes) == 0 {
                return false;
            }
            let mut m = sys::ap_top_module;
            while !m.is_null() {
                let conf = *((*c).conn_config as *mut *mut c_void).add((*m).module_index as usize);
                if !conf.is_null() && !REBUILT_MODULES.iter().any(|&n| CStr::from_ptr((*m).name) == n) {
                    return false;
                }
                m = (*m).next;
            }
            for mut f in [(*c).input_filters, (*c).output_filters] {
                while !f.is_null() {
                    let name = CStr::from_ptr((*(*f).frec).name);
                    if !REBUILT_FILTERS.contains(&name) {
                        return false;
                    }
                    f = (*f).next;
                }
            }
        }
        true
    }

    /// Whether the connection still speaks HTTP/1.x (no module switched
    /// it to another protocol, such as h2 or h2c).
    pub fn speaks_http1(self) -> bool {
        // SAFETY: live conn_rec; ap_get_protocol returns a string of the
        // connection's or a static one.
        let p = unsafe { sys::ap_get_protocol(self.as_ptr()) };
        // SAFETY: null or a NUL-terminated string, read at once.
        p.is_null() || unsafe { CStr::from_ptr(p) }.to_bytes_with_nul() == sys::AP_PROTOCOL_HTTP1
    }

    /// Requests served on this connection (for MaxKeepAliveRequests).
    pub fn keepalives(self) -> i32 {
        // SAFETY: reads a field of a live conn_rec.
        unsafe { (*self.as_ptr()).keepalives }
    }

    pub fn set_keepalives(self, n: i32) {
        // SAFETY: writes a field of a live conn_rec we own.
        unsafe { (*self.as_ptr()).keepalives = n };
    }

    /// Tells modules a suspended connection resumes, just before its pool
    /// goes (stock's ptrans pre-cleanup).
    pub fn resume_for_cleanup(self) {
        // SAFETY: live conn_rec owned by the calling thread.
        unsafe { sys::ap_run_resume_connection(self.as_ptr(), ptr::null_mut()) };
    }

    pub fn clogging_input(self) -> bool {
        // SAFETY: reads a plain field of a live conn_rec.
        unsafe { sys::conn_rec::clogging_input_filters_raw(self.as_ptr()) != 0 }
    }

    pub fn aborted(self) -> bool {
        // SAFETY: reads a bitfield of a live conn_rec.
        unsafe { (*self.as_ptr()).aborted != 0 }
    }

    /// Flushes what the output filters hold without blocking, by calling the
    /// last filter (core's network filter) with no data, as stock does.
    pub fn flush_nonblocking(self) -> Result<AfterWrite, sys::apr_status_t> {
        let c = self.as_ptr();
        // SAFETY: live conn_rec; the filter chain ends in core's output
        // filter whose func takes a null brigade to mean "write pending".
        unsafe {
            let mut f = (*c).output_filters;
            while !(*f).next.is_null() {
                f = (*f).next;
            }
            let func = (*(*f).frec).filter_func.out_func.expect("output filter function");
            let rv = func(f, ptr::null_mut());
            if rv != 0 {
                return Err(rv);
            }
            Ok(AfterWrite {
                pending_output: (*c).data_in_output_filters != 0,
                pending_input: (*c).data_in_input_filters != 0,
                keepalive: (*c).keepalive == sys::ap_conn_keepalive_e_AP_CONN_KEEPALIVE,
                aborted: (*c).aborted != 0,
            })
        }
    }

    /// Starts lingering close (pre_close hooks: TLS close_notify, h2 GOAWAY,
    /// then shutdown for writing). True when the socket must be closed now.
    pub fn start_lingering_close(self) -> bool {
        // SAFETY: live conn_rec owned by the calling worker.
        unsafe { sys::ap_start_lingering_close(self.as_ptr()) != 0 }
    }

    pub fn note(self, key: &CStr) -> bool {
        // SAFETY: notes is the connection's live table.
        unsafe { !sys::apr_table_get((*self.as_ptr()).notes, key.as_ptr()).is_null() }
    }

    pub fn set_note(self, key: &'static CStr) {
        // SAFETY: static key and value, live table.
        unsafe { sys::apr_table_setn((*self.as_ptr()).notes, key.as_ptr(), c"1".as_ptr()) };
    }

    pub fn master(self) -> Option<Connection> {
        // SAFETY: reads a field of a live conn_rec.
        NonNull::new(unsafe { (*self.as_ptr()).master }).map(Connection)
    }

    pub fn state_ptr(self) -> *mut sys::conn_state_t {
        // SAFETY: reads a field of a live conn_rec.
        unsafe { (*self.as_ptr()).cs }
    }

    /// A secondary connection (HTTP/2 stream) gets its own state, in its
    /// pool, starting at PROCESSING.
    pub fn give_own_state(self) {
        let c = self.as_ptr();
        // SAFETY: pcalloc in the connection's own pool, which outlives it.
        unsafe {
            let cs = sys::apr_palloc((*c).pool, std::mem::size_of::<sys::conn_state_t>()).cast::<sys::conn_state_t>();
            cs.write(sys::conn_state_t {
                state: sys::conn_state_e_CONN_STATE_PROCESSING,
                sense: sys::conn_sense_e_CONN_SENSE_DEFAULT,
            });
            (*c).cs = cs;
            set_module_config((*c).conn_config, ptr::null_mut());
        }
    }

    /// Our per-connection object, as stored by `attach`.
    fn mpm_data(self) -> *mut c_void {
        // SAFETY: conn_config is the connection's live config vector.
        unsafe { get_module_config((*self.as_ptr()).conn_config) }
    }

    /// From now on, a read that would wait for the client times out at
    /// once (see `register_late_head_filter`).
    pub fn time_out_waiting_reads(self) {
        let late = LATE_HEAD.load(Ordering::Acquire);
        if late.is_null() {
            return;
        }
        // SAFETY: live conn_rec owned by the calling worker; the filter
        // record was registered for this configuration's lifetime.
        unsafe { sys::ap_add_input_filter_handle(late, ptr::null_mut(), ptr::null_mut(), self.as_ptr()) };
    }

    /// Reads wait for the client again (the head came after all).
    pub fn wait_in_reads(self) {
        let late = LATE_HEAD.load(Ordering::Acquire);
        // SAFETY: walks the connection's live filter chain; the filter
        // removed is ours, added by time_out_waiting_reads.
        unsafe {
            let mut f = (*self.as_ptr()).input_filters;
            while !f.is_null() {
                if (*f).frec == late {
                    return sys::ap_remove_input_filter(f);
                }
                f = (*f).next;
            }
        }
    }
}

fn our_index() -> usize {
    usize::try_from(super::module_index()).expect("module index assigned")
}

/// `ap_set_module_config` (a macro in httpd).
///
/// # Safety
/// `v` is a live config vector with a slot for every module.
unsafe fn set_module_config(v: *mut sys::ap_conf_vector_t, val: *mut c_void) {
    // SAFETY: the vector has one slot per module index.
    unsafe { *(v as *mut *mut c_void).add(our_index()) = val };
}

/// # Safety
/// As for set_module_config.
unsafe fn get_module_config(v: *mut sys::ap_conf_vector_t) -> *mut c_void {
    // SAFETY: as above.
    unsafe { *(v as *mut *mut c_void).add(our_index()) }
}

/// A request httpd passes to a hook, live while the hook runs.
#[derive(Debug, Clone, Copy)]
pub struct Request(NonNull<sys::request_rec>);

impl Request {
    /// # Safety
    /// `r` is a live request_rec for as long as the value is used.
    pub unsafe fn from_raw(r: *mut sys::request_rec) -> Option<Self> {
        NonNull::new(r).map(Request)
    }

    pub fn connection(self) -> Option<Connection> {
        // SAFETY: live request (from_raw).
        NonNull::new(unsafe { (*self.0.as_ptr()).connection }).map(Connection)
    }

    /// The request's keep-alive and I/O timeouts (µs): the request's virtual
    /// host when it sets KeepAliveTimeout, else the connection's base
    /// server, as stock's post_read_request does.
    pub fn timeouts(self) -> (i64, i64) {
        let r = self.0.as_ptr();
        // SAFETY: live request (from_raw); its server and connection live
        // at least as long.
        let s = unsafe {
            if sys::server_rec::keep_alive_timeout_set_raw((*r).server) != 0 {
                (*r).server
            } else {
                (*(*r).connection).base_server
            }
        };
        // SAFETY: as above.
        unsafe { VirtualHost::from_raw(s) }.map_or_else(server_timeouts, VirtualHost::timeouts)
    }
}

/// A server_rec (the main server or a virtual host): configuration, live
/// as long as the configuration generation.
#[derive(Debug, Clone, Copy)]
pub struct VirtualHost(NonNull<sys::server_rec>);

impl VirtualHost {
    /// # Safety
    /// `s` is a live server_rec of the current configuration.
    pub unsafe fn from_raw(s: *mut sys::server_rec) -> Option<Self> {
        NonNull::new(s).map(VirtualHost)
    }

    /// KeepAliveTimeout and Timeout (µs).
    pub fn timeouts(self) -> (i64, i64) {
        // SAFETY: live server_rec (from_raw).
        unsafe { ((*self.0.as_ptr()).keep_alive_timeout, (*self.0.as_ptr()).timeout) }
    }

    /// Identifies the server (its address) for lookups.
    pub fn key(self) -> usize {
        self.0.as_ptr() as usize
    }

    /// The server a connection on `sock` belongs to until its request names
    /// a host: httpd's own lookup by the local address (the default
    /// virtual host of that address and port, else the main server), as
    /// it makes the connection's `base_server`.
    pub fn of_connection(sock: ClientSocket) -> VirtualHost {
        // SAFETY: ap_update_vhost_given_ip reads only local_addr of the
        // conn_rec and writes its vhost fields; a zeroed conn_rec on the
        // stack serves, with the socket's own address (in its pool).
        unsafe {
            let mut c = sys::conn_rec { base_server: server(), ..Default::default() };
            let mut local = ptr::null_mut();
            if sys::apr_socket_addr_get(&mut local, sys::apr_interface_e_APR_LOCAL, sock.as_ptr()) == 0 && !local.is_null() {
                c.local_addr = local;
                sys::ap_update_vhost_given_ip(&mut c);
            }
            VirtualHost(NonNull::new(c.base_server).expect("the main server"))
        }
    }
}

/// The main server's KeepAliveTimeout and Timeout (µs).
pub fn server_timeouts() -> (i64, i64) {
    // SAFETY: ap_server_conf is set before any hook that asks and lives
    // as long as the configuration.
    unsafe { VirtualHost::from_raw(server()) }.map_or((0, 0), VirtualHost::timeouts)
}

pub fn max_mem_free() -> usize {
    // SAFETY: copying core's MaxMemFree setting.
    unsafe { sys::ap_max_mem_free as usize }
}

pub fn max_requests_per_child() -> i32 {
    // SAFETY: copying core's MaxConnectionsPerChild setting.
    unsafe { sys::ap_max_requests_per_child }
}

pub fn graceful_shutdown_timeout() -> i32 {
    // SAFETY: copying core's GracefulShutdownTimeout setting.
    unsafe { sys::ap_graceful_shutdown_timeout }
}

/// A directive being read (cmd_parms), live while its setter runs.
#[derive(Debug, Clone, Copy)]
pub struct Directive(NonNull<sys::cmd_parms>);

impl Directive {
    /// # Safety
    /// `cmd` is the live cmd_parms of the directive being read.
    pub unsafe fn from_raw(cmd: *mut sys::cmd_parms) -> Option<Self> {
        NonNull::new(cmd).map(Directive)
    }

    /// `ap_check_cmd_context(cmd, GLOBAL_ONLY)`: the error text, if any.
    pub fn global_only(self) -> Option<*const libc::c_char> {
        // SAFETY: live cmd_parms (from_raw).
        let err = unsafe { sys::ap_check_cmd_context(self.0.as_ptr(), sys::GLOBAL_ONLY) };
        (!err.is_null()).then_some(err)
    }

    pub fn name(self) -> String {
        // SAFETY: the cmd_parms and its command_rec are live (from_raw).
        unsafe { super::cstr((*(*self.0.as_ptr()).cmd).name).to_owned() }
    }

    /// Copies an error message into the directive's pool, for httpd to print.
    pub fn error(self, msg: &str) -> *const libc::c_char {
        let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
        // SAFETY: live cmd_parms; apr_pstrdup copies into its pool, which
        // outlives the message.
        unsafe { sys::apr_pstrdup((*self.0.as_ptr()).pool, c.as_ptr()) }
    }
}

/// ExtendedStatus is re-read with the configuration; MPMs reset it first.
pub fn reset_extended_status() {
    // SAFETY: plain store to core's global, in the single-threaded parent.
    unsafe { sys::ap_extended_status = 0 };
}

/// The most of a request head worth looking at before handing the
/// connection to a worker: the request line plus LimitRequestFields fields
/// of LimitRequestFieldSize, but no more than 64 KiB (a head that large is
/// handed over when that much has arrived).
pub fn request_head_cap() -> usize {
    // SAFETY: reads plain ints of the main server.
    let (line, size, fields) = unsafe {
        let s = server();
        ((*s).limit_req_line, (*s).limit_req_fieldsize, (*s).limit_req_fields)
    };
    let limit = i64::from(line.max(0)) + i64::from(size.max(0)) * i64::from(fields.max(1));
    limit.clamp(1024, 64 << 10) as usize
}

/// The request mod_status is answering, to append our section to.
#[derive(Clone, Copy)]
pub struct StatusRequest(NonNull<sys::request_rec>);

impl StatusRequest {
    /// # Safety
    /// `r` is the live request of mod_status's handler.
    pub unsafe fn from_raw(r: *mut sys::request_rec) -> Option<Self> {
        NonNull::new(r).map(StatusRequest)
    }

    pub fn puts(self, s: &str) {
        let len = i32::try_from(s.len()).unwrap_or(i32::MAX);
        // SAFETY: live request; ap_rwrite copies `len` bytes of `s`.
        unsafe { sys::ap_rwrite(s.as_ptr().cast(), len, self.0.as_ptr()) };
    }
}

/// Adds our status_hook to mod_status (an optional hook, so nothing
/// happens when mod_status is not loaded).
pub fn register_status_hook(f: unsafe extern "C" fn(*mut sys::request_rec, i32) -> i32) {
    // SAFETY: the hook name is mod_status's; the function matches its
    // signature int (request_rec *, int).
    unsafe {
        let pfn: unsafe extern "C" fn() = std::mem::transmute(f as *const ());
        sys::apr_optional_hook_add(c"status_hook".as_ptr(), Some(pfn), ptr::null(), ptr::null(), sys::APR_HOOK_MIDDLE as i32);
    }
}

/// Whether a module is loaded, by its source file name ("mod_reqtimeout.c").
pub fn module_loaded(name: &CStr) -> bool {
    // SAFETY: read-only lookup in httpd's module list.
    !unsafe { sys::ap_find_linked_module(name.as_ptr()) }.is_null()
}

/// Every server (the main one first, then each virtual host) with the
/// arguments of `directive` in its own section of the configuration (in
/// `<If...>` sections too, whatever their condition): a virtual host's
/// section is the `<VirtualHost>` block it was defined by.
pub fn directive_by_server(directive: &str) -> Vec<(VirtualHost, Vec<String>)> {
    /// (file, line) of each `<VirtualHost>` block, with what it holds.
    type Sections = Vec<((String, u32), Vec<String>)>;
    fn walk(mut d: *mut sys::ap_directive_t, name: &str, out: &mut Vec<String>, vhosts: &mut Sections) {
        while !d.is_null() {
            // SAFETY: ap_conftree is the parsed configuration, alive while
            // the configuration is; its nodes are read only.
            let (dname, args, child, next, file, line) = unsafe {
                ((super::cstr((*d).directive)), super::cstr((*d).args), (*d).first_child, (*d).next,
                 super::cstr((*d).filename), (*d).line_num)
            };
            if dname.eq_ignore_ascii_case(name) {
                out.push(args.to_owned());
            } else if dname.eq_ignore_ascii_case("<VirtualHost") {
                let mut own = Vec::new();
                walk(child, name, &mut own, vhosts);
                vhosts.push(((file.to_owned(), line as u32), own));
            } else if dname.len() > 3 && dname[..3].eq_ignore_ascii_case("<If") {
                walk(child, name, out, vhosts);
            }
            d = next;
        }
    }
    let (mut main, mut vhosts) = (Vec::new(), Vec::new());
    // SAFETY: copying the global tree pointer.
    walk(unsafe { sys::ap_conftree }, directive, &mut main, &mut vhosts);
    let mut out = Vec::new();
    let mut s = server();
    while let Some(vh) = NonNull::new(s).map(VirtualHost) {
        // SAFETY: the server list lives as long as the configuration.
        let (file, line, next) = unsafe { (super::cstr((*s).defn_name), (*s).defn_line_number, (*s).next) };
        let own = if out.is_empty() {
            std::mem::take(&mut main)
        } else {
            vhosts.iter().find(|(at, _)| at.0 == file && at.1 == line).map(|(_, own)| own.clone()).unwrap_or_default()
        };
        out.push((vh, own));
        s = next;
    }
    out
}

/// The connection filter that makes httpd meet a request head's deadline
/// as if it had waited for the head itself: the MPM waited in its pollset
/// instead, and at the deadline hands the connection to httpd with this
/// filter, which reads what is there and reports APR_TIMEUP where a read
/// would have to wait. httpd (and mod_reqtimeout above it) then answer as
/// they do when their own timer runs out: 408, logged. It sits just above
/// core's network filter.
static LATE_HEAD: AtomicPtr<sys::ap_filter_rec_t> = AtomicPtr::new(ptr::null_mut());

/// Registers the filter (at every load of the module: the record lives in
/// httpd's filter registry, which is rebuilt with the configuration).
pub fn register_late_head_filter(func: sys::ap_in_filter_func) {
    // SAFETY: a static name and our guarded filter function.
    let rec = unsafe {
        sys::ap_register_input_filter(c"mpm_event_rs_late_head".as_ptr(), func, None, sys::ap_filter_type_AP_FTYPE_NETWORK - 1)
    };
    LATE_HEAD.store(rec, Ordering::Release);
}

/// The late-head filter's body: the next filter's data without waiting,
/// APR_TIMEUP when there is none yet, or only part of a line (a caller
/// reading lines, mod_reqtimeout for one, would wait for the rest by
/// itself; the line is of a request that ends here).
///
/// # Safety
/// httpd's arguments to an input filter: live filter and brigade.
pub unsafe fn read_without_waiting(f: *mut sys::ap_filter_t, bb: *mut sys::apr_bucket_brigade, mode: sys::ap_input_mode_t, readbytes: sys::apr_off_t) -> sys::apr_status_t {
    const TIMEUP: sys::apr_status_t = sys::APR_TIMEUP as sys::apr_status_t;
    // SAFETY: as the caller guarantees; the brigade's list head is a
    // sentinel whose next points back at it when the brigade is empty.
    unsafe {
        let rv = sys::ap_get_brigade((*f).next, bb, mode, sys::apr_read_type_e_APR_NONBLOCK_READ, readbytes);
        if rv == sys::APR_EAGAIN as sys::apr_status_t {
            return TIMEUP;
        }
        let sentinel = ptr::addr_of_mut!((*bb).list).cast::<sys::apr_bucket>();
        if rv != 0 {
            return rv;
        }
        if (*bb).list.next == sentinel {
            return TIMEUP;
        }
        if mode == sys::ap_input_mode_t_AP_MODE_GETLINE && !ends_a_line(bb) {
            sys::apr_brigade_cleanup(bb.cast());
            return TIMEUP;
        }
        rv
    }
}

/// Whether a brigade read by line ends with its line feed.
///
/// # Safety
/// `bb` is a live brigade of in-memory buckets (a line core has read).
unsafe fn ends_a_line(bb: *mut sys::apr_bucket_brigade) -> bool {
    // SAFETY: as the caller guarantees; the buffer holds `len` bytes.
    unsafe {
        let mut len: sys::apr_off_t = 0;
        if sys::apr_brigade_length(bb, 1, &mut len) != 0 || len <= 0 {
            return false;
        }
        let mut buf = vec![0u8; len as usize];
        let mut got = buf.len() as sys::apr_size_t;
        sys::apr_brigade_flatten(bb, buf.as_mut_ptr().cast(), &mut got) == 0 && got > 0 && buf[got as usize - 1] == b'\n'
    }
}

/// A module's timed callback.
pub type TimedCallback = unsafe extern "C" fn(*mut c_void);

/// Runs a module's timed callback (registered through
/// `ap_mpm_register_timed_callback`) once, on the calling worker.
pub fn run_timed_callback(func: TimedCallback, baton: super::SendPtr<c_void>) {
    // SAFETY: the module registered this function with this argument, for
    // the MPM to call once from any of its threads.
    unsafe { func(baton.0) }
}
