//! The MPM's section of mod_status (its status_hook): per-child queues,
//! pollset size and dispatch latency, next to the scoreboard's counters.

use std::fmt::Write;

use crate::ffi::httpd::StatusRequest;
use crate::ffi::{score, stats};

/// Writes our section; `short` is the `?auto` form.
pub fn render(r: StatusRequest, short: bool) {
    let mut rows = Vec::new();
    for slot in 0..stats::slots() {
        let pid = score::pid(slot);
        let s = stats::get(slot);
        if pid == 0 || s.pid.load(std::sync::atomic::Ordering::Relaxed) != pid {
            continue;
        }
        rows.push((slot, pid, s));
    }
    let load = |a: &std::sync::atomic::AtomicU32| a.load(std::sync::atomic::Ordering::Relaxed);
    let mut out = String::new();
    if short {
        let sum = |f: &dyn Fn(&stats::ChildStats) -> u32| rows.iter().map(|(_, _, s)| u64::from(f(s))).sum::<u64>();
        let _ = writeln!(out, "MpmRsPollset: {}", sum(&|s| load(&s.pollset)));
        let _ = writeln!(out, "MpmRsQueued: {}", sum(&|s| load(&s.queued)));
        let _ = writeln!(out, "MpmRsHeadsWaiting: {}", sum(&|s| load(&s.heads)));
        let _ = writeln!(out, "MpmRsConnectionBudget: {}", sum(&|s| load(&s.budget)));
        let evicted: u64 = rows.iter().map(|(_, _, s)| s.evicted.load(std::sync::atomic::Ordering::Relaxed)).sum();
        let _ = writeln!(out, "MpmRsClosedForBudget: {evicted}");
        let worst = rows.iter().map(|(_, _, s)| s.latency_us().1).max().unwrap_or(0);
        let _ = writeln!(out, "MpmRsDispatchMaxUs: {worst}");
    } else {
        out.push_str("<hr /><h2>mod_mpm_event_rs</h2>\n<table rules=\"all\" cellpadding=\"1%\">\n\
            <tr><th>Slot</th><th>PID</th><th>pollset</th><th>keep-alive</th><th>waiting for head</th>\
            <th>write-completion</th><th>lingering</th><th>wait-io</th><th>queue</th><th>timers</th>\
            <th>connection budget</th><th>closed for budget</th>\
            <th>dispatch latency mean &micro;s</th><th>dispatch latency max &micro;s</th></tr>\n");
        for (slot, pid, s) in &rows {
            let c = score::counters(*slot);
            let heads = load(&s.heads);
            let (mean, max) = s.latency_us();
            let _ = writeln!(out,
                "<tr><td>{slot}</td><td>{pid}</td><td>{}</td><td>{}</td><td>{heads}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{mean}</td><td>{max}</td></tr>",
                load(&s.pollset), c.keep_alive.saturating_sub(heads), c.write_completion, c.lingering_close,
                c.wait_io, load(&s.queued), load(&s.timers), load(&s.budget),
                s.evicted.load(std::sync::atomic::Ordering::Relaxed));
        }
        out.push_str("</table>\n<p>queue: tasks waiting for a worker thread (connections to close, timed \
            callbacks, and ready connections collected while no worker was idle; workers take other ready \
            connections from the pollset directly); dispatch latency: how long queued tasks waited for a \
            worker; connection budget: open connections a child keeps at most (ConnectionBudget), counting \
            those waiting for a request head or idle, which hold no worker; closed for budget: waiting \
            connections closed to make room, the least progress first.</p>\n");
    }
    r.puts(&out);
}
