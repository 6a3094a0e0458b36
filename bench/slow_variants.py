#!/usr/bin/python3
"""Scenario 9's attacks (bench/slow.py) against apache with configuration
added to the benchmark's, for docs/slow-clients.md: what the MPM can do
about slow bodies and slow readers, and what configuration mitigates them.

Usage: bench/slow_variants.py [--module build/mod_mpm_event_rs.so]
       [--servers ours,event] [--variants name,...]
Prints one line per server, variant and attack: the normal client's served
share and worst wait, the server's largest RSS, and how many of its workers
were busy at the end of the attack (server-status).
"""

import argparse
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench  # noqa: E402
import slow  # noqa: E402

REQTIMEOUT = 'LoadModule reqtimeout_module "%s/mod_reqtimeout.so"\n' % bench.MODULES_DIR
STATUS = ('LoadModule status_module "%s/mod_status.so"\n'
          '<Location /server-status>\n    SetHandler server-status\n    Require ip 127.0.0.1\n</Location>\n'
          % bench.MODULES_DIR)

# (name, attack, configuration added)
VARIANTS = [
    ("slowread-sendfile-off", "slowread", ""),
    ("slowread-sendfile-on", "slowread", "EnableSendfile On\n"),
    ("slowread-flushmax-4m", "slowread", "FlushMaxThreshold 4194304\n"),
    ("slowbody", "slowbody", ""),
    ("slowbody-reqtimeout-debian", "slowbody", REQTIMEOUT + "RequestReadTimeout header=20-40,MinRate=500 body=10,MinRate=500\n"),
    ("slowbody-reqtimeout-body5", "slowbody", REQTIMEOUT + "RequestReadTimeout header=20-40,MinRate=500 body=5,MinRate=500\n"),
    ("slowbody-limitrequestbody", "slowbody", "LimitRequestBody 16384\n"),
]


class Variant(bench.Server):
    extra = ""

    def write_config(self):
        super().write_config()
        with open(self.conf, "a") as f:
            f.write(STATUS + self.extra)


def busy_workers(port):
    try:
        import urllib.request
        text = urllib.request.urlopen("http://127.0.0.1:%d/server-status?auto" % port, timeout=5).read().decode()
    except OSError:
        return None
    m = re.search(r"^BusyWorkers: (\d+)", text, re.M)
    return int(m.group(1)) if m else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--module", default=os.path.join(HERE, "..", "build", "mod_mpm_event_rs.so"))
    ap.add_argument("--servers", default="ours,event")
    ap.add_argument("--variants", default=",".join(v[0] for v in VARIANTS))
    o = ap.parse_args()
    bench.raise_nofile()
    ctx = bench.setup_ctx(o.module)
    attacks = {name: (args, path) for name, args, path in slow.ATTACKS}
    wanted = o.variants.split(",")
    for name, attack, extra in VARIANTS:
        if name not in wanted:
            continue
        for key in o.servers.split(","):
            Variant.extra = extra
            srv = Variant(key, ctx, name)
            srv.start()
            try:
                args, path = attacks[attack]
                # the workers busy as the attack ends, seen from a thread of its own
                busy = []
                import threading
                t = threading.Timer(slow.ATTACK_S - 2, lambda: busy.append(busy_workers(srv.port)))
                t.start()
                r = slow.attack(srv, attack, args, path)
                t.join()
                print("%-28s %-6s served %5s%% of %3s, worst %7s ms, RSS %6s KiB, busy workers %s" % (
                    name, key, r["served"], r["asked"], r["worst_ms"], r["rss_kib"], busy[0] if busy else None),
                    flush=True)
            finally:
                srv.stop()
                srv.cleanup()
            time.sleep(2)


if __name__ == "__main__":
    main()
