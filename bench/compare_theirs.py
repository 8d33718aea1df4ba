"""PyTorch / faiss half of bench/compare: runs one workload in this process
and prints one JSON line (times of every repeat, peak memory).

Usage: compare_theirs.py WORKLOAD REPEATS [CONFIG_JSON]
"""

import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

THREADS = 2
torch.set_num_threads(THREADS)


def status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return None


def reset_peak():
    """Resets VmHWM to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def unit_rows(g, n, d):
    x = torch.randn(n, d, generator=g)
    return F.normalize(x, dim=-1)


def setup(name, cfg):
    """Returns (fn, warmup, extra) for a workload; fn runs it once."""
    g = torch.Generator().manual_seed(0)
    if name in ("gemm1024", "gemm4096", "gemm512"):
        n = int(name[4:])
        a = torch.rand(n, n, generator=g) * 2 - 1
        b = torch.rand(n, n, generator=g) * 2 - 1
        c = torch.empty(n, n)
        want = (a.double()[:64] @ b.double()).float()
        torch.mm(a, b, out=c)
        assert torch.allclose(c[:64], want, rtol=1e-4, atol=1e-3), "torch GEMM check"
        return (lambda: torch.mm(a, b, out=c)), 2, {"flops": 2.0 * n**3}
    if name == "infonce":
        bsz, d, tau = 4096, 256, 0.07
        za = unit_rows(g, bsz, d).requires_grad_()
        zv = unit_rows(g, bsz, d).requires_grad_()
        target = torch.arange(bsz)

        def run():
            za.grad = None
            zv.grad = None
            logits = za @ zv.t() / tau
            loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
            loss.backward()
            return loss

        return run, 1, {"flops": 6.0 * bsz * bsz * d}
    if name == "attention":
        b, h, s, d = 32, 8, 256, 64
        q, k, v = (torch.randn(b, h, s, d, generator=g).requires_grad_() for _ in range(3))
        grad_out = torch.rand(b, h, s, d, generator=g) * 2 - 1

        def run():
            for t in (q, k, v):
                t.grad = None
            out = F.scaled_dot_product_attention(q, k, v)
            out.backward(grad_out)

        return run, 1, {"flops": 12.0 * b * h * s * s * d}
    if name in ("kmeans", "kmeans_small"):
        import faiss

        faiss.omp_set_num_threads(THREADS)
        n, d, k, iters = (100_000, 256, 100, 20) if name == "kmeans" else (8192, 32, 16, 10)
        rng = np.random.default_rng(0)
        centres = rng.standard_normal((k, d), dtype=np.float32)
        x = centres[np.arange(n) % k] + 3.0 * rng.standard_normal((n, d), dtype=np.float32)
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = {}

        def run():
            km = faiss.Kmeans(d, k, niter=iters, seed=1, max_points_per_centroid=10**9,
                              verbose=False)
            km.train(x)
            out["inertia"] = float(km.obj[-1])
            out["iterations"] = len(km.obj)

        return run, 1, {"flops": 2.0 * n * k * d * iters, "result": out}
    if name == "step":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from torch_model import Step

        step = Step(cfg, 64)
        return step, 3, {}
    raise SystemExit(f"unknown workload {name}")


def main():
    name, repeats = sys.argv[1], int(sys.argv[2])
    cfg = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
    fn, warmup, extra = setup(name, cfg)
    # The peak counts from here: inputs exist, nothing of the workload ran.
    reset_ok = reset_peak()
    base = status_kib("VmRSS:")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    hwm = status_kib("VmHWM:")
    res = {
        "impl": "theirs",
        "workload": name,
        "times_s": times,
        "median_s": float(np.median(times)),
        "peak_rss_bytes": hwm * 1024,
        "base_rss_bytes": base * 1024,
        "extra_peak_bytes": (hwm - base) * 1024,
        "peak_reset": reset_ok,
        "torch": torch.__version__,
    }
    res.update({k: v for k, v in extra.items() if k != "result"})
    res.update(extra.get("result", {}))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
