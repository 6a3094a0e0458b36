//! Listeners of other protocols than HTTP (`Listen ADDR:PORT banner`): a
//! protocol whose server speaks first (FTP, SMTP: mod_ftp and the like)
//! must get its connection at once, not after the MPM waited for an HTTP
//! request head that never comes; on the HTTP listeners beside it, heads
//! still wait without a worker.
//!
//! The protocol module is a small C module written and built with `apxs`
//! for each test, as a third-party module would be.

mod common;

use common::*;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// The banner protocol: on a connection to a listener whose protocol is
/// "banner" the server greets, then echoes the first line. A first line
/// that starts with KEEP keeps the connection (CONN_STATE_KEEPALIVE, as
/// HTTP's keep-alive does); each later turn echoes whatever bytes have
/// come, without waiting for a line end, until they start with QUIT. The
/// greeting is remembered in the conn_rec's notes, so a connection whose
/// conn_rec was made anew is greeted again. Every other connection is left
/// to HTTP.
const BANNER_MODULE_C: &str = r#"
#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "ap_listen.h"
#include "util_filter.h"
#include "apr_buckets.h"
#include <string.h>

module AP_MODULE_DECLARE_DATA banner_module;

static int on_banner_listener(conn_rec *c)
{
    ap_listen_rec *lr;
    for (lr = ap_listeners; lr; lr = lr->next) {
        if (lr->bind_addr->port == c->local_addr->port
            && lr->protocol && strcmp(lr->protocol, "banner") == 0) {
            return 1;
        }
    }
    return 0;
}

static apr_status_t say(conn_rec *c, const char *text, apr_size_t len)
{
    apr_bucket_brigade *bb = apr_brigade_create(c->pool, c->bucket_alloc);
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_transient_create(text, len, c->bucket_alloc));
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(c->bucket_alloc));
    return ap_pass_brigade(c->output_filters, bb);
}

static int banner_process_connection(conn_rec *c)
{
    static const char greeting[] = "220 banner ready\r\n";
    char buf[256];
    apr_size_t len = sizeof(buf) - 1;
    apr_bucket_brigade *bb;
    int greeted;

    if (!on_banner_listener(c)) {
        return DECLINED;
    }
    greeted = apr_table_get(c->notes, "banner-greeted") != NULL;
    if (!greeted) {
        apr_table_setn(c->notes, "banner-greeted", "1");
        if (say(c, greeting, sizeof(greeting) - 1) != APR_SUCCESS) {
            return OK;
        }
    }
    bb = apr_brigade_create(c->pool, c->bucket_alloc);
    if (ap_get_brigade(c->input_filters, bb,
                       greeted ? AP_MODE_READBYTES : AP_MODE_GETLINE,
                       APR_BLOCK_READ, len) != APR_SUCCESS
        || apr_brigade_flatten(bb, buf, &len) != APR_SUCCESS || len == 0) {
        return OK;
    }
    apr_brigade_destroy(bb);
    if (say(c, buf, len) != APR_SUCCESS) {
        return OK;
    }
    if ((!greeted && len >= 4 && memcmp(buf, "KEEP", 4) == 0)
        || (greeted && !(len >= 4 && memcmp(buf, "QUIT", 4) == 0))) {
        c->keepalive = AP_CONN_KEEPALIVE;
        if (c->cs) {
            c->cs->state = CONN_STATE_KEEPALIVE;
        }
    }
    return OK;
}

static void banner_register_hooks(apr_pool_t *p)
{
    ap_hook_process_connection(banner_process_connection, NULL, NULL, APR_HOOK_FIRST);
}

module AP_MODULE_DECLARE_DATA banner_module = {
    STANDARD20_MODULE_STUFF, NULL, NULL, NULL, NULL, NULL, banner_register_hooks
};
"#;

const GREETING: &[u8] = b"220 banner ready\r\n";

/// How soon the greeting must come: stock sends it as soon as a worker
/// has the connection, well within this.
const PROMPT: Duration = Duration::from_secs(1);

/// Writes the banner module into `dir` and builds it; returns the .so.
fn build_banner_module(dir: &Path) -> PathBuf {
    let src = dir.join("mod_banner.c");
    std::fs::write(&src, BANNER_MODULE_C).unwrap();
    let out = Command::new(apxs())
        .arg("-c")
        .arg("-n")
        .arg("banner")
        .arg(&src)
        .current_dir(dir)
        .output()
        .expect("run apxs (install apache2-dev)");
    let so = dir.join(".libs/mod_banner.so");
    assert!(
        out.status.success() && so.is_file(),
        "apxs -c mod_banner.c failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    so
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A server with the banner module loaded and a banner listener beside its
/// HTTP one. `Timeout 3` bounds how long a connection held for a head that
/// never comes waits, so that a failure shows quickly. Keep `module_dir`
/// alive as long as the server.
fn banner_server(module_dir: &TempDir, extra: &str) -> (Server, SocketAddr) {
    let so = build_banner_module(module_dir.path());
    let port = free_port();
    let server = server()
        .without_cgi()
        .directives(&format!(
            "LoadModule banner_module \"{}\"\nListen 127.0.0.1:{port} banner\nTimeout 3\n{extra}",
            so.display()
        ))
        .start();
    (server, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// Reads exactly `want.len()` bytes within `within`; describes what came
/// instead (and when) if that fails.
fn expect_bytes(s: &mut TcpStream, want: &[u8], within: Duration, what: &str) -> Duration {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < want.len() {
        let left = within.saturating_sub(start.elapsed());
        assert!(
            !left.is_zero(),
            "{what}: after {:?} got {:?}, want {:?}",
            start.elapsed(),
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want)
        );
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf[..want.len() - got.len()]) {
            Ok(0) => panic!(
                "{what}: closed by the server after {:?}, having sent {:?}; want {:?}",
                start.elapsed(),
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(want)
            ),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if is_timeout(&e) => continue,
            Err(e) => panic!("{what}: {e} after {:?}, having read {:?}", start.elapsed(), String::from_utf8_lossy(&got)),
        }
    }
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want), "{what}");
    start.elapsed()
}

/// Waits (bounded) for the server to close; fails on data.
fn expect_close(s: &mut TcpStream, what: &str) {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut byte = [0u8; 1];
    match s.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("{what}: want the server to close, got {other:?}"),
    }
}

fn status_number(status: &HashMap<String, String>, key: &str) -> u64 {
    status
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("server-status?auto {key}: {status:?}"))
}

/// The greeting comes as soon as the client connects, the exchange works,
/// and HTTP requests on the other listener are served as usual.
#[test]
fn banner_protocol_speaks_first() {
    let module_dir = TempDir::new();
    let (server, banner) = banner_server(&module_dir, "");
    for n in 0..3 {
        let start = Instant::now();
        let mut s = connect(banner);
        expect_bytes(&mut s, GREETING, PROMPT.saturating_sub(start.elapsed()), &format!("greeting on connection {n}"));
        let took = start.elapsed();
        s.write_all(b"hello banner\r\n").unwrap();
        expect_bytes(&mut s, b"hello banner\r\n", PROMPT, &format!("echo on connection {n}"));
        expect_close(&mut s, &format!("connection {n} after its line"));
        eprintln!("connection {n}: greeting {took:?} after connecting");
    }
    let resp = server.get(SMALL_PATH);
    assert_eq!(resp.status, 200);
    assert_body(&resp.body, SMALL_BODY, "GET on the HTTP listener");
}

/// A banner connection that the module keeps (CONN_STATE_KEEPALIVE) waits
/// for its next bytes like HTTP's keep-alive, but what comes then is the
/// module's, not an HTTP request head: bytes that look like the start of
/// one ("HEL", no line end) go to it at once, and after a longer pause
/// the same conn_rec (the module's state in it) carries on.
#[test]
fn banner_connection_kept_alive_is_not_held_for_a_head() {
    let module_dir = TempDir::new();
    let (_server, banner) = banner_server(&module_dir, "");
    let mut s = connect(banner);
    expect_bytes(&mut s, GREETING, PROMPT, "greeting");
    s.write_all(b"KEEP\r\n").unwrap();
    expect_bytes(&mut s, b"KEEP\r\n", PROMPT, "echo of the first line");

    s.write_all(b"HEL").unwrap();
    expect_bytes(&mut s, b"HEL", PROMPT, "bytes without a line end on the kept connection");

    // Longer than an idle HTTP connection is kept whole (see
    // connection::dehydrate): a new conn_rec would greet again.
    thread::sleep(Duration::from_millis(700));
    s.write_all(b"ping").unwrap();
    expect_bytes(&mut s, b"ping", PROMPT, "bytes after 700 ms idle on the kept connection");

    s.write_all(b"QUIT").unwrap();
    expect_bytes(&mut s, b"QUIT", PROMPT, "QUIT");
    expect_close(&mut s, "after QUIT");
}

/// Deliberately stricter than stock, expected to fail against it (stock
/// reads request heads in a worker): beside a banner listener, heads on
/// the HTTP listeners still wait in the pollset without a worker, on the
/// default listener ("http") as on one declared `HTTPS` (httpd lowercases
/// the protocol; without mod_ssl it serves plain HTTP).
#[test]
fn strict_http_listeners_beside_a_banner_listener_still_wait_for_heads() {
    let module_dir = TempDir::new();
    let https_port = free_port();
    let (server, banner) = banner_server(
        &module_dir,
        &format!("Listen 127.0.0.1:{https_port} HTTPS\n{ONE_CHILD}"),
    );
    let https = SocketAddr::from(([127, 0, 0, 1], https_port));

    let mut partial = Vec::new();
    for addr in [server.addr(), https] {
        let mut c = Conn::connect(addr).unwrap();
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
        partial.push(c);
    }
    let mut banner_conn = connect(banner);
    expect_bytes(&mut banner_conn, GREETING, PROMPT, "greeting");
    // The banner connection holds its worker (the module reads its line);
    // the partial heads hold none. Sampled a few times: a head just
    // arrived may be looked at by a worker for a moment.
    let busy_ok = wait_until(Duration::from_secs(2), || {
        server.server_status_auto().is_ok_and(|s| status_number(&s, "BusyWorkers") == 2)
    });
    let status = server.server_status_auto().expect("server-status");
    assert!(
        busy_ok,
        "BusyWorkers with two partial heads and one banner connection: {} (want 2: the banner \
         connection and the status request)",
        status_number(&status, "BusyWorkers")
    );

    for (n, c) in partial.iter_mut().enumerate() {
        c.send(b"\r\n").unwrap();
        let resp = c.read_response().unwrap_or_else(|e| panic!("partial head {n} completed: {e}"));
        assert_eq!(resp.status, 200, "partial head {n} completed");
        assert_body(&resp.body, INDEX_BODY, "index");
    }
    banner_conn.write_all(b"bye\r\n").unwrap();
    expect_bytes(&mut banner_conn, b"bye\r\n", PROMPT, "echo");
    expect_close(&mut banner_conn, "after its line");
}

/// One child: BusyWorkers is that child's, and every connection meets the
/// same workers.
const ONE_CHILD: &str = "ServerLimit 1\nStartServers 1\nThreadsPerChild 25\nMaxRequestWorkers 25\n\
                         MinSpareThreads 1\nMaxSpareThreads 25";
