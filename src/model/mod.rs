//! The audio-visual model of METHOD.md §2: two transformer encoders, joint
//! fusion blocks (AMFM) over both token sets, and projection heads; for AVCL
//! (METHOD.md §4) also the AMFM gated pooling of the fused tokens.

mod layers;

pub use layers::{Linear, Mlp, Norm, TransformerBlock};

use crate::autograd::{ParamId, ParamStore, Tape, Var};
use crate::config::{Config, DataConfig, Method, ModelConfig};
use crate::error::Result;
use crate::ops::Backend;
use crate::ops::elementwise::{add, bias_add, broadcast_add, scale, sigmoid};
use crate::ops::matmul::matmul;
use crate::ops::norm::l2_normalize;
use crate::ops::tokens::{
    concat_tokens, mean_pool, patchify_spectrogram, patchify_video, reshape, split_tokens,
};
use crate::rng::{SeededRng, normal_vec};
use crate::tensor::Tensor;

/// Standard deviation of the initial weights and embeddings.
pub(crate) const INIT_STD: f32 = 0.02;

/// One modality's encoder: patch embedding, position embedding,
/// transformer blocks and a final norm.
pub struct Encoder {
    embed: Linear,
    position: ParamId,
    blocks: Vec<TransformerBlock>,
    norm: Norm,
}

/// What differs between the audio and the video encoder.
struct EncoderSpec<'a> {
    name: &'a str,
    patch_len: usize,
    tokens: usize,
    layers: usize,
    position_std: f32,
}

impl Encoder {
    fn new<B: Backend>(
        store: &mut ParamStore<B>,
        rng: &mut SeededRng,
        cfg: &ModelConfig,
        spec: EncoderSpec<'_>,
    ) -> Result<Self> {
        let EncoderSpec {
            name,
            patch_len,
            tokens,
            layers,
            position_std,
        } = spec;
        let be = store.backend().clone();
        let embed = Linear::new(
            store,
            rng,
            &format!("{name}.embed"),
            (patch_len, cfg.dim),
            cfg.init,
        )?;
        let pos = Tensor::from_host(
            &be,
            &[tokens, cfg.dim],
            &normal_vec(rng, tokens * cfg.dim, position_std),
        )?;
        let position = store.add(&format!("{name}.position"), pos, false)?;
        let blocks = (0..layers)
            .map(|i| TransformerBlock::new(store, rng, &format!("{name}.blocks.{i}"), cfg))
            .collect::<Result<Vec<_>>>()?;
        let norm = Norm::new(store, &format!("{name}.norm"), cfg.dim, cfg.norm_eps)?;
        Ok(Encoder {
            embed,
            position,
            blocks,
            norm,
        })
    }

    /// Patches `[B, N, patch_len]` → tokens `[B, N, dim]`.
    fn forward<B: Backend>(
        &self,
        tape: &mut Tape<'_, B>,
        patches: Var,
        heads: usize,
    ) -> Result<Var> {
        let x = self.embed.forward(tape, patches)?;
        let pos = tape.param(self.position);
        let mut x = broadcast_add(tape, x, pos)?;
        for block in &self.blocks {
            x = block.forward(tape, x, heads)?;
        }
        self.norm.forward(tape, x)
    }
}

/// The embeddings one forward pass produces for a batch.
#[derive(Clone, Copy, Debug)]
pub struct Embeddings {
    /// The audio encoder's output tokens `H_a` `[B, Ta, dim]` (what CGRA aligns).
    pub tokens_a: Var,
    /// The video encoder's output tokens `H_v` `[B, Tv, dim]`.
    pub tokens_v: Var,
    /// Mean-pooled audio tokens `[B, dim]`.
    pub h_a: Var,
    /// Mean-pooled video tokens `[B, dim]`.
    pub h_v: Var,
    /// The fused features `[B, dim]`: the mean of the fused tokens, or with
    /// the AMFM gate `u = α·h_a' + (1−α)·h_v'` (see [`AvModel::forward`]).
    pub h_f: Var,
    /// The AMFM gate `α` `[B, 1]`, when the model has one.
    pub gate: Option<Var>,
    /// L2-normalised audio projection `[B, proj_dim]`.
    pub z_a: Var,
    /// L2-normalised video projection `[B, proj_dim]`.
    pub z_v: Var,
    /// L2-normalised fused projection `[B, proj_dim]`.
    pub z_f: Var,
}

/// The whole model; its parameters live in a [`ParamStore`].
pub struct AvModel {
    cfg: ModelConfig,
    audio_patch: usize,
    tubelet: (usize, usize),
    audio: Encoder,
    video: Encoder,
    audio_type: ParamId,
    video_type: ParamId,
    fusion: Vec<TransformerBlock>,
    fusion_norm: Norm,
    head_a: Mlp,
    head_v: Mlp,
    head_f: Mlp,
    gate: Option<Linear>,
}

impl AvModel {
    /// Registers a freshly initialised model's parameters in `store`.
    pub fn new<B: Backend>(
        store: &mut ParamStore<B>,
        model: &ModelConfig,
        data: &DataConfig,
        seed: u64,
    ) -> Result<Self> {
        let mut rng = crate::rng::seeded(seed ^ 0x6d6f_6465_6c00);
        let be = store.backend().clone();
        let p = model.audio_patch;
        let audio_tokens = (data.n_mels / p) * (data.audio_frames / p);
        let (t, s) = (model.tubelet_frames, model.tubelet_size);
        let video_tokens = (data.frames / t) * (data.frame_size / s) * (data.frame_size / s);
        let audio = Encoder::new(
            store,
            &mut rng,
            model,
            EncoderSpec {
                name: "audio",
                patch_len: p * p,
                tokens: audio_tokens,
                layers: model.audio_layers,
                position_std: model.position_std,
            },
        )?;
        let video = Encoder::new(
            store,
            &mut rng,
            model,
            EncoderSpec {
                name: "video",
                patch_len: t * 3 * s * s,
                tokens: video_tokens,
                layers: model.video_layers,
                position_std: model.video_position_std.unwrap_or(model.position_std),
            },
        )?;
        let d = model.dim;
        let mut type_embedding = |name: &str, rng: &mut SeededRng| -> Result<ParamId> {
            let t = Tensor::from_host(&be, &[d], &normal_vec(rng, d, INIT_STD))?;
            store.add(name, t, false)
        };
        let audio_type = type_embedding("fusion.audio_type", &mut rng)?;
        let video_type = type_embedding("fusion.video_type", &mut rng)?;
        let fusion = (0..model.fusion_layers)
            .map(|i| TransformerBlock::new(store, &mut rng, &format!("fusion.blocks.{i}"), model))
            .collect::<Result<Vec<_>>>()?;
        let fusion_norm = Norm::new(store, "fusion.norm", d, model.norm_eps)?;
        let head = |store: &mut ParamStore<B>, rng: &mut SeededRng, name: &str| {
            Mlp::new(store, rng, name, (d, d, model.proj_dim), model.init)
        };
        let head_a = head(store, &mut rng, "head.audio")?;
        let head_v = head(store, &mut rng, "head.video")?;
        let head_f = head(store, &mut rng, "head.fused")?;
        Ok(AvModel {
            cfg: model.clone(),
            audio_patch: p,
            tubelet: (t, s),
            audio,
            video,
            audio_type,
            video_type,
            fusion,
            fusion_norm,
            head_a,
            head_v,
            head_f,
            gate: None,
        })
    }

    /// [`AvModel::new`] plus, for AVCL, the AMFM gate: `fusion.gate.weight`
    /// `[2·dim, 1]` (N(0, 0.02²)) and `fusion.gate.bias` `[1]` (zero), so
    /// the gate starts near ½. The gate's parameters are registered after
    /// every other, so a DICCAE model's parameters (and checkpoints) are
    /// exactly those of [`AvModel::new`].
    pub fn for_config<B: Backend>(store: &mut ParamStore<B>, cfg: &Config) -> Result<Self> {
        let mut model = AvModel::new(store, &cfg.model, &cfg.data, cfg.train.seed)?;
        if cfg.method == Method::Avcl {
            model.add_gate(store, cfg.train.seed)?;
        }
        Ok(model)
    }

    /// Adds the AMFM gated pooling (see [`AvModel::for_config`]); from now
    /// on `h_f` is the gated mixture and `z_f` its projection.
    pub fn add_gate<B: Backend>(&mut self, store: &mut ParamStore<B>, seed: u64) -> Result<()> {
        let mut rng = crate::rng::seeded(seed ^ 0x6761_7465_0000);
        let d = self.cfg.dim;
        let init = self.cfg.init;
        self.gate = Some(Linear::new(
            store,
            &mut rng,
            "fusion.gate",
            (2 * d, 1),
            init,
        )?);
        Ok(())
    }

    /// Whether the model pools the fused tokens through the AMFM gate.
    pub fn gated(&self) -> bool {
        self.gate.is_some()
    }

    /// Runs the model on a batch: `audio` is `[B, n_mels, audio_frames]`
    /// (normalised log-mel), `video` is `[B, T, 3, S, S]` (normalised frames).
    ///
    /// Without the gate `h_f` is the mean of all fused tokens. With it
    /// (AVCL), the fused tokens' audio part and video part are mean-pooled
    /// separately into `h_a'` and `h_v'`, `α = σ(wᵀ[h_a'; h_v'] + b)` per
    /// clip, and `h_f = u = α·h_a' + (1−α)·h_v'`; `z_f` projects `u`.
    pub fn forward<B: Backend>(
        &self,
        tape: &mut Tape<'_, B>,
        audio: Var,
        video: Var,
    ) -> Result<Embeddings> {
        let heads = self.cfg.heads;
        let pa = patchify_spectrogram(tape, audio, self.audio_patch)?;
        let tokens_a = self.audio.forward(tape, pa, heads)?;
        let pv = patchify_video(tape, video, self.tubelet.0, self.tubelet.1)?;
        let tokens_v = self.video.forward(tape, pv, heads)?;

        let ta = tape.param(self.audio_type);
        let tv = tape.param(self.video_type);
        let typed_a = bias_add(tape, tokens_a, ta)?;
        let typed_v = bias_add(tape, tokens_v, tv)?;
        let mut joint = concat_tokens(tape, &[typed_a, typed_v])?;
        for block in &self.fusion {
            joint = block.forward(tape, joint, heads)?;
        }
        let joint = self.fusion_norm.forward(tape, joint)?;

        let h_a = mean_pool(tape, tokens_a)?;
        let h_v = mean_pool(tape, tokens_v)?;
        let (h_f, gate) = match &self.gate {
            None => (mean_pool(tape, joint)?, None),
            Some(g) => {
                let ta = tape.shape(tokens_a)[1];
                let (u, alpha) = gated_pool(tape, g, joint, ta)?;
                (u, Some(alpha))
            }
        };
        let project = |tape: &mut Tape<'_, B>, head: &Mlp, h: Var| -> Result<Var> {
            let p = head.forward(tape, h)?;
            l2_normalize(tape, p, 1e-6)
        };
        let z_a = project(tape, &self.head_a, h_a)?;
        let z_v = project(tape, &self.head_v, h_v)?;
        let z_f = project(tape, &self.head_f, h_f)?;
        Ok(Embeddings {
            tokens_a,
            tokens_v,
            h_a,
            h_v,
            h_f,
            gate,
            z_a,
            z_v,
            z_f,
        })
    }
}

/// AMFM gated pooling of fused tokens `[B, Ta + Tv, d]` whose first `ta`
/// tokens are audio: returns `u = h_v' + α·(h_a' − h_v')` `[B, d]` (the same
/// as `α·h_a' + (1−α)·h_v'`) and `α` `[B, 1]`.
fn gated_pool<B: Backend>(
    tape: &mut Tape<'_, B>,
    gate: &Linear,
    joint: Var,
    ta: usize,
) -> Result<(Var, Var)> {
    let (b, d) = (tape.shape(joint)[0], tape.shape(joint)[2]);
    let (ja, jv) = split_tokens(tape, joint, ta)?;
    let ha = mean_pool(tape, ja)?;
    let hv = mean_pool(tape, jv)?;
    let ha3 = reshape(tape, ha, &[b, 1, d])?;
    let hv3 = reshape(tape, hv, &[b, 1, d])?;
    let both = concat_tokens(tape, &[ha3, hv3])?;
    let both = reshape(tape, both, &[b, 2 * d])?;
    let logit = gate.forward(tape, both)?;
    let alpha = sigmoid(tape, logit)?;
    let neg_hv = scale(tape, hv, -1.0)?;
    let diff = add(tape, ha, neg_hv)?;
    let diff = reshape(tape, diff, &[b, 1, d])?;
    let alpha3 = reshape(tape, alpha, &[b, 1, 1])?;
    let mixed = matmul(tape, alpha3, diff, false, false)?;
    let mixed = reshape(tape, mixed, &[b, d])?;
    let u = add(tape, hv, mixed)?;
    Ok((u, alpha))
}
