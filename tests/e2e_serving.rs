//! Serving under concurrent load, next to hostile clients, and the IPv6 listener. Serving correctness
//! over HTTP (static files, keep-alive reuse, pipelining, request bodies,
//! server-status, TLS, HTTP/2) is tested by the Apache::Test suite in
//! tests/apache/ (scripts/apache-test.sh, run by `make test`).

mod common;

use common::*;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

/// Only the IPv6 listener: serving over 127.0.0.1 (static files byte-exact,
/// keep-alive, pipelining, request bodies, server-status) is tested by the
/// Apache::Test suite in tests/apache/, which listens on 127.0.0.1 only.
#[test]
fn ipv6_listener_serves_static_files_byte_exact() {
    let server = server().ipv6().start();
    let Some(addr) = server.addr6() else {
        println!("note: [::1] cannot be bound here, nothing to test");
        return;
    };
    for (path, body) in [(KIB_PATH, kib_body()), (MIB10_PATH, mib10_body())] {
        let resp = Conn::connect(addr)
            .and_then(|mut c| c.get(path))
            .unwrap_or_else(|e| panic!("GET {path} via {addr}: {e}"));
        assert_eq!(resp.status, 200, "GET {path} via {addr}");
        assert_body(&resp.body, body, &format!("GET {path} via {addr}"));
    }
}

/// What one well-behaved client saw: requests answered byte-exact,
/// reconnects after the server closed its idle keep-alive connection, and
/// failures.
type ClientTally = (u64, u64, Vec<String>);

/// A keep-alive client that GETs `path` until `stop`, checking every body
/// against `body`; it gives up after 10 failures.
fn keep_alive_client(addr: SocketAddr, path: &'static str, body: &'static [u8], stop: &AtomicBool) -> ClientTally {
    let (mut ok, mut reconnects, mut errors) = (0u64, 0u64, Vec::new());
    let mut kept: Option<Conn> = None;
    while !stop.load(Ordering::Relaxed) && errors.len() < 10 {
        let reused = kept.is_some();
        let mut conn = match kept.take().map_or_else(|| Conn::connect(addr), Ok) {
            Ok(c) => c,
            Err(e) => {
                errors.push(format!("connect: {e}"));
                continue;
            }
        };
        match conn.get(path) {
            Ok(resp) if resp.status == 200 && resp.body == body => {
                ok += 1;
                if resp.header("Connection") != Some("close") {
                    kept = Some(conn);
                }
            }
            Ok(resp) => errors.push(format!("status {} with {} body bytes", resp.status, resp.body.len())),
            // The server may close an idle keep-alive connection
            // (event does when all workers of a child are busy);
            // an HTTP client then retries on a new connection.
            Err(e) if reused && is_closed_before_response(&e) => reconnects += 1,
            Err(e) => errors.push(format!("{} connection: {e}", if reused { "reused" } else { "fresh" })),
        }
    }
    (ok, reconnects, errors)
}

fn spawn_keep_alive_clients(
    n: usize,
    addr: SocketAddr,
    path: &'static str,
    body: &'static [u8],
    stop: &Arc<AtomicBool>,
) -> Vec<thread::JoinHandle<ClientTally>> {
    (0..n)
        .map(|_| {
            let stop = Arc::clone(stop);
            thread::spawn(move || keep_alive_client(addr, path, body, &stop))
        })
        .collect()
}

/// Joins the clients; asserts that none failed and that some were answered.
fn assert_clients_served(clients: Vec<thread::JoinHandle<ClientTally>>, what: &str) {
    let (mut total, mut reconnects, mut errors) = (0, 0, Vec::new());
    for client in clients {
        let (ok, re, errs) = client.join().expect("client thread panicked");
        total += ok;
        reconnects += re;
        errors.extend(errs);
    }
    println!("{what}: {total} requests answered, {reconnects} reconnects after keep-alive closes");
    assert!(
        errors.is_empty(),
        "{what}: {} failed requests, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(total > 0, "{what}: no request answered");
}

#[test]
fn sixty_four_concurrent_keep_alive_clients_for_ten_seconds() {
    const CLIENTS: usize = 64;
    const DURATION: Duration = Duration::from_secs(10);
    let server = server().start();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = spawn_keep_alive_clients(CLIENTS, server.addr(), SMALL_PATH, SMALL_BODY, &stop);
    thread::sleep(DURATION);
    stop.store(true, Ordering::Relaxed);
    assert_clients_served(clients, &format!("{CLIENTS} clients, {DURATION:?}"));
}

/// Reads what the server sends until it closes, pauses for longer than
/// the read timeout, or `max` bytes came.
fn drain(s: &mut TcpStream, max: usize) {
    let mut buf = [0u8; 16384];
    let mut got = 0;
    while got < max {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => got += n,
        }
    }
}

/// Closes with a reset (SO_LINGER 0) instead of a FIN.
fn reset(s: TcpStream) {
    let lin = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: a valid socket descriptor and a linger value of the size given.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&lin as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// One connection of a misbehaving client. Errors are expected (the
/// server closes on bad input, resets when it closes with unread data) and
/// not looked at: what is tested is what the others see.
fn hostile_connection(addr: SocketAddr, rng: &mut Rng) -> io::Result<()> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    let valid = get_request(KIB_PATH);
    match rng.below(14) {
        0 => {
            let noise = pseudo_random_bytes(1 + rng.below(4000) as usize, rng.next());
            s.write_all(&noise)?;
        }
        1 => s.write_all(b"GARBAGE / HTTP/9.9\r\n\r\n")?,
        2 => return s.write_all(&valid.as_bytes()[..20]),
        3 => {
            s.write_all(get_request(MIB10_PATH).as_bytes())?;
            drain(&mut s, 1 + rng.below(300_000) as usize);
            reset(s);
            return Ok(());
        }
        4 => return s.write_all(get_request(MIB10_PATH).as_bytes()),
        5 => {
            s.write_all(valid.as_bytes())?;
            s.shutdown(Shutdown::Write)?;
        }
        6 => s.write_all(format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000)).as_bytes())?,
        7 => s.write_all(format!("GET / HTTP/1.1\r\nHost: x\r\n{}\r\n", "X-Many: y\r\n".repeat(201)).as_bytes())?,
        8 => s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nabc\r\n")?,
        9 => {
            s.write_all(b"POST /small.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")?;
            return s.write_all(&[b'x'; 50_000]);
        }
        10 => s.write_all(format!("{valid}\x00\x01\x02 nonsense\r\n\r\n").as_bytes())?,
        11 => s.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not really TLS")?,
        12 => s.write_all(format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000)).as_bytes())?,
        _ => s.write_all(b"GET /\x00\x00 HTTP/1.1\r\nHost: x\r\n\r\n")?,
    }
    drain(&mut s, 1 << 20);
    Ok(())
}

/// A client's bad input never crashes a child or costs another connection
/// its data: well-behaved keep-alive clients share the server with clients
/// that send noise, cut heads off, break every limit, reset downloads in
/// the middle and half-close, and every good request is answered
/// byte-exact while every child lives on.
#[test]
fn hostile_clients_crash_no_child_and_cost_the_others_nothing() {
    const GOOD: usize = 8;
    const HOSTILE: usize = 8;
    const DURATION: Duration = Duration::from_secs(4);
    let server = server().without_cgi().start();
    let addr = server.addr();
    let children = server.children();
    assert!(!children.is_empty());
    let stop = Arc::new(AtomicBool::new(false));
    let good = spawn_keep_alive_clients(GOOD, addr, KIB_PATH, kib_body(), &stop);
    let hostile: Vec<_> = (0..HOSTILE as u64)
        .map(|seed| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                // Seeded per thread, so that a failing mix can be replayed.
                let mut rng = Rng::new(seed + 1);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let _ = hostile_connection(addr, &mut rng);
                    n += 1;
                }
                n
            })
        })
        .collect();
    thread::sleep(DURATION);
    stop.store(true, Ordering::Relaxed);
    let hostile_conns: u64 = hostile.into_iter().map(|h| h.join().expect("hostile client panicked")).sum();
    println!("{hostile_conns} hostile connections");
    assert!(hostile_conns > 0);
    assert_clients_served(good, &format!("{GOOD} keep-alive clients among {HOSTILE} hostile ones"));

    let died: Vec<i32> = children.iter().filter(|c| !c.is_running()).map(|c| c.pid).collect();
    assert!(died.is_empty(), "children {died:?} ended; error log:\n{}", server.error_log_tail(30));
    let log = server.error_log();
    for sign in ["panic", "exit signal", "AH00052"] {
        assert!(!log.contains(sign), "'{sign}' in the error log:\n{}", server.error_log_tail(30));
    }
    let resp = server.get(KIB_PATH);
    assert_eq!(resp.status, 200);
    assert_body(&resp.body, kib_body(), "GET after the hostile clients");
}
