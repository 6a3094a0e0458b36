//! Suspended connections and the child_stopping hooks, driven by a small
//! test module (tests/c/mod_mpmtest.c, built with apxs into the test's
//! temporary directory) that logs what the MPM does while it holds a
//! connection or starts to stop.
//!
//! The `strict_` tests are stricter than stock, which fails them: httpd
//! 2.4's stock event never takes a suspended connection back (2.4 has no
//! ap_mpm_resume_suspended), so the connection's next request is never
//! answered.

mod common;

use common::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a client waits for an answer that a resumed connection gives
/// at once: long enough for a loaded 2-core machine, short enough that a
/// connection never resumed fails the test well within its time.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Builds mod_mpmtest.so into `dir`.
fn build_module(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/mod_mpmtest.c");
    std::fs::copy(&src, dir.join("mod_mpmtest.c")).expect("copy the test module's source");
    let out = Command::new(apxs())
        .args(["-c", "mod_mpmtest.c"])
        .current_dir(dir)
        .output()
        .expect("run apxs (apache2-dev)");
    assert!(
        out.status.success(),
        "apxs -c mod_mpmtest.c failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let so = dir.join(".libs/mod_mpmtest.so");
    assert!(so.is_file(), "apxs made no {}", so.display());
    so
}

/// A server with mod_mpmtest loaded; `dir` holds the module and must
/// outlive the server.
fn start(dir: &TempDir) -> Server {
    let module = build_module(dir.path());
    server()
        .without_cgi()
        .directives(&format!(
            "LoadModule mpmtest_module \"{}\"\n\
             <Location /suspend>\n  SetHandler mpmtest-suspend\n</Location>\n\
             <Location /slow>\n  SetHandler mpmtest-slow\n</Location>",
            module.display()
        ))
        .start()
}

/// One "mpmtest: WHAT k=v ..." line of the error log, as its fields.
#[derive(Debug)]
struct Event(HashMap<String, String>);

impl Event {
    fn num(&self, key: &str) -> i64 {
        self.0
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no numeric {key} in {self:?}"))
    }

    /// When it happened, µs since the epoch (apr_time_now).
    fn at(&self) -> i64 {
        self.num("at")
    }
}

fn events(server: &Server, what: &str) -> Vec<Event> {
    let marker = format!("mpmtest: {what} ");
    server
        .error_log()
        .lines()
        .filter_map(|l| l.split_once(&marker).map(|(_, rest)| rest.to_owned()))
        .map(|rest| {
            Event(
                rest.split_whitespace()
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            )
        })
        .collect()
}

/// The only `what` event, waiting (bounded) for it to be logged.
fn the_event(server: &Server, what: &str) -> Event {
    wait_until(ANSWER_WITHIN, || !events(server, what).is_empty());
    let mut all = events(server, what);
    assert_eq!(all.len(), 1, "\"{what}\" events: {all:?}\n{}", server.error_log_tail(30));
    all.remove(0)
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}

fn ms(us: i64) -> f64 {
    us as f64 / 1000.0
}

/// Requests `path`, which suspends and is answered by the module, then a
/// second request on the same connection, which only a resumed connection
/// answers.
fn suspended_then_next(server: &Server, path: &str) {
    let mut conn = server.connect();
    conn.set_read_timeout(ANSWER_WITHIN);
    // The core output filter may keep the answer until the MPM flushes it
    // in write completion, i.e. once the connection is resumed.
    let first = conn
        .get(path)
        .unwrap_or_else(|e| panic!("GET {path}: {e} (never resumed?)\n{}", server.error_log_tail(20)));
    assert_eq!(first.status, 200, "GET {path}");
    assert_eq!(first.body, b"moved on\n", "GET {path}");
    let next = conn.get(SMALL_PATH).unwrap_or_else(|e| {
        panic!("the next request on the connection {path} suspended: {e} (never resumed?)\n{}", server.error_log_tail(20))
    });
    assert_eq!(next.status, 200);
    assert_body(&next.body, SMALL_BODY, "the next request");
}

/// A timed callback finishes the suspended request (the connection's state
/// becomes WRITE_COMPLETION) and keeps running a while; meanwhile another
/// timed callback runs and returns. The connection goes back to a worker
/// only once the callback that moved it has returned, and then at once.
#[test]
fn strict_suspended_connection_resumes_only_after_its_callback_returned() {
    let dir = TempDir::new();
    let server = start(&dir);
    suspended_then_next(&server, "/suspend?poke");
    let resumed = the_event(&server, "resumed");
    let returned = the_event(&server, "returned");
    assert_eq!(
        resumed.num("mover_running"),
        0,
        "resumed while the callback that moved it still ran (resumed {:.1} ms before it returned)",
        ms(returned.at() - resumed.at())
    );
    let after = resumed.at() - returned.at();
    assert!(
        (0..1_000_000).contains(&after),
        "resumed {:.1} ms after its callback returned",
        ms(after)
    );
}

/// The callback moves the connection on while its worker is still in the
/// suspend_connection hooks, on its way to hand the connection over, and
/// returns before that: no later callback comes to notice the move, yet
/// the connection is resumed as soon as the MPM holds it.
#[test]
fn strict_connection_moved_before_the_mpm_held_it_is_resumed() {
    let dir = TempDir::new();
    let server = start(&dir);
    suspended_then_next(&server, "/suspend?late");
    let resumed = the_event(&server, "resumed");
    let handed_over = the_event(&server, "suspend hook returned");
    assert_eq!(resumed.num("mover_running"), 0);
    let after = resumed.at() - handed_over.at();
    assert!(
        (0..1_000_000).contains(&after),
        "resumed {:.1} ms after its worker handed it over",
        ms(after)
    );
}

/// A thread of the module (no timed callback at all) finishes the
/// suspended request: the connection is resumed promptly, not whenever
/// some unrelated callback happens to run.
#[test]
fn strict_connection_moved_outside_a_callback_is_resumed_promptly() {
    let dir = TempDir::new();
    let server = start(&dir);
    suspended_then_next(&server, "/suspend?thread");
    let resumed = the_event(&server, "resumed");
    let moved = the_event(&server, "moved");
    let after = resumed.at() - moved.at();
    assert!(after < 1_000_000, "resumed {:.1} ms after the module moved it on", ms(after));
}

/// A graceful restart while a child serves a slow request: the child's
/// child_stopping hooks run as the stop begins (graceful=1, once), while
/// the request is still being served, not after it has drained.
#[test]
fn child_stopping_runs_when_a_graceful_stop_begins() {
    const SLOW_MS: u64 = 4000;
    let dir = TempDir::new();
    let server = start(&dir);
    let mut conn = server.connect();
    conn.set_read_timeout(Duration::from_millis(SLOW_MS) + ANSWER_WITHIN);
    conn.send(get_request(&format!("/slow?{SLOW_MS}")).as_bytes()).unwrap();
    let started = the_event(&server, "slow request started");
    let pid = started.num("pid");
    let signalled = now_us();
    server.signal(libc::SIGUSR1);
    let resp = conn.read_response().expect("the slow request across the graceful restart");
    assert_eq!(resp.status, 200);
    let answered = the_event(&server, "slow request answered");
    let in_child = || -> Vec<Event> { events(&server, "child_stopping").into_iter().filter(|e| e.num("pid") == pid).collect() };
    // Logged a moment after it ran: a hook that ran before the answer is
    // in the log shortly after it.
    wait_until(Duration::from_secs(2), || !in_child().is_empty());
    let stopping = in_child();
    assert!(
        !stopping.is_empty(),
        "child {pid} had not run child_stopping when its slow request was answered, {:.1} ms after the restart\n{}",
        ms(answered.at() - signalled),
        server.error_log_tail(30)
    );
    assert_eq!(stopping.len(), 1, "child_stopping calls in child {pid}: {stopping:?}");
    let s = &stopping[0];
    assert_eq!(s.num("graceful"), 1, "{s:?}");
    assert!(
        s.at() < answered.at(),
        "child_stopping ran {:.1} ms after the slow request was answered, {:.1} ms after the restart was signalled",
        ms(s.at() - answered.at()),
        ms(s.at() - signalled)
    );
    assert!(s.at() - signalled < 3_000_000, "child_stopping ran {:.1} ms after the restart", ms(s.at() - signalled));
}
