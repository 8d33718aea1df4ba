//! Fused multi-head self-attention over packed query/key/value rows.

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub mod kernels;

use crate::autograd::{BackwardCtx, BackwardOp, Tape, Var};
use crate::error::{Error, Result};
use crate::ops::Backend;
use crate::ops::attention::kernels::AttentionSpec;
use crate::tensor::Tensor;

/// Multi-head self-attention `softmax(Q·Kᵀ/sqrt(head_dim))·V` per head,
/// without a mask (every token attends to every token).
///
/// `qkv` is `[batch, seq, 3·heads·head_dim]` as a linear layer produces it:
/// for each token the queries of all heads, then their keys, then their
/// values. The output is `[batch, seq, heads·head_dim]` with the heads
/// concatenated, ready for the output projection. Runs the fused kernel;
/// the backward recomputes the attention weights from a saved log-sum-exp.
pub fn attention<B: Backend>(tape: &mut Tape<'_, B>, qkv: Var, heads: usize) -> Result<Var> {
    let shape = tape.shape(qkv).to_vec();
    let &[batch, seq, packed] = shape.as_slice() else {
        return Err(Error::shape(
            "attention",
            format!("qkv must be [batch, seq, 3·heads·head_dim], got {shape:?}"),
        ));
    };
    if heads == 0 {
        return Err(Error::invalid("attention", "heads must be at least 1"));
    }
    if packed == 0 || packed % (3 * heads) != 0 {
        return Err(Error::shape(
            "attention",
            format!(
                "last dim of qkv {shape:?} must be a positive multiple of 3·heads = {}",
                3 * heads
            ),
        ));
    }
    let spec = AttentionSpec {
        batch,
        seq,
        heads,
        head_dim: packed / (3 * heads),
    };
    let be = tape.backend().clone();
    let mut out = Tensor::zeros(&be, &[batch, seq, spec.width()])?;
    let mut lse = be.zeros(spec.lse_len())?;
    be.attention_fwd(&spec, tape.value(qkv).buf(), out.buf_mut(), &mut lse)?;
    Ok(tape.push_op(out, &[qkv], AttentionBackward { qkv, spec, lse }))
}

struct AttentionBackward<B: Backend> {
    qkv: Var,
    spec: AttentionSpec,
    /// Log-sum-exp of each query's scaled scores, `[batch, heads, seq]`.
    lse: B::Buf,
}

impl<B: Backend> BackwardOp<B> for AttentionBackward<B> {
    fn name(&self) -> &'static str {
        "attention"
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, B>, grad_out: &B::Buf) -> Result<()> {
        if !ctx.needs_grad(self.qkv) {
            return Ok(());
        }
        let be = ctx.backend().clone();
        // The kernel reads two forward values, so it fills a fresh buffer
        // (usually the first gradient qkv receives, taken without a copy).
        let mut grad = be.zeros(self.spec.qkv_len())?;
        be.attention_bwd(
            &self.spec,
            ctx.value(self.qkv).buf(),
            ctx.value(ctx.output()).buf(),
            &self.lse,
            grad_out,
            &mut grad,
        )?;
        ctx.accumulate(self.qkv, grad)
    }
}
