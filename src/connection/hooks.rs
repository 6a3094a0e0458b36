//! httpd's hooks that reach a connection while it is on a worker: a
//! request's virtual host sets its timeouts, a protocol switch its server,
//! a secondary connection gets its own state; and the request-head limits
//! read from the configuration when a child starts.

use crate::engine::usecs;
use crate::ffi::httpd::{self, Connection, Request, VirtualHost};
use crate::head;

/// The head limit of each server, from the configuration: the header
/// stage of mod_reqtimeout's settings for it when that module is loaded,
/// else its `Timeout`.
pub fn head_limits() -> head::HeadLimits {
    let reqtimeout = httpd::module_loaded(c"mod_reqtimeout.c");
    let servers = httpd::directive_by_server("RequestReadTimeout");
    let main = servers.first().map(|(_, args)| args.clone()).unwrap_or_default();
    head::HeadLimits::new(servers.iter().map(|(s, own)| {
        (s.key(), head::HeadLimit::for_server(reqtimeout, own, &main, usecs(s.timeouts().1)))
    }))
}

/// httpd's post_read_request hook: the request's virtual host decides the
/// keep-alive timeout of what follows.
pub fn post_read_request(r: Request) {
    let Some(c) = r.connection() else { return };
    c.with_state(|me| {
        // The head came complete after all (just after its deadline): the
        // request's body is waited for as usual.
        if me.take_late_head() {
            c.wait_in_reads();
        }
        let (ka, io) = r.timeouts();
        me.set_timeouts(ka, io);
    });
}

/// A connection switched protocol without a request: take `s`'s timeouts.
pub fn switch_server(c: Connection, s: VirtualHost) {
    let (ka, io) = s.timeouts();
    c.with_state(|me| me.set_timeouts(ka, io));
}

/// httpd's pre_connection hook: a secondary connection (an HTTP/2 stream)
/// gets its own state instead of sharing its master's.
pub fn pre_connection(c: Connection) {
    if let Some(master) = c.master() {
        let cs = c.state_ptr();
        if cs.is_null() || cs == master.state_ptr() {
            c.give_own_state();
        }
    }
}
