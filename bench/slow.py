"""Scenario 9 of `make bench` (issue 19): slow clients.

slowhttptest's three attacks, one after the other, each with 1,000
connections opened at 200 a second and held for ATTACK_S seconds: slowloris
(-H: a request head that never ends, a header line every 10 s), slow body
(-B: a POST whose body comes a few bytes every 10 s) and slow read (-X: a
client that reads its 1 MiB responses a few bytes a second through a tiny
receive window). Meanwhile a normal client asks for /1k.bin on a new
connection every 200 ms; the scenario reports, per attack, the share of its
requests answered (a whole 200 within NORMAL_TIMEOUT_S) and its worst wait.

The server runs with the benchmark's common configuration (Timeout 60, no
mod_reqtimeout, EnableSendfile Off, AsyncRequestWorkerFactor 200 for the
event MPMs): what the attacks find is what that configuration leaves open.
"""

import os
import signal
import socket
import subprocess
import threading
import time

TITLE = "9. slow clients: slowhttptest, 1,000 conns per attack"
ATTACK_S = 20
CONNECTIONS = 1000
RATE = 200
NORMAL_EVERY_S = 0.2
NORMAL_TIMEOUT_S = 5.0
SLOWHTTPTEST = "/usr/bin/slowhttptest"

# (name, slowhttptest arguments, path attacked)
ATTACKS = [
    ("slowloris", ["-H", "-i", "10", "-x", "24"], "/"),
    ("slowbody", ["-B", "-i", "10", "-x", "10", "-s", "65536"], "/"),
    ("slowread", ["-X", "-k", "3", "-n", "5", "-w", "16", "-y", "64", "-z", "32"], "/1m.bin"),
]

# Metrics for bench.py's summary table: (key, label, unit).
METRICS = [("s9_%s_%s" % (a, m), "%s: %s" % (a, label), unit)
           for a, _, _ in ATTACKS
           for m, label, unit in (("served", "normal client answered", "%"),
                                  ("worst_ms", "normal client's worst wait", "ms"))]


def normal_request(port, path="/1k.bin"):
    """One request on a new connection; the wait for a whole 200, or None."""
    t0 = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=NORMAL_TIMEOUT_S) as s:
            s.settimeout(max(NORMAL_TIMEOUT_S - (time.monotonic() - t0), 0.01))
            s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % path).encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    if not data.startswith(b"HTTP/1.1 200"):
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:") and int(line.split(b":")[1]) != len(body):
            return None
    return time.monotonic() - t0


def normal_client(port, stop, waits):
    while not stop.is_set():
        t0 = time.monotonic()
        waits.append(normal_request(port))
        stop.wait(max(NORMAL_EVERY_S - (time.monotonic() - t0), 0))


def attack(srv, name, args, path):
    """Runs one attack with the normal client beside it."""
    cmd = [SLOWHTTPTEST] + args + ["-c", str(CONNECTIONS), "-r", str(RATE), "-l", str(ATTACK_S),
                                   "-u", "http://127.0.0.1:%d%s" % (srv.port, path), "-p", "3"]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    stop, waits = threading.Event(), []
    t = threading.Thread(target=normal_client, args=(srv.port, stop, waits))
    t.start()
    rss = 0
    deadline = time.monotonic() + ATTACK_S
    while time.monotonic() < deadline and p.poll() is None:
        time.sleep(1)
        rss = max(rss, srv.rss_kib())
    stop.set()
    t.join(NORMAL_TIMEOUT_S + 5)
    try:
        p.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(5)
    answered = [w for w in waits if w is not None]
    return {
        "served": round(100.0 * len(answered) / len(waits), 1) if waits else None,
        "asked": len(waits),
        "answered": len(answered),
        # an unanswered request waited at least the timeout
        "worst_ms": round(1000 * (max(answered) if len(answered) == len(waits) else NORMAL_TIMEOUT_S), 1)
        if waits else None,
        "rss_kib": rss,
    }


def run(srv, o):
    """Scenario 9 (bench.py's SCENARIOS["s9"])."""
    if not os.access(SLOWHTTPTEST, os.X_OK):
        return {"error": "slowhttptest not installed (Debian package slowhttptest)"}
    r = {}
    for name, args, path in ATTACKS:
        r[name] = attack(srv, name, args, path)
        # let the attack's connections end before the next one
        time.sleep(2)
    return r


def extract(key, r):
    """A metric of METRICS from a scenario result."""
    _, name, metric = key.split("_", 2)
    return (r.get(name) or {}).get(metric)


def brief(r):
    return ", ".join("%s: served %s%% of %s, worst %s ms, RSS %s KiB" % (
        name, r[name]["served"], r[name]["asked"], r[name]["worst_ms"], r[name]["rss_kib"])
        for name, _, _ in ATTACKS if name in r)
