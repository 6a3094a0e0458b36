//! The connection engine: what waits for the client (a slow reader, a
//! stalled request head, a lingering close, an idle keep-alive connection)
//! waits in a pollset, not in a worker thread; shedding of idle
//! connections under overload; scoreboard counters and the server-status
//! section of the MPM; KeepAliveTimeout per virtual host.

mod common;

use common::*;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// One child of 25 threads: status counters are that child's, exactly.
const ONE_CHILD_OF_25: &str = "ServerLimit 1\nStartServers 1\nThreadsPerChild 25\nMaxRequestWorkers 25\n\
                               MinSpareThreads 1\nMaxSpareThreads 25";

/// A numeric field of `/server-status?auto`.
fn status_number(status: &HashMap<String, String>, key: &str) -> u64 {
    status
        .get(key)
        .unwrap_or_else(|| panic!("server-status?auto has no {key}: {status:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("server-status?auto {key} is not a number: {status:?}"))
}

/// Deliberately stricter than stock, expected to fail against it: stock
/// event also finishes a sendfile download from its listener (no worker is
/// busy), but it refreshes the ConnsAsyncWriting counter of server-status
/// only during its queue maintenance, which a connection waiting for
/// Timeout (60 s) does not trigger: it reports 0.
#[test]
fn strict_slow_sendfile_download_is_written_without_a_worker() {
    // The small send buffer makes the server wait for the client sooner.
    let server = server()
        .without_cgi()
        .directives(ONE_CHILD_OF_25)
        .directives("EnableSendfile On\nSendBufferSize 65536")
        .start();
    let mut conn = server.connect();
    let len = conn.start_download(MIB10_PATH, 64 * 1024);
    assert_eq!(len, 10 * MIB);

    // Two checks, each after a second of reading at 1 MiB/s.
    let mut body = Vec::with_capacity(len);
    for check in 1..=2 {
        body.extend(
            conn.read_bytes_paced(MIB, MIB as u64)
                .expect("slow part of the download"),
        );
        let status = server
            .server_status_auto()
            .expect("server-status during the download");
        let writing = status_number(&status, "ConnsAsyncWriting");
        let busy = status_number(&status, "BusyWorkers");
        assert!(
            writing >= 1 && busy == 1,
            "check {check}, {} MiB read: ConnsAsyncWriting {writing} (want >= 1), BusyWorkers {busy} \
             (want 1: the status request)",
            body.len() / MIB
        );
    }
    body.extend(
        conn.read_bytes(len - body.len())
            .expect("rest of the download"),
    );
    assert_body(
        &body,
        mib10_body(),
        "10 MiB sendfile download to a slow client",
    );
}

/// Deliberately stricter than stock, expected to fail against it: stock
/// event reads a request head in a worker thread, blocking, so 60 clients
/// that send an incomplete head and stall hold all 25 workers; a new client
/// waits in the listen backlog until the first of them time out (5 s), and
/// the later stalled clients only get a worker, and start their Timeout,
/// after that.
#[test]
fn strict_stalled_request_heads_hold_no_worker() {
    const STALLED: usize = 60;
    let server = server()
        .without_cgi()
        .directives(ONE_CHILD_OF_25)
        .directives("Timeout 5")
        .start();
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let mut conn = server.connect();
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
        stalled.push((conn, Instant::now()));
    }
    thread::sleep(Duration::from_millis(200));

    let start = Instant::now();
    let mut normal = server.connect();
    normal.set_read_timeout(Duration::from_secs(1));
    let resp = normal.get(SMALL_PATH);
    let waited = start.elapsed();
    assert!(
        resp.as_ref().is_ok_and(|r| r.status == 200),
        "normal client behind {STALLED} stalled heads: {resp:?} after {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(1),
        "normal client waited {waited:?}"
    );

    // Each stalled client: answered 408 or closed, at its 5 s Timeout.
    let ends: Vec<(Duration, String)> = thread::scope(|s| {
        let handles: Vec<_> = stalled
            .iter_mut()
            .map(|(conn, sent)| {
                s.spawn(move || {
                    conn.set_read_timeout(Duration::from_secs(12));
                    let outcome = match conn.read_response() {
                        Ok(r) => format!("status {}", r.status),
                        Err(e) if is_closed_before_response(&e) => "closed".to_string(),
                        Err(e) => format!("error: {e}"),
                    };
                    (sent.elapsed(), outcome)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (n, (after, outcome)) in ends.iter().enumerate() {
        assert!(
            outcome == "status 408" || outcome == "closed",
            "stalled client {n}: {outcome} after {after:?}"
        );
        assert!(
            *after >= Duration::from_secs(4) && *after <= Duration::from_millis(7500),
            "stalled client {n}: {outcome} after {after:?}, Timeout is 5 s"
        );
    }
}

/// A client that sends a request head that never ends, one header line
/// every 100 ms, until a write fails (the server has closed the socket: it
/// answers with RST) or it is dropped. Another thread reads what comes back.
struct TricklingClient {
    started: Instant,
    /// When the head of an answer (or EOF without one) came, and its status line.
    answered: Arc<Mutex<Option<(Instant, String)>>>,
    /// When a write failed.
    dropped: Arc<Mutex<Option<Instant>>>,
    stop: Arc<AtomicBool>,
    socket: TcpStream,
    threads: Vec<thread::JoinHandle<()>>,
}

impl TricklingClient {
    fn start(server: &Server) -> TricklingClient {
        let socket = TcpStream::connect(server.addr()).expect("connect");
        socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let answered = Arc::new(Mutex::new(None));
        let dropped = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let mut reader = socket.try_clone().unwrap();
        let reader_answered = Arc::clone(&answered);
        let read = thread::spawn(move || {
            let mut got = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = reader.read(&mut chunk).unwrap_or(0);
                got.extend_from_slice(&chunk[..n]);
                let mut answered = reader_answered.lock().unwrap();
                if answered.is_none() && (n == 0 || got.windows(4).any(|w| w == b"\r\n\r\n")) {
                    let text = String::from_utf8_lossy(&got);
                    let status = text.lines().next().unwrap_or("closed").to_string();
                    *answered = Some((Instant::now(), status));
                }
                if n == 0 {
                    return;
                }
            }
        });
        let mut writer = socket.try_clone().unwrap();
        let (writer_dropped, writer_stop) = (Arc::clone(&dropped), Arc::clone(&stop));
        let write = thread::spawn(move || {
            let _ = writer.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n");
            while !writer_stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(100));
                if writer.write_all(b"X-Junk: trickle\r\n").is_err() {
                    *writer_dropped.lock().unwrap() = Some(Instant::now());
                    return;
                }
            }
        });
        TricklingClient {
            started: Instant::now(),
            answered,
            dropped,
            stop,
            socket,
            threads: vec![read, write],
        }
    }

    /// How long after the start the answer came, and its status line ("closed" for EOF).
    fn answer(&self) -> Option<(Duration, String)> {
        let answered = self.answered.lock().unwrap();
        answered
            .as_ref()
            .map(|(at, status)| (at.duration_since(self.started), status.clone()))
    }

    /// How long after the answer the server dropped the connection.
    fn lingered(&self) -> Option<Duration> {
        let (answered, _) = self.answered.lock().unwrap().clone()?;
        let dropped = (*self.dropped.lock().unwrap())?;
        Some(dropped.saturating_duration_since(answered))
    }
}

impl Drop for TricklingClient {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// mod_reqtimeout's header timeout must hold however the MPM reads request
/// heads: a head that stalls, one that trickles a header line every 100 ms
/// (which Timeout alone never ends: every read gets data), and a second
/// request's head that stalls on a kept-alive connection, are all answered
/// 408 (or closed) at RequestReadTimeout header=2 (+1.5 s), with Timeout at
/// 30 s. This is the slowloris defence of a stock configuration.
#[test]
fn request_read_timeout_ends_stalled_and_trickling_heads() {
    let server = server()
        .without_cgi()
        .directives(ONE_CHILD_OF_25)
        .load_module("reqtimeout_module", "mod_reqtimeout.so")
        .directives("Timeout 30\nRequestReadTimeout header=2 body=2")
        .start();
    let trickling = TricklingClient::start(&server);
    let mut kept = server.connect();
    assert_eq!(kept.get(SMALL_PATH).expect("first request on the kept-alive connection").status, 200);
    let stall = |conn: &mut Conn| {
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
        let sent = Instant::now();
        conn.set_read_timeout(Duration::from_secs(8));
        let outcome = match conn.read_response() {
            Ok(r) => format!("status {}", r.status),
            Err(e) if is_closed_before_response(&e) => "closed".to_string(),
            Err(e) => format!("error: {e}"),
        };
        (outcome, sent.elapsed())
    };
    let (kept_outcome, kept_after) = thread::scope(|s| {
        let kept = s.spawn(|| stall(&mut kept));
        let (stalled_outcome, stalled_after) = stall(&mut server.connect());
        assert!(
            (stalled_outcome == "status 408" || stalled_outcome == "closed")
                && stalled_after >= Duration::from_millis(1500)
                && stalled_after <= Duration::from_millis(3500),
            "stalled head: {stalled_outcome} after {stalled_after:?}; RequestReadTimeout header=2"
        );
        kept.join().unwrap()
    });
    assert!(
        (kept_outcome == "status 408" || kept_outcome == "closed")
            && kept_after >= Duration::from_millis(1500)
            && kept_after <= Duration::from_millis(3500),
        "second request's stalled head: {kept_outcome} after {kept_after:?}; RequestReadTimeout header=2"
    );
    wait_until(Duration::from_secs(4), || trickling.answer().is_some());
    let answer = trickling.answer();
    assert!(
        answer.as_ref().is_some_and(|(after, status)| {
            (status.contains(" 408 ") || status == "closed")
                && *after >= Duration::from_millis(1500)
                && *after <= Duration::from_millis(3500)
        }),
        "trickling head: {answer:?} (after, status line); RequestReadTimeout header=2"
    );
}

/// A client that keeps sending after the server has answered 408 (or not)
/// and shut the connection down: the lingering close must not hold a worker, and must
/// end at the short lingering time (2 s), which mod_reqtimeout asks for
/// after its timeout. (The normal lingering time, 30 s, is too long to
/// test; a 400 answer gets that one.)
#[test]
fn trickling_client_in_lingering_close_holds_no_worker_and_is_dropped() {
    const CLIENTS: usize = 5;
    let server = server()
        .without_cgi()
        .directives(ONE_CHILD_OF_25)
        .load_module("reqtimeout_module", "mod_reqtimeout.so")
        .directives("RequestReadTimeout header=1 body=1")
        .start();
    let clients: Vec<TricklingClient> = (0..CLIENTS)
        .map(|_| TricklingClient::start(&server))
        .collect();

    // The 408s come after 1 s; sample while the connections linger.
    let answered = wait_until(Duration::from_secs(4), || {
        clients.iter().all(|c| c.answer().is_some())
    });
    let mut busy_samples = Vec::new();
    if answered {
        for _ in 0..5 {
            thread::sleep(Duration::from_millis(250));
            let status = server
                .server_status_auto()
                .expect("server-status during lingering");
            busy_samples.push(status_number(&status, "BusyWorkers"));
        }
    }
    wait_until(Duration::from_secs(6), || {
        clients.iter().all(|c| c.lingered().is_some())
    });

    for (n, c) in clients.iter().enumerate() {
        let (_, status) = c.answer().unwrap_or_else(|| {
            panic!(
                "client {n} got no answer 4 s after its head began (RequestReadTimeout header=1)"
            )
        });
        // Closing at the deadline without an answer is a lingering close too.
        assert!(
            status.contains(" 408 ") || status == "closed",
            "client {n} answered {status:?}"
        );
        let lingered = c
            .lingered()
            .unwrap_or_else(|| panic!("client {n} still connected 6 s after its 408"));
        assert!(
            lingered <= Duration::from_millis(3500),
            "client {n} lingered {lingered:?} after its 408 (short lingering close: 2 s)"
        );
    }
    assert!(
        busy_samples.iter().all(|&b| b == 1),
        "BusyWorkers while {CLIENTS} connections linger: {busy_samples:?} (1 is the status request)"
    );
}

/// Deliberately stricter than stock, expected to fail against it: when all
/// its workers are busy, stock event closes every idle keep-alive
/// connection of the child at once ("kill'em all"), including ones whose
/// next request has already arrived but not been read.
///
/// Two workers, 200 idle keep-alive connections, then 6 CGI requests that
/// each hold a worker for 1 s, and 4 of the idle connections send a request
/// (they are readable, not idle any more). Wanted: the idle connections are
/// shed gradually, in proportion to the work waiting (at most 50 within any
/// 100 ms; stock closed 188 in one go), never all of them; the 4 readable
/// ones are answered.
#[test]
fn strict_overload_sheds_idle_keep_alive_connections_gradually() {
    const IDLE: usize = 200;
    const READABLE: usize = 4;
    // The connection limit, 2 + 250 per idle worker, is far above what the
    // test opens; stock's hysteresis (one idle worker less while it does
    // not accept) would stop it at 152 with a factor of 150.
    let server = server()
        .keep_alive_timeout(60)
        .directives(
            "ServerLimit 1\nStartServers 1\nThreadsPerChild 2\nMaxRequestWorkers 2\n\
             MinSpareThreads 1\nMaxSpareThreads 3\nAsyncRequestWorkerFactor 250",
        )
        .start();
    let mut idle: Vec<Conn> = (0..IDLE).map(|_| server.idle_connection()).collect();
    let mut readable = idle.split_off(IDLE - READABLE);
    let closed = |idle: &[Conn]| idle.iter().filter(|c| c.peer_closed()).count();

    // Closed idle connections, every 100 ms from the start of the burst.
    let mut closed_samples = vec![0];
    let (cgi_results, readable_results) = thread::scope(|s| {
        let cgis: Vec<_> = (0..6)
            .map(|_| {
                let server = &server;
                s.spawn(move || {
                    let mut conn = Conn::connect(server.addr())?;
                    conn.set_read_timeout(Duration::from_secs(15));
                    conn.get(&format!("{SLEEP_CGI_PATH}?1")).map(|r| r.status)
                })
            })
            .collect();
        // Both workers are in a CGI now, the other CGI requests wait.
        thread::sleep(Duration::from_millis(200));
        let readers: Vec<_> = readable
            .iter_mut()
            .map(|conn| {
                s.spawn(move || {
                    conn.set_read_timeout(Duration::from_secs(15));
                    conn.get(SMALL_PATH).map(|r| r.status)
                })
            })
            .collect();
        while cgis.iter().any(|h| !h.is_finished()) {
            thread::sleep(Duration::from_millis(100));
            closed_samples.push(closed(&idle));
        }
        let cgi: Vec<_> = cgis.into_iter().map(|h| h.join().unwrap()).collect();
        let rd: Vec<_> = readers.into_iter().map(|h| h.join().unwrap()).collect();
        (cgi, rd)
    });
    let closed_end = closed(&idle);
    eprintln!("idle connections closed, every 100 ms: {closed_samples:?}, {closed_end} at the end");

    for (n, r) in cgi_results.iter().enumerate() {
        assert!(matches!(r, Ok(200)), "CGI request {n}: {r:?}");
    }
    for (n, r) in readable_results.iter().enumerate() {
        assert!(
            matches!(r, Ok(200)),
            "idle connection {n} whose request had arrived: {r:?}"
        );
    }
    let total = idle.len();
    let max_step = closed_samples
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(0);
    assert!(
        max_step <= 50,
        "{max_step} of {total} idle connections closed within 100 ms: {closed_samples:?}"
    );
    assert!(
        closed_end < total,
        "all {total} idle connections were closed"
    );
    // The survivors are still served.
    for (n, conn) in idle
        .iter_mut()
        .enumerate()
        .filter(|(_, c)| !c.peer_closed())
        .take(5)
    {
        let resp = conn
            .get(SMALL_PATH)
            .unwrap_or_else(|e| panic!("surviving idle connection {n}: {e}"));
        assert_eq!(resp.status, 200);
    }
}

/// Deliberately stricter than stock, expected to fail against it: stock
/// event refreshes its connection counters in the scoreboard only during
/// queue maintenance (when a keep-alive or other timeout comes due), so
/// right after connections arrive or go server-status reports stale values
/// (measured: ConnsTotal and ConnsAsyncKeepAlive 0 with 10 idle connections).
#[test]
fn strict_connection_counters_in_server_status_are_current() {
    const N: u64 = 10;
    let server = server()
        .without_cgi()
        .keep_alive_timeout(60)
        .directives(ONE_CHILD_OF_25)
        .start();
    let idle: Vec<Conn> = (0..N).map(|_| server.idle_connection()).collect();
    thread::sleep(Duration::from_millis(50));
    let status = server.server_status_auto().expect("server-status");
    let total = status_number(&status, "ConnsTotal");
    let keep_alive = status_number(&status, "ConnsAsyncKeepAlive");
    // ConnsTotal may or may not count the status request's own connection.
    assert!(
        (N..=N + 1).contains(&total) && keep_alive == N,
        "with {N} idle connections: ConnsTotal {total}, ConnsAsyncKeepAlive {keep_alive}"
    );

    drop(idle);
    thread::sleep(Duration::from_millis(100));
    let status = server.server_status_auto().expect("server-status");
    let total = status_number(&status, "ConnsTotal");
    let keep_alive = status_number(&status, "ConnsAsyncKeepAlive");
    assert!(
        total <= 1 && keep_alive == 0,
        "100 ms after closing them: ConnsTotal {total}, ConnsAsyncKeepAlive {keep_alive}"
    );
}

/// Deliberately stricter than stock, expected to fail against it: the
/// section is this MPM's own. server-status (HTML) must have a heading that
/// names mod_mpm_event_rs, followed by a table with a row per child: its
/// pid, keep-alive / write-completion / lingering / wait-io queue lengths,
/// pollset size and dispatch latency.
#[test]
fn strict_server_status_has_a_section_of_the_mpm() {
    let server = server()
        .without_cgi()
        .directives("StartServers 2\nMinSpareThreads 25\nMaxSpareThreads 75")
        .start();
    assert!(
        wait_until(Duration::from_secs(5), || server.children().len() == 2),
        "children: {:?}",
        server.children()
    );
    let resp = server.get("/server-status");
    assert_eq!(resp.status, 200);
    let page = String::from_utf8_lossy(&resp.body).into_owned();
    let heading = page
        .match_indices("<h2")
        .map(|(at, _)| at)
        .find(|&at| {
            page[at..]
                .split_once("</h2>")
                .is_some_and(|(h, _)| h.contains("mod_mpm_event_rs"))
        })
        .unwrap_or_else(|| panic!("no <h2> naming mod_mpm_event_rs in server-status:\n{page}"));
    let section = &page[heading..];
    // The section ends at the next heading, if any.
    let section = section[4..]
        .find("<h")
        .map_or(section, |end| &section[..end + 4]);
    assert!(
        section.contains("<table"),
        "no table in the MPM section:\n{section}"
    );
    let lower = section.to_lowercase();
    for word in [
        "queue",
        "pollset",
        "dispatch",
        "keep-alive",
        "write-completion",
        "lingering",
        "wait-io",
    ] {
        assert!(
            lower.contains(word),
            "MPM section does not mention {word:?}:\n{section}"
        );
    }
    for child in server.children() {
        assert!(
            section.contains(&format!(">{}<", child.pid)),
            "MPM section has no row for child {}:\n{section}",
            child.pid
        );
    }
}

#[test]
fn keep_alive_timeout_applies_per_virtual_host() {
    let server = server()
        .without_cgi()
        .directives(
            "<VirtualHost *>\n    ServerName fast.test\n    KeepAliveTimeout 1\n</VirtualHost>\n\
             <VirtualHost *>\n    ServerName slow.test\n    KeepAliveTimeout 4\n</VirtualHost>",
        )
        .start();
    let request = |host: &str| {
        let mut conn = server.connect();
        conn.send(format!("GET {SMALL_PATH} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .unwrap();
        let resp = conn
            .read_response()
            .unwrap_or_else(|e| panic!("GET on {host}: {e}"));
        assert_eq!(resp.status, 200, "GET on {host}");
        (conn, Instant::now())
    };
    let (mut fast, fast_at) = request("fast.test");
    let (mut slow, slow_at) = request("slow.test");
    fast.wait_for_close(Duration::from_secs(8))
        .expect("fast.test connection closed");
    let fast_after = fast_at.elapsed();
    slow.wait_for_close(Duration::from_secs(8))
        .expect("slow.test connection closed");
    let slow_after = slow_at.elapsed();
    assert!(
        fast_after >= Duration::from_millis(700) && fast_after <= Duration::from_millis(2500),
        "fast.test (KeepAliveTimeout 1) closed after {fast_after:?}"
    );
    assert!(
        slow_after >= Duration::from_millis(3500) && slow_after <= Duration::from_millis(5500),
        "slow.test (KeepAliveTimeout 4) closed after {slow_after:?}"
    );
}


/// Partial request heads wait without costing CPU: the data already there
/// must not wake the listener again and again (level-triggered readiness).
#[test]
fn waiting_partial_heads_cost_no_cpu() {
    let server = server().without_cgi().directives(ONE_CHILD_OF_25).directives("Timeout 30").start();
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut conn = server.connect();
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
        stalled.push(conn);
    }
    thread::sleep(Duration::from_millis(300));
    let child = server.children()[0].pid;
    let before = cpu_ticks(child);
    thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(child) - before;
    // 100 ticks a second: a spinning listener would use about 200.
    assert!(used <= 20, "the child used {used} ticks of CPU in 2 s with 20 partial heads waiting");
    // And the heads are still served when they complete.
    for conn in stalled.iter_mut().take(3) {
        conn.send(b"\r\n").unwrap();
        assert_eq!(conn.read_response().expect("completed head").status, 200);
    }
}

/// Two requests that each hold a worker for 2 s arrive together on a child
/// of three threads. The worker polling the parked connections takes one and
/// calls the next; that one takes the other and, since the first has only
/// just begun, leaves the poller role free rather than wake the last worker.
/// A third connection's request must still be served at once, not 2 s later
/// when a slow one ends: the role is filled as soon as every busy worker has
/// been in its request for a while (`Baton::fill_vacancy`). Whether the role
/// is left free depends on which worker sees the second request first (in
/// about a third of the rounds here); six rounds catch a role never filled.
#[test]
fn parked_connection_is_served_while_the_other_workers_are_in_long_requests() {
    let server = server()
        .directives(
            "ServerLimit 1\nStartServers 1\nThreadsPerChild 3\nMaxRequestWorkers 3\n\
             MinSpareThreads 1\nMaxSpareThreads 3",
        )
        .start();
    for round in 0..6 {
        // The round before is over: its connections closed, every worker idle.
        wait_all_closed(&server, round);
        let mut slow = [server.connect(), server.connect()];
        // httpd's listening sockets defer accept until data arrives: each
        // connection is accepted, and parked, with its request.
        let mut quick = server.connect();
        send_slow_requests(&mut slow);
        // Not a wait for the server: the time under test, in which the two
        // busy workers pass the 20 ms after which a free poller role is
        // filled for them.
        thread::sleep(Duration::from_millis(300));
        let start = Instant::now();
        let resp = quick.get(SMALL_PATH).expect("the quick request");
        let took = start.elapsed();
        assert_eq!(resp.status, 200, "round {round}");
        assert!(
            took < Duration::from_secs(1),
            "round {round}: a 29-byte file took {took:?} while two workers ran 2 s requests"
        );
        read_slow_answers(&mut slow, round);
    }
}

fn wait_all_closed(server: &Server, round: usize) {
    assert!(
        wait_until(Duration::from_secs(5), || server.held_connections() == 0),
        "round {round}: {} connections still held",
        server.held_connections()
    );
}

/// Waits until the server has accepted every one of `conns`.
fn wait_accepted(server: &Server, conns: &[Conn]) {
    let addrs: Vec<_> = conns.iter().map(Conn::local_addr).collect();
    assert!(
        wait_until(Duration::from_secs(5), || addrs.iter().all(|&a| server.connection_owner(a).is_some())),
        "connections not accepted"
    );
}

/// Sends each connection a request that holds a worker for 2 s.
fn send_slow_requests(conns: &mut [Conn]) {
    let request = get_request(&format!("{SLEEP_CGI_PATH}?2"));
    for conn in conns {
        conn.send(request.as_bytes()).unwrap();
    }
}

fn read_slow_answers(conns: &mut [Conn], round: usize) {
    for conn in conns {
        conn.set_read_timeout(Duration::from_secs(10));
        assert_eq!(conn.read_response().expect("a slow request").status, 200, "round {round}");
    }
}

/// Ten connections opened at once, each with a request that holds a worker
/// (a client's pool, h2load's sessions): both children take a share. Every
/// child's listener is woken for each connection and the one already
/// running tends to win them all, which leaves long sessions crowded into
/// one child (`balance`).
#[test]
fn a_burst_of_busy_connections_is_spread_over_the_children() {
    let server = server()
        .directives(
            "ServerLimit 2\nStartServers 2\nThreadsPerChild 10\nMaxRequestWorkers 20\n\
             MinSpareThreads 15\nMaxSpareThreads 30",
        )
        .start();
    let processes = || server.server_status_auto().ok().and_then(|s| s.get("Processes").cloned());
    assert!(wait_until(Duration::from_secs(5), || processes().as_deref() == Some("2")), "two children: {:?}", processes());
    for round in 0..3 {
        // The connections of the status requests or of the round before
        // are gone (a closing connection is load until it is).
        wait_all_closed(&server, round);
        let mut conns: Vec<Conn> = (0..10).map(|_| server.connect()).collect();
        send_slow_requests(&mut conns);
        wait_accepted(&server, &conns);
        let mut per_child: HashMap<i32, usize> = HashMap::new();
        for conn in &conns {
            let owner = server.connection_owner(conn.local_addr()).expect("a child holds the connection");
            *per_child.entry(owner.pid).or_default() += 1;
        }
        let shares: Vec<usize> = per_child.values().copied().collect();
        assert!(
            shares.len() == 2 && shares.iter().all(|&n| n >= 2),
            "round {round}: connections per child {per_child:?}"
        );
        read_slow_answers(&mut conns, round);
    }
}

/// A client that keeps requests buffered ahead (it pipelines) has its next
/// request ready after every response, so its worker serves it back to
/// back. Here both workers of the only child are so held (and
/// MaxKeepAliveRequests is 0, so that never ends by itself): a request on
/// an idle keep-alive connection is still answered, each within a second.
/// Before the fix it waited for as long as the pipelining clients ran.
#[test]
fn pipelining_clients_do_not_hold_back_the_others() {
    const DEPTH: usize = 50;
    let server = server()
        .directives(
            "ServerLimit 1\nStartServers 1\nThreadsPerChild 2\nMaxRequestWorkers 2\n\
             MinSpareThreads 1\nMaxSpareThreads 3",
        )
        .start();
    let mut idle = server.idle_connection();
    idle.set_read_timeout(Duration::from_secs(5));
    let stop = AtomicBool::new(false);
    let started = [AtomicBool::new(false), AtomicBool::new(false)];
    let (served, waits) = thread::scope(|s| {
        let pipeliners: Vec<_> = started
            .iter()
            .map(|started| {
                let (server, stop) = (&server, &stop);
                s.spawn(move || -> io::Result<usize> {
                    let mut conn = server.connect();
                    for _ in 0..DEPTH {
                        conn.send(get_request(KIB_PATH).as_bytes())?;
                    }
                    let mut served = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let resp = conn.read_response()?;
                        assert_eq!(resp.status, 200);
                        assert_body(&resp.body, kib_body(), "pipelined response");
                        served += 1;
                        started.store(served >= 100, Ordering::SeqCst);
                        conn.send(get_request(KIB_PATH).as_bytes())?;
                    }
                    for _ in 0..DEPTH {
                        assert_body(&conn.read_response()?.body, kib_body(), "pipelined response");
                    }
                    Ok(served)
                })
            })
            .collect();
        let mut waits = Vec::new();
        if wait_until(Duration::from_secs(10), || started.iter().all(|s| s.load(Ordering::SeqCst))) {
            for _ in 0..20 {
                let t = Instant::now();
                let status = idle.get(SMALL_PATH).map(|r| r.status);
                let failed = status.is_err();
                waits.push((t.elapsed(), status));
                if failed {
                    break;
                }
            }
        }
        stop.store(true, Ordering::SeqCst);
        let served: Vec<_> = pipeliners.into_iter().map(|h| h.join().unwrap()).collect();
        (served, waits)
    });
    eprintln!("pipelined responses {served:?}; the other client's waits: {waits:?}");
    for r in &served {
        assert!(matches!(r, Ok(n) if *n >= 100), "a pipelining client: {r:?}");
    }
    assert_eq!(waits.len(), 20, "the other client's requests: {waits:?}");
    for (wait, status) in &waits {
        assert!(matches!(status, Ok(200)) && *wait < Duration::from_secs(1),
            "a request on the idle keep-alive connection: {status:?} after {wait:?}: {waits:?}");
    }
}
