//! Confusion-weighted class alignment (METHOD.md §3.4–3.7, §6.3): a
//! cross-entropy over prototype logits whose negatives are weighted by a
//! K×K matrix W, with the soft confusion matrix accumulated in the same pass.
//!
//! Labels are class indices encoded as f32 in a backend buffer (exact up to
//! 2^24), so pseudo-labels produced on the device feed the loss without a
//! host copy. Kernels reject a label that is not an integer in `0..K`, naming
//! its row, and weights that are not finite and positive.

use crate::backend::BackendCore;
use crate::error::Result;

/// Sizes and temperature of one class-alignment call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClassAlignSpec {
    /// Rows of z (samples), at least 1.
    pub n: usize,
    /// Number of prototypes (classes), at least 1.
    pub k: usize,
    /// Embedding dimension.
    pub d: usize,
    /// 1/τ_c.
    pub inv_tau: f32,
}

/// Fused forward and backward of the weighted prototype loss
/// `L = −mean_i log( e^{a_iy} / (e^{a_iy} + Σ_{l≠y} W[y,l]·e^{a_il}) )`,
/// `a_il = z_i·μ_l/τ`, `y = ŷ_i`.
pub trait ClassAlignKernels: BackendCore {
    /// Forward. Reads `z [n,d]`, `prototypes [k,d]`, `labels [n]`, `weights
    /// [k,k]` (`None` = all ones, plain cross-entropy). Writes the mean loss
    /// into `loss [1]` and each row's weighted log-normaliser
    /// `log(Σ_l W[y,l]·e^{a_il})` (W[y,y] read as 1) into `lse [n]`. When
    /// `confusion [k,k]` is given, adds the unweighted softmax
    /// `p_il = softmax_l(a_il)` into its row `ŷ_i`.
    #[allow(clippy::too_many_arguments)]
    fn class_align_fwd(
        &self,
        spec: &ClassAlignSpec,
        z: &Self::Buf,
        prototypes: &Self::Buf,
        labels: &Self::Buf,
        weights: Option<&Self::Buf>,
        loss: &mut Self::Buf,
        lse: &mut Self::Buf,
        confusion: Option<&mut Self::Buf>,
    ) -> Result<()>;

    /// Backward: adds `dz_i = (g/n)·Σ_l (w̃_il − 1[l=y])·μ_l/τ` into `dz [n,d]`,
    /// where `g = grad_loss[0]` and `w̃_il = W[y,l]·e^{a_il − lse_i}`.
    #[allow(clippy::too_many_arguments)]
    fn class_align_bwd(
        &self,
        spec: &ClassAlignSpec,
        z: &Self::Buf,
        prototypes: &Self::Buf,
        labels: &Self::Buf,
        weights: Option<&Self::Buf>,
        lse: &Self::Buf,
        grad_loss: &Self::Buf,
        dz: &mut Self::Buf,
    ) -> Result<()>;
}
