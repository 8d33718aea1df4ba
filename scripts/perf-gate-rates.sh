#!/usr/bin/env bash
# Measures the perf gate's error rates on this machine: N runs of the gate as
# CI runs it (a failure is a false alarm: nothing was slowed), then N runs of
# its self-test (every workload injected F times slower; a workload that is
# not over the limit in all three processes is a miss). Prints a Markdown
# table for docs/PERFORMANCE.md, with the load average before and after.
#
#   scripts/perf-gate-rates.sh [N=5] [F=1.3]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-5}"
factor="${2:-1.3}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
alarms=0
for i in $(seq "$n"); do
    if scripts/perf-gate.sh > "$tmp/clean-$i.log" 2>&1; then
        echo "clean run $i of $n: passed"
    else
        alarms=$((alarms + 1))
        echo "clean run $i of $n: FAILED (a false alarm)"
        grep "FAILED" "$tmp/clean-$i.log" || true
    fi
done
for i in $(seq "$n"); do
    scripts/perf-gate.sh --self-test "$factor" > "$tmp/slow-$i.log" 2>&1 || true
    echo "self-test run $i of $n:"
    grep -E "^  [a-z_0-9]+ .*-> (caught|MISSED)" "$tmp/slow-$i.log" || echo "  (no verdicts)"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$tmp" "$n" "$factor" "$alarms" <<'PY'
import glob, re, sys
tmp, n, factor, alarms = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
missed, ratios = {}, {}
for i in range(1, n + 1):
    for line in open(f"{tmp}/slow-{i}.log"):
        m = re.match(r"^  ([a-z_0-9]+) +(.*)-> (caught|MISSED)", line)
        if m:
            name = m.group(1)
            missed[name] = missed.get(name, 0) + (m.group(3) == "MISSED")
            ratios.setdefault(name, []).extend(float(x) for x in re.findall(r"([0-9.]+)x", m.group(2)))
print()
print(f"false alarms: {alarms} of {n} gate runs with nothing slowed")
print()
print(f"| workload | {factor}x slowdown missed | ratio to baseline seen (min–max over {n} × 3 processes) |")
print("|---|---|---|")
for name in sorted(missed):
    r = ratios[name]
    print(f"| {name} | {missed[name]} of {n} | {min(r):.2f}–{max(r):.2f} |")
PY
