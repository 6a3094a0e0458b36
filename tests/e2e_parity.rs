//! Where administrators and their tools look, the MPM answers as stock
//! event does: a request head that misses its deadline gets stock's 408
//! and access-log line, though no worker waited for it.

mod common;

use common::*;
use std::time::{Duration, Instant};

const ONE_CHILD: &str = "ServerLimit 1\nStartServers 1\nThreadsPerChild 25\nMaxRequestWorkers 25\n\
                         MinSpareThreads 1\nMaxSpareThreads 25";

/// Sends `partial` and waits for the server's answer: the status line
/// ("closed" when it closed without one) and how long it took.
fn stall(server: &Server, partial: &[u8]) -> (String, Duration) {
    let mut conn = server.connect();
    conn.send(partial).unwrap();
    let sent = Instant::now();
    conn.set_read_timeout(Duration::from_secs(8));
    let outcome = match conn.read_response() {
        Ok(r) => format!("{}", r.status),
        Err(e) if is_closed_before_response(&e) => "closed".to_string(),
        Err(e) => format!("error: {e}"),
    };
    (outcome, sent.elapsed())
}

fn access_log(server: &Server, lines: usize) -> Vec<String> {
    let path = server.pid_file().parent().unwrap().join("logs_access");
    let mut got = Vec::new();
    wait_until(Duration::from_secs(5), || {
        got = std::fs::read_to_string(&path).unwrap_or_default().lines().map(str::to_owned).collect();
        got.len() >= lines
    });
    got
}

const LOG: &str = "LogFormat \"%>s %r\" st\nCustomLog logs_access st\n";

fn check_late_heads(server: &Server) {
    let within = |d: Duration| d >= Duration::from_millis(1500) && d <= Duration::from_millis(4000);
    // The request line came, the rest of the head did not: 408.
    let (outcome, after) = stall(server, b"GET /small.txt HTTP/1.1\r\nHost: x\r\n");
    assert!(outcome == "408" && within(after), "a head missing its end: {outcome} after {after:?}");
    // Not even the request line: closed without an answer.
    let (outcome, after) = stall(server, b"GET /sma");
    assert!(outcome == "closed" && within(after), "half a request line: {outcome} after {after:?}");
    let log = access_log(server, 2);
    assert_eq!(log.len(), 2, "access log: {log:?}");
    assert_eq!(log[0], "408 GET /small.txt HTTP/1.1", "access log: {log:?}");
    assert!(log[1].starts_with("408 "), "access log: {log:?}");
}

/// Timeout alone bounds the head: at its deadline the client that sent a
/// request line gets httpd's 408, and both late heads are logged as 408.
#[test]
fn a_late_head_gets_408_and_its_access_log_line() {
    let server = server().without_cgi().directives(ONE_CHILD).directives("Timeout 2\n").directives(LOG).start();
    check_late_heads(&server);
}

/// The same under mod_reqtimeout's header limit, which also logs its own
/// line (fail2ban and the like count those).
#[test]
fn a_late_head_under_mod_reqtimeout_gets_408_and_ah01382() {
    let server = server()
        .without_cgi()
        .directives(ONE_CHILD)
        .load_module("reqtimeout_module", "mod_reqtimeout.so")
        .directives("Timeout 30\nRequestReadTimeout header=2 body=5\nLogLevel info\n")
        .directives(LOG)
        .start();
    check_late_heads(&server);
    let errors = server.error_log();
    assert_eq!(errors.matches("AH01382").count(), 2, "mod_reqtimeout's line for each late head:\n{errors}");
}

/// A virtual host's own RequestReadTimeout bounds the heads of the
/// connections to its address, as mod_reqtimeout applies it there (by the
/// connection's server before any Host header is read); other addresses
/// keep the main server's.
#[test]
fn a_virtual_hosts_request_read_timeout_bounds_its_heads() {
    let port = free_port("127.0.0.1").expect("a second port");
    let server = server()
        .without_cgi()
        .directives(ONE_CHILD)
        .load_module("reqtimeout_module", "mod_reqtimeout.so")
        .directives(&format!(
            "Timeout 30\nRequestReadTimeout header=6\nListen 127.0.0.1:{port}\n\
             <VirtualHost 127.0.0.1:{port}>\n    RequestReadTimeout header=2\n</VirtualHost>\n"
        ))
        .start();
    let vhost = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let stall = |addr| {
        let mut conn = Conn::connect(addr).unwrap();
        conn.send(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n").unwrap();
        let sent = Instant::now();
        conn.set_read_timeout(Duration::from_secs(10));
        let status = conn.read_response().map(|r| r.status);
        (status.ok(), sent.elapsed())
    };
    std::thread::scope(|s| {
        let main = s.spawn(|| stall(server.addr()));
        let (status, after) = stall(vhost);
        assert!(
            status == Some(408) && after >= Duration::from_millis(1500) && after <= Duration::from_millis(3500),
            "the virtual host's head (header=2): {status:?} after {after:?}"
        );
        let (status, after) = main.join().unwrap();
        assert!(
            status == Some(408) && after >= Duration::from_millis(5500) && after <= Duration::from_millis(7500),
            "the main server's head (header=6): {status:?} after {after:?}"
        );
    });
}
