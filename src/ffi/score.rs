//! The scoreboard in shared memory: what mod_status and the parent read.
//! Every access goes through volatile reads and writes because other
//! processes (the parent, mod_status in any child) read and write the same
//! words concurrently, exactly as httpd's own C code does.

use std::ptr::{addr_of, addr_of_mut};

use super::sys;

/// The per-process counters an async MPM publishes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProcessCounters {
    pub connections: u32,
    pub write_completion: u32,
    pub lingering_close: u32,
    pub keep_alive: u32,
    pub wait_io: u32,
}

fn image() -> *mut sys::scoreboard {
    // SAFETY: copying the global pointer; httpd sets it in pre_mpm (parent)
    // or ap_reopen_scoreboard (child) before the MPM reads it.
    let sb = unsafe { sys::ap_scoreboard_image };
    assert!(!sb.is_null(), "scoreboard not attached");
    sb
}

fn process_ptr(slot: usize) -> *mut sys::process_score {
    // SAFETY: `parent` is an array of ServerLimit entries; callers pass
    // slots below ServerLimit (checked by the callers' loops).
    unsafe { (*image()).parent.add(slot) }
}

fn worker_ptr(slot: usize, thread: usize) -> *mut sys::worker_score {
    // SAFETY: `servers` is ServerLimit arrays of ThreadLimit entries.
    unsafe { (*(*image()).servers.add(slot)).add(thread) }
}

macro_rules! rw {
    ($get:ident, $set:ident, $field:ident, $t:ty) => {
        pub fn $get(slot: usize) -> $t {
            // SAFETY: see process_ptr; volatile because other processes write it.
            unsafe { addr_of!((*process_ptr(slot)).$field).read_volatile() }
        }
        pub fn $set(slot: usize, v: $t) {
            // SAFETY: see process_ptr.
            unsafe { addr_of_mut!((*process_ptr(slot)).$field).write_volatile(v) }
        }
    };
}

rw!(pid, set_pid, pid, libc::pid_t);
rw!(generation, set_generation, generation, i32);
rw!(quiescing, set_quiescing, quiescing, i8);
rw!(not_accepting, set_not_accepting, not_accepting, i8);

pub fn connections(slot: usize) -> u32 {
    // SAFETY: see process_ptr.
    unsafe { addr_of!((*process_ptr(slot)).connections).read_volatile() }
}

pub fn set_counters(slot: usize, c: ProcessCounters) {
    let p = process_ptr(slot);
    // SAFETY: see process_ptr.
    unsafe {
        addr_of_mut!((*p).connections).write_volatile(c.connections);
        addr_of_mut!((*p).write_completion).write_volatile(c.write_completion);
        addr_of_mut!((*p).lingering_close).write_volatile(c.lingering_close);
        addr_of_mut!((*p).keep_alive).write_volatile(c.keep_alive);
        addr_of_mut!((*p).wait_io).write_volatile(c.wait_io);
    }
}

pub fn worker_status(slot: usize, thread: usize) -> u32 {
    // SAFETY: see worker_ptr.
    unsafe { u32::from(addr_of!((*worker_ptr(slot, thread)).status).read_volatile()) }
}

/// Claims a worker slot for the calling thread, as mod_status shows it.
pub fn set_worker_identity(slot: usize, thread: usize, pid: libc::pid_t, generation: i32) {
    let w = worker_ptr(slot, thread);
    // SAFETY: see worker_ptr; pthread_self has no preconditions.
    unsafe {
        addr_of_mut!((*w).pid).write_volatile(pid);
        addr_of_mut!((*w).tid).write_volatile(libc::pthread_self());
        addr_of_mut!((*w).generation).write_volatile(generation);
    }
}

/// Sets a worker's status through httpd, which also keeps its timing and
/// request fields consistent for mod_status.
pub fn update_worker(slot: usize, thread: usize, status: u32) {
    // SAFETY: indexes are within the scoreboard (see worker_ptr); a null
    // request is allowed.
    unsafe {
        sys::ap_update_child_status_from_indexes(
            slot as i32,
            thread as i32,
            status as i32,
            std::ptr::null_mut(),
        )
    };
}

/// Sets a connection's worker status through its scoreboard handle.
pub fn update_handle(sbh: super::httpd::SbHandle, status: u32) {
    // SAFETY: sbh lives in its connection's pool (see SbHandle); a null
    // request is allowed.
    unsafe { sys::ap_update_child_status(sbh.as_ptr(), status as i32, std::ptr::null_mut()) };
}

pub fn set_running_generation(generation: i32) {
    // SAFETY: `global` points to the single global_score.
    unsafe { addr_of_mut!((*(*image()).global).running_generation).write_volatile(generation) }
}

pub fn is_attached() -> bool {
    // SAFETY: copying the global pointer.
    !unsafe { sys::ap_scoreboard_image }.is_null()
}

pub fn set_suspended(slot: usize, n: u32) {
    // SAFETY: see process_ptr.
    unsafe { addr_of_mut!((*process_ptr(slot)).suspended).write_volatile(n) }
}

pub fn counters(slot: usize) -> ProcessCounters {
    let p = process_ptr(slot);
    // SAFETY: see process_ptr.
    unsafe {
        ProcessCounters {
            connections: addr_of!((*p).connections).read_volatile(),
            write_completion: addr_of!((*p).write_completion).read_volatile(),
            lingering_close: addr_of!((*p).lingering_close).read_volatile(),
            keep_alive: addr_of!((*p).keep_alive).read_volatile(),
            wait_io: addr_of!((*p).wait_io).read_volatile(),
        }
    }
}
