//! Layers with parameters: linear maps, LayerNorm, MLPs and the pre-norm
//! transformer block.

use crate::autograd::{ParamId, ParamStore, Tape, Var};
use crate::config::{InitScheme, ModelConfig};
use crate::error::Result;
use crate::model::INIT_STD;
use crate::ops::Backend;
use crate::ops::attention::attention;
use crate::ops::elementwise::{add, bias_add, gelu};
use crate::ops::matmul::matmul;
use crate::ops::norm::layer_norm;
use crate::rng::{SeededRng, normal_vec, uniform_vec};
use crate::tensor::Tensor;

/// `y = x·W + b`, W `[in, out]`.
pub struct Linear {
    weight: ParamId,
    bias: ParamId,
}

impl Linear {
    /// Registers `name.weight` (decayed) and `name.bias` (not decayed),
    /// initialised by `init`: N(0, 0.02²) and zeros, or both U(±1/√d_in).
    pub fn new<B: Backend>(
        store: &mut ParamStore<B>,
        rng: &mut SeededRng,
        name: &str,
        (d_in, d_out): (usize, usize),
        init: InitScheme,
    ) -> Result<Self> {
        let be = store.backend().clone();
        let (w, b) = match init {
            InitScheme::Normal => (normal_vec(rng, d_in * d_out, INIT_STD), vec![0.0; d_out]),
            InitScheme::FanIn => {
                let bound = 1.0 / (d_in.max(1) as f32).sqrt();
                let w = uniform_vec(rng, d_in * d_out, -bound, bound);
                (w, uniform_vec(rng, d_out, -bound, bound))
            }
        };
        let weight = store.add(
            &format!("{name}.weight"),
            Tensor::from_host(&be, &[d_in, d_out], &w)?,
            true,
        )?;
        let bias = store.add(
            &format!("{name}.bias"),
            Tensor::from_host(&be, &[d_out], &b)?,
            false,
        )?;
        Ok(Linear { weight, bias })
    }

    /// Applies the map to the last dimension of `x`.
    pub fn forward<B: Backend>(&self, tape: &mut Tape<'_, B>, x: Var) -> Result<Var> {
        let w = tape.param(self.weight);
        let b = tape.param(self.bias);
        let y = matmul(tape, x, w, false, false)?;
        bias_add(tape, y, b)
    }
}

/// LayerNorm with a learned gain and shift (neither decayed).
pub struct Norm {
    gamma: ParamId,
    beta: ParamId,
    eps: f32,
}

impl Norm {
    /// Registers `name.gamma` (ones) and `name.beta` (zeros).
    pub fn new<B: Backend>(
        store: &mut ParamStore<B>,
        name: &str,
        dim: usize,
        eps: f32,
    ) -> Result<Self> {
        let be = store.backend().clone();
        let gamma = store.add(
            &format!("{name}.gamma"),
            Tensor::from_host(&be, &[dim], &vec![1.0; dim])?,
            false,
        )?;
        let beta = store.add(&format!("{name}.beta"), Tensor::zeros(&be, &[dim])?, false)?;
        Ok(Norm { gamma, beta, eps })
    }

    /// Normalises the last dimension of `x`.
    pub fn forward<B: Backend>(&self, tape: &mut Tape<'_, B>, x: Var) -> Result<Var> {
        let g = tape.param(self.gamma);
        let b = tape.param(self.beta);
        layer_norm(tape, x, g, b, self.eps)
    }
}

/// Linear → GELU → Linear.
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    /// Registers `name.fc1` (`d_in → hidden`) and `name.fc2` (`hidden → d_out`).
    pub fn new<B: Backend>(
        store: &mut ParamStore<B>,
        rng: &mut SeededRng,
        name: &str,
        (d_in, hidden, d_out): (usize, usize, usize),
        init: InitScheme,
    ) -> Result<Self> {
        Ok(Mlp {
            fc1: Linear::new(store, rng, &format!("{name}.fc1"), (d_in, hidden), init)?,
            fc2: Linear::new(store, rng, &format!("{name}.fc2"), (hidden, d_out), init)?,
        })
    }

    /// Applies the MLP to the last dimension of `x`.
    pub fn forward<B: Backend>(&self, tape: &mut Tape<'_, B>, x: Var) -> Result<Var> {
        let h = self.fc1.forward(tape, x)?;
        let h = gelu(tape, h)?;
        self.fc2.forward(tape, h)
    }
}

/// Pre-norm transformer block: `x + Attn(LN(x))`, then `x + MLP(LN(x))`.
pub struct TransformerBlock {
    norm1: Norm,
    qkv: Linear,
    proj: Linear,
    norm2: Norm,
    mlp: Mlp,
}

impl TransformerBlock {
    /// Registers the block's parameters under `name`.
    pub fn new<B: Backend>(
        store: &mut ParamStore<B>,
        rng: &mut SeededRng,
        name: &str,
        cfg: &ModelConfig,
    ) -> Result<Self> {
        let d = cfg.dim;
        Ok(TransformerBlock {
            norm1: Norm::new(store, &format!("{name}.norm1"), d, cfg.norm_eps)?,
            qkv: Linear::new(
                store,
                rng,
                &format!("{name}.attn.qkv"),
                (d, 3 * d),
                cfg.init,
            )?,
            proj: Linear::new(store, rng, &format!("{name}.attn.proj"), (d, d), cfg.init)?,
            norm2: Norm::new(store, &format!("{name}.norm2"), d, cfg.norm_eps)?,
            mlp: Mlp::new(
                store,
                rng,
                &format!("{name}.mlp"),
                (d, cfg.mlp_ratio * d, d),
                cfg.init,
            )?,
        })
    }

    /// Tokens `[B, N, dim]` → tokens `[B, N, dim]`.
    pub fn forward<B: Backend>(&self, tape: &mut Tape<'_, B>, x: Var, heads: usize) -> Result<Var> {
        let h = self.norm1.forward(tape, x)?;
        let qkv = self.qkv.forward(tape, h)?;
        let a = attention(tape, qkv, heads)?;
        let a = self.proj.forward(tape, a)?;
        let x = add(tape, x, a)?;
        let h = self.norm2.forward(tape, x)?;
        let h = self.mlp.forward(tape, h)?;
        add(tape, x, h)
    }
}
