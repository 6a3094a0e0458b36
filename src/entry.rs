//! Every function httpd calls into: the module record httpd loads
//! (`mpm_event_module`, named "event.c" like stock so that `<IfModule
//! mpm_event_module>` and mod_http2's check for "event.c" work), hooks,
//! directive setters. Each one runs its body through the panic guard; the
//! bodies live in the other modules.

use std::ffi::{CStr, c_char};
use std::ptr;

use crate::config::{self, NumberDirective};
use crate::connection;
use crate::ffi::guard::guard;
use crate::ffi::httpd::{self, Connection};
use crate::ffi::pool::PoolRef;
use crate::ffi::{cstr, log, retained, sys};
use crate::parent;
use crate::process;

/// httpd writes module_index, next, name and dynamic_load_handle into this
/// record, so it must be a writable static.
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static mut mpm_event_module: sys::module = sys::module {
    version: sys::MODULE_MAGIC_NUMBER_MAJOR as i32,
    minor_version: sys::MODULE_MAGIC_NUMBER_MINOR as i32,
    module_index: -1,
    name: c"event.c".as_ptr(),
    dynamic_load_handle: ptr::null_mut(),
    next: ptr::null_mut(),
    magic: sys::MODULE_MAGIC_COOKIE as std::ffi::c_ulong,
    rewrite_args: None,
    create_dir_config: None,
    merge_dir_config: None,
    create_server_config: None,
    merge_server_config: None,
    cmds: (&raw const sys::event_rs_cmds).cast::<sys::command_rec>(),
    register_hooks: Some(register_hooks),
    flags: 0,
};

/// Our index in httpd's per-module configuration vectors.
fn module_index() -> i32 {
    // SAFETY: httpd writes module_index once, at load, before any hook; a
    // plain read of an int.
    unsafe { ptr::addr_of!(mpm_event_module.module_index).read() }
}

const OK: i32 = sys::OK as i32;
const DECLINED: i32 = sys::DECLINED;
const FAILED: i32 = sys::HTTP_INTERNAL_SERVER_ERROR as i32;

/// # Safety
/// Called by httpd only (the module record's hook registration).
pub unsafe extern "C" fn register_hooks(_p: *mut sys::apr_pool_t) {
    guard((), || {
        // httpd has given the module its index by now (ap_add_module).
        crate::ffi::set_module_index(module_index());
        // Our open_logs must run before core's redirects stderr to the log.
        static CORE: SyncPtrs = SyncPtrs([c"core.c".as_ptr(), ptr::null()]);
        let really_first = sys::APR_HOOK_REALLY_FIRST;
        let middle = sys::APR_HOOK_MIDDLE as i32;
        // SAFETY: registering our guarded extern fns with httpd's hook
        // tables; the predecessor/successor arrays are static.
        unsafe {
            sys::ap_hook_open_logs(Some(open_logs), ptr::null(), CORE.0.as_ptr().cast(), really_first);
            sys::ap_hook_pre_config(Some(pre_config), ptr::null(), ptr::null(), really_first);
            sys::ap_hook_check_config(Some(check_config), ptr::null(), ptr::null(), middle);
            sys::ap_hook_mpm(Some(mpm), ptr::null(), ptr::null(), middle);
            sys::ap_hook_mpm_query(Some(mpm_query), ptr::null(), ptr::null(), middle);
            sys::ap_hook_mpm_get_name(Some(mpm_get_name), ptr::null(), ptr::null(), middle);
            sys::ap_hook_post_read_request(Some(post_read_request), ptr::null(), ptr::null(), middle);
            sys::ap_hook_pre_connection(Some(pre_connection), ptr::null(), ptr::null(), really_first);
            sys::ap_hook_protocol_switch(Some(protocol_switch), ptr::null(), ptr::null(), really_first);
            sys::ap_hook_mpm_register_timed_callback(Some(register_timed_callback), ptr::null(), ptr::null(), middle);
        }
        httpd::register_status_hook(status_hook);
        httpd::register_late_head_filter(Some(late_head_filter));
    });
}

/// A static hook-ordering list (raw pointers in a static need Sync).
struct SyncPtrs([*const c_char; 2]);
// SAFETY: read-only pointers to static strings.
unsafe impl Sync for SyncPtrs {}

unsafe extern "C" fn pre_config(pconf: *mut sys::apr_pool_t, _plog: *mut sys::apr_pool_t, _ptemp: *mut sys::apr_pool_t) -> i32 {
    guard(FAILED, || {
        let debug = httpd::config_define(c"DEBUG");
        let one = debug || httpd::config_define(c"ONE_PROCESS");
        let no_detach = !debug && httpd::config_define(c"NO_DETACH");
        let foreground = debug || httpd::config_define(c"FOREGROUND");
        process::set_one_process(one);
        process::set_generation(None);

        retained::attach();
        let r: *mut retained::Retained = retained::get();
        let mpm = retained::mpm();
        mpm.mpm_state = sys::AP_MPMQ_STARTING as i32;
        if mpm.baton != r.cast() {
            mpm.was_graceful = 0;
            mpm.baton = r.cast();
        }
        mpm.module_loads += 1;

        // httpd reads the configuration twice at start-up; detach on the
        // second pass, as stock does.
        if mpm.module_loads == 2 && !one && !foreground {
            // SAFETY: pconf is httpd's configuration pool.
            let pconf = unsafe { PoolRef::from_raw(pconf) }.expect("pconf");
            httpd::fatal_signal_setup(pconf);
            let rv = httpd::detach(!no_detach);
            if rv != 0 {
                log::startup(sys::APLOG_CRIT, "AH00496: apr_proc_detach failed");
                return FAILED;
            }
        }
        httpd::listen_pre_config();
        httpd::reset_extended_status();
        config::update(|c| *c = config::MpmConfig::default());
        OK
    })
}

unsafe extern "C" fn open_logs(p: *mut sys::apr_pool_t, _plog: *mut sys::apr_pool_t, _ptemp: *mut sys::apr_pool_t, _s: *mut sys::server_rec) -> i32 {
    guard(FAILED, || {
        let startup = retained::mpm().module_loads == 1;
        // SAFETY: p is pconf, alive for the generation.
        let pconf = unsafe { PoolRef::from_raw(p) }.expect("pconf");
        if parent::open_listeners(pconf, startup) { OK } else { FAILED }
    })
}

unsafe extern "C" fn check_config(_p: *mut sys::apr_pool_t, _plog: *mut sys::apr_pool_t, _ptemp: *mut sys::apr_pool_t, _s: *mut sys::server_rec) -> i32 {
    guard(FAILED, || {
        let startup = retained::mpm().module_loads == 1;
        let r = retained::get();
        let mut warnings = Vec::new();
        config::update(|c| {
            warnings = c.check(&mut r.first);
        });
        for w in warnings {
            if startup {
                log::startup(sys::APLOG_WARNING, &w.startup);
            } else {
                log::error(sys::APLOG_WARNING, 0, &w.restart);
            }
        }
        OK
    })
}

unsafe extern "C" fn mpm(pconf: *mut sys::apr_pool_t, plog: *mut sys::apr_pool_t, _s: *mut sys::server_rec) -> i32 {
    guard(FAILED, || {
        // SAFETY: httpd's pools for this generation.
        let (pconf, plog) = unsafe { (PoolRef::from_raw(pconf), PoolRef::from_raw(plog)) };
        parent::run(pconf.expect("pconf"), plog.expect("plog"))
    })
}

unsafe extern "C" fn mpm_query(code: i32, result: *mut i32, rv: *mut sys::apr_status_t) -> i32 {
    guard(DECLINED, || {
        let cfg = config::current();
        let answer = match code as u32 {
            sys::AP_MPMQ_MAX_DAEMON_USED => Some(retained::read(|r, _| {
                // SAFETY: raw read of a retained int.
                unsafe { (*r).max_daemon_used }
            })),
            sys::AP_MPMQ_IS_THREADED => Some(sys::AP_MPMQ_STATIC as i32),
            sys::AP_MPMQ_IS_FORKED => Some(sys::AP_MPMQ_DYNAMIC as i32),
            sys::AP_MPMQ_IS_ASYNC | sys::AP_MPMQ_CAN_WAITIO => Some(1),
            sys::AP_MPMQ_HARD_LIMIT_DAEMONS => Some(cfg.server_limit),
            sys::AP_MPMQ_HARD_LIMIT_THREADS => Some(cfg.thread_limit),
            sys::AP_MPMQ_MAX_THREADS => Some(cfg.threads_per_child),
            sys::AP_MPMQ_MIN_SPARE_DAEMONS | sys::AP_MPMQ_MAX_SPARE_DAEMONS => Some(0),
            sys::AP_MPMQ_MIN_SPARE_THREADS => Some(cfg.min_spare_threads),
            sys::AP_MPMQ_MAX_SPARE_THREADS => Some(cfg.max_spare_threads),
            sys::AP_MPMQ_MAX_REQUESTS_DAEMON => Some(httpd::max_requests_per_child()),
            sys::AP_MPMQ_MAX_DAEMONS => Some(cfg.active_daemons_limit),
            sys::AP_MPMQ_MPM_STATE => Some(retained::read(|_, m| {
                // SAFETY: raw read of httpd's retained MPM state.
                unsafe { ptr::addr_of!((*m).mpm_state).read_volatile() }
            })),
            sys::AP_MPMQ_GENERATION => Some(retained::read(|_, m| {
                // SAFETY: as above.
                unsafe { ptr::addr_of!((*m).my_generation).read_volatile() }
            })),
            _ => None,
        };
        // SAFETY: httpd passes valid out-pointers.
        unsafe {
            match answer {
                Some(v) => {
                    *result = v;
                    *rv = 0;
                }
                None => *rv = sys::APR_ENOTIMPL as i32,
            }
        }
        OK
    })
}

unsafe extern "C" fn mpm_get_name() -> *const c_char {
    c"event".as_ptr()
}

unsafe extern "C" fn post_read_request(r: *mut sys::request_rec) -> i32 {
    guard(OK, || {
        // SAFETY: httpd passes the request being read, live during the hook.
        if let Some(r) = unsafe { httpd::Request::from_raw(r) } {
            connection::post_read_request(r);
        }
        OK
    })
}

unsafe extern "C" fn pre_connection(c: *mut sys::conn_rec, _csd: *mut std::ffi::c_void) -> i32 {
    guard(OK, || {
        // SAFETY: httpd passes the live connection being set up.
        if let Some(c) = unsafe { Connection::from_raw(c) } {
            connection::pre_connection(c);
        }
        OK
    })
}

unsafe extern "C" fn protocol_switch(c: *mut sys::conn_rec, r: *mut sys::request_rec, s: *mut sys::server_rec, _protocol: *const c_char) -> i32 {
    guard(DECLINED, || {
        // A switch without a request (e.g. ALPN h2): the new protocol's
        // server decides the timeouts, as no post_read_request will.
        if r.is_null() {
            // SAFETY: httpd passes the live connection and server.
            if let (Some(c), Some(s)) = unsafe { (Connection::from_raw(c), httpd::VirtualHost::from_raw(s)) } {
                connection::switch_server(c, s);
            }
        }
        DECLINED
    })
}

unsafe extern "C" fn late_head_filter(f: *mut sys::ap_filter_t, bb: *mut sys::apr_bucket_brigade, mode: sys::ap_input_mode_t, _block: sys::apr_read_type_e, readbytes: sys::apr_off_t) -> sys::apr_status_t {
    // SAFETY: httpd calls an input filter with a live filter and brigade.
    guard(sys::APR_EGENERAL as i32, || unsafe { httpd::read_without_waiting(f, bb, mode, readbytes) })
}

unsafe extern "C" fn register_timed_callback(t: sys::apr_time_t, cbfn: sys::ap_mpm_callback_fn_t, baton: *mut std::ffi::c_void) -> sys::apr_status_t {
    guard(sys::APR_EGENERAL as i32, || {
        let (Some(rt), Some(func)) = (crate::engine::runtime(), cbfn) else {
            return sys::APR_ENOTIMPL as i32;
        };
        let delay = std::time::Duration::from_micros(t.max(0) as u64);
        rt.register_callback(delay, crate::engine::Callback { func, baton: crate::ffi::SendPtr(baton) });
        0
    })
}

unsafe extern "C" fn status_hook(r: *mut sys::request_rec, flags: i32) -> i32 {
    guard(OK, || {
        // SAFETY: mod_status passes its live request.
        if let Some(r) = unsafe { httpd::StatusRequest::from_raw(r) } {
            crate::status::render(r, flags & sys::AP_STATUS_SHORT as i32 != 0);
        }
        OK
    })
}

/// Shared by the directive setters: context check, then the setter's body.
fn directive(cmd: *mut sys::cmd_parms, arg: *const c_char, set: impl FnOnce(&str, &str) -> Result<(), String>) -> *const c_char {
    const INTERNAL: &CStr = c"mod_mpm_event_rs: internal error reading directive";
    guard(INTERNAL.as_ptr(), || {
        // SAFETY: httpd passes the directive being read.
        let Some(cmd) = (unsafe { httpd::Directive::from_raw(cmd) }) else { return INTERNAL.as_ptr() };
        if let Some(err) = cmd.global_only() {
            return err;
        }
        // SAFETY: httpd passes the directive's argument string.
        let arg = unsafe { cstr(arg) };
        match set(&cmd.name(), arg) {
            Ok(()) => ptr::null(),
            Err(msg) => cmd.error(&msg),
        }
    })
}

/// # Safety
/// Called by httpd only, from the directive table: `cmd` is the directive
/// being read and `arg` its NUL-terminated argument.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn event_rs_set_number(cmd: *mut sys::cmd_parms, _dummy: *mut std::ffi::c_void, arg: *const c_char) -> *const c_char {
    directive(cmd, arg, |name, arg| {
        let d = NumberDirective::from_name(name).ok_or_else(|| format!("{name}: not an MPM directive"))?;
        let v = config::parse_number(name, arg)?;
        if name.eq_ignore_ascii_case("MaxClients") {
            log::startup(sys::APLOG_INFO, "AH00521: MaxClients is deprecated, use MaxRequestWorkers instead.");
        }
        config::update(|c| c.set(d, v));
        Ok(())
    })
}

/// # Safety
/// Called by httpd only, from the directive table: `cmd` is the directive
/// being read.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn event_rs_set_async_request_head(cmd: *mut sys::cmd_parms, _dummy: *mut std::ffi::c_void, on: i32) -> *const c_char {
    directive(cmd, ptr::null(), |_, _| {
        config::update(|c| c.async_request_head = on != 0);
        Ok(())
    })
}

/// # Safety
/// Called by httpd only, from the directive table: `cmd` is the directive
/// being read and `arg` its NUL-terminated argument.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn event_rs_set_connection_budget(cmd: *mut sys::cmd_parms, _dummy: *mut std::ffi::c_void, arg: *const c_char) -> *const c_char {
    directive(cmd, arg, |_, arg| {
        let b = config::parse_connection_budget(arg)?;
        config::update(|c| c.connection_budget = b);
        Ok(())
    })
}

/// # Safety
/// Called by httpd only, from the directive table: `cmd` is the directive
/// being read and `arg` its NUL-terminated argument.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn event_rs_set_worker_factor(cmd: *mut sys::cmd_parms, _dummy: *mut std::ffi::c_void, arg: *const c_char) -> *const c_char {
    directive(cmd, arg, |_, arg| {
        let f = config::parse_worker_factor(arg)?;
        config::update(|c| c.worker_factor = f);
        Ok(())
    })
}
