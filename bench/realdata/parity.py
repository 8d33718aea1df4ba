"""Parity of one training step between the engine and PyTorch: loads the
engine's initial weights, batch, embeddings, loss and gradients (written by
`cargo run --release --example model_parity`) into bench/torch_model.py,
redoes the InfoNCE forward and backward in float64, and prints the relative
error of the loss, the embeddings and every parameter's gradient.

    python parity.py PARITY.safetensors

Exits non-zero when any relative error (‖engine − torch‖ / ‖torch‖) is above
1e-3, the level an f32 computation of this size should stay well under.
"""

import re
import sys
import tomllib

import numpy as np
import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from torch_reference import load_safetensors  # noqa: E402

sys.path.insert(0, __file__.rsplit("/", 2)[0])
import torch_model as tm  # noqa: E402


def torch_name(engine):
    """The torch_model.py name of an engine parameter."""
    n = engine
    n = re.sub(r"^head\.audio\.", "head_a.", n)
    n = re.sub(r"^head\.video\.", "head_v.", n)
    n = re.sub(r"^head\.fused\.", "head_f.", n)
    n = re.sub(r"^fusion\.audio_type$", "audio_type", n)
    n = re.sub(r"^fusion\.video_type$", "video_type", n)
    n = re.sub(r"^fusion\.norm\.", "fusion_norm.", n)
    n = re.sub(r"^fusion\.blocks\.", "fusion.", n)
    n = n.replace(".attn.qkv.", ".qkv.").replace(".attn.proj.", ".proj.")
    n = re.sub(r"\.gamma$", ".weight", n)
    n = re.sub(r"\.beta$", ".bias", n)
    return n


def main():
    t, meta = load_safetensors(sys.argv[1])
    cfg = tomllib.loads(meta["config"])
    torch.manual_seed(0)
    model = tm.AvModel(cfg).double()
    params = dict(model.named_parameters())
    linear_weights = set()
    with torch.no_grad():
        for key, value in t.items():
            if not key.startswith("param."):
                continue
            name = torch_name(key[len("param.") :])
            p = params.pop(name)
            v = torch.from_numpy(value.astype(np.float64))
            if p.dim() == 2 and name.endswith(".weight"):  # engine [in, out], torch [out, in]
                v = v.t()
                linear_weights.add(name)
            assert v.shape == p.shape, f"{key} -> {name}: {tuple(v.shape)} vs {tuple(p.shape)}"
            p.copy_(v)
    assert not params, f"torch parameters without an engine value: {sorted(params)}"
    audio = torch.from_numpy(t["audio"].astype(np.float64))
    video = torch.from_numpy(t["video"].astype(np.float64))
    za, zv, _ = model(audio, video)
    loss = tm.infonce(za, zv, cfg["diccae"]["tau"])
    loss.backward()

    def rel(engine, ref):
        ref = ref.detach().numpy()
        return float(np.linalg.norm(engine - ref) / max(np.linalg.norm(ref), 1e-30))

    rows = [("loss", rel(t["loss"], loss.reshape(1))), ("z_a", rel(t["z_a"], za)), ("z_v", rel(t["z_v"], zv))]
    named = dict(model.named_parameters())
    for key, g in t.items():
        if not key.startswith("grad."):
            continue
        name = torch_name(key[len("grad.") :])
        ref = named[name].grad
        if name in linear_weights:
            ref = ref.t()
        rows.append((f"grad {key[5:]}", rel(g, ref)))
    worst = max(r for _, r in rows)
    print(f"loss: engine {float(t['loss'][0]):.6f}, torch (f64) {loss.item():.6f}")
    for name, r in sorted(rows, key=lambda x: -x[1])[:12]:
        print(f"  {r:.2e}  {name}")
    print(f"{len(rows)} quantities compared; largest relative error {worst:.2e}")
    sys.exit(0 if worst < 1e-3 else 1)


if __name__ == "__main__":
    main()
