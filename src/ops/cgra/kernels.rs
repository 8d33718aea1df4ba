//! Co-correlation guided alignment (CGRA, METHOD.md §4; docs/METHOD-NOTES.md):
//! the alignment loss between each clip's audio tokens and video tokens.
//!
//! Per clip, with `A = H_a [Ta, d]`, `V = H_v [Tv, d]`, row-normalised tokens
//! `â_i = A_i / max(‖A_i‖, ε)`, `v̂_j = V_j / max(‖V_j‖, ε)` and logits
//! `S = â·v̂ᵀ / τ` (`[Ta, Tv]`):
//! - `P = softmax_row(S)` (over `j`), `Q = softmax_col(S)` (over `i`);
//! - guided features `Ã = P·V` `[Ta, d]`, `Ṽ = Qᵀ·A` `[Tv, d]`;
//! - pooled means `ā = mean_i A_i`, `v̄ = mean_j V_j`, `ã = mean_i Ã_i`,
//!   `ṽ = mean_j Ṽ_j`;
//! - `L_clip = (1 − cos(ā, ṽ)) + (1 − cos(v̄, ã))`, with
//!   `cos(x, y) = x·y / (max(‖x‖, ε)·max(‖y‖, ε))`;
//!
//! and the loss is the mean of `L_clip` over the batch. Gradients flow into
//! every occurrence of `A` and `V` (no stop-gradient).
//!
//! Since mean pooling is linear, `ã = Σ_j w_j V_j` with `w_j = mean_i P_ij`
//! and `ṽ = Σ_i u_i A_i` with `u_i = mean_j Q_ij`: implementations never form
//! `Ã` or `Ṽ`, only `S` (a tile at a time, or per clip) and these weights.

use crate::backend::BackendCore;
use crate::error::{Error, Result};

/// The `ε` of the token and pooled-vector normalisations (as in
/// [`crate::ops::norm::l2_normalize`]).
pub const CGRA_EPS: f32 = 1e-6;

/// Sizes and constants of one CGRA evaluation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CgraSpec {
    /// Clips `B`.
    pub batch: usize,
    /// Audio tokens per clip `Ta ≥ 1`.
    pub ta: usize,
    /// Video tokens per clip `Tv ≥ 1`.
    pub tv: usize,
    /// Token width `d` (shared by both modalities).
    pub dim: usize,
    /// Softmax temperature `τ > 0` of the co-correlation logits `S = M/τ`.
    pub tau: f32,
    /// Normalisation floor `ε > 0` (see [`CGRA_EPS`]).
    pub eps: f32,
}

impl CgraSpec {
    /// Checks the sizes and constants (every backend does, before anything
    /// else) and returns the input lengths `(B·Ta·d, B·Tv·d)`.
    pub fn validate(&self, op: &'static str) -> Result<(usize, usize)> {
        if self.batch == 0 || self.ta == 0 || self.tv == 0 || self.dim == 0 {
            return Err(Error::invalid(
                op,
                format!(
                    "empty sizes: B {}, Ta {}, Tv {}, d {}",
                    self.batch, self.ta, self.tv, self.dim
                ),
            ));
        }
        if !(self.tau > 0.0 && self.tau.is_finite()) {
            return Err(Error::invalid(
                op,
                format!("temperature {} is not positive and finite", self.tau),
            ));
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(Error::invalid(
                op,
                format!("eps {} is not positive and finite", self.eps),
            ));
        }
        Ok((
            self.batch * self.ta * self.dim,
            self.batch * self.tv * self.dim,
        ))
    }
}

/// What the forward saves for the backward (all per clip, row-major).
pub struct CgraSaved<Buf> {
    /// Squared norms `‖A_i‖²`, `B·Ta` values.
    pub sq_norm_a: Buf,
    /// Squared norms `‖V_j‖²`, `B·Tv` values.
    pub sq_norm_v: Buf,
    /// Row log-sum-exp `log Σ_j exp(S_ij)`, `B·Ta` values.
    pub row_lse: Buf,
    /// Column log-sum-exp `log Σ_i exp(S_ij)`, `B·Tv` values.
    pub col_lse: Buf,
    /// Pooling weights of the audio tokens `u_i = mean_j Q_ij` (so
    /// `ṽ = Σ_i u_i A_i`), `B·Ta` values.
    pub weight_a: Buf,
    /// Pooling weights of the video tokens `w_j = mean_i P_ij` (so
    /// `ã = Σ_j w_j V_j`), `B·Tv` values.
    pub weight_v: Buf,
    /// Pooled vectors `[ā, v̄, ã, ṽ]` of every clip, `B·4·d` values.
    pub pooled: Buf,
}

impl<Buf> CgraSaved<Buf> {
    /// Each saved buffer with its name and the length `spec` requires, for
    /// the backends' checks before a backward.
    pub fn expected_lengths(&self, spec: &CgraSpec) -> [(&'static str, &Buf, usize); 7] {
        let (b, ta, tv, d) = (spec.batch, spec.ta, spec.tv, spec.dim);
        [
            ("saved ‖A‖²", &self.sq_norm_a, b * ta),
            ("saved ‖V‖²", &self.sq_norm_v, b * tv),
            ("saved row LSE", &self.row_lse, b * ta),
            ("saved column LSE", &self.col_lse, b * tv),
            ("saved audio weights", &self.weight_a, b * ta),
            ("saved video weights", &self.weight_v, b * tv),
            ("saved pooled vectors", &self.pooled, b * 4 * d),
        ]
    }
}

/// Gradient buffers the backward adds into (`None`: not wanted).
pub struct CgraGrads<'a, Buf> {
    /// Gradient of `H_a`, `B·Ta·d` values.
    pub dha: Option<&'a mut Buf>,
    /// Gradient of `H_v`, `B·Tv·d` values.
    pub dhv: Option<&'a mut Buf>,
}

/// The CGRA loss over batched token matrices `ha [B, Ta, d]`, `hv [B, Tv, d]`.
pub trait CgraKernels: BackendCore {
    /// Returns the loss as a 1-element buffer and what the backward needs.
    fn cgra_fwd(
        &self,
        spec: &CgraSpec,
        ha: &Self::Buf,
        hv: &Self::Buf,
    ) -> Result<(Self::Buf, CgraSaved<Self::Buf>)>;

    /// Adds `g·∂L/∂ha` and `g·∂L/∂hv` into the wanted gradient buffers, `g`
    /// being the 1-element `grad_loss`. Per clip, with `G = g/B` and the
    /// cosine gradients `g_ā, g_ṽ, g_v̄, g_ã` of `−G·L_clip`,
    /// `α_j = V_j·g_ã`, `β_i = A_i·g_ṽ`, `ρ_i = Σ_j P_ij α_j`,
    /// `κ_j = Σ_i Q_ij β_i`:
    /// `∂S_ij = P_ij(α_j − ρ_i)/Ta + Q_ij(β_i − κ_j)/Tv`, back through the
    /// normalisations, plus `dA_i += g_ā/Ta + u_i·g_ṽ`, `dV_j += g_v̄/Tv + w_j·g_ã`.
    fn cgra_bwd(
        &self,
        spec: &CgraSpec,
        ha: &Self::Buf,
        hv: &Self::Buf,
        saved: &CgraSaved<Self::Buf>,
        grad_loss: &Self::Buf,
        grads: CgraGrads<'_, Self::Buf>,
    ) -> Result<()>;
}
