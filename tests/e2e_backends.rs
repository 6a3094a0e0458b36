//! The server in front of blocking backends (issue 18): PHP-FPM through
//! mod_proxy_fcgi, nginx and a small Python server through mod_proxy_http.
//! Keep-alive load across graceful restarts, a slow backend request across
//! a graceful stop, 10 MiB uploads, and how a CPU-bound PHP-FPM load is
//! served next to stock event.
//!
//! The backends are Debian's php-fpm and nginx (`scripts/deps.sh` installs
//! them) and python3, each started here with its own configuration and pid
//! in its own directory, in its own process group, and stopped by pid.

mod common;

use common::*;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const HELLO: &[u8] = b"hello from php\n";

/// A backend process (and its children) in its own process group.
struct Backend {
    name: &'static str,
    child: Child,
    dir: TempDir,
}

impl Backend {
    fn spawn(name: &'static str, mut cmd: Command, dir: TempDir, ready: impl Fn() -> bool) -> Backend {
        let log = fs::File::create(dir.path().join("console.log")).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let b = Backend { name, child, dir };
        let up = wait_until(Duration::from_secs(15), || ready() || b.exited());
        assert!(up && !b.exited(), "{name} did not come up:\n{}", b.console());
        b
    }

    fn exited(&self) -> bool {
        // SAFETY: siginfo_t is plain data; waitid only writes into it, and
        // WNOWAIT leaves our child unreaped (its pid stays ours).
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(libc::P_PID, self.child.id(), &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) == 0
                && info.si_pid() != 0
        }
    }

    fn console(&self) -> String {
        fs::read_to_string(self.dir.path().join("console.log")).unwrap_or_default()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: plain syscalls on our unreaped child and the process
        // group it leads.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        if !wait_until(Duration::from_secs(5), || self.exited()) {
            eprintln!("{}: still running 5 s after SIGTERM", self.name);
        }
        // SAFETY: as above; the unreaped leader keeps the group id ours.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- {} console ---\n{}", self.name, self.console());
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn write(path: &Path, text: &[u8]) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
}

/// The first file matching `pattern` after scripts/deps.sh has had its go
/// at installing what is missing; None (the test is skipped, saying why) if
/// there is still none.
fn installed(what: &str, find: fn() -> Option<PathBuf>) -> Option<PathBuf> {
    static DEPS: OnceLock<()> = OnceLock::new();
    if let Some(p) = find() {
        return Some(p);
    }
    DEPS.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/deps.sh");
        let _ = Command::new("bash").arg(script).stdin(Stdio::null()).status();
    });
    let found = find();
    if found.is_none() {
        eprintln!("SKIPPED: {what} is not installed and scripts/deps.sh could not install it");
    }
    found
}

fn php_fpm_binary() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir("/usr/sbin")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("php-fpm")))
        .collect();
    found.sort();
    found.pop()
}

fn nginx_binary() -> Option<PathBuf> {
    Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.exists())
}

fn python_binary() -> Option<PathBuf> {
    Some(PathBuf::from("/usr/bin/python3")).filter(|p| p.exists())
}

/// PHP-FPM, `pm = static` with 8 children on a unix socket, serving the
/// scripts of `www/` under `/php/` (`directives`).
struct Fpm {
    backend: Backend,
}

impl Fpm {
    fn start() -> Option<Fpm> {
        let bin = installed("php-fpm", php_fpm_binary)?;
        let dir = TempDir::new();
        let d = dir.path();
        let www = d.join("www");
        fs::create_dir(&www).unwrap();
        fs::set_permissions(&www, fs::Permissions::from_mode(0o755)).unwrap();
        write(&www.join("hello.php"), b"<?php echo \"hello from php\\n\";\n");
        write(&www.join("slow.php"), b"<?php sleep(2); echo \"slept\\n\";\n");
        write(
            &www.join("upload.php"),
            b"<?php $b = file_get_contents('php://input'); echo strlen($b), ' ', hash('crc32b', $b), \"\\n\";\n",
        );
        let user = if is_root() { "user = www-data\ngroup = www-data\n" } else { "" };
        let conf = format!(
            "[global]\npid = {d}/php-fpm.pid\nerror_log = {d}/php-fpm.log\ndaemonize = no\n\
             [test]\n{user}listen = {d}/php-fpm.sock\nlisten.mode = 0666\nlisten.backlog = 511\n\
             pm = static\npm.max_children = 8\n\
             php_admin_value[post_max_size] = 64M\nphp_admin_value[memory_limit] = 256M\n",
            d = d.display()
        );
        write(&d.join("php-fpm.conf"), conf.as_bytes());
        let mut cmd = Command::new(bin);
        cmd.arg("-y").arg(d.join("php-fpm.conf")).arg("-F");
        let sock = d.join("php-fpm.sock");
        let backend = Backend::spawn("php-fpm", cmd, dir, || std::os::unix::net::UnixStream::connect(&sock).is_ok());
        Some(Fpm { backend })
    }

    fn directives(&self) -> String {
        let d = self.backend.dir.path().display();
        format!(
            "LoadModule proxy_module \"{m}/mod_proxy.so\"\n\
             LoadModule proxy_fcgi_module \"{m}/mod_proxy_fcgi.so\"\n\
             Alias /php/ \"{d}/www/\"\n\
             <Directory \"{d}/www\">\n    Require all granted\n\
             \x20   <FilesMatch \"\\.php$\">\n        SetHandler \"proxy:unix:{d}/php-fpm.sock|fcgi://localhost\"\n    </FilesMatch>\n\
             </Directory>\n",
            m = modules_dir()
        )
    }
}

/// A keep-alive nginx on 127.0.0.1 serving `kib_body()` as /1k.bin,
/// proxied under `/nginx/` (`directives`).
struct Nginx {
    _backend: Backend,
    port: u16,
}

impl Nginx {
    fn start() -> Option<Nginx> {
        let bin = installed("nginx", nginx_binary)?;
        let dir = TempDir::new();
        let d = dir.path();
        let www = d.join("www");
        fs::create_dir(&www).unwrap();
        fs::set_permissions(&www, fs::Permissions::from_mode(0o755)).unwrap();
        write(&www.join("1k.bin"), kib_body());
        let port = free_port("127.0.0.1").expect("free port");
        let user = if is_root() { "user www-data www-data;" } else { "" };
        let conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\n{user}\npid {d}/nginx.pid;\n\
             error_log {d}/nginx.error.log warn;\nevents {{ worker_connections 1024; }}\n\
             http {{\n access_log off;\n keepalive_timeout 60s;\n keepalive_requests 1000000;\n\
             client_body_temp_path {d}/tmp;\n proxy_temp_path {d}/tmp;\n fastcgi_temp_path {d}/tmp;\n\
             uwsgi_temp_path {d}/tmp;\n scgi_temp_path {d}/tmp;\n\
             server {{ listen 127.0.0.1:{port}; root {d}/www; }}\n}}\n",
            d = d.display()
        );
        write(&d.join("nginx.conf"), conf.as_bytes());
        let mut cmd = Command::new(bin);
        cmd.arg("-c").arg(d.join("nginx.conf")).arg("-p").arg(d).arg("-e").arg(d.join("nginx.error.log"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let backend = Backend::spawn("nginx", cmd, dir, || Conn::connect(addr).is_ok());
        Some(Nginx { _backend: backend, port })
    }

    fn directives(&self) -> String {
        format!(
            "LoadModule proxy_module \"{m}/mod_proxy.so\"\n\
             LoadModule proxy_http_module \"{m}/mod_proxy_http.so\"\n\
             ProxyPass \"/nginx/\" \"http://127.0.0.1:{port}/\"\n",
            m = modules_dir(),
            port = self.port
        )
    }
}

/// A Python HTTP/1.1 server: `/slow` answers after 2 s, a POST with the
/// length and CRC-32 of its body; proxied under `/py/` (`directives`).
struct PyBackend {
    _backend: Backend,
    port: u16,
}

const PY_SERVER: &str = r#"
import http.server, sys, time, zlib
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def reply(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path == "/slow":
            time.sleep(2)
            self.reply(b"slept\n")
        else:
            self.reply(b"ok\n")
    def do_POST(self):
        left, crc, n = int(self.headers["Content-Length"]), 0, 0
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk:
                break
            crc, n, left = zlib.crc32(chunk, crc), n + len(chunk), left - len(chunk)
        self.reply(("%d %08x\n" % (n, crc)).encode())
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

impl PyBackend {
    fn start() -> Option<PyBackend> {
        let bin = installed("python3", python_binary)?;
        let dir = TempDir::new();
        write(&dir.path().join("server.py"), PY_SERVER.as_bytes());
        let port = free_port("127.0.0.1").expect("free port");
        let mut cmd = Command::new(bin);
        cmd.arg(dir.path().join("server.py")).arg(port.to_string());
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let backend = Backend::spawn("python backend", cmd, dir, || Conn::connect(addr).is_ok());
        Some(PyBackend { _backend: backend, port })
    }

    fn directives(&self) -> String {
        format!(
            "LoadModule proxy_module \"{m}/mod_proxy.so\"\n\
             LoadModule proxy_http_module \"{m}/mod_proxy_http.so\"\n\
             ProxyPass \"/py/\" \"http://127.0.0.1:{port}/\"\n",
            m = modules_dir(),
            port = self.port
        )
    }
}

fn modules_dir() -> String {
    let event = stock_event();
    Path::new(&event).parent().unwrap().display().to_string()
}

/// CRC-32 (IEEE, as zlib's crc32 and PHP's crc32b).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Keep-alive clients GET `path` (checking the body) while the server is
/// restarted gracefully 5 times, a second apart: no request may fail.
fn no_failed_request_across_graceful_restarts(server: &Server, path: &str, body: &[u8]) {
    let stop = AtomicBool::new(false);
    let ok = AtomicU64::new(0);
    let failures = Failures::default();
    let first_gen = server.config_generation().expect("generation at start");
    thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| keep_alive_client(server.addr(), path, body, &stop, &ok, &failures));
        }
        thread::sleep(Duration::from_millis(500));
        for _ in 0..5 {
            server.signal(libc::SIGUSR1);
            thread::sleep(Duration::from_secs(1));
        }
        thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
    });
    let served = ok.load(Ordering::Relaxed);
    assert!(served > 500, "only {served} requests of {path} served in 6 s");
    assert_eq!(failures.count(), 0, "{path}: {served} served; {}", failures.summary());
    let gen_now = server.config_generation().expect("generation at the end");
    assert!(gen_now >= first_gen + 5, "generation went from {first_gen} to {gen_now}: restarts missing");
}

/// Strict: stock event fails it (14 requests closed before their response
/// on reused connections in one run of this test, 37,645 served), as it
/// fails `e2e_restarts::strict_graceful_restarts_under_keep_alive_load_fail_no_request`:
/// it closes the old children's idle keep-alive connections at the restart.
#[test]
fn strict_php_fpm_under_keep_alive_load_across_graceful_restarts_fails_no_request() {
    let Some(fpm) = Fpm::start() else { return };
    let server = server().without_cgi().directives(&fpm.directives()).start();
    no_failed_request_across_graceful_restarts(&server, "/php/hello.php", HELLO);
}

/// Strict, as the PHP-FPM one (stock event: 9 failed of 86,016 in one run).
#[test]
fn strict_proxied_nginx_under_keep_alive_load_across_graceful_restarts_fails_no_request() {
    let Some(nginx) = Nginx::start() else { return };
    let server = server().without_cgi().directives(&nginx.directives()).start();
    no_failed_request_across_graceful_restarts(&server, "/nginx/1k.bin", kib_body());
}

/// A request waiting 2 s for its backend when the server is told to stop
/// gracefully (SIGWINCH) gets its response; then, its client gone, the
/// server exits.
fn graceful_stop_lets_a_slow_backend_request_finish(server: &Server, path: &str) {
    let mut conn = server.connect();
    conn.set_read_timeout(Duration::from_secs(15));
    conn.send(get_request(path).as_bytes()).expect("send");
    thread::sleep(Duration::from_millis(500));
    let asked = Instant::now();
    server.signal(libc::SIGWINCH);
    let resp = conn.read_response().unwrap_or_else(|e| panic!("{path} across a graceful stop: {e}"));
    assert_eq!(resp.status, 200, "{path} across a graceful stop");
    assert_eq!(resp.body, b"slept\n", "{path} across a graceful stop");
    drop(conn);
    assert!(
        wait_until(Duration::from_secs(10), || server.has_exited()),
        "the server still runs {:?} after SIGWINCH",
        asked.elapsed()
    );
    println!("{path}: the server exited {:?} after SIGWINCH", asked.elapsed());
}

#[test]
fn graceful_stop_lets_a_slow_php_request_finish() {
    let Some(fpm) = Fpm::start() else { return };
    let server = server().without_cgi().directives(&fpm.directives()).start();
    graceful_stop_lets_a_slow_backend_request_finish(&server, "/php/slow.php");
}

#[test]
fn graceful_stop_lets_a_slow_proxied_request_finish() {
    let Some(py) = PyBackend::start() else { return };
    let server = server().without_cgi().directives(&py.directives()).start();
    graceful_stop_lets_a_slow_backend_request_finish(&server, "/py/slow");
}

/// POSTs 10 MiB on one keep-alive connection, twice; the backend answers
/// with the length and CRC-32 it received.
fn upload_10_mib(server: &Server, path: &str) {
    let body = mib10_body();
    let want = format!("{} {:08x}\n", body.len(), crc32(body));
    let mut conn = server.connect();
    conn.set_read_timeout(Duration::from_secs(30));
    for i in 0..2 {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        conn.send(head.as_bytes()).expect("send head");
        conn.send(body).expect("send body");
        let resp = conn.read_response().unwrap_or_else(|e| panic!("upload {i} to {path}: {e}"));
        assert_eq!(resp.status, 200, "upload {i} to {path}");
        assert_eq!(String::from_utf8_lossy(&resp.body), want, "upload {i} to {path}: length and CRC-32");
    }
}

#[test]
fn ten_mib_uploads_reach_php_fpm_whole() {
    let Some(fpm) = Fpm::start() else { return };
    let server = server().without_cgi().directives(&fpm.directives()).start();
    upload_10_mib(&server, "/php/upload.php");
}

#[test]
fn ten_mib_uploads_reach_a_proxied_backend_whole() {
    let Some(py) = PyBackend::start() else { return };
    let server = server().without_cgi().directives(&py.directives()).start();
    upload_10_mib(&server, "/py/upload");
}

/// requests/s and p99 (ms) of `wrk -t1 -c50 -d<seconds>s --latency`, and
/// its error lines.
fn wrk(addr: SocketAddr, path: &str, seconds: u32) -> (f64, f64, Vec<String>) {
    let out = Command::new("timeout")
        .args(["30", "wrk", "-t1", "-c50", &format!("-d{seconds}s"), "--latency"])
        .arg(format!("http://{addr}{path}"))
        .stdin(Stdio::null())
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let after = |key: &str| text.lines().find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_string()));
    let rps = after("Requests/sec:").and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("wrk said:\n{text}"));
    let p99 = after("99%").map_or_else(|| panic!("wrk said:\n{text}"), |v| {
        let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
        let n: f64 = num.parse().unwrap_or_else(|_| panic!("wrk p99 {v:?}"));
        match unit {
            "us" => n / 1000.0,
            "s" => n * 1000.0,
            _ => n,
        }
    });
    let errors = text.lines().filter(|l| l.contains("Socket errors") || l.contains("Non-2xx")).map(str::to_string).collect();
    (rps, p99, errors)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// How unequally the connections of a run were served: each connection
/// (child pid, client port) that made 10 or more requests from `from` on
/// (seconds since the epoch) gets the mean time between its requests, and
/// the spread is the 90th percentile of those times over the 10th. Equal
/// clients served in turn give about 1; connections held by a child that
/// serves them more slowly than another child serves its own spread it.
/// `log`: lines of `time client-port pid` (`FAIRNESS_LOG`).
fn gap_spread(log: &str, from: f64) -> f64 {
    let mut conns: std::collections::HashMap<(&str, &str), Vec<f64>> = Default::default();
    for line in log.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(t) = f.first().and_then(|t| t.parse::<f64>().ok()) else { continue };
        if f.len() == 3 && t >= from {
            conns.entry((f[2], f[1])).or_default().push(t);
        }
    }
    let mut gaps: Vec<f64> = conns
        .values_mut()
        .filter(|v| v.len() >= 10)
        .map(|v| {
            v.sort_by(f64::total_cmp);
            (v[v.len() - 1] - v[0]) / (v.len() - 1) as f64
        })
        .collect();
    assert!(gaps.len() >= 20, "only {} connections with 10 requests in the log", gaps.len());
    gaps.sort_by(f64::total_cmp);
    gaps[gaps.len() * 9 / 10] / gaps[gaps.len() / 10]
}

/// Access log format for `gap_spread`: when the request came, from which
/// client port, to which child.
const FAIRNESS_LOG: &str = "%{%s}t.%{usec_frac}t %{remote}p %P";

/// 50 keep-alive connections on PHP-FPM, which with its 8 children keeps
/// the CPUs busy, ours and stock event alternating on fresh servers (three
/// pairs, medians), with the scenario's MaxKeepAliveRequests 100 (clients
/// reconnect every half second or so): ours fails no request, serves at
/// least half stock's requests/s, and serves the connections nearly as
/// evenly as stock does: `gap_spread` from the access log of the measured
/// seconds at most twice stock's. Measured on this 2-core machine: stock
/// 1.1-1.3; ours 1.4-1.7 in single rounds; the module before issue 18's
/// fix (9eb6a2c) 4.5 (rounds 3.5-13.8; 1.6-21 in 49 runs outside the
/// test), its connections piling up on one child, where they waited
/// several times longer than on the other (`balance`,
/// bench/results/analysis/backends.md). Stock spreads less because all its
/// 75 workers pass requests on at once and PHP-FPM's one backlog serves
/// them in turn; ours keeps as few requests in flight as keep the CPUs
/// busy, each child its own.
#[test]
fn php_fpm_load_is_served_as_evenly_as_by_stock() {
    let Some(fpm) = Fpm::start() else { return };
    if installed("wrk", || Some(PathBuf::from("/usr/bin/wrk")).filter(|p| p.exists())).is_none() {
        return;
    }
    let tuning = "StartServers 2\nThreadsPerChild 25\nServerLimit 4\nMaxRequestWorkers 100\nMaxKeepAliveRequests 100\n";
    let (mut ours, mut stock) = (Vec::new(), Vec::new());
    for round in 0..3 {
        let order: [bool; 2] = if round % 2 == 0 { [true, false] } else { [false, true] };
        for is_ours in order {
            let logs = TempDir::new();
            let log = logs.path().join("access.log");
            let mut b = server()
                .without_cgi()
                .directives(&fpm.directives())
                .directives(tuning)
                .directives(&format!("CustomLog \"{}\" \"{FAIRNESS_LOG}\"\n", log.display()));
            if !is_ours {
                b = b.mpm(&stock_event());
            }
            let server = b.start();
            wrk(server.addr(), "/php/hello.php", 2);
            let from = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
            let (rps, p99, errors) = wrk(server.addr(), "/php/hello.php", 3);
            drop(server);
            let spread = gap_spread(&fs::read_to_string(&log).unwrap(), from);
            println!(
                "round {round} {}: {rps:.0} requests/s, p99 {p99:.1} ms, spread {spread:.2} {errors:?}",
                if is_ours { "ours" } else { "stock" }
            );
            // Stock closes keep-alive connections a client may be reusing
            // when its workers are all busy (wrk's "read" errors).
            assert!(!is_ours || errors.is_empty(), "ours: {errors:?}");
            if is_ours { &mut ours } else { &mut stock }.push((rps, spread));
        }
    }
    let rps = |v: &[(f64, f64)]| median(v.iter().map(|r| r.0).collect());
    let spread = |v: &[(f64, f64)]| median(v.iter().map(|r| r.1).collect());
    println!("medians: ours {:.0}/s spread {:.2}, stock {:.0}/s spread {:.2}", rps(&ours), spread(&ours), rps(&stock), spread(&stock));
    let ratio = rps(&ours) / rps(&stock);
    assert!(ratio >= 0.5, "ours {ratio:.2}x stock's requests/s: ours {ours:?}, stock {stock:?}");
    assert!(
        spread(&ours) <= 2.0 * spread(&stock),
        "connections served less evenly than by stock: spread ours {:.2}, stock {:.2} (rounds: ours {ours:?}, stock {stock:?})",
        spread(&ours),
        spread(&stock)
    );
}

#[test]
fn gap_spread_is_one_for_connections_served_alike_and_shows_a_slower_child() {
    let mut even = String::new();
    let mut uneven = String::new();
    for c in 0..40u32 {
        // Before `from` (100.0): ignored.
        even += &format!("99.5 {} 7\n", 1000 + c);
        for i in 0..20u32 {
            let t = 100.0 + f64::from(i) * 0.005 + f64::from(c) * 0.0001;
            even += &format!("{t:.6} {} {}\n", 1000 + c, 7 + c % 2);
            // Child 8 serves its connections four times more slowly.
            let gap = if c % 2 == 0 { 0.002 } else { 0.008 };
            uneven += &format!("{:.6} {} {}\n", 100.0 + f64::from(i) * gap, 1000 + c, 7 + c % 2);
        }
    }
    let s = gap_spread(&even, 100.0);
    assert!((s - 1.0).abs() < 1e-3, "{s}");
    let s = gap_spread(&uneven, 100.0);
    assert!((s - 4.0).abs() < 1e-3, "{s}");
}
