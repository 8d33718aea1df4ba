"""Tabulates a bench/realdata/compare directory: per fold and as mean ± std
over the folds, the engine's variants next to the PyTorch reference and the
raw-input floors.

    python3 summarize.py RUNS_DIR [--pairs-from VARIANT]

RUNS_DIR holds one directory per held-out speaker, each with `torch.json`
(bench/realdata/torch_reference.py) and one directory per engine variant
(`diccae-engine train --out`, read through its summary.json). The
most-confused pairs are those of `--pairs-from` (default `infonce`) on each
fold: the 3 pairs its fused probe mixes up most; every variant is scored on
those same pairs (pair accuracy from the row-normalised confusion matrix).
Standard library only.
"""

import argparse
import json
import os
import statistics


def mean_std(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    m = statistics.fmean(xs)
    s = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{100 * m:.1f} ± {100 * s:.1f}"


def pair_accuracy(cm, c, a, b):
    """Among clips of classes a, b predicted as a or b, the fraction right."""
    aa, ab, ba, bb = cm[a * c + a], cm[a * c + b], cm[b * c + a], cm[b * c + b]
    tot = aa + ab + ba + bb
    return (aa + bb) / tot if tot > 0 else None


def worst_pairs(cm, c, n=3):
    pairs = [(cm[a * c + b] + cm[b * c + a], a, b) for a in range(c) for b in range(a + 1, c)]
    pairs.sort(reverse=True)
    return [(a, b) for _, a, b in pairs[:n]]


def engine_row(summary):
    ev = summary  # the evaluation's fields sit at the top level of summary.json
    lp = ev.get("linear_probe") or {}
    last = summary.get("l_ins_last")
    return {
        "fused": lp.get("fused", {}).get("top1"),
        "audio": lp.get("audio", {}).get("top1"),
        "video": lp.get("video", {}).get("top1"),
        "knn": (ev.get("knn") or {}).get("fused", {}).get("top1"),
        "random_fused": ((summary["random_init"].get("linear_probe") or {}).get("fused") or {}).get("top1"),
        "seconds": summary.get("seconds"),
        "l_ins": last,
        "cm": ev.get("confusion_matrix"),
        "classes": len(summary.get("classes", [])),
    }


def last_l_ins(run_dir):
    path = os.path.join(run_dir, "metrics.jsonl")
    last = None
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                if rec.get("kind") == "epoch":
                    last = rec["record"]["l_ins"]
    return last


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs")
    ap.add_argument("--pairs-from", default="infonce")
    args = ap.parse_args()
    folds = sorted(d for d in os.listdir(args.runs) if os.path.isdir(os.path.join(args.runs, d)))
    rows = {}  # name -> list of per-fold dicts
    for fold in folds:
        fdir = os.path.join(args.runs, fold)
        tj = os.path.join(fdir, "torch.json")
        if os.path.exists(tj):
            with open(tj) as f:
                t = json.load(f)
            p = t.get("pretrained")
            if p:
                rows.setdefault("pytorch", {})[fold] = {
                    "fused": p["fused"],
                    "audio": p["audio"],
                    "video": p["video"],
                    "knn": None,
                    "random_fused": t["random_init"]["fused"],
                    "seconds": t.get("train_seconds"),
                    "l_ins": t["epochs"][-1]["l_ins"] if t["epochs"] else None,
                }
            for k, v in (t.get("floors") or {}).items():
                rows.setdefault(f"floor: {k}", {})[fold] = {"fused": v}
        for variant in sorted(os.listdir(fdir)):
            sj = os.path.join(fdir, variant, "summary.json")
            if not os.path.exists(sj):
                continue
            with open(sj) as f:
                s = json.load(f)
            s["l_ins_last"] = last_l_ins(os.path.join(fdir, variant))
            rows.setdefault(variant, {})[fold] = engine_row(s)
    # Pair accuracies on the reference variant's most-confused pairs, per fold.
    ref = rows.get(args.pairs_from, {})
    for name, per in rows.items():
        for fold, r in per.items():
            base = ref.get(fold)
            if r.get("cm") and base and base.get("cm"):
                c = r["classes"]
                accs = [pair_accuracy(r["cm"], c, a, b) for a, b in worst_pairs(base["cm"], c)]
                accs = [x for x in accs if x is not None]
                r["pairs"] = statistics.fmean(accs) if accs else None
    print(f"folds (held-out speakers): {', '.join(folds)}\n")
    print(
        "| run | fused probe | audio probe | video probe | kNN | "
        f"pairs ({args.pairs_from}'s 3 worst) | random-init fused | L_ins at the end | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, per in rows.items():
        vals = list(per.values())

        def col(k):
            return mean_std([v.get(k) for v in vals])

        secs = [v["seconds"] for v in vals if v.get("seconds") is not None]
        lins = [v["l_ins"] for v in vals if v.get("l_ins") is not None]
        l_ins = f"{statistics.fmean(lins):.3f}" if lins else "-"
        wall = f"{statistics.fmean(secs):.0f}" if secs else "-"
        print(
            f"| {name} ({len(vals)}) | {col('fused')} | {col('audio')} | {col('video')} | {col('knn')} | "
            f"{col('pairs')} | {col('random_fused')} | {l_ins} | {wall} |"
        )
    print("\nper fold, fused probe top-1 (%):\n")
    print("| run | " + " | ".join(folds) + " |")
    print("|---|" + "---|" * len(folds))
    for name, per in rows.items():
        cells = [f"{100 * per[f]['fused']:.1f}" if f in per and per[f].get("fused") is not None else "-" for f in folds]
        print(f"| {name} | " + " | ".join(cells) + " |")
    out = {n: per for n, per in rows.items()}
    for per in out.values():
        for r in per.values():
            r.pop("cm", None)
    with open(os.path.join(args.runs, "summary.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
