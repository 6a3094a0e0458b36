//! Serving under concurrent load, and the IPv6 listener. Serving correctness
//! over HTTP (static files, keep-alive reuse, pipelining, request bodies,
//! server-status, TLS, HTTP/2) is tested by the Apache::Test suite in
//! tests/apache/ (scripts/apache-test.sh, run by `make test`).

mod common;

use common::*;
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

#[test]
fn sixty_four_concurrent_keep_alive_clients_for_ten_seconds() {
    const CLIENTS: usize = 64;
    const DURATION: Duration = Duration::from_secs(10);
    let server = server().start();
    let addr = server.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
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
                    match conn.get(SMALL_PATH) {
                        Ok(resp) if resp.status == 200 && resp.body == SMALL_BODY => {
                            ok += 1;
                            if resp.header("Connection") != Some("close") {
                                kept = Some(conn);
                            }
                        }
                        Ok(resp) => errors.push(format!(
                            "status {} with {} body bytes",
                            resp.status,
                            resp.body.len()
                        )),
                        // The server may close an idle keep-alive connection
                        // (event does when all workers of a child are busy);
                        // an HTTP client then retries on a new connection.
                        Err(e) if reused && is_closed_before_response(&e) => reconnects += 1,
                        Err(e) => errors.push(format!(
                            "{} connection: {e}",
                            if reused { "reused" } else { "fresh" }
                        )),
                    }
                }
                (ok, reconnects, errors)
            })
        })
        .collect();
    thread::sleep(DURATION);
    stop.store(true, Ordering::Relaxed);

    let (mut total, mut reconnects, mut errors) = (0, 0, Vec::new());
    for client in clients {
        let (ok, re, errs) = client.join().expect("client thread panicked");
        total += ok;
        reconnects += re;
        errors.extend(errs);
    }
    println!(
        "{CLIENTS} clients, {DURATION:?}: {total} requests answered, {reconnects} reconnects after keep-alive closes"
    );
    assert!(
        errors.is_empty(),
        "{} failed requests, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(total > 0);
}
