//! Softmax over the last dimension.

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub mod kernels;

use crate::autograd::{BackwardCtx, BackwardOp, Tape, Var};
use crate::error::{Error, Result};
use crate::ops::Backend;
use crate::tensor::Tensor;

/// `softmax(x)` over the last dimension, computed stably; any leading dims
/// are independent rows. The output has the shape of `x`.
pub fn softmax<B: Backend>(tape: &mut Tape<'_, B>, x: Var) -> Result<Var> {
    let shape = tape.shape(x).to_vec();
    let Some((&cols, lead)) = shape.split_last() else {
        return Err(Error::shape(
            "softmax",
            "needs at least one dimension, got a scalar []",
        ));
    };
    let rows = lead.iter().product();
    let be = tape.backend().clone();
    let mut y = Tensor::zeros(&be, &shape)?;
    be.softmax_fwd(rows, cols, tape.value(x).buf(), y.buf_mut())?;
    Ok(tape.push_op(y, &[x], SoftmaxBackward { x, rows, cols }))
}

struct SoftmaxBackward {
    x: Var,
    rows: usize,
    cols: usize,
}

impl<B: Backend> BackwardOp<B> for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "softmax"
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, B>, grad_out: &B::Buf) -> Result<()> {
        let be = ctx.backend().clone();
        let output = ctx.output();
        let (y, dx) = ctx.value_and_grad_mut(output, self.x)?;
        if let Some(dx) = dx {
            be.softmax_bwd(self.rows, self.cols, y.buf(), grad_out, dx)?;
        }
        Ok(())
    }
}
