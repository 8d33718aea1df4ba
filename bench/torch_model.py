"""The model of src/model in PyTorch, for the side-by-side training-step
comparison (bench/compare). Same shapes (the `tiny` preset, read from the
engine's own configuration), same layers (pre-norm transformer blocks with
fused-QKV attention through scaled_dot_product_attention, GELU-tanh MLPs,
LayerNorm), same losses (symmetric InfoNCE, class alignment with and
without the confusion weights W, the soft confusion accumulated), gradient
clipping at the configured norm and AdamW with decay on the linear weights
only, as the engine's trainer does.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

INIT_STD = 0.02


def linear(d_in, d_out):
    lin = nn.Linear(d_in, d_out)
    nn.init.normal_(lin.weight, std=INIT_STD)
    nn.init.zeros_(lin.bias)
    return lin


class Mlp(nn.Module):
    def __init__(self, d_in, hidden, d_out):
        super().__init__()
        self.fc1 = linear(d_in, hidden)
        self.fc2 = linear(hidden, d_out)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class Block(nn.Module):
    """Pre-norm: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, m):
        super().__init__()
        d = m["dim"]
        self.heads = m["heads"]
        self.norm1 = nn.LayerNorm(d, eps=m["norm_eps"])
        self.qkv = linear(d, 3 * d)
        self.proj = linear(d, d)
        self.norm2 = nn.LayerNorm(d, eps=m["norm_eps"])
        self.mlp = Mlp(d, m["mlp_ratio"] * d, d)

    def forward(self, x):
        b, n, d = x.shape
        h = self.heads
        qkv = self.qkv(self.norm1(x)).view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))


class Encoder(nn.Module):
    def __init__(self, m, patch_len, tokens, layers, position_std):
        super().__init__()
        self.embed = linear(patch_len, m["dim"])
        self.position = nn.Parameter(torch.randn(tokens, m["dim"]) * position_std)
        self.blocks = nn.ModuleList(Block(m) for _ in range(layers))
        self.norm = nn.LayerNorm(m["dim"], eps=m["norm_eps"])

    def forward(self, patches):
        x = self.embed(patches) + self.position
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


def patchify_spectrogram(x, p):
    """[B, F, T] -> [B, (F/p)(T/p), p*p], frequency-major grid."""
    b, f, t = x.shape
    x = x.view(b, f // p, p, t // p, p).permute(0, 1, 3, 2, 4)
    return x.reshape(b, (f // p) * (t // p), p * p)


def patchify_video(x, t, p):
    """[B, T, C, H, W] -> [B, (T/t)(H/p)(W/p), t*C*p*p]."""
    b, T, c, h, w = x.shape
    x = x.view(b, T // t, t, c, h // p, p, w // p, p).permute(0, 1, 4, 6, 2, 3, 5, 7)
    return x.reshape(b, (T // t) * (h // p) * (w // p), t * c * p * p)


class AvModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        m, dt = cfg["model"], cfg["data"]
        self.m = m
        p = m["audio_patch"]
        t, s = m["tubelet_frames"], m["tubelet_size"]
        audio_tokens = (dt["n_mels"] // p) * (dt["audio_frames"] // p)
        video_tokens = (dt["frames"] // t) * (dt["frame_size"] // s) ** 2
        d = m["dim"]
        # model.position_std sets both encoders unless model.video_position_std is set.
        audio_std = m.get("position_std", INIT_STD)
        video_std = m.get("video_position_std", audio_std)
        self.audio = Encoder(m, p * p, audio_tokens, m["audio_layers"], audio_std)
        self.video = Encoder(m, t * 3 * s * s, video_tokens, m["video_layers"], video_std)
        self.audio_type = nn.Parameter(torch.randn(d) * INIT_STD)
        self.video_type = nn.Parameter(torch.randn(d) * INIT_STD)
        self.fusion = nn.ModuleList(Block(m) for _ in range(m["fusion_layers"]))
        self.fusion_norm = nn.LayerNorm(d, eps=m["norm_eps"])
        self.head_a = Mlp(d, d, m["proj_dim"])
        self.head_v = Mlp(d, d, m["proj_dim"])
        self.head_f = Mlp(d, d, m["proj_dim"])

    def forward(self, audio, video):
        m = self.m
        ta = self.audio(patchify_spectrogram(audio, m["audio_patch"]))
        tv = self.video(patchify_video(video, m["tubelet_frames"], m["tubelet_size"]))
        joint = torch.cat([ta + self.audio_type, tv + self.video_type], dim=1)
        for blk in self.fusion:
            joint = blk(joint)
        joint = self.fusion_norm(joint)

        def project(head, h):
            return F.normalize(head(h.mean(dim=1)), dim=-1, eps=1e-6)

        return (
            project(self.head_a, ta),
            project(self.head_v, tv),
            project(self.head_f, joint),
        )


def infonce(za, zv, tau):
    logits = za @ zv.t() / tau
    target = torch.arange(za.shape[0])
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def class_align(z, protos, labels, tau, weights=None, confusion=None):
    """-mean log(e^{a_iy} / (e^{a_iy} + sum_{l!=y} W[y,l] e^{a_il})), a = z mu^T / tau."""
    a = z @ protos.t() / tau
    if confusion is not None:
        with torch.no_grad():
            confusion.index_add_(0, labels, torch.softmax(a, dim=-1))
    if weights is None:
        return F.cross_entropy(a, labels)
    logw = torch.log(weights)[labels]
    logw = logw.scatter(1, labels[:, None], 0.0)
    return F.cross_entropy(a + logw, labels)


class Step:
    """One training step with every loss active, as bench/compare_ours.rs runs it."""

    def __init__(self, cfg, batch):
        torch.manual_seed(0)
        self.cfg = cfg
        self.model = AvModel(cfg)
        decay, rest = [], []
        for name, p in self.model.named_parameters():
            # The engine decays linear weights only (not biases, norms, embeddings).
            (decay if name.endswith(".weight") and p.dim() == 2 else rest).append(p)
        t = cfg["train"]
        self.opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": t["weight_decay"]},
                {"params": rest, "weight_decay": 0.0},
            ],
            lr=1e-3,
            betas=(t["beta1"], t["beta2"]),
            eps=1e-8,
        )
        dt, m = cfg["data"], cfg["model"]
        k, pd = dt["synthetic_classes"], m["proj_dim"]
        self.audio = torch.randn(batch, dt["n_mels"], dt["audio_frames"])
        self.video = torch.randn(batch, dt["frames"], 3, dt["frame_size"], dt["frame_size"])
        self.protos = [F.normalize(torch.randn(k, pd), dim=-1) for _ in range(3)]
        self.labels = torch.randint(0, k, (batch,))
        self.weights = torch.rand(k, k) + 1.0
        self.confusion = torch.zeros(k, k)

    def __call__(self):
        c = self.cfg["diccae"]
        self.opt.zero_grad(set_to_none=True)
        za, zv, zf = self.model(self.audio, self.video)
        pa, pv, pf = self.protos
        l_ins = infonce(za, zv, c["tau"])
        la = class_align(za, pv, self.labels, c["tau_c"])
        lv = class_align(zv, pa, self.labels, c["tau_c"])
        l_conf = class_align(zf, pf, self.labels, c["tau_c"], self.weights, self.confusion)
        total = l_ins + c["lambda_cls"] * 0.5 * (la + lv) + c["lambda_conf"] * l_conf
        loss = total.item()
        total.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg["train"]["grad_clip"])
        self.opt.step()
        return loss
