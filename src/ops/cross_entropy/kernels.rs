//! Softmax cross-entropy over class logits with integer targets.

use crate::backend::BackendCore;
use crate::error::Result;

/// Sizes and logit scale of one cross-entropy evaluation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CrossEntropySpec {
    /// Number of rows `N`.
    pub rows: usize,
    /// Number of classes `C` (columns of the logits).
    pub classes: usize,
    /// The logits are multiplied by this before the softmax.
    pub scale: f32,
}

/// `L = mean_n −log softmax(scale·logits_n)[t_n]` over row-major logits
/// `[N, C]`. Targets are a backend buffer of `N` class indices stored as f32
/// (exact below 2²⁴), already validated by the caller to lie in `0..C`.
pub trait CrossEntropyKernels: BackendCore {
    /// Returns the loss as a 1-element buffer and the per-row log-sum-exp of
    /// `scale·logits` (`N` values) for the backward.
    fn cross_entropy_fwd(
        &self,
        spec: &CrossEntropySpec,
        logits: &Self::Buf,
        targets: &Self::Buf,
    ) -> Result<(Self::Buf, Self::Buf)>;

    /// Adds `g·∂L/∂logits = g·scale/N·(softmax(scale·logits) − onehot(t))`
    /// into `dlogits`, where `g` is the 1-element `grad_loss`.
    fn cross_entropy_bwd(
        &self,
        spec: &CrossEntropySpec,
        logits: &Self::Buf,
        targets: &Self::Buf,
        lse: &Self::Buf,
        grad_loss: &Self::Buf,
        dlogits: &mut Self::Buf,
    ) -> Result<()>;
}
