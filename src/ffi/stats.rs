//! Per-child figures the scoreboard has no room for (pollset size, queued
//! work, dispatch latency), in a small shared mapping made once by the
//! parent, so that mod_status in any child can show every child's.

use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

#[repr(C)]
#[derive(Default)]
pub struct ChildStats {
    pub pid: AtomicI32,
    /// Connections parked in the pollset.
    pub pollset: AtomicU32,
    /// Tasks waiting for a worker.
    pub queued: AtomicU32,
    /// Timed callbacks pending.
    pub timers: AtomicU32,
    /// Connections waiting for the rest of a request head.
    pub heads: AtomicU32,
    /// Plain HTTP/1 connections idle between requests for less than the
    /// time after which they are dehydrated (`Wait::KeepAlive`): clients in
    /// the middle of a series of requests, whose next one is on its way
    /// (`balance::load`).
    pub resting: AtomicU32,
    /// ConnectionBudget in force, and how many waiting connections were
    /// closed to make room (`crate::budget`).
    pub budget: AtomicU32,
    pub evicted: AtomicU64,
    pub dispatches: AtomicU64,
    pub dispatch_ns_total: AtomicU64,
    pub dispatch_ns_max: AtomicU64,
    /// The listener leaves new connections to the other children for a
    /// moment (`balance`).
    pub yielding: AtomicBool,
}

impl ChildStats {
    pub fn reset(&self, pid: i32) {
        self.pid.store(pid, Ordering::Relaxed);
        for a in [&self.pollset, &self.queued, &self.timers, &self.heads, &self.resting, &self.budget] {
            a.store(0, Ordering::Relaxed);
        }
        for a in [&self.dispatches, &self.dispatch_ns_total, &self.dispatch_ns_max, &self.evicted] {
            a.store(0, Ordering::Relaxed);
        }
        self.yielding.store(false, Ordering::SeqCst);
    }

    /// A task waited `d` between the listener queuing it and a worker
    /// taking it.
    pub fn dispatched(&self, d: Duration) {
        let ns = d.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.dispatches.fetch_add(1, Ordering::Relaxed);
        self.dispatch_ns_total.fetch_add(ns, Ordering::Relaxed);
        self.dispatch_ns_max.fetch_max(ns, Ordering::Relaxed);
    }

    /// Mean and largest dispatch latency, in µs.
    pub fn latency_us(&self) -> (u64, u64) {
        let n = self.dispatches.load(Ordering::Relaxed).max(1);
        (
            self.dispatch_ns_total.load(Ordering::Relaxed) / n / 1000,
            self.dispatch_ns_max.load(Ordering::Relaxed) / 1000,
        )
    }
}

static TABLE: AtomicPtr<ChildStats> = AtomicPtr::new(null_mut());
static LEN: AtomicU32 = AtomicU32::new(0);

/// A placeholder for when the table is missing (mapping failed): writes
/// are dropped, reads are zero.
static NOWHERE: ChildStats = ChildStats {
    pid: AtomicI32::new(0),
    pollset: AtomicU32::new(0),
    queued: AtomicU32::new(0),
    timers: AtomicU32::new(0),
    heads: AtomicU32::new(0),
    resting: AtomicU32::new(0),
    budget: AtomicU32::new(0),
    evicted: AtomicU64::new(0),
    dispatches: AtomicU64::new(0),
    dispatch_ns_total: AtomicU64::new(0),
    dispatch_ns_max: AtomicU64::new(0),
    yielding: AtomicBool::new(false),
};

/// Maps the table (once per server life: the pointer is kept in retained
/// data and given back here after every reload of the DSO).
pub fn attach(existing: *mut ChildStats, slots: usize) -> *mut ChildStats {
    let table = if existing.is_null() {
        let size = slots.max(1) * std::mem::size_of::<ChildStats>();
        // SAFETY: an anonymous shared mapping, zero-filled, which is a valid
        // ChildStats array (all atomics); children inherit it across fork.
        let p = unsafe {
            libc::mmap(null_mut(), size, libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0)
        };
        if p == libc::MAP_FAILED { null_mut() } else { p.cast() }
    } else {
        existing
    };
    TABLE.store(table, Ordering::Release);
    LEN.store(if table.is_null() { 0 } else { slots as u32 }, Ordering::Release);
    table
}

pub fn get(slot: usize) -> &'static ChildStats {
    let t = TABLE.load(Ordering::Acquire);
    if t.is_null() || slot >= LEN.load(Ordering::Acquire) as usize {
        return &NOWHERE;
    }
    // SAFETY: the mapping holds LEN entries and is never unmapped.
    unsafe { &*t.add(slot) }
}

pub fn slots() -> usize {
    LEN.load(Ordering::Acquire) as usize
}
