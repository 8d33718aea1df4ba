#!/usr/bin/env bash
# Measures the perf gate's error rates on this machine: N runs of the gate as
# CI runs it (a failure is a false alarm: nothing was slowed), then N runs of
# its self-test (every workload injected F times slower; a workload whose
# median stays within the limit is a miss). Prints a Markdown table for
# docs/PERFORMANCE.md, with the load average before and after.
#
#   scripts/perf-gate-rates.sh [N=5] [F=1.3]   (about 4 minutes per N)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-5}"
factor="${2:-1.3}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq "$n"); do
    scripts/perf-gate.sh > "$tmp/clean-$i.log" 2>&1 || true
    echo "gate run $i of $n (nothing slowed):"
    grep -E "median|passed|FAILED" "$tmp/clean-$i.log" || true
done
for i in $(seq "$n"); do
    scripts/perf-gate.sh --self-test "$factor" > "$tmp/slow-$i.log" 2>&1 || true
    echo "self-test run $i of $n (${factor}x injected):"
    grep -E "median|passed|FAILED" "$tmp/slow-$i.log" || true
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$tmp" "$n" "$factor" <<'PY'
import re, sys
tmp, n, factor = sys.argv[1], int(sys.argv[2]), sys.argv[3]
row = re.compile(r"^  ([A-Za-z_0-9]+) +([0-9. ]+?)  median ([0-9.]+)x  (OVER|within)")
def read(kind):
    out = {}
    for i in range(1, n + 1):
        for line in open(f"{tmp}/{kind}-{i}.log"):
            m = row.match(line)
            if m:
                out.setdefault(m.group(1), []).append((float(m.group(3)), m.group(4)))
    return out
clean, slow = read("clean"), read("slow")
alarms = sum("(median of" in open(f"{tmp}/clean-{i}.log").read() for i in range(1, n + 1))
caught = sum("self-test passed" in open(f"{tmp}/slow-{i}.log").read() for i in range(1, n + 1))
print()
print(f"gate runs failing with nothing slowed (false alarms): {alarms} of {n}")
print(f"self-test runs catching every workload's {factor}x slowdown: {caught} of {n}")
print()
print(f"| workload | false alarms (nothing slowed) | medians, nothing slowed | misses ({factor}x injected) | medians, {factor}x injected |")
print("|---|---|---|---|---|")
for name in sorted(set(clean) | set(slow)):
    c, s = clean.get(name, []), slow.get(name, [])
    fa = sum(v == "OVER" for _, v in c)
    miss = sum(v == "within" for _, v in s)
    span = lambda xs: f"{min(x for x, _ in xs):.2f}–{max(x for x, _ in xs):.2f}" if xs else "–"
    print(f"| {name} | {fa} of {len(c)} | {span(c)} | {miss} of {len(s)} | {span(s)} |")
PY
