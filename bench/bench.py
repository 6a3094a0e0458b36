#!/usr/bin/python3
"""`make bench`: mod_mpm_event_rs side by side with Debian's stock MPMs and nginx.

    bench.py run [--quick] [--rounds N] [--duration S] [--warmup S]
                 [--servers ours,event,worker,nginx] [--restarts N]
                 [--idle N] [--module PATH] [--out DIR]
    bench.py chart RESULTS.json OUT.png
    bench.py profile [--server ours|event|worker|nginx] [--seconds S]
                     [--module PATH] [--out DIR]
    bench.py ceiling [--server event|ours|worker] [--seconds S]
                     [--module PATH] [--out DIR]

See bench/README.md for the method. Everything runs on 127.0.0.1, on free
ports, one server at a time; every process this script starts is stopped by
its pid (pid files for the servers), and every client run has a time bound.
Only the Python standard library is needed, except matplotlib for the chart.
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

# bench/backends.py (scenarios 7 and 8) uses this module's helpers: one copy of it.
sys.modules.setdefault("bench", sys.modules[__name__])
import backends  # noqa: E402
import slow  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
HTTPD = os.environ.get("HTTPD", "/usr/sbin/apache2")
NGINX = "/usr/sbin/nginx"
MODULES_DIR = "/usr/lib/apache2/modules"

# The servers, in the order of the tables. "ours" is filled in from --module.
SERVERS = {
    "ours": {"label": "ours (mod_mpm_event_rs)", "kind": "apache",
             "load": 'LoadModule mpm_event_module "{module}"'},
    "event": {"label": "stock event", "kind": "apache",
              "load": 'LoadModule mpm_event_module "%s/mod_mpm_event.so"' % MODULES_DIR},
    "worker": {"label": "stock worker", "kind": "apache",
               "load": 'LoadModule mpm_worker_module "%s/mod_mpm_worker.so"' % MODULES_DIR},
    "nginx": {"label": "nginx", "kind": "nginx"},
}
ALL_SERVERS = ["ours", "event", "worker", "nginx"]

# Command prefixes that place the servers and the clients on the CPUs (see
# --client-policy and --split-cpus), and whether each child of a started
# server is pinned to one CPU (--pin-children). Empty and off for the
# benchmark as the issue defines it: servers and clients share all CPUs
# under the default scheduling policy.
PLACEMENT = {"server": [], "client": [], "pin_children": False}

# Scenarios in the order they run in each round, each on a freshly started
# server: nothing one leaves behind (children a busy scenario spawned, memory
# its threads hold) changes the next.
SCENARIO_ORDER = ["s1", "s2", "s3", "s6", "s4", "s5", "s7", "s8"]
SCENARIO_TITLES = {
    "s1": "1. keep-alive, 1 KiB, 50 conns",
    "s2": "2. new connection per request, 50 conns",
    "s3": "3. keep-alive, 1 MiB, 20 conns",
    "s4": "4. scenario 1 + 5,000 idle keep-alive conns",
    "s5": "5. graceful restarts during scenario 1",
    "s6": "6. HTTP/2 over TLS, 10 conns x 10 streams",
    "s7": "7. PHP-FPM (mod_proxy_fcgi), 50 conns",
    "s8": "8. reverse proxy to keep-alive nginx, 50 conns",
}
SCENARIO_ORDER.append("s9")
SCENARIO_TITLES["s9"] = slow.TITLE
# Scenarios measured in the first round only: their figures are shares and
# worst waits under an attack, not rates that vary round to round, and a
# round of scenario 9 takes over a minute per server.
FIRST_ROUND_ONLY = {"s9"}

# The metrics of the summary table: (key, scenario, label, unit, better,
# target). better: "higher" / "lower" (ratio ours/event), target on the
# ratio; or "abs" with an absolute target on our own value.
METRICS = [
    ("s1_rps", "s1", "requests/s", "req/s", "higher", (">=", 1.25)),
    ("s1_p99_ms", "s1", "p99 latency", "ms", "lower", ("<=", 0.9)),
    ("s1_sockerr", "s1", "socket errors (all rounds)", "", "abs", ("==", 0)),
    ("s1_cpu_us", "s1", "server CPU per request", "µs", "lower", None),
    ("s2_rps", "s2", "requests/s", "req/s", "higher", (">=", 1.15)),
    ("s2_cpu_us", "s2", "server CPU per request", "µs", "lower", None),
    ("s3_rps", "s3", "requests/s", "req/s", "higher", (">=", 1.00)),
    ("s4_rps", "s4", "requests/s", "req/s", "higher", (">=", 1.25)),
    ("s4_p99_ms", "s4", "p99 latency", "ms", "lower", None),
    ("s4_idle_held", "s4", "idle conns held (answered)", "", "abs", None),
    ("s4_idle_alive", "s4", "idle conns still open after the load", "", "abs", None),
    ("s4_rss_mib", "s4", "total RSS with the idle conns", "MiB", "lower", None),
    ("s4_kib_per_idle", "s4", "RSS per idle conn", "KiB", "abs", ("<=", 8.0)),
    ("s5_failed", "s5", "failed requests (all rounds)", "", "abs", ("==", 0)),
    ("s5_rps", "s5", "requests/s", "req/s", "higher", None),
    ("s6_rps", "s6", "requests/s", "req/s", "higher", (">=", 1.00)),
    ("s7_rps", "s7", "requests/s", "req/s", "higher", (">=", 1.00)),
    ("s7_p50_ms", "s7", "p50 latency", "ms", "lower", None),
    ("s7_p99_ms", "s7", "p99 latency", "ms", "lower", ("<=", 0.9)),
    ("s8_rps", "s8", "requests/s", "req/s", "higher", (">=", 1.00)),
    ("s8_p50_ms", "s8", "p50 latency", "ms", "lower", None),
    ("s8_p99_ms", "s8", "p99 latency", "ms", "lower", ("<=", 0.9)),
]
METRICS += [(k, "s9", label, unit, "lower" if unit == "ms" else "higher", None) for k, label, unit in slow.METRICS]
# Metrics summed over the rounds instead of taking the median.
SUMMED = {"s1_sockerr", "s5_failed"}


def log(msg):
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def run_cmd(cmd, timeout, **kw):
    """subprocess.run with a time bound; returns (rc, stdout+stderr text)."""
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, text=True, **kw)
        return p.returncode, p.stdout
    except subprocess.TimeoutExpired as e:
        out = e.stdout or ""
        if isinstance(out, bytes):
            out = out.decode(errors="replace")
        return -1, out + "\n[timed out after %ss]" % timeout


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is gone for our purposes
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def children_of(ppid, zombies=False):
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == ppid and (zombies or fields[0] != "Z"):
            kids.append(int(d))
    return sorted(kids)


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def http_get(port, path="/1k.bin", timeout=2.0):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        c.close()
        return r.status
    except (OSError, http.client.HTTPException):
        return None


def pseudo_random_bytes(n, seed):
    out = bytearray()
    x = (seed * 0x9E3779B97F4A7C15 | 1) & 0xFFFFFFFFFFFFFFFF
    while len(out) < n:
        x ^= (x << 13) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 7
        x ^= (x << 17) & 0xFFFFFFFFFFFFFFFF
        out += x.to_bytes(8, "little")
    return bytes(out[:n])


# --------------------------------------------------------------------------
# Servers


class Server:
    """One running instance of a server under test, in its own directory."""

    def __init__(self, key, ctx, tag):
        self.key = key
        self.spec = SERVERS[key]
        self.ctx = ctx
        self.dir = os.path.join(ctx.base, "%s-%s" % (key, tag))
        self.port = None
        self.tls_port = None
        self.pid = None
        self.known_pids = set()

    @property
    def kind(self):
        return self.spec["kind"]

    def pidfile(self):
        return os.path.join(self.dir, "httpd.pid" if self.kind == "apache" else "nginx.pid")

    def write_config(self):
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.port, self.tls_port = free_port(), free_port()
        while self.tls_port == self.port:
            self.tls_port = free_port()
        subst = {
            "@RUN_DIR@": self.dir,
            "@DOCROOT@": self.ctx.docroot,
            "@PORT@": str(self.port),
            "@TLS_PORT@": str(self.tls_port),
            "@MODULES_DIR@": MODULES_DIR,
            "@CERT@": self.ctx.cert,
            "@KEY@": self.ctx.key,
            "@USER@": self.ctx.user,
            "@GROUP@": self.ctx.group,
        }
        if self.kind == "apache":
            subst["@MPM_LOADMODULE@"] = self.spec["load"].format(module=self.ctx.module)
            tmpl = "httpd.conf.in"
            out = os.path.join(self.dir, "httpd.conf")
        else:
            tmpl = "nginx.conf.in"
            out = os.path.join(self.dir, "nginx.conf")
            for t in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
                os.makedirs(os.path.join(self.dir, "tmp", t), exist_ok=True)
        with open(os.path.join(HERE, "conf", tmpl)) as f:
            text = f.read()
        for k, v in subst.items():
            text = text.replace(k, v)
        with open(out, "w") as f:
            f.write(text)
        self.conf = out

    def start(self):
        self.write_config()
        if self.kind == "apache":
            cmd = [HTTPD, "-f", self.conf]
        else:
            cmd = [NGINX, "-c", self.conf, "-p", self.dir + "/",
                   "-e", os.path.join(self.dir, "error.log")]
        rc, out = run_cmd(PLACEMENT["server"] + cmd, 30, stdin=subprocess.DEVNULL)
        if rc != 0:
            raise RuntimeError("%s failed to start (rc %s): %s" % (self.key, rc, out.strip()))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pid = self.read_pid()
            if pid and http_get(self.port) == 200:
                self.pid = pid
                self.known_pids.add(pid)
                self.known_pids.update(children_of(pid))
                if PLACEMENT["pin_children"]:
                    pin_children(pid)
                return
            time.sleep(0.1)
        self.pid = self.read_pid()
        self.stop()
        raise RuntimeError("%s did not answer on port %d within 20 s" % (self.key, self.port))

    def read_pid(self):
        try:
            with open(self.pidfile()) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def alive(self):
        return self.pid is not None and pid_alive(self.pid)

    def pids(self):
        if not self.alive():
            return []
        kids = children_of(self.pid)
        self.known_pids.update(kids)
        return [self.pid] + kids

    def rss_kib(self):
        return sum(rss_kib(p) for p in self.pids())

    def graceful(self):
        """Graceful restart (apache: SIGUSR1) / reload (nginx: SIGHUP)."""
        pid = self.read_pid() or self.pid
        os.kill(pid, signal.SIGUSR1 if self.kind == "apache" else signal.SIGHUP)

    def wait_ready(self, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if http_get(self.port) == 200:
                return True
            time.sleep(0.1)
        return False

    def stop(self):
        pid = self.pid or self.read_pid()
        if pid is None:
            return
        pids = set(self.known_pids)
        pids.add(pid)
        if pid_alive(pid):
            pids.update(children_of(pid))
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
            time.sleep(0.05)
        left = [p for p in pids if pid_alive(p)]
        for p in left:
            log("%s: pid %d still running 15 s after SIGTERM: SIGKILL" % (self.key, p))
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.pid = None

    def error_log_summary(self):
        path = os.path.join(self.dir, "error.log")
        try:
            with open(path, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return {"lines": 0, "levels": {}, "messages": []}
        levels = {}
        msgs = {}
        for line in lines:
            if self.kind == "apache":
                m = re.match(r"\[[^\]]*\] \[[^:\]]*:(\w+)\] (?:\[pid \d+(?::tid \d+)?\] )?(.*)", line)
            else:
                m = re.match(r"\S+ \S+ \[(\w+)\] \d+#\d+: (?:\*\d+ )?(.*)", line)
            if m:
                level, msg = m.group(1), m.group(2)
            else:
                level, msg = "other", line
            levels[level] = levels.get(level, 0) + 1
            msg = " ".join(t if re.match(r"AH\d{5}", t) else re.sub(r"\d+", "N", t)
                           for t in msg.split())[:200]
            msgs[(level, msg)] = msgs.get((level, msg), 0) + 1
        top = sorted(msgs.items(), key=lambda kv: -kv[1])[:12]
        return {"lines": len(lines), "levels": levels,
                "messages": [{"level": k[0], "message": k[1], "count": v} for k, v in top]}

    def keep_log(self, dest_dir, name):
        src = os.path.join(self.dir, "error.log")
        if os.path.exists(src) and os.path.getsize(src) > 0:
            os.makedirs(dest_dir, exist_ok=True)
            shutil.copyfile(src, os.path.join(dest_dir, name))

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------
# Load generators

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def parse_wrk(out):
    r = {"requests": None, "rps": None, "p99_ms": None, "p50_ms": None,
         "sock_connect": 0, "sock_read": 0, "sock_write": 0, "sock_timeout": 0,
         "non2xx": 0}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    if m:
        r["requests"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        r["rps"] = float(m.group(1))
    for pct, key in (("99", "p99_ms"), ("50", "p50_ms")):
        m = re.search(r"^\s+%s(?:\.000)?%%\s+([\d.]+)(us|ms|s|m|h)\s*$" % pct, out, re.M)
        if m:
            r[key] = float(m.group(1)) * UNITS[m.group(2)]
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        r["sock_connect"], r["sock_read"], r["sock_write"], r["sock_timeout"] = map(int, m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        r["non2xx"] = int(m.group(1))
    r["sock_errors"] = r["sock_connect"] + r["sock_read"] + r["sock_write"] + r["sock_timeout"]
    return r


def wrk(port, path, conns, seconds, close=False):
    cmd = ["wrk", "-t2", "-c%d" % conns, "-d%ds" % seconds, "--latency"]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append("http://127.0.0.1:%d%s" % (port, path))
    rc, out = run_cmd(PLACEMENT["client"] + cmd, seconds + 30, stdin=subprocess.DEVNULL)
    r = parse_wrk(out)
    r["rc"] = rc
    if r["rps"] is None:
        r["raw"] = out[-2000:]
    return r


def parse_h2load(out):
    r = {"rps": None, "requests": None, "succeeded": None, "failed": None,
         "errored": None, "timeout": None, "non2xx": None}
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    if m:
        r["requests"] = int(m.group(3))
        r["succeeded"] = int(m.group(4))
        r["failed"] = int(m.group(5))
        r["errored"] = int(m.group(6))
        r["timeout"] = int(m.group(7))
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if m:
        r["non2xx"] = int(m.group(3)) + int(m.group(4))
    m = re.search(r"Application protocol: (\S+)", out)
    r["protocol"] = m.group(1) if m else None
    m = re.search(r"TLS Protocol: (\S+)", out)
    r["tls"] = m.group(1) if m else None
    m = re.search(r"Cipher: (\S+)", out)
    r["cipher"] = m.group(1) if m else None
    return r


def h2load(port, seconds, warmup):
    cmd = ["h2load", "-t2", "-c10", "-m10", "-D", str(seconds)]
    if warmup > 0:
        cmd += ["--warm-up-time", str(warmup)]
    cmd.append("https://127.0.0.1:%d/1k.bin" % port)
    rc, out = run_cmd(PLACEMENT["client"] + cmd, seconds + warmup + 30, stdin=subprocess.DEVNULL)
    r = parse_h2load(out)
    r["rc"] = rc
    if r["rps"] is None or r["protocol"] != "h2":
        r["raw"] = out[-2000:]
    return r


# --------------------------------------------------------------------------
# Scenarios. Each takes the running server and the options and returns a dict.


CLK = os.sysconf("SC_CLK_TCK")


def machine_busy_s():
    """CPU seconds the whole machine spent busy (all CPUs), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK


def server_cpu_s(srv, pids):
    """CPU seconds of the server: its live processes (all threads), plus what
    the master collected from children it reaped (cutime + cstime)."""
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
        if p == srv.pid:
            total += int(fields[13]) + int(fields[14])
    return total / CLK


def client_cpu_s():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def measured(srv, fn):
    """Runs the measurement fn() and adds to its result where the machine's
    CPU went meanwhile: the server's processes, the load generator, and
    everything else (other users of a shared machine: noise)."""
    # zombies too: a child that exited but is not reaped yet is added to the
    # master's cutime when it is; its earlier time must be in the baseline
    pids = set(srv.pids()) | set(children_of(srv.pid, zombies=True) if srv.pid else [])
    t0, b0, c0, s0 = time.monotonic(), machine_busy_s(), client_cpu_s(), server_cpu_s(srv, pids)
    r = fn()
    pids.update(srv.pids())
    t1, b1, c1, s1 = time.monotonic(), machine_busy_s(), client_cpu_s(), server_cpu_s(srv, pids)
    cap = (t1 - t0) * (os.cpu_count() or 1) / 100.0
    server, client, busy = max(s1 - s0, 0), c1 - c0, b1 - b0
    r["cpu_server_pct"] = round(server / cap, 1)
    r["cpu_client_pct"] = round(client / cap, 1)
    r["cpu_other_pct"] = round(max(busy - server - client, 0) / cap, 1)
    r["cpu_idle_pct"] = round(max(100 - busy / cap, 0), 1)
    if r.get("requests"):
        r["server_cpu_us_per_req"] = round(server * 1e6 / r["requests"], 1)
    return r


def warm(srv, o, path, conns, close=False):
    """Warm-up before a measurement, not measured: --warmup seconds of the
    scenario's own load (each scenario runs on a freshly started server)."""
    if o.warmup > 0:
        wrk(srv.port, path, conns, o.warmup, close=close)


def sc1(srv, o):
    warm(srv, o, "/1k.bin", 50)
    return measured(srv, lambda: wrk(srv.port, "/1k.bin", 50, o.duration))


def sc2(srv, o):
    warm(srv, o, "/1k.bin", 50, close=True)
    return measured(srv, lambda: wrk(srv.port, "/1k.bin", 50, o.duration, close=True))


def sc3(srv, o):
    warm(srv, o, "/1m.bin", 20)
    return measured(srv, lambda: wrk(srv.port, "/1m.bin", 20, o.duration))


def sc6(srv, o):
    r = measured(srv, lambda: h2load(srv.tls_port, o.duration, o.warmup))
    # the CPU window includes h2load's warm-up and TLS handshakes
    r.pop("server_cpu_us_per_req", None)
    return r


class IdleBatch:
    """One idle_conns.py process: opens its connections, then holds them
    until close()."""

    def __init__(self, srv, o, n):
        cmd = [sys.executable, os.path.join(HERE, "idle_conns.py"), "127.0.0.1",
               str(srv.port), str(n), "/1k.bin", "--stall", "3",
               "--max-life", str(120 + 3 * o.duration)]
        self.p = subprocess.Popen(PLACEMENT["client"] + cmd, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        self.rss_kib = None  # the server's RSS once this batch is open
        try:
            self.ready = json.loads(read_line(self.p, 90) or "{}")
        except ValueError:
            self.ready = {}

    def check(self):
        self.p.stdin.write("check\n")
        self.p.stdin.flush()
        return json.loads(read_line(self.p, 30) or "{}")

    def close(self):
        try:
            self.p.stdin.write("close\n")
            self.p.stdin.flush()
        except OSError:
            pass
        try:
            self.p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def sc4(srv, o):
    """The idle connections are opened in two halves and the RSS per idle
    connection is what the second half added: opening the first half also
    makes the server's threads return memory the load before left in their
    allocators (measured: after scenario 6's load, ours went 40.5 -> 39.6
    MiB when 5,000 idle connections were opened), which a single
    before/after difference would subtract. A server that stops answering in
    the first half (a thread per connection) is measured over all it holds
    instead."""
    time.sleep(0.5)
    res = {"rss_base_kib": srv.rss_kib(), "procs_before": len(srv.pids())}
    batches = []
    try:
        for n in (o.idle // 2, o.idle - o.idle // 2):
            b = IdleBatch(srv, o, n)
            batches.append(b)
            time.sleep(0.5)
            b.rss_kib = srv.rss_kib()
        first, second = batches
        held = [b.ready.get("idle", 0) for b in batches]
        res["idle_held"] = sum(held)
        res["idle_failed"] = sum(b.ready.get("failed") or 0 for b in batches)
        res["idle_unanswered"] = sum(b.ready.get("unanswered") or 0 for b in batches)
        res["idle_open_seconds"] = sum(b.ready.get("seconds") or 0 for b in batches)
        res["rss_half_kib"] = first.rss_kib
        res["rss_idle_kib"] = second.rss_kib
        res["procs_idle"] = len(srv.pids())
        if held[1] >= o.idle // 10:
            res["kib_per_idle"] = (second.rss_kib - first.rss_kib) / held[1]
        elif res["idle_held"]:
            res["kib_per_idle"] = (second.rss_kib - res["rss_base_kib"]) / res["idle_held"]
        warm(srv, o, "/1k.bin", 50)
        r = measured(srv, lambda: wrk(srv.port, "/1k.bin", 50, o.duration))
        res.update(r)
        res["rss_after_load_kib"] = srv.rss_kib()
        res["idle_alive"] = sum(b.check().get("alive", 0) for b in batches)
    except (OSError, ValueError) as e:
        res["error"] = "idle client: %s" % e
    finally:
        for b in batches:
            b.close()
    return res


def read_line(p, timeout):
    """One line of p's stdout within timeout seconds, or None."""
    out = []

    def reader():
        out.append(p.stdout.readline())

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout)
    return out[0].strip() if out else None


def sc5(srv, o):
    seconds = o.restarts + 2
    sent = []

    def restarter():
        time.sleep(1.0)
        for _ in range(o.restarts):
            try:
                srv.graceful()
                sent.append(time.monotonic())
            except OSError as e:
                log("%s: graceful restart signal failed: %s" % (srv.key, e))
            time.sleep(1.0)

    warm(srv, o, "/1k.bin", 50)
    t = threading.Thread(target=restarter, daemon=True)
    t.start()
    r = measured(srv, lambda: wrk(srv.port, "/1k.bin", 50, seconds))
    t.join(o.restarts + 5)
    r["restarts"] = len(sent)
    r["failed"] = r["sock_errors"] + r["non2xx"]
    r["alive_after"] = srv.alive() and srv.wait_ready(15)
    return r


SCENARIOS = {"s1": sc1, "s2": sc2, "s3": sc3, "s4": sc4, "s5": sc5, "s6": sc6,
             "s7": backends.scenario("s7"), "s8": backends.scenario("s8"), "s9": slow.run}


# --------------------------------------------------------------------------
# The run


class Ctx:
    pass


def setup_ctx(module):
    ctx = Ctx()
    ctx.module = os.path.abspath(module)
    ctx.base = tempfile.mkdtemp(prefix="mod_mpm_event_rs-bench-")
    os.chmod(ctx.base, 0o755)
    ctx.docroot = os.path.join(ctx.base, "htdocs")
    os.makedirs(ctx.docroot)
    with open(os.path.join(ctx.docroot, "index.html"), "w") as f:
        f.write("<html><body>bench</body></html>\n")
    with open(os.path.join(ctx.docroot, "1k.bin"), "wb") as f:
        f.write(pseudo_random_bytes(1024, 1))
    with open(os.path.join(ctx.docroot, "1m.bin"), "wb") as f:
        f.write(pseudo_random_bytes(1 << 20, 2))
    for root, dirs, files in os.walk(ctx.docroot):
        for n in files:
            os.chmod(os.path.join(root, n), 0o644)
    ctx.cert = os.path.join(ctx.base, "cert.pem")
    ctx.key = os.path.join(ctx.base, "key.pem")
    rc, out = run_cmd(["openssl", "req", "-x509", "-newkey", "ec",
                       "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                       "-keyout", ctx.key, "-out", ctx.cert, "-days", "2",
                       "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                       "-addext", "basicConstraints=critical,CA:FALSE"],
                      30, stdin=subprocess.DEVNULL)
    if rc != 0:
        raise RuntimeError("openssl failed: " + out)
    if os.geteuid() == 0:
        ctx.user = ctx.group = "www-data"
    else:
        import grp
        import pwd
        ctx.user = pwd.getpwuid(os.getuid()).pw_name
        ctx.group = grp.getgrgid(os.getgid()).gr_name
    return ctx


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def version(cmd, pattern=None):
    rc, out = run_cmd(cmd, 10)
    out = out.strip()
    if pattern:
        m = re.search(pattern, out)
        return m.group(0) if m else out.splitlines()[0] if out else "?"
    return out.splitlines()[0] if out else "?"


def machine_facts():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = "%.1f GiB" % (int(f.readline().split()[1]) / 1048576)
    except OSError:
        pass
    rc, head = run_cmd(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], 10)
    rc2, dirty = run_cmd(["git", "-C", REPO, "status", "--porcelain", "--", "src", "apache-glue",
                          "Cargo.toml", "build.rs"], 10)
    commit = head.strip() + (" (+ uncommitted changes in src/)" if dirty.strip() else "")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "uname": " ".join(platform.uname()[i] for i in (0, 2, 4)),
        "cpu": cpu,
        "memory": mem,
        "loadavg_start": open("/proc/loadavg").read().split()[:3],
        "apache2": version([HTTPD, "-v"], r"Apache/\S+"),
        "nginx": version([NGINX, "-v"], r"nginx/\S+") if os.path.exists(NGINX) else "not installed",
        "wrk": version(["wrk", "-v"], r"wrk \S+"),
        "h2load": version(["h2load", "--version"], r"nghttp2/\S+"),
        "openssl": version(["openssl", "version"]),
        "commit": commit,
    }


def run_scenario(key, sc, rnd, ctx, o, log_dir, current):
    """One measurement: a freshly started server, warmed with the
    scenario's own load (inside the scenario), measured, stopped. Returns
    the result and the summary of the server's error log."""
    if not backends.applies(sc, key):
        return {"error": "not measured for %s" % key}, {"lines": 0, "levels": {}, "messages": []}
    srv = Server(key, ctx, "r%d-%s" % (rnd, sc))
    current[0] = srv
    backend = None
    try:
        backend = backends.start(sc, srv)
        srv.start()
    except RuntimeError as e:
        log(str(e))
        res = {"error": str(e), "start_failed": True}
    else:
        procs = len(srv.pids())
        t0 = time.monotonic()
        res = SCENARIOS[sc](srv, o)
        res["procs_at_start"] = procs
        res["seconds"] = round(time.monotonic() - t0, 1)
        res["server_alive"] = srv.alive()
        log("round %d %-6s %s: %s" % (rnd, key, sc, brief(sc, res)))
        if not res["server_alive"]:
            log("round %d %s: the server's parent process is gone after %s" % (rnd, key, sc))
    srv.stop()
    if backend is not None:
        backend.stop()
    current[0] = None
    el = srv.error_log_summary()
    srv.keep_log(log_dir, "%s-r%d-%s.error.log" % (key, rnd, sc))
    srv.cleanup()
    return res, el


def merge_logs(a, b):
    """Sums two error log summaries (Server.error_log_summary)."""
    if a is None:
        return b
    levels = dict(a["levels"])
    for k, v in b["levels"].items():
        levels[k] = levels.get(k, 0) + v
    msgs = {}
    for m in a["messages"] + b["messages"]:
        kk = (m["level"], m["message"])
        msgs[kk] = msgs.get(kk, 0) + m["count"]
    return {"lines": a["lines"] + b["lines"], "levels": levels,
            "messages": [{"level": k[0], "message": k[1], "count": v} for k, v in msgs.items()]}


def pin_children(ppid):
    """Each child of `ppid`, every thread it has, on one of the CPUs the
    server may use, the children taking them in turn. Threads the children
    start later inherit it; children started later (restarts, more load)
    are not pinned."""
    cpus = sorted(os.sched_getaffinity(ppid))
    for i, pid in enumerate(children_of(ppid)):
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                os.sched_setaffinity(int(tid), {cpus[i % len(cpus)]})
            except ProcessLookupError:
                pass  # the thread ended meanwhile


def set_placement(o):
    """--client-policy batch: the clients run as SCHED_BATCH, so a client
    woken by a response no longer preempts the server thread that wrote it
    (their CPU shares stay the same). --split-cpus: the server on CPU 0, the
    clients on the others, as when they are on different machines.
    --pin-children: each server child on one CPU (see `pin_children`), the
    clients free. None is the benchmark the targets are judged on; they
    show what the shared CPUs cost each server (bench/README.md)."""
    PLACEMENT["pin_children"] = o.pin_children
    ncpu = os.cpu_count() or 1
    if o.split_cpus:
        if ncpu < 2:
            sys.exit("--split-cpus needs at least 2 CPUs")
        PLACEMENT["server"] = ["taskset", "-c", "0"]
        PLACEMENT["client"] = ["taskset", "-c", "1-%d" % (ncpu - 1)]
    if o.client_policy == "batch":
        PLACEMENT["client"] = ["chrt", "-b", "0"] + PLACEMENT["client"]


def cmd_run(o):
    if o.quick:
        o.rounds = o.rounds or 3
        o.duration = o.duration or 2
        o.warmup = 1 if o.warmup is None else o.warmup
        o.restarts = o.restarts or 5
        o.servers = o.servers or "ours,event"
    else:
        o.rounds = o.rounds or 5
        o.duration = o.duration or 6
        o.warmup = 2 if o.warmup is None else o.warmup
        o.restarts = o.restarts or 10
        o.servers = o.servers or ",".join(ALL_SERVERS)
    servers = [s.strip() for s in o.servers.split(",") if s.strip()]
    set_placement(o)
    scenarios = [s for s in SCENARIO_ORDER if s in (o.scenarios or ",".join(SCENARIO_ORDER)).split(",")]
    if o.scenarios and set(o.scenarios.split(",")) - set(SCENARIO_ORDER):
        sys.exit("unknown scenario in %r (known: %s)" % (o.scenarios, ",".join(SCENARIO_ORDER)))
    for s in servers:
        if s not in SERVERS:
            sys.exit("unknown server %r (known: %s)" % (s, ", ".join(ALL_SERVERS)))
    if "nginx" in servers and not os.path.exists(NGINX):
        log("nginx is not installed: leaving it out (apt-get install nginx)")
        servers.remove("nginx")
    if not os.path.exists(o.module):
        sys.exit("no module at %s (run make first)" % o.module)
    nofile = raise_nofile()
    if nofile < o.idle + 1000:
        log("RLIMIT_NOFILE is %d: scenario 4 may not open %d connections" % (nofile, o.idle))

    facts = machine_facts()
    ctx = setup_ctx(o.module)
    log("servers %s, %d rounds, %d s per measurement (+%d s warm-up), %d restarts; tmp %s"
        % (",".join(servers), o.rounds, o.duration, o.warmup, o.restarts, ctx.base))
    t_start = time.monotonic()
    rounds = []
    current = [None]

    def on_signal(signum, frame):
        if current[0] is not None:
            current[0].stop()
        shutil.rmtree(ctx.base, ignore_errors=True)
        sys.exit(128 + signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    log_dir = os.path.join(o.out, "logs")
    shutil.rmtree(log_dir, ignore_errors=True)
    try:
        for rnd in range(1, o.rounds + 1):
            k = (rnd - 1) % len(servers)
            order = servers[k:] + servers[:k]
            entries = {key: {"round": rnd, "server": key, "scenarios": {}, "error_log": None}
                       for key in order}
            rounds.extend(entries[key] for key in order)
            for sc in scenarios:
                if rnd > 1 and sc in FIRST_ROUND_ONLY:
                    continue
                for key in order:
                    e = entries[key]
                    res, el = run_scenario(key, sc, rnd, ctx, o, log_dir, current)
                    e["scenarios"][sc] = res
                    e["error_log"] = merge_logs(e["error_log"], el)
    finally:
        if current[0] is not None:
            current[0].stop()
        shutil.rmtree(ctx.base, ignore_errors=True)

    facts["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    facts["seconds"] = round(time.monotonic() - t_start)
    settings = {"quick": o.quick, "rounds": o.rounds, "duration": o.duration,
                "warmup": o.warmup, "restarts": o.restarts, "idle": o.idle,
                "servers": servers, "scenarios": scenarios, "module": ctx.module,
                "client_policy": o.client_policy, "split_cpus": o.split_cpus,
                "pin_children": o.pin_children}
    summary = summarize(rounds, servers)
    result = {"facts": facts, "settings": settings, "summary": summary, "rounds": rounds}
    os.makedirs(o.out, exist_ok=True)
    with open(os.path.join(o.out, "latest.json"), "w") as f:
        json.dump(result, f, indent=1)
    md = render_md(result)
    with open(os.path.join(o.out, "latest.md"), "w") as f:
        f.write(md)
    png = os.path.join(o.out, "latest.png")
    try:
        import chart
        chart.make_chart(result, png)
    except ImportError as e:
        log("no chart (%s): apt-get install python3-matplotlib" % e)
    sys.stdout.write(md)
    log("done in %d s: %s/latest.{md,json,png}" % (facts["seconds"], o.out))


def brief(sc, r):
    if r.get("error"):
        return "ERROR " + r["error"]
    parts = []
    if r.get("rps") is not None:
        parts.append("%.0f req/s" % r["rps"])
    else:
        parts.append("no result")
    if r.get("p99_ms") is not None:
        parts.append("p99 %.2f ms" % r["p99_ms"])
    if "sock_errors" in r:
        parts.append("sockerr %d non2xx %d" % (r["sock_errors"], r["non2xx"]))
    if sc == "s6":
        parts.append("%s/%s failed %s errored %s" % (r.get("protocol"), r.get("tls"), r.get("failed"), r.get("errored")))
    if sc == "s4":
        parts.append("idle held %s alive after %s, RSS %s -> %s -> %s KiB (%s KiB/conn)" % (
            r.get("idle_held"), r.get("idle_alive"), r.get("rss_base_kib"),
            r.get("rss_half_kib"), r.get("rss_idle_kib"),
            "%.1f" % r["kib_per_idle"] if r.get("kib_per_idle") is not None else "?"))
    if sc == "s5":
        parts.append("%s restarts, failed %s, alive after: %s" % (
            r.get("restarts"), r.get("failed"), r.get("alive_after")))
    if sc == "s9":
        parts.append(slow.brief(r))
    if r.get("cpu_other_pct") is not None:
        parts.append("cpu server %s%% client %s%% other %s%%" % (
            r["cpu_server_pct"], r["cpu_client_pct"], r["cpu_other_pct"]))
    if r.get("raw"):
        parts.append("output: " + r["raw"].strip().replace("\n", " | ")[-300:])
    return ", ".join(parts)


# --------------------------------------------------------------------------
# Summary


def metric_values(rounds, server, key):
    vals = []
    for e in rounds:
        if e["server"] != server:
            continue
        sc = key.split("_", 1)[0]
        r = e["scenarios"].get(sc)
        if r is not None:
            vals.append(extract(key, r))
    return vals


def extract(key, r):
    if r.get("error"):
        return None
    if key.endswith("_rps"):
        return r.get("rps")
    if key.endswith("_p99_ms"):
        return r.get("p99_ms")
    if key.endswith("_p50_ms"):
        return r.get("p50_ms")
    if key.endswith("_cpu_us"):
        return r.get("server_cpu_us_per_req")
    if key == "s1_sockerr":
        return r.get("sock_errors") if r.get("rps") is not None else None
    if key == "s4_idle_held":
        return r.get("idle_held")
    if key == "s4_idle_alive":
        return r.get("idle_alive")
    if key == "s4_rss_mib":
        v = r.get("rss_idle_kib")
        return v / 1024 if v is not None else None
    if key == "s4_kib_per_idle":
        return r.get("kib_per_idle")
    if key.startswith("s9_"):
        return slow.extract(key, r)
    if key == "s5_failed":
        return r.get("failed") if r.get("rps") is not None else None
    return None


def summarize(rounds, servers):
    out = {}
    for key, sc, label, unit, better, target in METRICS:
        row = {"values": {}, "median": {}}
        for s in servers:
            vals = metric_values(rounds, s, key)
            row["values"][s] = vals
            good = [v for v in vals if v is not None]
            if not good:
                row["median"][s] = None
            elif key in SUMMED:
                row["median"][s] = sum(good)
            else:
                row["median"][s] = statistics.median(good)
        ours, ev = row["median"].get("ours"), row["median"].get("event")
        row["ratio"] = {}
        for s in servers:
            v = row["median"][s]
            if ev and v is not None and better != "abs":
                row["ratio"][s] = v / ev
            else:
                row["ratio"][s] = None
        met = None
        if target is not None and ours is not None:
            op, t = target
            subject = ours if better == "abs" else row["ratio"].get("ours")
            if subject is not None:
                met = {">=": subject >= t, "<=": subject <= t, "==": subject == t}[op]
        row["target_met"] = met
        out[key] = row
    return out


def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "req/s":
        return "{:,.0f}".format(v)
    if unit in ("ms", "KiB", "MiB", "µs"):
        return "%.2f" % v if v < 10 else "%.1f" % v
    if isinstance(v, float) and not v.is_integer():
        return "%.1f" % v
    return "{:,}".format(int(v))


def target_text(better, target):
    if target is None:
        return ""
    op, t = target
    sym = {">=": "≥", "<=": "≤", "==": "="}[op]
    if better == "abs":
        return "ours %s %s" % (sym, ("%g" % t))
    return "ratio %s %.2f" % (sym, t)


def render_md(result):
    f, st, summ = result["facts"], result["settings"], result["summary"]
    servers = st["servers"]
    L = []
    L.append("# `make bench` results")
    L.append("")
    mode = "QUICK mode (`make bench QUICK=1`): %d rounds of %d s, %d restarts per round, " \
           "%d s of warm-up — indicative only; the full mode runs 5 rounds of 6 s " \
           "and 10 restarts per round, with all four servers." % (
               st["rounds"], st["duration"], st["restarts"], st["warmup"]) if st["quick"] else \
        "Full mode: %d rounds, %d s per measurement after %d s of warm-up with the scenario's own " \
        "load; %d graceful restarts per round." % (
            st["rounds"], st["duration"], st["warmup"], st["restarts"])
    L.append("- date: %s; took %d s" % (f["date"], f["seconds"]))
    L.append("- %s" % mode)
    L.append("- machine: %s CPUs (%s), %s, %s; load average at start %s, at end %s "
             "(the machine is shared: numbers are noisy, quote ratios)" % (
                 f["nproc"], f["cpu"], f["memory"], f["uname"],
                 " ".join(f["loadavg_start"]), " ".join(f["loadavg_end"])))
    L.append("- software: %s (the same binary and configuration for every MPM), %s, %s, %s, %s" % (
        f["apache2"], f["nginx"], f["wrk"], f["h2load"], f["openssl"]))
    L.append("- ours: `%s`, commit %s" % (os.path.relpath(st["module"], REPO)
                                           if st["module"].startswith(REPO) else st["module"], f["commit"]))
    L.append("- clients on the same machine (wrk -t2, h2load -t2); each measurement on a freshly "
             "started server, one server at a time, the servers alternating scenario by scenario in "
             "an order rotated each round; medians over the rounds (sums for error counts)")
    placed = []
    if st.get("client_policy", "other") != "other":
        placed.append("the clients run as SCHED_%s" % st["client_policy"].upper())
    if st.get("split_cpus"):
        placed.append("the servers run on CPU 0 and the clients on the others")
    if st.get("pin_children"):
        placed.append("each server child runs on one CPU (the children of a server in turn), "
                      "the clients on any")
    if placed:
        L.append("- **analysis run, not the benchmark the targets are judged on**: %s"
                 % " and ".join(placed))
    L.append("")
    heads = [SERVERS[s]["label"] for s in servers]
    has_ratio = "ours" in servers and "event" in servers
    hdr = "| scenario | metric | " + " | ".join(heads) + " |"
    sep = "|---|---|" + "---:|" * len(servers)
    if has_ratio:
        hdr += " ours / stock event | target | met |"
        sep += "---:|---|---|"
    L.append(hdr)
    L.append(sep)
    last_sc = None
    for key, sc, label, unit, better, target in METRICS:
        row = summ[key]
        title = SCENARIO_TITLES[sc] if sc != last_sc else ""
        last_sc = sc
        mlabel = label + (" (%s)" % unit if unit and unit != "req/s" else "")
        cells = [fmt(row["median"].get(s), unit) for s in servers]
        line = "| %s | %s | %s |" % (title, mlabel, " | ".join(cells))
        if has_ratio:
            ratio = row["ratio"].get("ours")
            rtxt = "%.2f" % ratio if ratio is not None else "-"
            met = row["target_met"]
            mtxt = "" if met is None else ("**yes**" if met else "**no**")
            line += " %s | %s | %s |" % (rtxt, target_text(better, target), mtxt)
        L.append(line)
    L.append("")
    if has_ratio:
        nmet = sum(1 for k in summ if summ[k]["target_met"])
        ntot = sum(1 for k in summ if summ[k]["target_met"] is not None)
        L.append("Targets met: %d of %d%s." % (
            nmet, ntot, " (in this analysis run; the targets are judged on the default placement)"
            if placed else ""))
        L.append("")
    # ratios of the other servers
    others = [s for s in servers if s not in ("event",)]
    if "event" in servers and others:
        L.append("Ratios to stock event (medians): " + "; ".join(
            "%s: %s" % (SERVERS[s]["label"], ", ".join(
                "%s %s" % (k.replace("_", " "), "%.2f" % summ[k]["ratio"][s])
                for k in ("s1_rps", "s2_rps", "s3_rps", "s4_rps", "s6_rps")
                if summ[k]["ratio"].get(s) is not None)) for s in others))
        L.append("")
    # errors per scenario
    L.append("## Errors per scenario (all rounds)")
    L.append("")
    L.append("Socket errors (connect/read/write/timeout) + non-2xx responses for wrk; "
             "failed + errored + timeout for h2load.")
    L.append("")
    L.append("| scenario | " + " | ".join(heads) + " |")
    L.append("|---|" + "---:|" * len(servers))
    for sc in SCENARIO_ORDER:
        cells = []
        for s in servers:
            tot = {"c": 0, "r": 0, "w": 0, "t": 0, "n": 0, "h": 0}
            seen = False
            for e in result["rounds"]:
                if e["server"] != s:
                    continue
                r = e["scenarios"].get(sc)
                if not r or r.get("error"):
                    continue
                seen = True
                if sc == "s6":
                    tot["h"] += (r.get("failed") or 0) + (r.get("errored") or 0) + (r.get("timeout") or 0)
                    tot["n"] += r.get("non2xx") or 0
                else:
                    tot["c"] += r.get("sock_connect", 0)
                    tot["r"] += r.get("sock_read", 0)
                    tot["w"] += r.get("sock_write", 0)
                    tot["t"] += r.get("sock_timeout", 0)
                    tot["n"] += r.get("non2xx", 0)
            if not seen:
                cells.append("-")
            elif sc == "s6":
                cells.append("%d failed, %d non-2xx" % (tot["h"], tot["n"]))
            else:
                total = tot["c"] + tot["r"] + tot["w"] + tot["t"] + tot["n"]
                detail = ", ".join("%s %d" % (n, tot[k]) for k, n in
                                   (("c", "connect"), ("r", "read"), ("w", "write"),
                                    ("t", "timeout"), ("n", "non-2xx")) if tot[k])
                cells.append("%d%s" % (total, " (%s)" % detail if detail else ""))
        L.append("| %s | %s |" % (SCENARIO_TITLES[sc], " | ".join(cells)))
    L.append("")
    protos = []
    for s in servers:
        seen = sorted({"%s over %s, %s" % (r.get("protocol"), r.get("tls"), r.get("cipher"))
                       for e in result["rounds"] if e["server"] == s
                       for r in [e["scenarios"].get("s6") or {}] if r.get("protocol")})
        protos.append("%s: %s" % (SERVERS[s]["label"], "; ".join(seen) or "-"))
    L.append("Scenario 6 negotiated (h2load): " + " — ".join(protos) + ".")
    L.append("")
    # per-round values
    L.append("## Per-round values")
    L.append("")
    L.append("Requests/s per round (in run order), to show the spread; everything else is in `latest.json`.")
    L.append("")
    L.append("| metric | " + " | ".join(heads) + " |")
    L.append("|---|" + "---|" * len(servers))
    for key in ("s1_rps", "s1_p99_ms", "s2_rps", "s3_rps", "s4_rps", "s4_kib_per_idle", "s5_failed", "s6_rps",
                "s7_rps", "s7_p99_ms", "s8_rps", "s8_p99_ms"):
        row = summ[key]
        unit = next(m[3] for m in METRICS if m[0] == key)
        cells = [" ".join(fmt(v, unit) for v in row["values"][s]) for s in servers]
        L.append("| %s | %s |" % (key, " | ".join(cells)))
    L.append("")
    # scenario 4 details
    L.append("## Scenario 4 details (medians)")
    L.append("")
    L.append("| | " + " | ".join(heads) + " |")
    L.append("|---|" + "---:|" * len(servers))
    for field, label in (("idle_held", "idle connections answered and held"),
                         ("idle_unanswered", "connections left unanswered when opening stalled"),
                         ("idle_alive", "idle connections still open after the load"),
                         ("rss_base_kib", "RSS before opening them (KiB)"),
                         ("rss_half_kib", "RSS with the first half open (KiB)"),
                         ("rss_idle_kib", "RSS with them all open (KiB)"),
                         ("rss_after_load_kib", "RSS after the load (KiB)"),
                         ("procs_idle", "server processes with them open"),
                         ("idle_open_seconds", "seconds to open them")):
        cells = []
        for s in servers:
            vals = [e["scenarios"].get("s4", {}).get(field) for e in result["rounds"] if e["server"] == s]
            vals = [v for v in vals if v is not None]
            cells.append(fmt(statistics.median(vals), "") if vals else "-")
        L.append("| %s | %s |" % (label, " | ".join(cells)))
    L.append("")
    # noise
    L.append("## CPU during the measurements (noise check)")
    L.append("")
    L.append("Share of the machine's %s CPUs (median over all measurements of the server, max in brackets): "
             "the server's processes, the load generator, everything else (`other`: other users of a "
             "shared machine; large values mean noisy numbers), and idle." % f["nproc"])
    L.append("")
    L.append("| | " + " | ".join(heads) + " |")
    L.append("|---|" + "---:|" * len(servers))
    for field, label in (("cpu_server_pct", "server %"), ("cpu_client_pct", "load generator %"),
                         ("cpu_other_pct", "other %"), ("cpu_idle_pct", "idle %")):
        cells = []
        for s in servers:
            vals = [r.get(field) for e in result["rounds"] if e["server"] == s
                    for r in e["scenarios"].values() if r.get(field) is not None]
            cells.append("%.0f (%.0f)" % (statistics.median(vals), max(vals)) if vals else "-")
        L.append("| %s | %s |" % (label, " | ".join(cells)))
    L.append("")
    # server health
    L.append("## Server error logs")
    L.append("")
    L.append("LogLevel warn (nginx: warn). Counts over all rounds; copies of the logs are in `logs/`.")
    L.append("")
    for s in servers:
        entries = [e for e in result["rounds"] if e["server"] == s]
        merged = None
        died = []
        for e in entries:
            for sc, r in e["scenarios"].items():
                if r.get("start_failed"):
                    died.append("round %d %s: %s" % (e["round"], sc, r["error"]))
                if r.get("server_alive") is False:
                    died.append("round %d: parent not running after %s" % (e["round"], sc))
                if sc == "s5" and r.get("alive_after") is False:
                    died.append("round %d: not answering after the restarts" % e["round"])
            if e.get("error_log"):
                merged = merge_logs(merged, e["error_log"])
        merged = merged or {"levels": {}, "messages": []}
        msgs = {(m["level"], m["message"]): m["count"] for m in merged["messages"]}
        lv = ", ".join("%s %d" % kv for kv in sorted(merged["levels"].items())) or "empty"
        L.append("- **%s**: %s%s" % (SERVERS[s]["label"], lv,
                                      ("; " + "; ".join(died)) if died else ""))
        shown = [(k, c) for k, c in msgs.items() if k[0] not in ("notice", "info", "debug")]
        for (lvl, m), c in sorted(shown, key=lambda kv: -kv[1])[:8]:
            L.append("  - %d × [%s] `%s`" % (c, lvl, m.replace("`", "'")))
    L.append("")
    L.append("Chart: `latest.png`. Raw per-round numbers: `latest.json`. Method: `bench/README.md`.")
    L.append("")
    return "\n".join(L)


# --------------------------------------------------------------------------
# Profile: perf + strace of the server's children during scenario 1


PROFILE_SYSCALLS = ["futex", "epoll_wait", "epoll_pwait", "epoll_ctl", "accept4", "read", "readv",
                    "recvfrom", "write", "writev", "sendfile64", "sendmsg", "openat", "newfstatat",
                    "statx", "close", "setsockopt", "getsockopt", "shutdown", "fcntl", "poll",
                    "mmap", "munmap", "madvise", "brk", "sched_yield", "times"]


def need_perf():
    if not shutil.which("perf"):
        sys.exit("perf not found: apt-get install linux-perf")


def wrk_under(srv, cmd, seconds, settle=0.5, load=None):
    """Scenario 1's load (or `load()`) for `seconds` while the tracer `cmd`
    (perf, strace) runs; the tracer is stopped with SIGINT, so that it
    writes its output, when the load ends. Returns the load's result."""
    tracer = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(settle)
    r = load() if load else wrk(srv.port, "/1k.bin", 50, seconds)
    tracer.send_signal(signal.SIGINT)
    try:
        tracer.wait(timeout=60)
    except subprocess.TimeoutExpired:
        tracer.kill()
        tracer.wait()
    return r


def perf_stat_syscalls(srv, kids, seconds):
    """Counts syscalls (tracepoints) and context switches of the children
    during a wrk run; returns (counts, wrk result)."""
    out = os.path.join(srv.dir, "perf-stat.csv")
    events = ["raw_syscalls:sys_enter", "context-switches", "cpu-migrations", "task-clock"]
    events += ["syscalls:sys_enter_%s" % n for n in PROFILE_SYSCALLS]
    r = wrk_under(srv, ["perf", "stat", "-x", ",", "-o", out, "-e", ",".join(events),
                        "-p", ",".join(map(str, kids))], seconds)
    counts = {}
    try:
        with open(out) as f:
            for line in f:
                p = line.strip().split(",")
                if len(p) >= 3 and p[0] and p[0][0].isdigit():
                    name = p[2].replace("syscalls:sys_enter_", "")
                    counts[name] = float(p[0])
    except OSError:
        pass
    return counts, r


def cmd_profile(o):
    """Where the time goes, for one server in scenario 1: the rate and the
    server CPU per request alone; syscalls and context switches per request
    (perf stat on tracepoints: cheap, so the rate barely changes); perf record
    -e cpu-clock -g on the children; optionally strace -c (slow: it distorts
    the rate and so the futex/epoll counts)."""
    need_perf()
    raise_nofile()
    ctx = setup_ctx(o.module)
    os.makedirs(o.out, exist_ok=True)
    srv = Server(o.server, ctx, "profile")
    report = []
    data = os.path.join(o.out, "perf-%s.data" % o.server)
    summary = {"server": o.server, "seconds": o.seconds}
    try:
        srv.start()
        wrk(srv.port, "/1k.bin", 50, 3)
        kids = srv.pids()[1:]
        log("%s: children %s" % (o.server, kids))
        # 1. the reference rate, and server CPU per request
        ref = measured(srv, lambda: wrk(srv.port, "/1k.bin", 50, o.seconds))
        summary["rps"] = ref["rps"]
        summary["server_cpu_us_per_req"] = ref.get("server_cpu_us_per_req")
        summary["cpu_other_pct"] = ref.get("cpu_other_pct")
        # 2. syscalls per request
        kids = srv.pids()[1:]
        counts, sr = perf_stat_syscalls(srv, kids, o.seconds)
        reqs = sr["requests"] or 0
        per = {k: v / reqs for k, v in counts.items()} if reqs else {}
        summary["per_request"] = per
        summary["rps_under_perf_stat"] = sr["rps"]
        # 3. perf record
        pr = wrk_under(srv, ["perf", "record", "-e", "cpu-clock", "-F", "2000", "-g", "-o", data,
                             "-p", ",".join(map(str, srv.pids()[1:]))], o.seconds)
        # 4. strace -c, optional
        st_text, st_req = "", None
        if o.strace and shutil.which("strace"):
            st_out = os.path.join(srv.dir, "strace.txt")
            st = wrk_under(srv, ["strace", "-c", "-f", "-o", st_out] +
                           sum((["-p", str(p)] for p in srv.pids()[1:]), []),
                           o.seconds, settle=1.0)
            st_req = st["requests"]
            try:
                with open(st_out) as f:
                    st_text = f.read()
            except OSError:
                pass
        srv.stop()

        report.append("# Profile of %s: scenario 1 (keep-alive, 1 KiB, 50 conns), %d s per run"
                      % (SERVERS[o.server]["label"], o.seconds))
        report.append("")
        report.append("alone: %.0f req/s, server CPU %.1f us per request (other load on the machine: %s%%); "
                      "under perf stat: %.0f req/s; under perf record: %.0f req/s"
                      % (ref["rps"] or 0, ref.get("server_cpu_us_per_req") or 0, ref.get("cpu_other_pct"),
                         sr["rps"] or 0, pr["rps"] or 0))
        report.append("")
        report.append("## Per request (perf stat, %d requests)" % reqs)
        report.append("")
        if per:
            report.append("%-22s %8.2f" % ("syscalls (all)", per.get("raw_syscalls:sys_enter", 0)))
            report.append("%-22s %8.2f" % ("context switches", per.get("context-switches", 0)))
            report.append("%-22s %8.2f" % ("cpu migrations", per.get("cpu-migrations", 0)))
            # perf stat reports task-clock in milliseconds
            report.append("%-22s %8.1f" % ("task-clock us", per.get("task-clock", 0) * 1000.0))
            for name, v in sorted(per.items(), key=lambda kv: -kv[1]):
                if name in PROFILE_SYSCALLS and v >= 0.005:
                    report.append("  %-20s %8.3f" % (name, v))
        _, split = run_cmd(["perf", "report", "-i", data, "--stdio", "--no-children",
                            "--sort", "dso", "-g", "none", "--percent-limit", "0.5"], 180)
        report.append("\n## perf record: share of samples by DSO (self)\n" + strip_perf(split))
        _, syms = run_cmd(["perf", "report", "-i", data, "--stdio", "--no-children",
                           "--sort", "dso,sym", "-g", "none", "--percent-limit", "0.25"], 180)
        user = [l for l in strip_perf(syms).splitlines() if "[k]" not in l]
        kern = [l for l in strip_perf(syms).splitlines() if "[k]" in l]
        report.append("\n## perf record: top userland symbols (self)\n" + "\n".join(user[:30]))
        report.append("\n## perf record: top kernel symbols (self)\n" + "\n".join(kern[:15]))
        _, incl = run_cmd(["perf", "report", "-i", data, "--stdio", "--children",
                           "--sort", "sym", "-g", "none", "--percent-limit", "0.5"], 180)
        entries = [l for l in strip_perf(incl).splitlines()
                   if re.search(r"\[k\] (__x64_sys_\w+|__do_sys_\w+|ksys_\w+|do_writev|schedule|"
                                r"handle_softirqs|exit_to_user_mode_loop|asm_exc_page_fault|"
                                r"smp_call_function_many_cond)\s*$", l)]
        report.append("\n## perf record: kernel entry points and scheduling, inclusive (children, self)\n"
                      + "\n".join(entries[:24]))
        if st_text:
            calls = None
            m = re.search(r"^\s*100\.00\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?total\s*$", st_text, re.M)
            if m:
                calls = int(m.group(1))
            report.append("\n## strace -c -f over %s requests: %s syscalls (%s per request); strace "
                          "slows the server several-fold, so futex/epoll counts differ from perf stat's\n"
                          % (st_req, calls, "%.1f" % (calls / st_req) if calls and st_req else "?"))
            report.append(st_text)
    finally:
        srv.stop()
        shutil.rmtree(ctx.base, ignore_errors=True)
    text = "\n".join(report) + "\n"
    path = os.path.join(o.out, "profile-%s.txt" % o.server)
    with open(path, "w") as f:
        f.write(text)
    with open(os.path.join(o.out, "profile-%s.json" % o.server), "w") as f:
        json.dump(summary, f, indent=1)
    sys.stdout.write(text)
    log("wrote %s (perf data %s: perf report -i it)" % (path, data))


def strip_perf(text):
    return "\n".join(l for l in text.splitlines() if l.strip() and not l.startswith("#"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    default_module = os.path.join(REPO, "build", "mod_mpm_event_rs.so")
    r = sub.add_parser("run")
    r.add_argument("--quick", action="store_true")
    r.add_argument("--rounds", type=int)
    r.add_argument("--duration", type=int, help="seconds per measurement")
    r.add_argument("--warmup", type=int,
                   help="seconds of the scenario's own load before each measurement (full 2, QUICK 1)")
    r.add_argument("--restarts", type=int, help="graceful restarts per round in scenario 5")
    r.add_argument("--idle", type=int, default=5000, help="idle connections in scenario 4")
    r.add_argument("--scenarios", help="comma-separated subset of s1,s2,s3,s6,s4,s5,s7,s8,s9 (default all)")
    r.add_argument("--servers", help="comma-separated: ours,event,worker,nginx")
    r.add_argument("--module", default=default_module)
    r.add_argument("--out", default=os.path.join(HERE, "results"))
    r.add_argument("--client-policy", choices=["other", "batch"], default="other",
                   help="scheduling policy of the clients (analysis only; the targets use other)")
    r.add_argument("--split-cpus", action="store_true",
                   help="server on CPU 0, clients on the others (analysis only)")
    r.add_argument("--pin-children", action="store_true",
                   help="each server child pinned to one CPU, clients free (analysis only)")
    c = sub.add_parser("chart")
    c.add_argument("json")
    c.add_argument("png")
    p = sub.add_parser("profile")
    p.add_argument("--server", default="ours", choices=ALL_SERVERS)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--strace", action="store_true", help="also strace -c (slow, distorting)")
    p.add_argument("--module", default=default_module)
    p.add_argument("--out", default=os.path.join(HERE, "results", "profile"))
    c7 = sub.add_parser("ceiling", help="scenario 7: the most any MPM could gain (perf record -a)")
    c7.add_argument("--server", default="event", choices=["ours", "event", "worker"])
    c7.add_argument("--seconds", type=int, default=5)
    c7.add_argument("--module", default=default_module)
    c7.add_argument("--out", default=os.path.join(HERE, "results", "profile"))
    o = ap.parse_args()
    if o.cmd == "run":
        cmd_run(o)
    elif o.cmd == "ceiling":
        backends.cmd_ceiling(o)
    elif o.cmd == "chart":
        import chart
        with open(o.json) as f:
            chart.make_chart(json.load(f), o.png)
    else:
        cmd_profile(o)


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    main()
