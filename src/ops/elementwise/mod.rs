//! Elementwise ops: residual add, bias add, broadcast add over the batch,
//! scaling, GELU and the logistic sigmoid.

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub mod kernels;

use crate::autograd::{BackwardCtx, BackwardOp, Tape, Var};
use crate::error::{Error, Result};
use crate::ops::Backend;
use crate::tensor::Tensor;

/// `a + b` for tensors of the same shape (residual connections).
pub fn add<B: Backend>(tape: &mut Tape<'_, B>, a: Var, b: Var) -> Result<Var> {
    let (sa, sb) = (tape.shape(a), tape.shape(b));
    if sa != sb {
        return Err(Error::shape(
            "add",
            format!("cannot add {sa:?} and {sb:?}: shapes differ"),
        ));
    }
    let shape = sa.to_vec();
    let be = tape.backend().clone();
    let out = be.add(tape.value(a).buf(), tape.value(b).buf())?;
    let out = Tensor::from_buf(&be, &shape, out)?;
    Ok(tape.push_op(out, &[a, b], AddBackward { a, b }))
}

struct AddBackward {
    a: Var,
    b: Var,
}

impl<B: Backend> BackwardOp<B> for AddBackward {
    fn name(&self) -> &'static str {
        "add"
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, B>, grad_out: &B::Buf) -> Result<()> {
        let be = ctx.backend().clone();
        for v in [self.a, self.b] {
            if ctx.needs_grad(v) {
                ctx.accumulate(v, be.duplicate(grad_out)?)?;
            }
        }
        Ok(())
    }
}

/// `x + bias` with `x [..., d]` and `bias [d]` added to every row.
pub fn bias_add<B: Backend>(tape: &mut Tape<'_, B>, x: Var, bias: Var) -> Result<Var> {
    let (sx, sb) = (tape.shape(x), tape.shape(bias));
    let Some((&d, lead)) = sx.split_last() else {
        return Err(Error::shape(
            "bias_add",
            format!("x {sx:?} has no last dim to add bias {sb:?} to"),
        ));
    };
    if sb != [d] {
        return Err(Error::shape(
            "bias_add",
            format!("bias {sb:?} does not match the last dim of x {sx:?} (expected [{d}])"),
        ));
    }
    let rows = lead.iter().product();
    row_add(tape, x, bias, rows, d, "bias_add")
}

/// `x + e` with `x [B, rest...]` and `e [rest...]` added to every batch entry
/// (learned position and modality-type embeddings). The gradient of `e` sums
/// over the batch.
pub fn broadcast_add<B: Backend>(tape: &mut Tape<'_, B>, x: Var, e: Var) -> Result<Var> {
    let (sx, se) = (tape.shape(x), tape.shape(e));
    let Some((&batch, rest)) = sx.split_first() else {
        return Err(Error::shape(
            "broadcast_add",
            format!("x {sx:?} has no batch dim to broadcast {se:?} over"),
        ));
    };
    if se != rest {
        return Err(Error::shape(
            "broadcast_add",
            format!("e {se:?} does not match x {sx:?} without its batch dim (expected {rest:?})"),
        ));
    }
    let d = rest.iter().product();
    row_add(tape, x, e, batch, d, "broadcast_add")
}

/// `x [rows × d] + row [d]` on the tape, shapes already checked.
fn row_add<B: Backend>(
    tape: &mut Tape<'_, B>,
    x: Var,
    row: Var,
    rows: usize,
    d: usize,
    name: &'static str,
) -> Result<Var> {
    let shape = tape.shape(x).to_vec();
    let be = tape.backend().clone();
    let out = be.add_row(tape.value(x).buf(), tape.value(row).buf(), rows, d)?;
    let out = Tensor::from_buf(&be, &shape, out)?;
    Ok(tape.push_op(
        out,
        &[x, row],
        RowAddBackward {
            x,
            row,
            rows,
            d,
            name,
        },
    ))
}

struct RowAddBackward {
    x: Var,
    row: Var,
    rows: usize,
    d: usize,
    name: &'static str,
}

impl<B: Backend> BackwardOp<B> for RowAddBackward {
    fn name(&self) -> &'static str {
        self.name
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, B>, grad_out: &B::Buf) -> Result<()> {
        let be = ctx.backend().clone();
        if ctx.needs_grad(self.row) {
            ctx.accumulate(self.row, be.sum_rows(grad_out, self.rows, self.d)?)?;
        }
        if ctx.needs_grad(self.x) {
            ctx.accumulate(self.x, be.duplicate(grad_out)?)?;
        }
        Ok(())
    }
}

/// `c·x`.
pub fn scale<B: Backend>(tape: &mut Tape<'_, B>, x: Var, c: f32) -> Result<Var> {
    let shape = tape.shape(x).to_vec();
    let be = tape.backend().clone();
    let out = be.scaled(tape.value(x).buf(), c)?;
    let out = Tensor::from_buf(&be, &shape, out)?;
    Ok(tape.push_op(out, &[x], ScaleBackward { x, c }))
}

struct ScaleBackward {
    x: Var,
    c: f32,
}

impl<B: Backend> BackwardOp<B> for ScaleBackward {
    fn name(&self) -> &'static str {
        "scale"
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, B>, grad_out: &B::Buf) -> Result<()> {
        let be = ctx.backend().clone();
        ctx.accumulate(self.x, be.scaled(grad_out, self.c)?)
    }
}

/// GELU, elementwise, in the tanh approximation used by GPT-2 and llm.c:
/// `½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`. It is within about 1e-3 of
/// the exact `x·Φ(x)`, cheaper, and the backward is the exact derivative of
/// this approximation (so gradient checks of the op hold to f32 precision).
pub fn gelu<B: Backend>(tape: &mut Tape<'_, B>, x: Var) -> Result<Var> {
    let shape = tape.shape(x).to_vec();
    let be = tape.backend().clone();
    let out = be.gelu_fwd(tape.value(x).buf())?;
    let out = Tensor::from_buf(&be, &shape, out)?;
    Ok(tape.push_op(out, &[x], GeluBackward { x }))
}

struct GeluBackward {
    x: Var,
}

impl<B: Backend> BackwardOp<B> for GeluBackward {
    fn name(&self) -> &'static str {
        "gelu"
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, B>, grad_out: &B::Buf) -> Result<()> {
        let be = ctx.backend().clone();
        let dx = be.gelu_bwd(ctx.value(self.x).buf(), grad_out)?;
        ctx.accumulate(self.x, dx)
    }
}

/// The logistic sigmoid `σ(x) = 1 / (1 + e^(−x))`, elementwise (the AMFM
/// gate). The backward uses the saved output: `σ'(x) = σ(x)·(1 − σ(x))`.
pub fn sigmoid<B: Backend>(tape: &mut Tape<'_, B>, x: Var) -> Result<Var> {
    let shape = tape.shape(x).to_vec();
    let be = tape.backend().clone();
    let out = be.sigmoid_fwd(tape.value(x).buf())?;
    let out = Tensor::from_buf(&be, &shape, out)?;
    Ok(tape.push_op(out, &[x], SigmoidBackward { x }))
}

struct SigmoidBackward {
    x: Var,
}

impl<B: Backend> BackwardOp<B> for SigmoidBackward {
    fn name(&self) -> &'static str {
        "sigmoid"
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, B>, grad_out: &B::Buf) -> Result<()> {
        let be = ctx.backend().clone();
        let dx = be.sigmoid_bwd(ctx.value(ctx.output()).buf(), grad_out)?;
        ctx.accumulate(self.x, dx)
    }
}
