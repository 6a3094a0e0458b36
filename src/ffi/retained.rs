//! State that must outlive a generation (and the DSO, which httpd unloads at
//! every restart): kept in httpd's retained-data block, never in statics.

use std::ffi::CStr;
use std::ptr::{addr_of, null_mut};
use std::sync::atomic::{AtomicPtr, Ordering};

use super::{httpd, sys};

const KEY: &CStr = c"mod_mpm_event_rs_retained";

/// Largest idle_spawn_rate (children spawned per maintenance cycle).
pub const MAX_SPAWN_RATE: i32 = 32;

/// The limits fixed by the first generation: ServerLimit and ThreadLimit
/// cannot change across restarts (the scoreboard is sized by them).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FirstLimits {
    pub server_limit: i32,
    pub thread_limit: i32,
}

#[repr(C)]
pub struct Retained {
    pub mpm: *mut sys::ap_unixd_mpm_retained_data,
    pub first: FirstLimits,
    pub sick_child_detected: i32,
    pub maxclients_reported: i32,
    pub near_maxclients_reported: i32,
    /// Highest scoreboard slot ever used + 1.
    pub max_daemon_used: i32,
    /// Children alive, including those stopping.
    pub total_daemons: i32,
    /// Children alive and not stopping.
    pub active_daemons: i32,
    pub hold_off_on_exponential_spawning: i32,
    /// When the last graceful restart began (CLOCK_MONOTONIC ns): children
    /// of older generations still alive GracefulShutdownTimeout later are
    /// stopped.
    pub last_graceful_ns: i64,
    /// The shared per-child statistics table (see `stats`).
    pub stats: *mut super::stats::ChildStats,
    /// One rate per listener bucket; allocated with the system allocator
    /// so that it survives the DSO being unloaded.
    pub idle_spawn_rate: *mut i32,
    pub spawn_rate_len: usize,
}

static RETAINED: AtomicPtr<Retained> = AtomicPtr::new(null_mut());

/// Finds or makes the retained block (pre_config, every load of the DSO).
/// Returns whether it was new.
pub fn attach() -> bool {
    let (p, new) = httpd::retained_data(KEY, std::mem::size_of::<Retained>());
    let r = p.cast::<Retained>();
    if new {
        // SAFETY: freshly created, zeroed, exclusively ours.
        unsafe { (*r).mpm = httpd::unixd_retained() };
    }
    RETAINED.store(r, Ordering::Release);
    new
}

/// The retained block, for the parent's main thread (hooks and the main
/// loop run there, one at a time).
pub fn get() -> &'static mut Retained {
    let r = RETAINED.load(Ordering::Acquire);
    assert!(!r.is_null(), "retained data not attached");
    // SAFETY: set by attach() to httpd's process-lifetime block; only the
    // parent's main thread takes this &mut (see mpm_state for others).
    unsafe { &mut *r }
}

/// httpd's shared MPM state (generation, restart flags, mpm_state).
pub fn mpm() -> &'static mut sys::ap_unixd_mpm_retained_data {
    // SAFETY: httpd's process-lifetime structure; the signal handlers that
    // write its flags do so as in every httpd MPM.
    unsafe { &mut *get().mpm }
}

/// Reads for mpm_query, which any thread of a child may call: no `&mut`.
pub fn read(f: impl FnOnce(*const Retained, *const sys::ap_unixd_mpm_retained_data) -> i32) -> i32 {
    let r = RETAINED.load(Ordering::Acquire);
    if r.is_null() {
        return 0;
    }
    // SAFETY: r is live (see get); only raw reads are made through it.
    unsafe { f(r, (*addr_of!((*r).mpm)).cast_const()) }
}

/// CLOCK_MONOTONIC in ns: an Instant cannot be kept across the DSO reload.
pub fn monotonic_ns() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes into a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

impl Retained {
    /// Makes room for `n` bucket spawn rates; new buckets start at the
    /// highest rate so far, so that they fill as fast as the others.
    pub fn ensure_buckets(&mut self, n: usize) {
        if n <= self.spawn_rate_len {
            return;
        }
        let old = self.spawn_rates().to_vec();
        let top = old.iter().copied().max().unwrap_or(1).max(1);
        let mut rates = old;
        rates.resize(n, top);
        // The previous array is leaked on purpose: buckets only grow, rarely.
        self.idle_spawn_rate = Box::leak(rates.into_boxed_slice()).as_mut_ptr();
        self.spawn_rate_len = n;
    }

    pub fn spawn_rates(&mut self) -> &mut [i32] {
        if self.idle_spawn_rate.is_null() {
            return &mut [];
        }
        // SAFETY: a leaked boxed slice of spawn_rate_len entries.
        unsafe { std::slice::from_raw_parts_mut(self.idle_spawn_rate, self.spawn_rate_len) }
    }
}
