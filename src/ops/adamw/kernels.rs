//! The optimiser's per-parameter update.

use crate::backend::BackendCore;
use crate::error::Result;

/// Scalars of one AdamW step for one parameter tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    /// Learning rate of this step (after the schedule).
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Added to the root of the second moment.
    pub eps: f32,
    /// Decoupled weight decay (0 for biases and norm gains).
    pub weight_decay: f32,
    /// `1 − beta1^t` for step t (bias correction of the first moment).
    pub bias_correction1: f32,
    /// `1 − beta2^t` for step t.
    pub bias_correction2: f32,
}

/// Optimiser kernels.
pub trait OptimKernels: BackendCore {
    /// One AdamW update, in place on `param`, `m` and `v`:
    /// `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`,
    /// `param ← param − lr·( m̂/(√v̂ + eps) + wd·param )` with bias-corrected m̂, v̂.
    fn adamw_update(
        &self,
        step: &AdamWStep,
        param: &mut Self::Buf,
        grad: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
    ) -> Result<()>;
}
