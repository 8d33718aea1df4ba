"""Driver of bench/compare (run it through that script, which sets up the venv,
builds our binary and pins the thread counts).

Each workload runs in a fresh process per implementation, ours and theirs
alternating, `rounds` times; a workload's time is the median over every
repeat of every round. Peak memory is the largest over the rounds.
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OURS = os.environ.get("BENCH_OURS", "target/release/examples/bench_compare")
THEIRS = [sys.executable, os.path.join(HERE, "compare_theirs.py")]

# name, description, repeats (full, quick), their implementation, target
WORKLOADS = [
    ("gemm1024", "GEMM 1024^3", (11, 5), "torch.mm (MKL)", ("speed", 0.9)),
    ("gemm4096", "GEMM 4096^3", (5, 3), "torch.mm (MKL)", ("speed", 0.9)),
    ("infonce", "InfoNCE fwd+bwd B4096 d256", (7, 3), "matmul + 2x cross_entropy + autograd",
     ("speed", 1.5)),
    ("attention", "attention fwd+bwd B32 H8 S256 D64", (7, 3), "scaled_dot_product_attention",
     ("speed", 1.0)),
    ("kmeans", "k-means 100k x 256, K100, 20 it", (3, 1), "faiss.Kmeans, no subsampling",
     ("speed", 1.5)),
    ("step", "tiny training step B64", (11, 5), "bench/torch_model.py, eager",
     ("speed", 1.5)),
]


# Their OpenMP threads spin while waiting by default, which is fastest on an
# idle machine and several times slower on a busy one (measured: a tiny
# training step 0.7-1.2 s spinning, 0.25-0.33 s passive, same run). Each
# workload runs under both policies and theirs is the faster of the two.
THEIR_POLICIES = {"default": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}}


def run_json(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def fmt_time(s):
    return f"{s * 1e3:.1f} ms" if s < 10 else f"{s:.2f} s"


def fmt_mib(b):
    return f"{b / 2**20:.0f} MiB"


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    quick = "--quick" in sys.argv
    rounds = 1 if quick else 2
    chosen = [w for w in WORKLOADS if not args or w[0] in args]
    if args and len(chosen) != len(args):
        raise SystemExit(f"unknown workload among {args}; choose from {[w[0] for w in WORKLOADS]}")

    print("== checking our workloads against their references", file=sys.stderr)
    subprocess.run([OURS, "check"], check=True)
    cfg = subprocess.run([OURS, "config"], check=True, capture_output=True, text=True).stdout.strip()

    load_before = os.getloadavg()
    results = {}
    started = time.time()
    for name, desc, reps, _, _ in chosen:
        n = reps[1] if quick else reps[0]
        runs = {"ours": [], **{f"theirs_{k}": [] for k in THEIR_POLICIES}}
        for r in range(rounds):
            print(f"== {desc}: round {r + 1}/{rounds}", file=sys.stderr)
            runs["ours"].append(run_json([OURS, name, str(n)]))
            for pol, env in THEIR_POLICIES.items():
                runs[f"theirs_{pol}"].append(run_json(THEIRS + [name, str(n), cfg], env))
        results[name] = runs
    load_after = os.getloadavg()

    def summary(rs):
        times = [t for r in rs for t in r["times_s"]]
        out = {
            "median_s": statistics.median(times),
            "times_s": times,
            "extra_peak_bytes": max(r["extra_peak_bytes"] for r in rs),
            "peak_rss_bytes": max(r["peak_rss_bytes"] for r in rs),
        }
        for k in ("inertia", "iterations", "flops"):
            if rs[0].get(k) is not None:
                out[k] = rs[0][k]
        return out

    rows = []
    for name, desc, _, theirs_impl, target in chosen:
        o = summary(results[name]["ours"])
        by_policy = {pol: summary(results[name][f"theirs_{pol}"]) for pol in THEIR_POLICIES}
        pol = min(by_policy, key=lambda k: by_policy[k]["median_s"])
        t = by_policy[pol]
        rows.append({"workload": name, "description": desc, "theirs_impl": theirs_impl,
                     "ours": o, "theirs": t, "theirs_policy": pol,
                     "theirs_by_policy": {k: v["median_s"] for k, v in by_policy.items()},
                     "speedup": t["median_s"] / o["median_s"], "target_speedup": target[1]})

    peak_src = next((r for r in rows if r["workload"] == "gemm4096"), None)
    if peak_src is None:
        peak_src = next((r for r in rows if r["workload"].startswith("gemm")), None)
    peak = peak_src["theirs"]["flops"] / peak_src["theirs"]["median_s"] if peak_src else None

    head = (f"{'workload':<36} {'ours':>10} {'theirs':>10} {'speedup':>8} {'target':>7} "
            f"{'ours/peak':>9} {'theirs/peak':>11} {'extra mem ours':>14} {'theirs':>9} "
            f"{'peak RSS ours':>13} {'theirs':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        o, t = r["ours"], r["theirs"]
        fo = ft = "—"
        if peak and o.get("flops"):
            fo = f"{o['flops'] / o['median_s'] / peak:.2f}"
        if peak and t.get("flops"):
            ft = f"{t['flops'] / t['median_s'] / peak:.2f}"
        r["ours_fraction_of_peak"] = None if fo == "—" else float(fo)
        r["theirs_fraction_of_peak"] = None if ft == "—" else float(ft)
        met = "met" if r["speedup"] >= r["target_speedup"] else "MISSED"
        lines.append(
            f"{r['description']:<36} {fmt_time(o['median_s']):>10} {fmt_time(t['median_s']):>10} "
            f"{r['speedup']:>7.2f}x {r['target_speedup']:>5.1f}x {fo:>9} {ft:>11} "
            f"{fmt_mib(o['extra_peak_bytes']):>14} {fmt_mib(t['extra_peak_bytes']):>9} "
            f"{fmt_mib(o['peak_rss_bytes']):>13} {fmt_mib(t['peak_rss_bytes']):>9}  {met}"
            f" (theirs: OpenMP {r['theirs_policy']} wait)")
    notes = [
        "speedup = their median time / our median time (above 1: we are faster); "
        "target = issue 5's minimum speedup.",
        f"peak = PyTorch's {peak_src['description']} in this run: {peak / 1e9:.1f} GFLOP/s; "
        "fraction of peak uses "
        "algorithmic FLOPs (GEMM 2n^3, InfoNCE 6B^2d, attention 12BHS^2D, k-means 2NKd per "
        "iteration)." if peak else "peak: no GEMM measured in this run.",
        "extra mem = peak resident memory the workload added above its inputs (VmHWM after a "
        "reset, minus the resident size at the reset); peak RSS = the whole process's peak.",
        f"load average before/after: {load_before[0]:.1f} / {load_after[0]:.1f} on "
        f"{os.cpu_count()} CPUs; {rounds} round(s), ours and theirs alternating; "
        f"{time.time() - started:.0f} s.",
    ]
    for r in rows:
        if r["workload"] == "kmeans":
            o, t = r["ours"], r["theirs"]
            if "inertia" in t:
                notes.append(f"k-means: faiss ran {t.get('iterations')} iterations, final objective "
                             f"{t['inertia']:.4g} (ours runs exactly 20, checked).")
    print("\n".join(lines))
    print()
    for n_ in notes:
        print("  " + n_)

    import torch

    import faiss

    doc = {
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "load_before": load_before,
                    "load_after": load_after},
        "versions": {"torch": torch.__version__, "faiss": faiss.__version__, "python": platform.python_version()},
        "threads": 2,
        "peak_gflops": peak / 1e9 if peak else None,
        "peak_from": peak_src["description"] if peak_src else None,
        "rows": rows,
        "table": lines,
        "notes": notes,
        "raw": results,
    }
    with open(os.path.join(HERE, "results.json"), "w") as f:
        json.dump(doc, f, indent=1)
    print(f"\n  written: {os.path.join(HERE, 'results.json')}")


if __name__ == "__main__":
    main()
