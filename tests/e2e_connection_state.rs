//! What the MPM's own savings (dehydrating idle connections, waiting for
//! request heads in the pollset) must never cost: a module's per-connection
//! state across idle pauses (PROXY protocol, h2c), a head larger than the
//! receive buffer, each waiting head's own deadline, and a proper lingering
//! close for an idle connection that ends while a request may be on its way.

mod common;

use common::*;
use common::h2::{H2, h2c_server};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

const ONE_CHILD: &str = "ServerLimit 1\nStartServers 1\nThreadsPerChild 25\nMaxRequestWorkers 25\n\
                         MinSpareThreads 1\nMaxSpareThreads 25";

/// One child, and a scoreboard slot for the next generation's while it
/// finishes.
const ROOM_FOR_TWO_GENERATIONS: &str = "ServerLimit 2\nStartServers 1\nThreadsPerChild 25\nMaxRequestWorkers 25\n\
                                        MinSpareThreads 1\nMaxSpareThreads 25";

/// Pauses longer than the MPM's dehydration delay (250 ms) and shorter.
const PAUSES: [Duration; 3] = [Duration::from_millis(100), Duration::from_millis(600), Duration::from_secs(3)];

fn server_dir(server: &Server) -> std::path::PathBuf {
    server.pid_file().parent().unwrap().to_path_buf()
}

/// Behind a load balancer speaking the PROXY protocol (mod_remoteip), the
/// header comes once, at the start of the connection; every request on it,
/// however long the client idles in between, is the balancer's client's.
#[test]
fn proxy_protocol_connections_keep_their_client_address_across_idle_pauses() {
    let server = server()
        .without_cgi()
        .keep_alive_timeout(10)
        .load_module("remoteip_module", "mod_remoteip.so")
        .directives(ONE_CHILD)
        .directives("RemoteIPProxyProtocol On\nLogFormat \"%a %>s\" peer\nCustomLog logs_access peer\n")
        .start();
    let mut conn = server.connect();
    conn.send(format!("PROXY TCP4 192.0.2.7 127.0.0.1 5555 {}\r\n", server.addr().port()).as_bytes()).unwrap();
    assert_eq!(conn.get(SMALL_PATH).expect("first request").status, 200);
    for pause in PAUSES {
        thread::sleep(pause);
        let resp = conn.get(SMALL_PATH).unwrap_or_else(|e| panic!("request after an idle pause of {pause:?}: {e}"));
        assert_eq!(resp.status, 200, "after {pause:?}");
    }
    let log = server_dir(&server).join("logs_access");
    let mut lines = Vec::new();
    wait_until(Duration::from_secs(5), || {
        lines = std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_owned).collect();
        lines.len() >= 4
    });
    assert_eq!(lines, vec!["192.0.2.7 200"; 4], "the access log's client addresses");
}

/// An h2c session idles between its streams like any keep-alive
/// connection; it is mod_http2's, and must be there when the next stream
/// comes, whatever the pause.
#[test]
fn h2c_sessions_serve_streams_after_idle_pauses() {
    let server = h2c_server(10);
    let mut h2 = H2::connect(&server);
    assert_eq!(h2.get(SMALL_PATH), Ok((200, SMALL_BODY.to_vec())), "first stream");
    for pause in PAUSES {
        thread::sleep(pause);
        assert_eq!(h2.get(SMALL_PATH), Ok((200, SMALL_BODY.to_vec())), "a stream after an idle pause of {pause:?}");
    }
    let log = server.error_log();
    assert!(!log.contains("AH10020"), "a session was cleaned up by its pool:\n{log}");
}


/// A request head larger than the socket's receive buffer cannot arrive
/// whole before anything reads it: it is answered at once, as stock
/// answers it, without a worker waking for it over and over meanwhile.
#[test]
fn a_head_larger_than_the_receive_buffer_is_answered_without_spinning() {
    let server = server().without_cgi().directives(ONE_CHILD).directives("ReceiveBufferSize 8192\nTimeout 20\n").start();
    let child = server.children()[0].pid;
    let mut head = format!("GET {SMALL_PATH} HTTP/1.1\r\nHost: e2e.test\r\n");
    for i in 0..4 {
        head += &format!("X-Big-{i}: {}\r\n", "a".repeat(6800));
    }
    head += "\r\n";
    let before = cpu_ticks(child);
    let start = Instant::now();
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The client blocks on a zero window until the server reads: the head
    // is written by a thread, its answer read here.
    let mut w = stream.try_clone().unwrap();
    let writer = {
        let head = head.clone();
        thread::spawn(move || w.write_all(head.as_bytes()))
    };
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend(&chunk[..n]),
        }
    }
    let took = start.elapsed();
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let written = writer.join().unwrap();
    let used = cpu_ticks(child) - before;
    let status = String::from_utf8_lossy(&answer).lines().next().unwrap_or("").to_string();
    assert!(
        status.starts_with("HTTP/1.1 200"),
        "a {}-byte head: {status:?} after {took:?} (written: {written:?})",
        head.len()
    );
    assert!(took < Duration::from_secs(2), "a {}-byte head was answered after {took:?}", head.len());
    // 100 ticks a second; one request costs next to nothing.
    assert!(used <= 30, "the child used {used} ticks of CPU for one request");
}

/// Each waiting head expires at its own deadline (Timeout, from its first
/// byte), however often it was parked again for more bytes in between and
/// however many fresh heads were parked since. Expected to fail against the
/// stock module, whose Timeout restarts at every read: it never ends a head
/// that trickles faster than that.
#[test]
fn strict_interleaved_trickling_heads_expire_at_their_own_deadlines() {
    let server = server().without_cgi().directives(ONE_CHILD).directives("Timeout 4\n").start();
    let start = Instant::now();
    let mut trickler = TcpStream::connect(server.addr()).unwrap();
    trickler.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    trickler.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut fresh = Vec::new();
    let mut next_fresh = start;
    let mut next_byte = start + Duration::from_millis(1500);
    let closed_after = loop {
        let now = Instant::now();
        if now >= next_fresh {
            let mut c = TcpStream::connect(server.addr()).unwrap();
            c.write_all(b"GET / HT").unwrap();
            fresh.push(c);
            next_fresh += Duration::from_millis(250);
        }
        if now >= next_byte {
            // A write can fail once the server has closed: then the read
            // below reports it.
            let _ = trickler.write_all(b"X");
            next_byte += Duration::from_millis(1500);
        }
        let mut buf = [0u8; 512];
        match trickler.read(&mut buf) {
            Ok(0) => break start.elapsed(),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(_) => break start.elapsed(),
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the trickling head was still open after 10 s (Timeout 4)");
    };
    assert!(
        closed_after >= Duration::from_millis(3500) && closed_after <= Duration::from_millis(5500),
        "a head with Timeout 4 was ended {closed_after:?} after its first byte"
    );
}

/// An idle keep-alive connection reaching its KeepAliveTimeout gets a
/// lingering close, dehydrated or not: a request the client sends as our
/// FIN is on its way is drained, not answered with a reset.
#[test]
fn idle_connections_end_with_a_lingering_close() {
    let server = server().without_cgi().keep_alive_timeout(1).directives(ONE_CHILD).start();
    for round in 0..3 {
        let mut conn = server.idle_connection();
        conn.set_read_timeout(Duration::from_secs(5));
        let idle_since = Instant::now();
        let closed = conn.wait_for_close(Duration::from_secs(5)).expect("the server's FIN");
        assert!(idle_since.elapsed() >= Duration::from_millis(900), "round {round}: closed after {closed:?}");
        // The request that crossed our FIN, and another a moment later: a
        // socket already closed would have answered the first with a reset,
        // which fails the second.
        conn.send(get_request(SMALL_PATH).as_bytes()).expect("first write after the FIN");
        thread::sleep(Duration::from_millis(200));
        let second = conn.send(get_request(SMALL_PATH).as_bytes());
        assert!(second.is_ok(), "round {round}: the server reset the connection: {second:?}");
    }
}

/// A TLS client through `openssl s_client`: requests written to its stdin,
/// what the server answers collected from its stdout.
struct TlsClient {
    child: std::process::Child,
    answers: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl TlsClient {
    fn connect(server: &Server) -> TlsClient {
        let mut child = std::process::Command::new("openssl")
            .args(["s_client", "-quiet", "-ign_eof", "-connect"])
            .arg(server.addr().to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_client");
        let mut out = child.stdout.take().unwrap();
        let answers = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let collected = std::sync::Arc::clone(&answers);
        let reader = thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = out.read(&mut chunk) {
                if n == 0 {
                    return;
                }
                collected.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        TlsClient { child, answers, reader: Some(reader) }
    }

    fn answered(&self) -> usize {
        let a = self.answers.lock().unwrap();
        a.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count()
    }

    /// GET on the TLS connection; whether its 200 came within 5 s.
    fn get(&mut self) -> bool {
        let before = self.answered();
        let sent = self.child.stdin.as_mut().unwrap().write_all(get_request(SMALL_PATH).as_bytes());
        sent.is_ok() && wait_until(Duration::from_secs(5), || self.answered() > before)
    }
}

impl Drop for TlsClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// A TLS session (mod_ssl's state) is kept whole however long it idles:
/// requests after the same pauses are served on it.
#[test]
fn tls_sessions_serve_requests_after_idle_pauses() {
    let certs = TempDir::new();
    let server = server().without_cgi().keep_alive_timeout(10).directives(ONE_CHILD).tls(certs.path()).start();
    let mut tls = TlsClient::connect(&server);
    assert!(tls.get(), "first request over TLS");
    for pause in PAUSES {
        thread::sleep(pause);
        assert!(tls.get(), "a request over TLS after an idle pause of {pause:?}");
    }
}

/// Connections that carry a module's state (the PROXY protocol's address,
/// a TLS session), idle across a graceful restart: their next request is
/// still served, on the same connection. Expected to fail against the stock
/// module, which closes idle keep-alive connections at a graceful restart.
#[test]
fn strict_connections_with_module_state_are_served_across_a_graceful_restart() {
    let certs = TempDir::new();
    let proxied = server()
        .without_cgi()
        .keep_alive_timeout(10)
        .load_module("remoteip_module", "mod_remoteip.so")
        .directives(ROOM_FOR_TWO_GENERATIONS)
        .directives("RemoteIPProxyProtocol On\nLogFormat \"%a %>s\" peer\nCustomLog logs_access peer\n")
        .start();
    let tls = server().without_cgi().keep_alive_timeout(10).directives(ROOM_FOR_TWO_GENERATIONS).tls(certs.path()).start();
    let mut conn = proxied.connect();
    conn.send(format!("PROXY TCP4 192.0.2.7 127.0.0.1 5555 {}\r\n", proxied.addr().port()).as_bytes()).unwrap();
    assert_eq!(conn.get(SMALL_PATH).expect("first request").status, 200);
    let mut tls_client = TlsClient::connect(&tls);
    assert!(tls_client.get(), "first request over TLS");
    // Idle past dehydration's 250 ms, then the restart.
    thread::sleep(Duration::from_millis(600));
    // The restart has happened when a child of the new generation runs
    // (the TLS server has no plain-HTTP status page to ask).
    for server in [&proxied, &tls] {
        let old: Vec<i32> = server.children().iter().map(|c| c.pid).collect();
        server.signal(libc::SIGUSR1);
        assert!(
            wait_until(Duration::from_secs(10), || server.children().iter().any(|c| !old.contains(&c.pid))),
            "a graceful restart"
        );
    }
    let resp = conn.get(SMALL_PATH).unwrap_or_else(|e| panic!("PROXY-protocol request after the restart: {e}"));
    assert_eq!(resp.status, 200, "PROXY-protocol request after the restart");
    assert!(tls_client.get(), "a request over TLS after the restart");
    let log = server_dir(&proxied).join("logs_access");
    let mut lines = Vec::new();
    wait_until(Duration::from_secs(5), || {
        lines = std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_owned).collect();
        lines.iter().filter(|l| l.starts_with("192.0.2.7")).count() >= 2
    });
    assert_eq!(lines.iter().filter(|l| *l == "192.0.2.7 200").count(), 2, "the access log: {lines:?}");
}
