//! Softmax cross-entropy with integer class targets on the tape.

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub mod kernels;

use crate::autograd::{BackwardCtx, BackwardOp, Tape, Var};
use crate::error::{Error, Result};
use crate::ops::Backend;
use crate::ops::cross_entropy::kernels::CrossEntropySpec;
use crate::tensor::Tensor;

/// Largest class count whose indices f32 holds exactly.
const MAX_CLASSES: usize = 1 << 24;

/// `mean_n −log softmax(scale·logits_n)[targets[n]]` for `logits [N, C]` and
/// `N` class indices: a scalar (shape `[]`).
///
/// The targets are uploaded once to the backend (as f32 indices), so the
/// backward needs no host copy. Errors if a target is not below `C`, naming
/// the row.
pub fn cross_entropy<B: Backend>(
    tape: &mut Tape<'_, B>,
    logits: Var,
    targets: &[usize],
    scale: f32,
) -> Result<Var> {
    let shape = tape.shape(logits);
    let (rows, classes) = match *shape {
        [n, c] if n == targets.len() && n > 0 && c > 0 => (n, c),
        _ => {
            return Err(Error::shape(
                "cross_entropy",
                format!(
                    "logits {shape:?} must be [N, C] with C ≥ 1 and N = {} targets ≥ 1",
                    targets.len()
                ),
            ));
        }
    };
    if classes > MAX_CLASSES {
        return Err(Error::invalid(
            "cross_entropy",
            format!("{classes} classes exceed the supported {MAX_CLASSES}"),
        ));
    }
    if let Some((row, &t)) = targets.iter().enumerate().find(|&(_, &t)| t >= classes) {
        return Err(Error::invalid(
            "cross_entropy",
            format!("target {t} of row {row} is not below the {classes} classes"),
        ));
    }
    if !scale.is_finite() {
        return Err(Error::invalid(
            "cross_entropy",
            format!("logit scale {scale} is not finite"),
        ));
    }
    let spec = CrossEntropySpec {
        rows,
        classes,
        scale,
    };
    let be = tape.backend().clone();
    let host: Vec<f32> = targets.iter().map(|&t| t as f32).collect();
    let targets = be.upload(&host)?;
    let (loss, lse) = be.cross_entropy_fwd(&spec, tape.value(logits).buf(), &targets)?;
    let out = Tensor::from_buf(&be, &[], loss)?;
    let backward = CrossEntropyBackward {
        logits,
        spec,
        targets,
        lse,
    };
    Ok(tape.push_op(out, &[logits], backward))
}

struct CrossEntropyBackward<Buf> {
    logits: Var,
    spec: CrossEntropySpec,
    targets: Buf,
    lse: Buf,
}

impl<B: Backend> BackwardOp<B> for CrossEntropyBackward<B::Buf> {
    fn name(&self) -> &'static str {
        "cross_entropy"
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, B>, grad_out: &B::Buf) -> Result<()> {
        let be = ctx.backend().clone();
        let (x, dx) = ctx.value_and_grad_mut(self.logits, self.logits)?;
        if let Some(dx) = dx {
            be.cross_entropy_bwd(&self.spec, x.buf(), &self.targets, &self.lse, grad_out, dx)?;
        }
        Ok(())
    }
}
