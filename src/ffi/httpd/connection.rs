//! A connection's calls into httpd: its conn_rec (made, run, suspended and
//! resumed, flushed, closed), its scoreboard handle, and this module's slot
//! in its configuration vector.

use std::ffi::{CStr, c_void};
use std::ptr::{self, NonNull};
use std::sync::atomic::Ordering;

use crate::ffi::pool::Pool;
use crate::ffi::socket::ClientSocket;
use crate::ffi::sys;

use super::filter::LATE_HEAD;
use super::server;
use super::state::ConnState;

/// A connection record made by httpd's core for one of our sockets.
#[derive(Debug, Clone, Copy)]
pub struct Connection(pub(super) NonNull<sys::conn_rec>);

// SAFETY: moves with its connection between threads; one user at a time.
unsafe impl Send for Connection {}

/// A connection's scoreboard handle, allocated in the connection's pool:
/// whoever holds it holds that pool too.
#[derive(Debug, Clone, Copy)]
pub struct SbHandle(pub(super) NonNull<sys::ap_sb_handle_t>);

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

pub(super) fn our_index() -> usize {
    usize::try_from(crate::ffi::module_index()).expect("module index assigned")
}

/// `ap_set_module_config` (a macro in httpd).
///
/// # Safety
/// `v` is a live config vector with a slot for every module.
pub(super) unsafe fn set_module_config(v: *mut sys::ap_conf_vector_t, val: *mut c_void) {
    // SAFETY: the vector has one slot per module index.
    unsafe { *(v as *mut *mut c_void).add(our_index()) = val };
}

/// # Safety
/// As for set_module_config.
pub(super) unsafe fn get_module_config(v: *mut sys::ap_conf_vector_t) -> *mut c_void {
    // SAFETY: as above.
    unsafe { *(v as *mut *mut c_void).add(our_index()) }
}
