//! A child process's calls into httpd: its set-up (signals, privileges,
//! hooks), its threads, and the timed callbacks modules register.

use std::ffi::c_void;
use std::ptr::{self, NonNull};

use crate::ffi::pool::Pool;
use crate::ffi::sys;

use super::server;

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
pub struct Thread(pub(super) NonNull<sys::apr_thread_t>);

// SAFETY: the handle is only used to join, from the thread that made it.
unsafe impl Send for Thread {}

/// Starts a thread running `main`, which is given the APR thread it runs
/// on; a panic in it ends the child process (`guard_child_thread`).
pub fn spawn<F: FnOnce(*mut sys::apr_thread_t) + Send + 'static>(pool: &Pool, main: F) -> Result<Thread, sys::apr_status_t> {
    unsafe extern "C" fn start<F: FnOnce(*mut sys::apr_thread_t)>(thd: *mut sys::apr_thread_t, arg: *mut c_void) -> *mut c_void {
        // SAFETY: arg is the Box<F> that spawn made for this thread alone.
        let main = unsafe { Box::from_raw(arg.cast::<F>()) };
        crate::ffi::guard::guard_child_thread(|| main(thd));
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

/// A module's timed callback.
pub type TimedCallback = unsafe extern "C" fn(*mut c_void);

/// Runs a module's timed callback (registered through
/// `ap_mpm_register_timed_callback`) once, on the calling worker.
pub fn run_timed_callback(func: TimedCallback, baton: crate::ffi::SendPtr<c_void>) {
    // SAFETY: the module registered this function with this argument, for
    // the MPM to call once from any of its threads.
    unsafe { func(baton.0) }
}
