//! Co-correlation guided alignment loss (METHOD.md §4, docs/METHOD-NOTES.md)
//! on the tape.

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub mod kernels;

use crate::autograd::{BackwardCtx, BackwardOp, Tape, Var};
use crate::error::{Error, Result};
use crate::ops::Backend;
use crate::ops::cgra::kernels::{CGRA_EPS, CgraGrads, CgraSaved, CgraSpec};
use crate::tensor::Tensor;

/// The CGRA loss of audio tokens `ha [B, Ta, d]` and video tokens
/// `hv [B, Tv, d]`, a scalar (shape `[]`):
/// `mean_b[(1 − cos(mean_i A_i, mean_j Ṽ_j)) + (1 − cos(mean_j V_j, mean_i Ã_i))]`
/// with `M = norm(A)·norm(V)ᵀ`, `Ã = softmax_row(M/τ)·V`,
/// `Ṽ = softmax_col(M/τ)ᵀ·A` per clip (rows normalised as `x / max(‖x‖, ε)`,
/// `ε` = [`CGRA_EPS`], also the floor of the cosines' norms).
///
/// `tau` is the softmax temperature of the co-correlation (1 in the plain
/// formulation; a constant, no gradient). Gradients flow into both inputs
/// through every path. The loss lies in `[0, 4]`.
pub fn cgra_loss<B: Backend>(tape: &mut Tape<'_, B>, ha: Var, hv: Var, tau: f32) -> Result<Var> {
    let (sa, sv) = (tape.shape(ha).to_vec(), tape.shape(hv).to_vec());
    let spec = match (sa.as_slice(), sv.as_slice()) {
        (&[b, ta, d], &[bv, tv, dv]) if b == bv && d == dv && b * ta * tv * d > 0 => CgraSpec {
            batch: b,
            ta,
            tv,
            dim: d,
            tau,
            eps: CGRA_EPS,
        },
        _ => {
            return Err(Error::shape(
                "cgra_loss",
                format!(
                    "ha {sa:?} and hv {sv:?} must be [B, Ta, d] and [B, Tv, d] with the same B \
                     and d, all at least 1"
                ),
            ));
        }
    };
    if !(tau > 0.0 && tau.is_finite()) {
        return Err(Error::invalid(
            "cgra_loss",
            format!("temperature {tau} is not positive and finite"),
        ));
    }
    let be = tape.backend().clone();
    let (loss, saved) = be.cgra_fwd(&spec, tape.value(ha).buf(), tape.value(hv).buf())?;
    let out = Tensor::from_buf(&be, &[], loss)?;
    Ok(tape.push_op(
        out,
        &[ha, hv],
        CgraBackward {
            ha,
            hv,
            spec,
            saved,
        },
    ))
}

struct CgraBackward<Buf> {
    ha: Var,
    hv: Var,
    spec: CgraSpec,
    saved: CgraSaved<Buf>,
}

impl<B: Backend> BackwardOp<B> for CgraBackward<B::Buf> {
    fn name(&self) -> &'static str {
        "cgra_loss"
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, B>, grad_out: &B::Buf) -> Result<()> {
        let be = ctx.backend().clone();
        let s = &self.spec;
        let fresh = |want: bool, n: usize| -> Result<Option<B::Buf>> {
            if want {
                be.zeros(n).map(Some)
            } else {
                Ok(None)
            }
        };
        // Fresh buffers because the kernel reads both values.
        let mut dha = fresh(ctx.needs_grad(self.ha), s.batch * s.ta * s.dim)?;
        let mut dhv = fresh(ctx.needs_grad(self.hv), s.batch * s.tv * s.dim)?;
        be.cgra_bwd(
            s,
            ctx.value(self.ha).buf(),
            ctx.value(self.hv).buf(),
            &self.saved,
            grad_out,
            CgraGrads {
                dha: dha.as_mut(),
                dhv: dhv.as_mut(),
            },
        )?;
        if let Some(g) = dha {
            ctx.accumulate(self.ha, g)?;
        }
        if let Some(g) = dhv {
            ctx.accumulate(self.hv, g)?;
        }
        Ok(())
    }
}
