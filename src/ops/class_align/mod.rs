//! Confusion-weighted class alignment (METHOD.md §3.4–3.7): one fused op for
//! `L_cls` (W = all ones, cross-modal prototypes) and `L_conf` (dynamic W),
//! which can also accumulate the soft confusion matrix of §3.5.

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub mod kernels;

use crate::autograd::{BackwardCtx, BackwardOp, Tape, Var};
use crate::error::{Error, Result};
use crate::ops::Backend;
use crate::ops::class_align::kernels::ClassAlignSpec;
use crate::tensor::Tensor;

const OP: &str = "class_align";

/// `−mean_i log( e^{s_iy/τ} / (e^{s_iy/τ} + Σ_{l≠y} W[y,l]·e^{s_il/τ}) )` with
/// `s_il = z_i·μ_l` and `y = ŷ_i`; a scalar (shape `[]`).
///
/// - `z [N, d]`: embeddings (the only input that receives a gradient).
/// - `prototypes [K, d]`: constants μ (stop-gradient).
/// - `labels [N]`: pseudo-labels as f32-encoded class indices on the backend
///   (the layout [`crate::kmeans::kmeans`] produces); a label that is not an
///   integer in `0..K` is an error naming its row.
/// - `weights [K, K]`: W, finite and positive (W[y,y] is ignored and read as
///   1); `None` means all ones, i.e. plain cross-entropy over the prototype
///   logits `z·μᵀ/τ`.
/// - `confusion [K, K]`: when given, the unweighted softmax
///   `p_il = softmax_l(s_il/τ)` of every row is added into row `ŷ_i`, in the
///   same pass.
///
/// The backward keeps device copies of the prototypes, labels and weights, so
/// the caller may change them (e.g. the prototype EMA) before `backward`.
pub fn class_align<B: Backend>(
    tape: &mut Tape<'_, B>,
    z: Var,
    prototypes: &Tensor<B>,
    labels: &Tensor<B>,
    weights: Option<&Tensor<B>>,
    tau: f32,
    confusion: Option<&mut Tensor<B>>,
) -> Result<Var> {
    let spec = check_shapes(
        tape.shape(z),
        prototypes.shape(),
        labels.shape(),
        weights.map(Tensor::shape),
        confusion.as_deref().map(Tensor::shape),
        tau,
    )?;
    let be = tape.backend().clone();
    let mut loss = Tensor::zeros(&be, &[])?;
    let mut lse = be.zeros(spec.n)?;
    be.class_align_fwd(
        &spec,
        tape.value(z).buf(),
        prototypes.buf(),
        labels.buf(),
        weights.map(Tensor::buf),
        loss.buf_mut(),
        &mut lse,
        confusion.map(Tensor::buf_mut),
    )?;
    if !(tape.grad_enabled() && tape.requires_grad(z)) {
        return Ok(tape.constant(loss));
    }
    let backward = ClassAlignBackward {
        z,
        spec,
        prototypes: be.duplicate(prototypes.buf())?,
        labels: be.duplicate(labels.buf())?,
        weights: weights.map(|w| be.duplicate(w.buf())).transpose()?,
        lse,
    };
    Ok(tape.push_op(loss, &[z], backward))
}

/// Validates the shapes and τ; returns the kernel spec.
fn check_shapes(
    z: &[usize],
    protos: &[usize],
    labels: &[usize],
    weights: Option<&[usize]>,
    confusion: Option<&[usize]>,
    tau: f32,
) -> Result<ClassAlignSpec> {
    let (&[n, d], &[k, pd]) = (z, protos) else {
        return Err(Error::shape(
            OP,
            format!("z {z:?} must be [N, d] and prototypes {protos:?} must be [K, d]"),
        ));
    };
    if pd != d {
        return Err(Error::shape(
            OP,
            format!("z {z:?} and prototypes {protos:?} differ in d"),
        ));
    }
    if n == 0 || k == 0 || d == 0 {
        return Err(Error::shape(
            OP,
            format!("z {z:?} and prototypes {protos:?} need N, K, d ≥ 1"),
        ));
    }
    if labels != [n] {
        return Err(Error::shape(
            OP,
            format!("labels {labels:?} must be [{n}] for z {z:?}"),
        ));
    }
    for (what, shape) in [("weights", weights), ("confusion", confusion)] {
        if let Some(s) = shape
            && s != [k, k]
        {
            return Err(Error::shape(
                OP,
                format!("{what} {s:?} must be [{k}, {k}] for prototypes {protos:?}"),
            ));
        }
    }
    if !(tau.is_finite() && tau > 0.0) {
        return Err(Error::invalid(OP, format!("temperature {tau} must be > 0")));
    }
    Ok(ClassAlignSpec {
        n,
        k,
        d,
        inv_tau: 1.0 / tau,
    })
}

struct ClassAlignBackward<B: Backend> {
    z: Var,
    spec: ClassAlignSpec,
    prototypes: B::Buf,
    labels: B::Buf,
    weights: Option<B::Buf>,
    /// Per-row weighted log-normaliser from the forward pass.
    lse: B::Buf,
}

impl<B: Backend> BackwardOp<B> for ClassAlignBackward<B> {
    fn name(&self) -> &'static str {
        OP
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, B>, grad_out: &B::Buf) -> Result<()> {
        let be = ctx.backend().clone();
        let (z_val, dz) = ctx.value_and_grad_mut(self.z, self.z)?;
        let Some(dz) = dz else {
            return Ok(());
        };
        be.class_align_bwd(
            &self.spec,
            z_val.buf(),
            &self.prototypes,
            &self.labels,
            self.weights.as_ref(),
            &self.lse,
            grad_out,
            dz,
        )
    }
}
