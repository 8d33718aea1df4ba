//! Token layout: mean pooling, concatenation and slicing along the token
//! axis, reshape, and patch / tubelet extraction from spectrograms and clips.
//!
//! Token tensors are row-major `[batch, tokens, width]`.

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub mod kernels;

use crate::autograd::{BackwardCtx, BackwardOp, Tape, Var};
use crate::error::{Error, Result};
use crate::ops::Backend;
use crate::ops::tokens::kernels::{PatchSpec, TokenBlock};
use crate::tensor::Tensor;

/// `(batch, tokens, width)` of a 3-D token tensor.
fn token_dims(op: &'static str, shape: &[usize]) -> Result<(usize, usize, usize)> {
    match *shape {
        [b, t, d] => Ok((b, t, d)),
        _ => Err(Error::shape(
            op,
            format!("expected tokens [batch, tokens, width], got {shape:?}"),
        )),
    }
}

/// Mean over the token axis: `[B, T, d] → [B, d]`. Needs `T ≥ 1`.
pub fn mean_pool<B: Backend>(tape: &mut Tape<'_, B>, x: Var) -> Result<Var> {
    let (batch, tokens, width) = token_dims("mean_pool", tape.shape(x))?;
    if tokens == 0 {
        return Err(Error::shape(
            "mean_pool",
            format!("cannot average zero tokens of {:?}", tape.shape(x)),
        ));
    }
    let be = tape.backend().clone();
    let mut out = Tensor::zeros(&be, &[batch, width])?;
    be.mean_tokens(batch, tokens, width, tape.value(x).buf(), out.buf_mut())?;
    Ok(tape.push_op(
        out,
        &[x],
        MeanPoolBackward {
            x,
            batch,
            tokens,
            width,
        },
    ))
}

struct MeanPoolBackward {
    x: Var,
    batch: usize,
    tokens: usize,
    width: usize,
}

impl<B: Backend> BackwardOp<B> for MeanPoolBackward {
    fn name(&self) -> &'static str {
        "mean_pool"
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, B>, grad_out: &B::Buf) -> Result<()> {
        let be = ctx.backend().clone();
        if let Some(gx) = ctx.grad_mut(self.x)? {
            be.mean_tokens_backward(self.batch, self.tokens, self.width, grad_out, gx)?;
        }
        Ok(())
    }
}

/// Concatenates token tensors `[B, T_i, d]` along the token axis into
/// `[B, ΣT_i, d]`. All inputs must share `B` and `d`.
pub fn concat_tokens<B: Backend>(tape: &mut Tape<'_, B>, xs: &[Var]) -> Result<Var> {
    let Some(&first) = xs.first() else {
        return Err(Error::invalid("concat_tokens", "no inputs to concatenate"));
    };
    let (batch, _, width) = token_dims("concat_tokens", tape.shape(first))?;
    let mut parts = Vec::with_capacity(xs.len());
    let mut total = 0usize;
    for &x in xs {
        let dims = token_dims("concat_tokens", tape.shape(x))?;
        if dims.0 != batch || dims.2 != width {
            let shapes: Vec<&[usize]> = xs.iter().map(|&v| tape.shape(v)).collect();
            return Err(Error::shape(
                "concat_tokens",
                format!("inputs must share batch and width, got {shapes:?}"),
            ));
        }
        parts.push((x, total, dims.1));
        total += dims.1;
    }
    let be = tape.backend().clone();
    let mut out = Tensor::zeros(&be, &[batch, total, width])?;
    for &(x, start, len) in &parts {
        let block = TokenBlock {
            batch,
            width,
            src_tokens: len,
            src_start: 0,
            dst_tokens: total,
            dst_start: start,
            len,
        };
        be.copy_tokens(&block, false, tape.value(x).buf(), out.buf_mut())?;
    }
    let inputs: Vec<Var> = xs.to_vec();
    Ok(tape.push_op(
        out,
        &inputs,
        ConcatBackward {
            parts,
            batch,
            total,
            width,
        },
    ))
}

struct ConcatBackward {
    /// `(input, first output token, tokens)` per input.
    parts: Vec<(Var, usize, usize)>,
    batch: usize,
    total: usize,
    width: usize,
}

impl<B: Backend> BackwardOp<B> for ConcatBackward {
    fn name(&self) -> &'static str {
        "concat_tokens"
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, B>, grad_out: &B::Buf) -> Result<()> {
        let be = ctx.backend().clone();
        for &(x, start, len) in &self.parts {
            if let Some(gx) = ctx.grad_mut(x)? {
                let block = TokenBlock {
                    batch: self.batch,
                    width: self.width,
                    src_tokens: self.total,
                    src_start: start,
                    dst_tokens: len,
                    dst_start: 0,
                    len,
                };
                be.copy_tokens(&block, true, grad_out, gx)?;
            }
        }
        Ok(())
    }
}

/// Tokens `start..start + len` of `x [B, T, d]`: `[B, len, d]` (a copy).
/// Needs `len ≥ 1` and `start + len ≤ T`.
pub fn narrow_tokens<B: Backend>(
    tape: &mut Tape<'_, B>,
    x: Var,
    start: usize,
    len: usize,
) -> Result<Var> {
    let (batch, tokens, width) = token_dims("narrow_tokens", tape.shape(x))?;
    if len == 0 || start.checked_add(len).is_none_or(|end| end > tokens) {
        return Err(Error::shape(
            "narrow_tokens",
            format!(
                "cannot take {len} tokens from token {start} of {:?}",
                tape.shape(x)
            ),
        ));
    }
    let be = tape.backend().clone();
    let mut out = Tensor::zeros(&be, &[batch, len, width])?;
    let block = TokenBlock {
        batch,
        width,
        src_tokens: tokens,
        src_start: start,
        dst_tokens: len,
        dst_start: 0,
        len,
    };
    be.copy_tokens(&block, false, tape.value(x).buf(), out.buf_mut())?;
    // The backward adds the gradient back into the same token range.
    let back = TokenBlock {
        src_tokens: len,
        src_start: 0,
        dst_tokens: tokens,
        dst_start: start,
        ..block
    };
    Ok(tape.push_op(out, &[x], NarrowBackward { x, block: back }))
}

struct NarrowBackward {
    x: Var,
    /// From the output gradient into the input gradient's token range.
    block: TokenBlock,
}

impl<B: Backend> BackwardOp<B> for NarrowBackward {
    fn name(&self) -> &'static str {
        "narrow_tokens"
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, B>, grad_out: &B::Buf) -> Result<()> {
        let be = ctx.backend().clone();
        if let Some(gx) = ctx.grad_mut(self.x)? {
            be.copy_tokens(&self.block, true, grad_out, gx)?;
        }
        Ok(())
    }
}

/// Splits `x [B, T, d]` at token `at` into `[B, at, d]` and `[B, T − at, d]`
/// (two [`narrow_tokens`]). Needs `0 < at < T`.
pub fn split_tokens<B: Backend>(tape: &mut Tape<'_, B>, x: Var, at: usize) -> Result<(Var, Var)> {
    let (_, tokens, _) = token_dims("split_tokens", tape.shape(x))?;
    if at == 0 || at >= tokens {
        return Err(Error::shape(
            "split_tokens",
            format!(
                "split point {at} must leave tokens on both sides of {:?}",
                tape.shape(x)
            ),
        ));
    }
    let head = narrow_tokens(tape, x, 0, at)?;
    let tail = narrow_tokens(tape, x, at, tokens - at)?;
    Ok((head, tail))
}

/// The same elements under `new_shape` (same element count). The tape owns
/// its values, so the output is a copy; the backward passes the gradient through.
pub fn reshape<B: Backend>(tape: &mut Tape<'_, B>, x: Var, new_shape: &[usize]) -> Result<Var> {
    let old = tape.shape(x);
    if old.iter().product::<usize>() != new_shape.iter().product::<usize>() {
        return Err(Error::shape(
            "reshape",
            format!(
                "cannot reshape {old:?} ({} elements) to {new_shape:?} ({} elements)",
                old.iter().product::<usize>(),
                new_shape.iter().product::<usize>()
            ),
        ));
    }
    let be = tape.backend().clone();
    let out = tape.value(x).duplicate(&be)?.reshaped(new_shape)?;
    Ok(tape.push_op(out, &[x], ReshapeBackward { x }))
}

struct ReshapeBackward {
    x: Var,
}

impl<B: Backend> BackwardOp<B> for ReshapeBackward {
    fn name(&self) -> &'static str {
        "reshape"
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, B>, grad_out: &B::Buf) -> Result<()> {
        if ctx.needs_grad(self.x) {
            let g = ctx.backend().duplicate(grad_out)?;
            ctx.accumulate(self.x, g)?;
        }
        Ok(())
    }
}

/// Runs the patchify kernel and records its backward (the inverse scatter).
fn patchify_op<B: Backend>(
    tape: &mut Tape<'_, B>,
    x: Var,
    spec: PatchSpec,
    name: &'static str,
) -> Result<Var> {
    let be = tape.backend().clone();
    let mut out = Tensor::zeros(&be, &[spec.batch, spec.num_patches(), spec.patch_len()])?;
    be.patchify(&spec, tape.value(x).buf(), out.buf_mut())?;
    Ok(tape.push_op(out, &[x], PatchifyBackward { x, spec, name }))
}

/// Non-overlapping `p×p` patches of log-mel spectrograms `x [B, F, T]`
/// (`F` mel bins, `T` frames): `[B, (F/p)·(T/p), p·p]`, patches in row-major
/// grid order (frequency-major, then time), each flattened row-major.
/// `F` and `T` must be multiples of `p` (the caller pads or crops).
pub fn patchify_spectrogram<B: Backend>(tape: &mut Tape<'_, B>, x: Var, p: usize) -> Result<Var> {
    const OP: &str = "patchify_spectrogram";
    let shape = tape.shape(x);
    let [batch, bins, frames] = *shape else {
        return Err(Error::shape(
            OP,
            format!("expected a spectrogram [batch, mel bins, frames], got {shape:?}"),
        ));
    };
    if p == 0 || bins == 0 || frames == 0 || !bins.is_multiple_of(p) || !frames.is_multiple_of(p) {
        return Err(Error::shape(
            OP,
            format!("spectrogram {shape:?} does not split into {p}x{p} patches (pad or crop)"),
        ));
    }
    let spec = PatchSpec {
        batch,
        frames: 1,
        channels: 1,
        height: bins,
        width: frames,
        tubelet: 1,
        patch: p,
    };
    patchify_op(tape, x, spec, OP)
}

/// Non-overlapping tubelets of `t` frames × `p×p` pixels of clips
/// `x [B, T, C, H, W]` (usually `H = W = S`):
/// `[B, (T/t)·(H/p)·(W/p), t·C·p·p]`, tubelets in grid order (time, row,
/// column), each flattened in (frame, channel, row, column) order.
/// `T` must be a multiple of `t`, `H` and `W` of `p`.
pub fn patchify_video<B: Backend>(
    tape: &mut Tape<'_, B>,
    x: Var,
    t: usize,
    p: usize,
) -> Result<Var> {
    const OP: &str = "patchify_video";
    let shape = tape.shape(x);
    let [batch, frames, channels, height, width] = *shape else {
        return Err(Error::shape(
            OP,
            format!("expected clips [batch, frames, channels, height, width], got {shape:?}"),
        ));
    };
    let fits = |n: usize, k: usize| k > 0 && n > 0 && n.is_multiple_of(k);
    if !fits(frames, t) || !fits(height, p) || !fits(width, p) || channels == 0 {
        return Err(Error::shape(
            OP,
            format!("clips {shape:?} do not split into {t}-frame tubelets of {p}x{p} patches"),
        ));
    }
    let spec = PatchSpec {
        batch,
        frames,
        channels,
        height,
        width,
        tubelet: t,
        patch: p,
    };
    patchify_op(tape, x, spec, OP)
}

struct PatchifyBackward {
    x: Var,
    spec: PatchSpec,
    name: &'static str,
}

impl<B: Backend> BackwardOp<B> for PatchifyBackward {
    fn name(&self) -> &'static str {
        self.name
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, B>, grad_out: &B::Buf) -> Result<()> {
        let be = ctx.backend().clone();
        if let Some(gx) = ctx.grad_mut(self.x)? {
            be.unpatchify_add(&self.spec, grad_out, gx)?;
        }
        Ok(())
    }
}
