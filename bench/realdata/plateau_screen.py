"""Screens one hypothesis about the InfoNCE plateau at a time (issue 11):
trains the PyTorch reference's model and objective (torch_reference.py, on
a `diccae-engine features` file) for a short number of steps with one change
and prints the epoch-mean L_ins, so runs that differ in one knob can be read
side by side. Before training it prints the mean off-diagonal cosine of a
batch's z_a and z_v (how collapsed the initial embeddings are) and, with
--probe, the probes of the randomly initialised encoders.

    python plateau_screen.py FEATURES.safetensors --steps 780 [--position-std 1.0]
        [--center] [--per-bin] [--lr 3e-3] [--tau 0.2] [--probe] [--threads 1]

--center subtracts the batch mean of the projections before L2
normalisation; --per-bin re-normalises the log-mel per mel bin (mean and
standard deviation over the training clips and frames) instead of the one
scalar the engine uses; --position-std sets the initial standard deviation
of the learned position embeddings (the engine's model.position_std; the
stored configuration's value otherwise).
"""

import argparse
import os
import sys
import time
import tomllib

import numpy as np
import torch
import torch.nn.functional as F

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, ".."))
import torch_model as tm  # noqa: E402
import torch_reference as tr  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("features")
    ap.add_argument("--steps", type=int, default=780)
    ap.add_argument("--center", action="store_true")
    ap.add_argument("--per-bin", action="store_true")
    ap.add_argument("--lr", type=float)
    ap.add_argument("--tau", type=float)
    ap.add_argument("--position-std", type=float)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--probe", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t, meta = tr.load_safetensors(args.features)
    cfg = tomllib.loads(meta["config"])
    if args.position_std is not None:
        cfg["model"]["position_std"] = args.position_std
    trc, c = cfg["train"], cfg["diccae"]
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = tm.AvModel(cfg)
    if cfg["model"].get("init", "normal") == "fan_in":
        tr.reinit_torch_default(model)
    audio = torch.from_numpy(t["train.audio"].copy())
    video = torch.from_numpy(t["train.video"].copy())
    if args.per_bin:
        mean = audio.mean(dim=(0, 2), keepdim=True)
        std = audio.std(dim=(0, 2), keepdim=True)
        audio = (audio - mean) / std
    if args.probe:
        h = tr._split_embed(model, t)
        print("random-init probes:", tr.probes(h, t["train.labels"], t["test.labels"], 10, cfg["eval"]), flush=True)
    tau = args.tau or c["tau"]
    lr = args.lr or trc["lr"]

    def forward(a, v):
        m = model
        ta = m.audio(tm.patchify_spectrogram(a, m.m["audio_patch"]))
        tv = m.video(tm.patchify_video(v, m.m["tubelet_frames"], m.m["tubelet_size"]))
        pa, pv = m.head_a(ta.mean(1)), m.head_v(tv.mean(1))
        if args.center:
            pa, pv = pa - pa.mean(0, keepdim=True), pv - pv.mean(0, keepdim=True)
        return F.normalize(pa, dim=-1, eps=1e-6), F.normalize(pv, dim=-1, eps=1e-6)

    batch = trc["batch_size"]
    with torch.no_grad():
        za, zv = forward(audio[:batch], video[:batch])
        off = lambda z: float(((z @ z.T).sum() - batch) / (batch * (batch - 1)))  # noqa: E731
        print(f"initial mean off-diagonal cosine: z_a {off(za):.4f}, z_v {off(zv):.4f}", flush=True)
    decay, rest = [], []
    for name, p in model.named_parameters():
        (decay if name.endswith(".weight") and p.dim() == 2 else rest).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": trc["weight_decay"]}, {"params": rest, "weight_decay": 0.0}],
        lr=lr,
        betas=(trc["beta1"], trc["beta2"]),
        eps=1e-8,
    )
    n = audio.shape[0]
    spe = n // batch
    total, warmup = trc["steps"], int(trc["warmup_epochs"] * spe)
    step, losses, start = 0, [], time.time()
    while step < args.steps:
        order = rng.permutation(n)
        for s in range(spe):
            if step >= args.steps:
                break
            idx = torch.from_numpy(order[s * batch : (s + 1) * batch])
            a, v = audio[idx], video[idx].clone()
            flip = torch.from_numpy(rng.random(batch) < 0.5)
            v[flip] = v[flip].flip(-1)
            for g in opt.param_groups:
                g["lr"] = tr.lr_at(step, lr, trc["min_lr"], warmup, total)
            opt.zero_grad(set_to_none=True)
            za, zv = forward(a, v)
            loss = tm.infonce(za, zv, tau)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), trc["grad_clip"])
            opt.step()
            losses.append(loss.item())
            step += 1
            if step % spe == 0:
                print(f"step {step:5d}  L_ins {np.mean(losses[-spe:]):.4f}  ({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
