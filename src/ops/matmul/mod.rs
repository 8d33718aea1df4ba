//! Matrix product with transpose flags, batched or broadcast.

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub mod kernels;

use crate::autograd::{BackwardCtx, BackwardOp, Tape, Var};
use crate::error::{Error, Result};
use crate::ops::Backend;
use crate::ops::matmul::kernels::GemmSpec;
use crate::tensor::Tensor;

/// How the operands of a [`matmul`] are laid out, resolved from their shapes.
#[derive(Clone, Copy, Debug)]
struct Layout {
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
    /// B is one matrix shared by every batch entry.
    b_shared: bool,
}

impl Layout {
    fn spec(&self) -> GemmSpec {
        let stride_b = if self.b_shared { 0 } else { self.k * self.n };
        GemmSpec::new(self.m, self.n, self.k)
            .transposed(self.trans_a, self.trans_b)
            .batched(self.batch, self.m * self.k, stride_b, self.m * self.n)
    }
}

fn resolve(a: &[usize], b: &[usize], trans_a: bool, trans_b: bool) -> Result<(Layout, Vec<usize>)> {
    let bad = || {
        Error::shape(
            "matmul",
            format!("cannot multiply {a:?} (trans {trans_a}) by {b:?} (trans {trans_b})"),
        )
    };
    let (bk, bn) = match *b {
        [.., r, c] if b.len() >= 2 => {
            if trans_b {
                (c, r)
            } else {
                (r, c)
            }
        }
        _ => return Err(bad()),
    };
    if b.len() == 2 {
        // A linear map: fold every leading dim of A into its rows.
        let (m, k) = match *a {
            [r, c] if trans_a => (c, r),
            [.., c] if !trans_a && !a.is_empty() => (a[..a.len() - 1].iter().product(), c),
            _ => return Err(bad()),
        };
        if k != bk {
            return Err(bad());
        }
        let mut out = a[..a.len() - 1].to_vec();
        if trans_a {
            out = vec![m];
        }
        out.push(bn);
        let layout = Layout {
            batch: 1,
            m,
            n: bn,
            k,
            trans_a,
            trans_b,
            b_shared: true,
        };
        return Ok((layout, out));
    }
    if a.len() != 3 || b.len() != 3 || a[0] != b[0] {
        return Err(bad());
    }
    let (m, k) = if trans_a { (a[2], a[1]) } else { (a[1], a[2]) };
    if k != bk {
        return Err(bad());
    }
    let layout = Layout {
        batch: a[0],
        m,
        n: bn,
        k,
        trans_a,
        trans_b,
        b_shared: false,
    };
    Ok((layout, vec![a[0], m, bn]))
}

/// `op(a)·op(b)`, where `op` transposes the last two dims when its flag is set.
///
/// Shapes: `a [.., m, k]` with `b [k, n]` (a linear map over every leading
/// dim of `a`; `trans_a` then needs a 2-D `a`), or `a [batch, m, k]` with
/// `b [batch, k, n]` (batched). Output `[.., m, n]`.
pub fn matmul<B: Backend>(
    tape: &mut Tape<'_, B>,
    a: Var,
    b: Var,
    trans_a: bool,
    trans_b: bool,
) -> Result<Var> {
    let (layout, out_shape) = resolve(tape.shape(a), tape.shape(b), trans_a, trans_b)?;
    let be = tape.backend().clone();
    let mut out = Tensor::zeros(&be, &out_shape)?;
    be.gemm(
        &layout.spec(),
        tape.value(a).buf(),
        tape.value(b).buf(),
        out.buf_mut(),
    )?;
    Ok(tape.push_op(out, &[a, b], MatmulBackward { a, b, layout }))
}

struct MatmulBackward {
    a: Var,
    b: Var,
    layout: Layout,
}

impl<B: Backend> BackwardOp<B> for MatmulBackward {
    fn name(&self) -> &'static str {
        "matmul"
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, B>, grad_out: &B::Buf) -> Result<()> {
        let l = self.layout;
        let be = ctx.backend().clone();
        let (m, n, k) = (l.m, l.n, l.k);
        let stride_b = if l.b_shared { 0 } else { k * n };
        if ctx.needs_grad(self.a) {
            // dA = dC·op(B)ᵀ, or its transpose op(B)·dCᵀ when A is stored transposed.
            let spec = if l.trans_a {
                GemmSpec::new(k, m, n).transposed(l.trans_b, true).batched(
                    l.batch,
                    stride_b,
                    m * n,
                    m * k,
                )
            } else {
                GemmSpec::new(m, k, n)
                    .transposed(false, !l.trans_b)
                    .batched(l.batch, m * n, stride_b, m * k)
            };
            let (b_val, ga) = ctx.value_and_grad_mut(self.b, self.a)?;
            if let Some(ga) = ga {
                if l.trans_a {
                    be.gemm(&spec.beta(1.0), b_val.buf(), grad_out, ga)?;
                } else {
                    be.gemm(&spec.beta(1.0), grad_out, b_val.buf(), ga)?;
                }
            }
        }
        if ctx.needs_grad(self.b) {
            // dB = op(A)ᵀ·dC, or dCᵀ·op(A) when B is stored transposed. A
            // shared B sums over the batch, which the fold into rows already did.
            let spec = if l.trans_b {
                GemmSpec::new(n, k, m).transposed(true, l.trans_a).batched(
                    l.batch,
                    m * n,
                    m * k,
                    stride_b.max(n * k),
                )
            } else {
                GemmSpec::new(k, n, m)
                    .transposed(!l.trans_a, false)
                    .batched(l.batch, m * k, m * n, stride_b.max(k * n))
            };
            let (a_val, gb) = ctx.value_and_grad_mut(self.a, self.b)?;
            if let Some(gb) = gb {
                if l.trans_b {
                    be.gemm(&spec.beta(1.0), grad_out, a_val.buf(), gb)?;
                } else {
                    be.gemm(&spec.beta(1.0), a_val.buf(), grad_out, gb)?;
                }
            }
        }
        Ok(())
    }
}
