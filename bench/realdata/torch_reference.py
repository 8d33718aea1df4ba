"""PyTorch reference of the engine's InfoNCE pretraining and linear probe,
on the very inputs the engine trains on (`diccae-engine features` output).

The model is bench/torch_model.py (the engine's `tiny` architecture); the
objective is symmetric InfoNCE on z_a, z_v at the configured τ; the
optimiser is AdamW with decay on the linear weights only, the schedule the
engine's WarmupCosine (per step: linear warm-up, cosine to min_lr), global
gradient-norm clipping, and each clip's frames mirrored with probability ½,
all read from the configuration stored in the features file. The probe is
the engine's (src/eval/probe.rs): standardised features, multinomial
logistic regression from zeros, full-batch AdamW with β2 0.999, weight decay
on the weights only, `eval.probe_epochs` steps with a 5% warm-up and cosine
to 1% of `eval.probe_lr`. It also probes the raw inputs (the floors):
pooled log-mel (mean and standard deviation over time per mel bin), pixels,
and both concatenated.

    python torch_reference.py FEATURES.safetensors --out result.json [--init normal|fan_in]

The linear layers are initialised as the configuration's `model.init` says:
`normal` draws weights from N(0, 0.02²) with zero biases (torch_model.py's
own init), `fan_in` keeps nn.Linear's default (Kaiming-uniform with a = √5,
i.e. U(±1/√fan_in), and a uniform bias), which is the engine's `fan_in`.
"""

import argparse
import json
import math
import os
import struct
import sys
import time
import tomllib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import torch_model as tm  # noqa: E402


def load_safetensors(path):
    """Tensors as numpy arrays and the metadata dict (F32 and I64 only)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        blob = f.read()
    meta = header.pop("__metadata__", {})
    dtypes = {"F32": np.float32, "I64": np.int64}
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(blob[a:b], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
    return out, meta


def reinit_torch_default(model):
    """nn.Linear's own initialisation for every linear layer of the model."""
    for mod in model.modules():
        if isinstance(mod, nn.Linear):
            mod.reset_parameters()


def lr_at(step, peak, floor, warmup, total):
    """The engine's WarmupCosine."""
    if step < warmup:
        return peak * (step + 1) / warmup
    if step >= total or total <= warmup:
        return floor
    progress = (step - warmup) / (total - warmup)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def embed(model, audio, video, batch=256):
    """Pooled h_a, h_v, h_f for every clip, in eval mode and without gradients."""
    m = model.m
    outs = [[], [], []]
    with torch.no_grad():
        for i in range(0, audio.shape[0], batch):
            a = torch.from_numpy(audio[i : i + batch])
            v = torch.from_numpy(video[i : i + batch])
            ta = model.audio(tm.patchify_spectrogram(a, m["audio_patch"]))
            tv = model.video(tm.patchify_video(v, m["tubelet_frames"], m["tubelet_size"]))
            joint = torch.cat([ta + model.audio_type, tv + model.video_type], dim=1)
            for blk in model.fusion:
                joint = blk(joint)
            joint = model.fusion_norm(joint)
            for o, h in zip(outs, (ta.mean(1), tv.mean(1), joint.mean(1))):
                o.append(h.numpy())
    return [np.concatenate(o) for o in outs]


def linear_probe(xtr, ytr, xte, yte, classes, steps, lr, wd):
    """The engine's probe (src/eval/probe.rs); returns top-1 on the test rows."""
    xtr = torch.from_numpy(np.ascontiguousarray(xtr, dtype=np.float32))
    xte = torch.from_numpy(np.ascontiguousarray(xte, dtype=np.float32))
    mean = xtr.double().mean(0)
    std = xtr.double().std(0, unbiased=False).clamp_min(1e-6)
    xtr = ((xtr.double() - mean) / std).float()
    xte = ((xte.double() - mean) / std).float()
    ytr_t = torch.from_numpy(ytr)
    w = torch.zeros(xtr.shape[1], classes, requires_grad=True)
    b = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.AdamW(
        [{"params": [w], "weight_decay": wd}, {"params": [b], "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.999),
        eps=1e-8,
    )
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, lr, lr * 0.01, steps // 20, steps)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(xtr @ w + b, ytr_t).backward()
        opt.step()
    with torch.no_grad():
        pred = (xte @ w + b).argmax(1).numpy()
    return float((pred == yte).mean())


def probes(h, ytr, yte, classes, ev):
    """Probe top-1 of the audio, video and fused pooled features."""
    names = ("audio", "video", "fused")
    return {
        n: linear_probe(tr, ytr, te, yte, classes, ev["probe_epochs"], ev["probe_lr"], ev["probe_weight_decay"])
        for n, (tr, te) in zip(names, h)
    }


def raw_floors(t, ytr, yte, classes, ev):
    """Probe top-1 of the raw inputs: pooled log-mel, pixels, both."""

    def pooled(a):
        return np.concatenate([a.mean(2), a.std(2)], axis=1)

    feats = {
        "logmel": (pooled(t["train.audio"]), pooled(t["test.audio"])),
        "pixels": (
            t["train.video"].reshape(len(ytr), -1),
            t["test.video"].reshape(len(yte), -1),
        ),
    }
    feats["concat"] = tuple(np.concatenate([feats["logmel"][i], feats["pixels"][i]], axis=1) for i in range(2))
    ps = (ev["probe_epochs"], ev["probe_lr"], ev["probe_weight_decay"])
    return {k: linear_probe(tr, ytr, te, yte, classes, *ps) for k, (tr, te) in feats.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("features", help="a file written by `diccae-engine features`")
    ap.add_argument("--out", required=True, help="JSON result file")
    ap.add_argument(
        "--init",
        choices=("normal", "fan_in"),
        help="override the configuration's model.init (normal: N(0, 0.02²); fan_in: nn.Linear's default)",
    )
    ap.add_argument("--floors", action="store_true", help="also probe the raw inputs")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    t, meta = load_safetensors(args.features)
    cfg = tomllib.loads(meta["config"])
    classes = len(json.loads(meta["classes"]))
    tr_cfg, c, ev = cfg["train"], cfg["diccae"], cfg["eval"]
    torch.manual_seed(tr_cfg["seed"])
    rng = np.random.default_rng(tr_cfg["seed"])
    model = tm.AvModel(cfg)
    init = args.init or cfg["model"].get("init", "normal")
    if init == "fan_in":
        reinit_torch_default(model)
    ytr, yte = t["train.labels"], t["test.labels"]
    result = {"features": args.features, "init": init, "config": cfg["train"], "epochs": []}
    if args.floors:
        result["floors"] = raw_floors(t, ytr, yte, classes, ev)
        print("raw floors:", result["floors"], flush=True)
    result["random_init"] = probes(_split_embed(model, t), ytr, yte, classes, ev)
    print("random init:", result["random_init"], flush=True)

    decay, rest = [], []
    for name, p in model.named_parameters():
        (decay if name.endswith(".weight") and p.dim() == 2 else rest).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": tr_cfg["weight_decay"]}, {"params": rest, "weight_decay": 0.0}],
        lr=tr_cfg["lr"],
        betas=(tr_cfg["beta1"], tr_cfg["beta2"]),
        eps=1e-8,
    )
    n = ytr.shape[0]
    batch = min(tr_cfg["batch_size"], n)
    spe = n // batch
    # train.epochs = 0: as many epochs as train.steps needs (Config::epochs_for).
    epochs = tr_cfg["epochs"] or max(1, -(-tr_cfg["steps"] // max(spe, 1)))
    total = spe * epochs
    warmup = int(tr_cfg["warmup_epochs"] * spe)
    audio_all = torch.from_numpy(t["train.audio"])
    video_all = torch.from_numpy(t["train.video"])
    train_start = time.time()
    step = 0
    for epoch in range(epochs):
        order = rng.permutation(n)
        losses = []
        for s in range(spe):
            idx = torch.from_numpy(order[s * batch : (s + 1) * batch])
            a = audio_all[idx]
            v = video_all[idx].clone()
            flip = torch.from_numpy(rng.random(batch) < 0.5)
            v[flip] = v[flip].flip(-1)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, tr_cfg["lr"], tr_cfg["min_lr"], warmup, total)
            opt.zero_grad(set_to_none=True)
            za, zv, _ = model(a, v)
            loss = tm.infonce(za, zv, c["tau"])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tr_cfg["grad_clip"])
            opt.step()
            losses.append(loss.item())
            step += 1
        rec = {"epoch": epoch + 1, "l_ins": float(np.mean(losses)), "seconds": time.time() - train_start}
        result["epochs"].append(rec)
        print(f"epoch {epoch + 1:3d}  L_ins {rec['l_ins']:.4f}  ({rec['seconds']:.0f} s)", flush=True)
    result["train_seconds"] = time.time() - train_start
    result["pretrained"] = probes(_split_embed(model, t), ytr, yte, classes, ev)
    result["seconds"] = time.time() - started
    print("pretrained:", result["pretrained"], f"train {result['train_seconds']:.0f} s", flush=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


def _split_embed(model, t):
    """[(train, test)] pairs of h_a, h_v, h_f."""
    tr = embed(model, t["train.audio"], t["train.video"])
    te = embed(model, t["test.audio"], t["test.video"])
    return list(zip(tr, te))


if __name__ == "__main__":
    main()
