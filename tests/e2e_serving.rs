//! Serving correctness: static files, keep-alive reuse, pipelining, request
//! bodies through CGI, concurrent load, and what mod_status shows.

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn static_files_arrive_byte_exact() {
    let server = server().ipv6().start();
    let mut addrs = vec![server.addr()];
    match server.addr6() {
        Some(a) => addrs.push(a),
        None => println!("note: [::1] cannot be bound here, skipping the IPv6 part"),
    }
    for addr in addrs {
        for (path, body) in [(KIB_PATH, kib_body()), (MIB10_PATH, mib10_body())] {
            let resp = Conn::connect(addr)
                .and_then(|mut c| c.get(path))
                .unwrap_or_else(|e| panic!("GET {path} via {addr}: {e}"));
            assert_eq!(resp.status, 200, "GET {path} via {addr}");
            assert_body(&resp.body, body, &format!("GET {path} via {addr}"));
        }
    }
}

#[test]
fn thousand_requests_on_one_keep_alive_connection() {
    let server = server().start();
    // A single stream and no reconnect: if the server closed the connection
    // at any point, the next request on it would fail.
    let mut conn = server.connect();
    for i in 0..1000 {
        let (path, body) = if i % 2 == 0 {
            (SMALL_PATH, SMALL_BODY)
        } else {
            (KIB_PATH, kib_body())
        };
        let resp = conn
            .get(path)
            .unwrap_or_else(|e| panic!("request {i} on the kept-alive connection: {e}"));
        assert_eq!(resp.status, 200, "request {i}");
        assert_body(&resp.body, body, &format!("request {i}"));
        assert_ne!(
            resp.header("Connection"),
            Some("close"),
            "request {i}: server wants to close"
        );
    }
}

#[test]
fn fifty_pipelined_requests_answered_in_order() {
    let server = server().start();
    let expected: Vec<(&str, &[u8])> = (0..50)
        .map(|i| match i % 3 {
            0 => (SMALL_PATH, SMALL_BODY),
            1 => (KIB_PATH, kib_body()),
            _ => ("/", INDEX_BODY),
        })
        .collect();
    let batch: String = expected.iter().map(|(path, _)| get_request(path)).collect();

    let mut conn = server.connect();
    conn.send(batch.as_bytes())
        .expect("send the pipelined batch in one write");
    for (i, (path, body)) in expected.iter().enumerate() {
        let resp = conn
            .read_response()
            .unwrap_or_else(|e| panic!("pipelined response {i} ({path}): {e}"));
        assert_eq!(resp.status, 200, "pipelined response {i} ({path})");
        assert_body(
            &resp.body,
            body,
            &format!("pipelined response {i} ({path})"),
        );
    }
}

#[test]
fn cgi_receives_10_mib_request_body_intact() {
    let server = server().start();
    let body = mib10_body();
    let resp = server
        .connect()
        .post(SHA256_CGI_PATH, body)
        .expect("POST to the CGI");
    assert_eq!(
        resp.status,
        200,
        "CGI answer: {}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(
        first_word(&resp.body),
        sha256_hex(body),
        "digest of the body the CGI received"
    );
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

#[test]
fn server_status_shows_event_mpm_and_scoreboard() {
    // ServerLimit*ThreadLimit (160), ServerLimit*ThreadsPerChild (100) and
    // MaxRequestWorkers (75) differ, so the length assertion is unambiguous.
    let server = server()
        .directives(
            "ServerLimit 4\nThreadLimit 40\nStartServers 2\nThreadsPerChild 25\nMaxRequestWorkers 75\n\
             MinSpareThreads 25\nMaxSpareThreads 75",
        )
        .start();
    // Children start their threads asynchronously after the parent is up.
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        let status = server
            .server_status_auto()
            .expect("GET /server-status?auto");
        let workers = |key: &str| status.get(key).and_then(|v| v.parse::<u32>().ok());
        if workers("IdleWorkers")
            .zip(workers("BusyWorkers"))
            .is_some_and(|(i, b)| i + b == 50)
            || Instant::now() > deadline
        {
            break status;
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        status.get("ServerMPM").map(String::as_str),
        Some("event"),
        "{status:?}"
    );
    let idle: u32 = status["IdleWorkers"].parse().unwrap();
    let busy: u32 = status["BusyWorkers"].parse().unwrap();
    assert!(
        busy >= 1,
        "the worker serving the status request is busy: {status:?}"
    );
    assert_eq!(idle + busy, 50, "2 processes x 25 threads: {status:?}");

    let scoreboard = &status["Scoreboard"];
    // Stock mod_status shows one slot per thread of MaxRequestWorkers/ThreadsPerChild processes.
    assert_eq!(scoreboard.len(), 75, "scoreboard {scoreboard:?}");
    assert!(
        scoreboard.chars().all(|c| "_SRWKDCLGI.".contains(c)),
        "scoreboard {scoreboard:?}"
    );
    let live = scoreboard.chars().filter(|&c| c != '.').count();
    assert_eq!(live, 50, "scoreboard {scoreboard:?}");
}
