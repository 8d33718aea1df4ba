//! Row normalisations: LayerNorm and L2 normalisation over the last dim.
//!
//! Matrices are `rows × d`, row-major: a tensor `[..., d]` viewed with every
//! leading dim folded into the rows.

use crate::backend::BackendCore;
use crate::error::Result;

/// The problem a normalisation kernel works on: `rows` rows of `d` values,
/// and the stabilising `eps` (> 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormSpec {
    /// Number of rows (every leading dim folded).
    pub rows: usize,
    /// Row length, the normalised dim (≥ 1).
    pub d: usize,
    /// LayerNorm: added to the variance. L2: the lower clamp on the norm.
    pub eps: f32,
}

/// Per-row statistics a LayerNorm forward saves for its backward.
pub struct LayerNormStats<Buf> {
    /// Row means, `rows` values.
    pub mean: Buf,
    /// Reciprocal standard deviations `1/√(var + eps)`, `rows` values.
    pub rstd: Buf,
}

/// Which LayerNorm gradients a backward call computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerNormNeeds {
    /// The input's gradient `dx`.
    pub dx: bool,
    /// The affine parameters' gradients `dgamma` and `dbeta`.
    pub params: bool,
}

/// The gradients a LayerNorm backward produced (those that were asked for).
pub struct LayerNormGrads<Buf> {
    /// Gradient of the input, `rows × d`.
    pub dx: Option<Buf>,
    /// Gradient of the scale `gamma`, `d` values.
    pub dgamma: Option<Buf>,
    /// Gradient of the shift `beta`, `d` values.
    pub dbeta: Option<Buf>,
}

/// Normalisation kernels. Outputs are new buffers; the caller (an op) has
/// checked the lengths.
pub trait NormKernels: BackendCore {
    /// LayerNorm over each row: `y = (x − mean)·rstd·gamma + beta` with the
    /// biased variance. Returns `y` and the per-row statistics.
    fn layer_norm_fwd(
        &self,
        spec: &NormSpec,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
    ) -> Result<(Self::Buf, LayerNormStats<Self::Buf>)>;

    /// Fused LayerNorm backward from the saved statistics: with
    /// `ŷ = (x − mean)·rstd` and `dŷ = grad_out∘gamma`,
    /// `dx = rstd·(dŷ − mean(dŷ) − ŷ·mean(dŷ∘ŷ))`, `dgamma = Σ_rows grad_out∘ŷ`,
    /// `dbeta = Σ_rows grad_out`.
    fn layer_norm_bwd(
        &self,
        spec: &NormSpec,
        x: &Self::Buf,
        gamma: &Self::Buf,
        stats: &LayerNormStats<Self::Buf>,
        grad_out: &Self::Buf,
        needs: LayerNormNeeds,
    ) -> Result<LayerNormGrads<Self::Buf>>;

    /// `y = x / max(‖x‖, eps)` per row. Returns `y` and the unclamped row
    /// norms `‖x‖` (`rows` values) for the backward.
    fn l2_normalize_fwd(&self, spec: &NormSpec, x: &Self::Buf) -> Result<(Self::Buf, Self::Buf)>;

    /// The input gradient of [`NormKernels::l2_normalize_fwd`]: per row,
    /// `dx = (g − y·(y·g)) / ‖x‖` where `‖x‖ > eps`, and `dx = g / eps` where
    /// the norm was clamped (there `y = x/eps` is linear in `x`).
    fn l2_normalize_bwd(
        &self,
        spec: &NormSpec,
        x: &Self::Buf,
        norms: &Self::Buf,
        grad_out: &Self::Buf,
    ) -> Result<Self::Buf>;
}
