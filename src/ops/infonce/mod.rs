//! Fused symmetric InfoNCE loss (METHOD.md §3.1) on the tape.

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub mod kernels;

use crate::autograd::{BackwardCtx, BackwardOp, Tape, Var};
use crate::error::{Error, Result};
use crate::ops::Backend;
use crate::ops::infonce::kernels::{InfoNceGrads, InfoNceLse, InfoNceSpec};
use crate::tensor::Tensor;

/// The symmetric InfoNCE loss of paired embeddings `za [B, d]`, `zv [B, d]`:
/// `½·mean_i[ −log softmax_j(za_i·zv_j/τ)[i] − log softmax_j(zv_i·za_j/τ)[i] ]`,
/// a scalar (shape `[]`).
///
/// The inputs may be any real vectors (the model L2-normalises them first).
/// `tau` is a constant: no gradient flows to it. The `B×B` logits are never
/// stored; the backward recomputes them tile by tile from the saved row and
/// column log-sum-exp, so memory stays `O(B·d)`.
pub fn infonce<B: Backend>(tape: &mut Tape<'_, B>, za: Var, zv: Var, tau: f32) -> Result<Var> {
    let (sa, sv) = (tape.shape(za), tape.shape(zv));
    if sa.len() != 2 || sa != sv || sa[0] == 0 {
        return Err(Error::shape(
            "infonce",
            format!("za {sa:?} and zv {sv:?} must both be [B, d] with B ≥ 1"),
        ));
    }
    if !(tau > 0.0 && tau.is_finite()) {
        return Err(Error::invalid(
            "infonce",
            format!("temperature {tau} is not positive and finite"),
        ));
    }
    let spec = InfoNceSpec {
        batch: sa[0],
        dim: sa[1],
        tau,
    };
    let be = tape.backend().clone();
    let (loss, lse) = be.infonce_fwd(&spec, tape.value(za).buf(), tape.value(zv).buf())?;
    let out = Tensor::from_buf(&be, &[], loss)?;
    Ok(tape.push_op(out, &[za, zv], InfoNceBackward { za, zv, spec, lse }))
}

struct InfoNceBackward<Buf> {
    za: Var,
    zv: Var,
    spec: InfoNceSpec,
    lse: InfoNceLse<Buf>,
}

impl<B: Backend> BackwardOp<B> for InfoNceBackward<B::Buf> {
    fn name(&self) -> &'static str {
        "infonce"
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, B>, grad_out: &B::Buf) -> Result<()> {
        let be = ctx.backend().clone();
        let n = self.spec.batch * self.spec.dim;
        let fresh = |want: bool| -> Result<Option<B::Buf>> {
            if want {
                be.zeros(n).map(Some)
            } else {
                Ok(None)
            }
        };
        // Fresh buffers (taken over without a copy by `accumulate` when they
        // are the first gradient) because the kernel reads both values.
        let mut dza = fresh(ctx.needs_grad(self.za))?;
        let mut dzv = fresh(ctx.needs_grad(self.zv))?;
        be.infonce_bwd(
            &self.spec,
            ctx.value(self.za).buf(),
            ctx.value(self.zv).buf(),
            &self.lse,
            grad_out,
            InfoNceGrads {
                dza: dza.as_mut(),
                dzv: dzv.as_mut(),
            },
        )?;
        if let Some(g) = dza {
            ctx.accumulate(self.za, g)?;
        }
        if let Some(g) = dzv {
            ctx.accumulate(self.zv, g)?;
        }
        Ok(())
    }
}
