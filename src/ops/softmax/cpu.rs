//! Row-wise softmax on the CPU, and the vectorisable exponential that the
//! attention kernels share.

use rayon::prelude::*;

use crate::backend::cpu::{CpuBackend, PARALLEL_MIN_ELEMS, check_len};
use crate::error::Result;
use crate::ops::softmax::kernels::SoftmaxKernels;

/// Independent accumulators in the row reductions, so the compiler can keep
/// them in one vector register.
const LANES: usize = 16;

/// `exp(x)` to about 2 ulp for `x` in `[-87, 88]`, written without branches or
/// calls so that loops over slices vectorise. Inputs below −87 give
/// `exp(−87)` (about 1.6e-38) instead of a subnormal or zero; NaN stays NaN.
#[inline(always)]
fn fast_exp(x: f32) -> f32 {
    const LO: f32 = -87.0;
    const HI: f32 = 88.0;
    // 1.5·2²³: adding it rounds a float of magnitude < 2²² to an integer,
    // which then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    // ln 2 split so that `n·LN2_HI` is exact (Cody–Waite).
    const LN2_HI: f32 = 0.693_359_4; // exactly 355/512 as an f32
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(LO, HI);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    // Taylor series of exp on |r| ≤ ln2/2; the degree-7 term is below 1.2e-7.
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let exponent = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let two_n = f32::from_bits(exponent.wrapping_add(127) << 23);
    p * two_n
}

/// Runs `f` compiled for AVX2 when the CPU has it (the closure is inlined
/// into a function with those features enabled, so the slice loops it calls
/// use 8-wide vectors), otherwise as built.
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: `avx2` only needs the AVX2 instructions it was compiled
            // for, and the CPU was just checked to support them.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// The largest element of a non-empty row (NaN-free rows; a NaN is skipped
/// here but still propagates through [`exp_shift_sum`]).
#[inline(always)]
pub(crate) fn row_max(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    chunks
        .remainder()
        .iter()
        .chain(&acc)
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// Replaces each `v` in `row` by `exp(v − shift)` and returns their sum.
#[inline(always)]
pub(crate) fn exp_shift_sum(row: &mut [f32], shift: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *v = fast_exp(*v - shift);
            *a += *v;
        }
    }
    let mut sum = 0.0f32;
    for v in chunks.into_remainder() {
        *v = fast_exp(*v - shift);
        sum += *v;
    }
    sum + acc.iter().sum::<f32>()
}

/// `Σ a·b` over two equally long slices.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for ((s, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    tail + acc.iter().sum::<f32>()
}

#[inline(always)]
fn softmax_row(x: &[f32], y: &mut [f32]) {
    y.copy_from_slice(x);
    let sum = exp_shift_sum(y, row_max(x));
    let inv = 1.0 / sum;
    y.iter_mut().for_each(|v| *v *= inv);
}

#[inline(always)]
fn softmax_grad_row(y: &[f32], dy: &[f32], dx: &mut [f32]) {
    let s = dot(y, dy);
    for ((dx, &y), &dy) in dx.iter_mut().zip(y).zip(dy) {
        *dx += y * (dy - s);
    }
}

/// Rows per rayon task: enough elements that a task outweighs its overhead.
fn rows_per_task(rows: usize, cols: usize) -> usize {
    (PARALLEL_MIN_ELEMS / 4 / cols.max(1)).clamp(1, rows.max(1))
}

impl SoftmaxKernels for CpuBackend {
    fn softmax_fwd(&self, rows: usize, cols: usize, x: &Vec<f32>, y: &mut Vec<f32>) -> Result<()> {
        let n = rows * cols;
        check_len("softmax", "x", x, n)?;
        check_len("softmax", "y", y, n)?;
        if n == 0 {
            return Ok(());
        }
        let (x, y) = (&x[..n], &mut y[..n]);
        let rows_of = |x: &[f32], y: &mut [f32]| {
            vectorized(
                #[inline(always)]
                || {
                    y.chunks_exact_mut(cols)
                        .zip(x.chunks_exact(cols))
                        .for_each(|(y, x)| softmax_row(x, y))
                },
            )
        };
        if n >= PARALLEL_MIN_ELEMS {
            let chunk = rows_per_task(rows, cols) * cols;
            y.par_chunks_mut(chunk)
                .zip(x.par_chunks(chunk))
                .for_each(|(y, x)| rows_of(x, y));
        } else {
            rows_of(x, y);
        }
        Ok(())
    }

    fn softmax_bwd(
        &self,
        rows: usize,
        cols: usize,
        y: &Vec<f32>,
        dy: &Vec<f32>,
        dx: &mut Vec<f32>,
    ) -> Result<()> {
        let n = rows * cols;
        check_len("softmax backward", "y", y, n)?;
        check_len("softmax backward", "dy", dy, n)?;
        check_len("softmax backward", "dx", dx, n)?;
        if n == 0 {
            return Ok(());
        }
        let (y, dy, dx) = (&y[..n], &dy[..n], &mut dx[..n]);
        let rows_of = |y: &[f32], dy: &[f32], dx: &mut [f32]| {
            vectorized(
                #[inline(always)]
                || {
                    dx.chunks_exact_mut(cols)
                        .zip(y.chunks_exact(cols))
                        .zip(dy.chunks_exact(cols))
                        .for_each(|((dx, y), dy)| softmax_grad_row(y, dy, dx))
                },
            )
        };
        if n >= PARALLEL_MIN_ELEMS {
            let chunk = rows_per_task(rows, cols) * cols;
            dx.par_chunks_mut(chunk)
                .zip(y.par_chunks(chunk))
                .zip(dy.par_chunks(chunk))
                .for_each(|((dx, y), dy)| rows_of(y, dy, dx));
        } else {
            rows_of(y, dy, dx);
        }
        Ok(())
    }
}
