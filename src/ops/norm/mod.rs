//! Row normalisations over the last dim: LayerNorm and L2 normalisation.

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub mod kernels;

use crate::autograd::{BackwardCtx, BackwardOp, Tape, Var};
use crate::error::{Error, Result};
use crate::ops::Backend;
use crate::ops::norm::kernels::{LayerNormNeeds, LayerNormStats, NormSpec};
use crate::tensor::Tensor;

/// The `rows × d` view of `shape` for a normalisation over its last dim,
/// rejecting scalars, empty rows and an `eps` that is not positive.
fn norm_spec(op: &'static str, shape: &[usize], eps: f32) -> Result<NormSpec> {
    let Some((&d, lead)) = shape.split_last() else {
        return Err(Error::shape(op, "x is a scalar; need [..., d]"));
    };
    if d == 0 {
        return Err(Error::shape(
            op,
            format!("x {shape:?} has rows of length 0"),
        ));
    }
    if !(eps > 0.0 && eps.is_finite()) {
        return Err(Error::invalid(
            op,
            format!("eps must be positive and finite, got {eps}"),
        ));
    }
    Ok(NormSpec {
        rows: lead.iter().product(),
        d,
        eps,
    })
}

/// LayerNorm over the last dim: `x [..., d]`, `gamma [d]`, `beta [d]`,
/// `y = (x − mean)/√(var + eps)·gamma + beta` with the biased row variance.
/// Saves each row's mean and reciprocal standard deviation for a fused
/// backward.
pub fn layer_norm<B: Backend>(
    tape: &mut Tape<'_, B>,
    x: Var,
    gamma: Var,
    beta: Var,
    eps: f32,
) -> Result<Var> {
    let shape = tape.shape(x).to_vec();
    let spec = norm_spec("layer_norm", &shape, eps)?;
    for (what, v) in [("gamma", gamma), ("beta", beta)] {
        let s = tape.shape(v);
        if s != [spec.d] {
            return Err(Error::shape(
                "layer_norm",
                format!(
                    "{what} {s:?} does not match the last dim of x {shape:?} (expected [{}])",
                    spec.d
                ),
            ));
        }
    }
    let be = tape.backend().clone();
    let (y, stats) = be.layer_norm_fwd(
        &spec,
        tape.value(x).buf(),
        tape.value(gamma).buf(),
        tape.value(beta).buf(),
    )?;
    let y = Tensor::from_buf(&be, &shape, y)?;
    Ok(tape.push_op(
        y,
        &[x, gamma, beta],
        LayerNormBackward {
            x,
            gamma,
            beta,
            spec,
            stats,
        },
    ))
}

struct LayerNormBackward<Buf> {
    x: Var,
    gamma: Var,
    beta: Var,
    spec: NormSpec,
    stats: LayerNormStats<Buf>,
}

impl<B: Backend> BackwardOp<B> for LayerNormBackward<B::Buf> {
    fn name(&self) -> &'static str {
        "layer_norm"
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, B>, grad_out: &B::Buf) -> Result<()> {
        let be = ctx.backend().clone();
        let needs = LayerNormNeeds {
            dx: ctx.needs_grad(self.x),
            params: ctx.needs_grad(self.gamma) || ctx.needs_grad(self.beta),
        };
        let grads = be.layer_norm_bwd(
            &self.spec,
            ctx.value(self.x).buf(),
            ctx.value(self.gamma).buf(),
            &self.stats,
            grad_out,
            needs,
        )?;
        let pairs = [
            (self.x, grads.dx),
            (self.gamma, grads.dgamma),
            (self.beta, grads.dbeta),
        ];
        for (v, g) in pairs {
            if let Some(g) = g {
                ctx.accumulate(v, g)?;
            }
        }
        Ok(())
    }
}

/// L2 normalisation of each row of `x [..., d]`: `y = x / max(‖x‖, eps)`.
/// Rows with `‖x‖ ≤ eps` are scaled by `1/eps` (and so have norm below 1);
/// their gradient is that of the linear map.
pub fn l2_normalize<B: Backend>(tape: &mut Tape<'_, B>, x: Var, eps: f32) -> Result<Var> {
    let shape = tape.shape(x).to_vec();
    let spec = norm_spec("l2_normalize", &shape, eps)?;
    let be = tape.backend().clone();
    let (y, norms) = be.l2_normalize_fwd(&spec, tape.value(x).buf())?;
    let y = Tensor::from_buf(&be, &shape, y)?;
    Ok(tape.push_op(y, &[x], L2NormalizeBackward { x, spec, norms }))
}

struct L2NormalizeBackward<Buf> {
    x: Var,
    spec: NormSpec,
    norms: Buf,
}

impl<B: Backend> BackwardOp<B> for L2NormalizeBackward<B::Buf> {
    fn name(&self) -> &'static str {
        "l2_normalize"
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, B>, grad_out: &B::Buf) -> Result<()> {
        let be = ctx.backend().clone();
        let dx = be.l2_normalize_bwd(&self.spec, ctx.value(self.x).buf(), &self.norms, grad_out)?;
        ctx.accumulate(self.x, dx)
    }
}
