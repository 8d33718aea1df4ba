//! Elementwise kernels on the CPU: flat loops in fixed-size chunks, row
//! kernels over blocks of whole rows, column sums as per-block partial rows
//! reduced in a fixed order (so results depend only on the shape).

use rayon::prelude::*;

use crate::backend::cpu::{CpuBackend, PARALLEL_MIN_ELEMS};
use crate::error::{Error, Result};
use crate::ops::elementwise::kernels::ElementwiseKernels;

/// Elements one rayon task handles: enough to amortise scheduling, few
/// enough to balance the load.
pub(super) const TASK_ELEMS: usize = 1 << 14;

/// Column block width of a column-parallel reduction.
const COL_BLOCK: usize = 1 << 10;

/// `√(2/π)`, the scale inside GELU's tanh.
const GELU_K: f32 = 0.797_884_6;
/// The cubic coefficient of GELU's tanh approximation.
const GELU_C: f32 = 0.044_715;

/// Rows per task for a `rows × d` kernel that is parallel over rows.
pub(crate) fn rows_per_task(d: usize) -> usize {
    (TASK_ELEMS / d.max(1)).max(1)
}

/// Fails unless `buf` holds exactly `need` elements.
pub(crate) fn check_exact(op: &'static str, what: &str, buf: &[f32], need: usize) -> Result<()> {
    if buf.len() != need {
        return Err(Error::shape(
            op,
            format!("{what} holds {} elements, expected {need}", buf.len()),
        ));
    }
    Ok(())
}

/// `acc += x`, elementwise (vectorised).
#[inline]
pub(super) fn add_assign(acc: &mut [f32], x: &[f32]) {
    acc.iter_mut().zip(x).for_each(|(a, &v)| *a += v);
}

/// Sums equally long `width`-element partial rows in their given order:
/// parallel over column blocks when large, so the order stays fixed.
pub(crate) fn sum_partials(partials: &[f32], width: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; width];
    if width == 0 {
        return out;
    }
    if partials.len() >= PARALLEL_MIN_ELEMS && width > COL_BLOCK {
        out.par_chunks_mut(COL_BLOCK)
            .enumerate()
            .for_each(|(b, o)| {
                let c0 = b * COL_BLOCK;
                for p in partials.chunks_exact(width) {
                    add_assign(o, &p[c0..c0 + o.len()]);
                }
            });
    } else {
        for p in partials.chunks_exact(width) {
            add_assign(&mut out, p);
        }
    }
    out
}

/// `f(x)` elementwise into a new buffer, parallel in chunks when large.
fn map1(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    let run = |o: &mut [f32], x: &[f32]| o.iter_mut().zip(x).for_each(|(o, &x)| *o = f(x));
    if x.len() >= PARALLEL_MIN_ELEMS {
        out.par_chunks_mut(TASK_ELEMS)
            .zip(x.par_chunks(TASK_ELEMS))
            .for_each(|(o, x)| run(o, x));
    } else {
        run(&mut out, x);
    }
    out
}

/// `f(a, b)` elementwise into a new buffer, parallel in chunks when large.
fn map2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    let mut out = vec![0.0f32; a.len()];
    let run = |o: &mut [f32], a: &[f32], b: &[f32]| {
        o.iter_mut()
            .zip(a)
            .zip(b)
            .for_each(|((o, &a), &b)| *o = f(a, b))
    };
    if a.len() >= PARALLEL_MIN_ELEMS {
        out.par_chunks_mut(TASK_ELEMS)
            .zip(a.par_chunks(TASK_ELEMS))
            .zip(b.par_chunks(TASK_ELEMS))
            .for_each(|((o, a), b)| run(o, a, b));
    } else {
        run(&mut out, a, b);
    }
    out
}

/// `tanh(x)` as a branch-free rational function that the compiler can
/// vectorise (libm's `tanhf` is a scalar call, ~20× slower here): the
/// 13/6-degree odd/even approximation of Eigen's `ptanh_float`, on inputs
/// clamped to ±7.9053 where it reaches ±1. Error ≤ 4e-7 relative everywhere;
/// in GELU the saturation drops a tail of `1 + tanh` below 3e-7, so for
/// `x ≲ −4.6` the output is off by < 1e-6 and the derivative by < 5e-6.
#[inline]
fn tanh_rational(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    const A: [f32; 7] = [
        4.893_524_6e-3,
        6.372_619_5e-4,
        1.485_722_35e-5,
        5.122_297_3e-8,
        -8.604_672e-11,
        2.000_188e-13,
        -2.760_768_4e-16,
    ];
    const B: [f32; 4] = [4.893_525e-3, 2.268_434_7e-3, 1.185_347_1e-4, 1.198_258_4e-6];
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let p = A.iter().rev().fold(0.0, |acc, &c| acc * x2 + c) * x;
    let q = B.iter().rev().fold(0.0, |acc, &c| acc * x2 + c);
    p / q
}

/// `tanh(√(2/π)·(x + 0.044715·x³))`.
#[inline]
fn gelu_tanh(x: f32) -> f32 {
    tanh_rational(GELU_K * (x + GELU_C * x * x * x))
}

impl ElementwiseKernels for CpuBackend {
    fn add(&self, a: &Vec<f32>, b: &Vec<f32>) -> Result<Vec<f32>> {
        check_exact("add", "b", b, a.len())?;
        Ok(map2(a, b, |a, b| a + b))
    }

    fn scaled(&self, x: &Vec<f32>, c: f32) -> Result<Vec<f32>> {
        Ok(map1(x, |x| c * x))
    }

    fn add_row(&self, x: &Vec<f32>, row: &Vec<f32>, rows: usize, d: usize) -> Result<Vec<f32>> {
        let n = rows * d;
        check_exact("add_row", "x", x, n)?;
        check_exact("add_row", "row", row, d)?;
        let mut out = vec![0.0f32; n];
        if n == 0 {
            return Ok(out);
        }
        let add = |o: &mut [f32], x: &[f32], b: &[f32]| {
            o.iter_mut()
                .zip(x)
                .zip(b)
                .for_each(|((o, &x), &b)| *o = x + b)
        };
        let add_rows = |o: &mut [f32], x: &[f32]| {
            for (o, x) in o.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
                add(o, x, row);
            }
        };
        if n < PARALLEL_MIN_ELEMS {
            add_rows(&mut out, x);
        } else if d <= TASK_ELEMS {
            let step = rows_per_task(d) * d;
            out.par_chunks_mut(step)
                .zip(x.par_chunks(step))
                .for_each(|(o, x)| add_rows(o, x));
        } else {
            // Few long rows: split each row into column blocks as well.
            out.par_chunks_mut(d)
                .zip(x.par_chunks(d))
                .for_each(|(o, x)| {
                    o.par_chunks_mut(TASK_ELEMS)
                        .zip(x.par_chunks(TASK_ELEMS))
                        .zip(row.par_chunks(TASK_ELEMS))
                        .for_each(|((o, x), b)| add(o, x, b))
                });
        }
        Ok(out)
    }

    fn sum_rows(&self, x: &Vec<f32>, rows: usize, d: usize) -> Result<Vec<f32>> {
        let n = rows * d;
        check_exact("sum_rows", "x", x, n)?;
        let mut out = vec![0.0f32; d];
        if n == 0 {
            return Ok(out);
        }
        let rpt = rows_per_task(d);
        let row_tasks = rows.div_ceil(rpt);
        let col_tasks = d.div_ceil(COL_BLOCK);
        if n < PARALLEL_MIN_ELEMS {
            for r in x.chunks_exact(d) {
                add_assign(&mut out, r);
            }
        } else if col_tasks >= row_tasks {
            // Few rows: each task sums one column block over every row.
            out.par_chunks_mut(COL_BLOCK)
                .enumerate()
                .for_each(|(b, o)| {
                    let c0 = b * COL_BLOCK;
                    for r in x.chunks_exact(d) {
                        add_assign(o, &r[c0..c0 + o.len()]);
                    }
                });
        } else {
            // Many rows: one partial row per block of rows, then their sum.
            let mut partials = vec![0.0f32; row_tasks * d];
            partials
                .par_chunks_mut(d)
                .zip(x.par_chunks(rpt * d))
                .for_each(|(p, xb)| {
                    for r in xb.chunks_exact(d) {
                        add_assign(p, r);
                    }
                });
            out = sum_partials(&partials, d);
        }
        Ok(out)
    }

    fn gelu_fwd(&self, x: &Vec<f32>) -> Result<Vec<f32>> {
        Ok(map1(x, |x| 0.5 * x * (1.0 + gelu_tanh(x))))
    }

    fn gelu_bwd(&self, x: &Vec<f32>, grad_out: &Vec<f32>) -> Result<Vec<f32>> {
        check_exact("gelu_bwd", "grad_out", grad_out, x.len())?;
        Ok(map2(x, grad_out, |x, g| {
            let t = gelu_tanh(x);
            let du = GELU_K * (1.0 + 3.0 * GELU_C * x * x);
            g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)
        }))
    }

    fn sigmoid_fwd(&self, x: &Vec<f32>) -> Result<Vec<f32>> {
        Ok(map1(x, |x| 1.0 / (1.0 + (-x).exp())))
    }

    fn sigmoid_bwd(&self, y: &Vec<f32>, grad_out: &Vec<f32>) -> Result<Vec<f32>> {
        check_exact("sigmoid_bwd", "grad_out", grad_out, y.len())?;
        Ok(map2(y, grad_out, |y, g| g * y * (1.0 - y)))
    }
}
