//! Fused symmetric InfoNCE (METHOD.md §3.1, §6.1): the loss of a batch of
//! paired embeddings without ever storing the `B×B` logit matrix.

use crate::backend::BackendCore;
use crate::error::{Error, Result};

/// Sizes and temperature of one InfoNCE evaluation.
///
/// `tau` is a constant of the kernel: no gradient flows to it (a learnable
/// temperature would need its own reduction and is not offered yet).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InfoNceSpec {
    /// Number of pairs `B` (rows of `za` and of `zv`).
    pub batch: usize,
    /// Embedding dimension `d`.
    pub dim: usize,
    /// Temperature `τ > 0`; logits are `za_i·zv_j / τ`.
    pub tau: f32,
}

impl InfoNceSpec {
    /// Checks the batch and temperature (every backend does, before anything
    /// else) and returns the input length `B·d`.
    pub fn validate(&self, op: &'static str) -> Result<usize> {
        if self.batch == 0 {
            return Err(Error::invalid(op, "batch of 0 pairs"));
        }
        if !(self.tau > 0.0 && self.tau.is_finite()) {
            return Err(Error::invalid(
                op,
                format!("temperature {} is not positive and finite", self.tau),
            ));
        }
        Ok(self.batch * self.dim)
    }
}

/// What the forward saves for the backward: the log-sum-exp of every row
/// and every column of the (never stored) logit matrix `S = za·zvᵀ/τ`.
pub struct InfoNceLse<Buf> {
    /// `rowLSE_i = log Σ_j exp(S_ij)`, `B` values.
    pub row: Buf,
    /// `colLSE_j = log Σ_i exp(S_ij)`, `B` values.
    pub col: Buf,
}

/// Gradient buffers the backward adds into (`None`: not wanted).
pub struct InfoNceGrads<'a, Buf> {
    /// Gradient of `za`, `B·d` values.
    pub dza: Option<&'a mut Buf>,
    /// Gradient of `zv`, `B·d` values.
    pub dzv: Option<&'a mut Buf>,
}

/// The fused symmetric InfoNCE loss
/// `L = ½·mean_i[ −log softmax_j(S_ij)[i] − log softmax_j(S_ji)[i] ]`,
/// `S = za·zvᵀ/τ`, over row-major `za [B,d]` and `zv [B,d]`.
///
/// Implementations work on tiles of `S` and keep only `O(B·d + B)` memory
/// beyond per-worker tile scratch.
pub trait InfoNceKernels: BackendCore {
    /// Returns the loss as a 1-element buffer and the row and column
    /// log-sum-exp vectors the backward needs.
    fn infonce_fwd(
        &self,
        spec: &InfoNceSpec,
        za: &Self::Buf,
        zv: &Self::Buf,
    ) -> Result<(Self::Buf, InfoNceLse<Self::Buf>)>;

    /// Adds `g·∂L/∂za` and `g·∂L/∂zv` into the wanted gradient buffers, where
    /// `g` is the 1-element `grad_loss`. With `p_ij = exp(S_ij − rowLSE_i)`
    /// and `q_ij = exp(S_ij − colLSE_j)`:
    /// `dza_i = g/(2Bτ)·[Σ_j (p_ij+q_ij)·zv_j − 2·zv_i]` and
    /// `dzv_j = g/(2Bτ)·[Σ_i (p_ij+q_ij)·za_i − 2·za_j]`.
    fn infonce_bwd(
        &self,
        spec: &InfoNceSpec,
        za: &Self::Buf,
        zv: &Self::Buf,
        lse: &InfoNceLse<Self::Buf>,
        grad_loss: &Self::Buf,
        grads: InfoNceGrads<'_, Self::Buf>,
    ) -> Result<()>;
}
