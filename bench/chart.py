#!/usr/bin/python3
"""The chart of `make bench`: bench/results/latest.png from latest.json.

Left: ratios to Debian's stock event MPM (= 1, the dashed line) per scenario,
one bar per server; our bars are green where the target is met and red where
it is not, and the target is drawn as a black tick over our bar. Right: the two
absolute targets, RSS per idle keep-alive connection and failed requests
during graceful restarts. Needs matplotlib (Debian: python3-matplotlib).
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

LABELS = {"ours": "ours", "event": "stock event", "worker": "stock worker", "nginx": "nginx"}
COLORS = {"ours": "#2a9d3c", "event": "#7f7f7f", "worker": "#8fb3d9", "nginx": "#e0a458"}
MISS = "#d1495b"
# Ratios above this are drawn cut off at it, with their value written on top,
# so that one large ratio (nginx, or a bad p99) does not flatten the rest.
YCAP = 2.5

RATIO_METRICS = [
    ("s1_rps", "1. keep-alive\n1 KiB\nreq/s"),
    ("s1_p99_ms", "1. keep-alive\np99 latency\n(lower = better)"),
    ("s2_rps", "2. new conn\nper request\nreq/s"),
    ("s3_rps", "3. keep-alive\n1 MiB\nreq/s"),
    ("s4_rps", "4. with 5,000\nidle conns\nreq/s"),
    ("s6_rps", "6. HTTP/2\nover TLS\nreq/s"),
    ("s7_rps", "7. PHP-FPM\nreq/s"),
    ("s7_p99_ms", "7. PHP-FPM\np99 latency\n(lower = better)"),
    ("s8_rps", "8. reverse\nproxy\nreq/s"),
    ("s8_p99_ms", "8. reverse\nproxy p99\n(lower = better)"),
]
TARGETS = {"s1_rps": 1.25, "s1_p99_ms": 0.9, "s2_rps": 1.15, "s3_rps": 1.00,
           "s4_rps": 1.25, "s6_rps": 1.00, "s7_rps": 1.00, "s7_p99_ms": 0.9, "s8_rps": 1.00, "s8_p99_ms": 0.9}


def make_chart(result, path):
    summ = result["summary"]
    servers = result["settings"]["servers"]
    facts = result["facts"]
    st = result["settings"]
    ratio_servers = [s for s in servers if s != "event"]

    fig = plt.figure(figsize=(16, 6.2), dpi=100)
    gs = fig.add_gridspec(2, 2, width_ratios=[2.6, 1], hspace=0.75, wspace=0.18)
    ax = fig.add_subplot(gs[:, 0])
    n = len(ratio_servers)
    width = min(0.8 / max(n, 1), 0.3)
    span = width * n
    ymax = 1.6
    for i, s in enumerate(ratio_servers):
        xs, ys, cols, real = [], [], [], []
        for j, (key, _) in enumerate(RATIO_METRICS):
            v = summ[key]["ratio"].get(s)
            x = j - span / 2 + width * (i + 0.5)
            if v is None:
                ax.text(x, 0.03, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
                continue
            xs.append(x)
            ys.append(min(v, YCAP))
            real.append(v)
            if s == "ours" and summ[key]["target_met"] is False:
                cols.append(MISS)
            else:
                cols.append(COLORS.get(s, "#555555"))
            ymax = max(ymax, min(v, YCAP) * 1.12)
        bars = ax.bar(xs, ys, width * 0.92, color=cols, edgecolor="black", linewidth=0.4)
        for b, v in zip(bars, real):
            cut = v > YCAP
            ax.text(b.get_x() + b.get_width() / 2, b.get_height(),
                    ("%.2f\u2191" if cut else "%.2f") % v, ha="center", va="bottom",
                    fontsize=7.5, fontweight="bold" if cut else "normal")
            if cut:
                b.set_hatch("//")
        if s == "ours":
            for j, (key, _) in enumerate(RATIO_METRICS):
                t = TARGETS.get(key)
                if t is None:
                    continue
                x = j - span / 2 + width * (i + 0.5)
                ax.plot([x - width * 0.6, x + width * 0.6], [t, t], color="black", lw=2.2)
    ax.axhline(1.0, color="#444444", ls="--", lw=1)
    handles = [Line2D([], [], color="#444444", ls="--", lw=1, label="stock event = 1"),
               Line2D([], [], color="black", lw=2.2, label="our target")]
    handles += [Patch(facecolor=COLORS.get(s, "#555555"), edgecolor="black", linewidth=0.4,
                      label=LABELS.get(s, s) + (" (target met)" if s == "ours" else ""))
                for s in ratio_servers]
    if "ours" in ratio_servers:
        handles.append(Patch(facecolor=MISS, edgecolor="black", linewidth=0.4,
                             label="ours (target missed)"))
    if any((summ[k]["ratio"].get(s) or 0) > YCAP for k, _ in RATIO_METRICS for s in ratio_servers):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//",
                             label="cut off at %.1f (value on top)" % YCAP))
    ax.set_xticks(range(len(RATIO_METRICS)))
    ax.set_xticklabels([lbl for _, lbl in RATIO_METRICS], fontsize=8.5)
    ax.set_xlim(-0.6, len(RATIO_METRICS) - 0.4)
    ax.set_ylim(0, ymax)
    ax.set_ylabel("ratio to Debian's stock event MPM (median of rounds)")
    ax.set_title("Ratio to stock event per scenario (median of the rounds)", fontsize=10)
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.17), fontsize=8.5,
              ncol=4, frameon=False)
    ax.grid(axis="y", alpha=0.3)

    # Right top: KiB per idle connection.
    ax2 = fig.add_subplot(gs[0, 1])
    abs_panel(ax2, summ, servers, "s4_kib_per_idle", 8.0,
              "4. RSS per idle keep-alive conn, KiB\n(black line: our target, at most 8)", "%.1f")
    # Right bottom: failed requests during restarts.
    ax3 = fig.add_subplot(gs[1, 1])
    abs_panel(ax3, summ, servers, "s5_failed", 0,
              "5. failed requests during %d graceful restarts\n(our target: 0)"
              % (st["restarts"] * st["rounds"]), "%d")

    mode = "QUICK (%d rounds x %d s)" % (st["rounds"], st["duration"]) if st["quick"] else \
        "%d rounds x %d s" % (st["rounds"], st["duration"])
    fig.suptitle("mod_mpm_event_rs vs Debian %s MPMs and %s — %s, %s, %s CPUs, %s" % (
        facts["apache2"], facts["nginx"], facts["date"], mode, facts["nproc"], facts["cpu"]),
        fontsize=11)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def abs_panel(ax, summ, servers, key, target, title, f):
    vals = [summ[key]["median"].get(s) for s in servers]
    xs = list(range(len(servers)))
    ax.set_xlim(-0.5, len(servers) - 0.5)
    cols = []
    for s in servers:
        if s == "ours" and summ[key]["target_met"] is False:
            cols.append(MISS)
        else:
            cols.append(COLORS.get(s, "#555555"))
    hs = [v if v is not None else 0 for v in vals]
    bars = ax.bar(xs, hs, 0.55 if len(servers) > 2 else 0.4, color=cols, edgecolor="black", linewidth=0.4)
    top = max([h for h in hs] + [target if target else 0, 1])
    for b, v in zip(bars, vals):
        ax.text(b.get_x() + b.get_width() / 2, b.get_height() + top * 0.02,
                (f % v) if v is not None else "n/a", ha="center", va="bottom", fontsize=8)
    ax.axhline(target, color="black", lw=1.8)
    ax.set_ylim(0, top * 1.25)
    ax.set_xticks(xs)
    ax.set_xticklabels([LABELS.get(s, s).replace(" ", "\n") for s in servers], fontsize=8.5)
    ax.set_title(title, fontsize=9.5)
    ax.grid(axis="y", alpha=0.3)


if __name__ == "__main__":
    import json
    import sys

    with open(sys.argv[1]) as fh:
        make_chart(json.load(fh), sys.argv[2])
