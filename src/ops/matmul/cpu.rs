//! Matrix products on the CPU through the `gemm` crate.

use gemm::Parallelism;
use rayon::prelude::*;

use crate::backend::cpu::{CpuBackend, check_len};
use crate::error::{Error, Result};
use crate::ops::matmul::kernels::{GemmSpec, MatmulKernels};

/// Products with fewer multiply-adds than this run on one thread.
const PARALLEL_MIN_FLOPS: usize = 1 << 18;

/// Row-major strides `(row, col)` of `op(X)` for X stored `rows×cols`.
fn strides(trans: bool, stored_cols: usize) -> (isize, isize) {
    if trans {
        (1, stored_cols as isize)
    } else {
        (stored_cols as isize, 1)
    }
}

/// One single-threaded `C = alpha·op(A)·op(B) + beta·C` (batch ignored) on
/// slices that start at the matrices: for kernels that tile their own work
/// and parallelise over tiles. Panics if a slice is too short.
pub(crate) fn gemm_serial(spec: &GemmSpec, a: &[f32], b: &[f32], c: &mut [f32]) {
    let one = GemmSpec { batch: 1, ..*spec };
    let (na, nb, nc) = one.required_lengths();
    assert!(
        a.len() >= na && b.len() >= nb && c.len() >= nc,
        "gemm_serial: slice too short"
    );
    gemm_one(&one, a, b, c, Parallelism::None);
}

/// One `C = alpha·op(A)·op(B) + beta·C` on slices that start at the matrices.
fn gemm_one(spec: &GemmSpec, a: &[f32], b: &[f32], c: &mut [f32], par: Parallelism) {
    let (m, n, k) = (spec.m, spec.n, spec.k);
    let (a_rs, a_cs) = strides(spec.trans_a, if spec.trans_a { m } else { k });
    let (b_rs, b_cs) = strides(spec.trans_b, if spec.trans_b { k } else { n });
    if k == 0 {
        // No products to add: C = beta·C.
        c[..m * n].iter_mut().for_each(|v| *v *= spec.beta);
        return;
    }
    // SAFETY: the caller checked that `a`, `b` and `c` hold the `m×k`, `k×n`
    // and `m×n` elements these strides address, and `c` is exclusively
    // borrowed. `gemm` computes dst = alpha·dst + beta·lhs·rhs, so our beta is
    // its alpha and our alpha its beta.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            spec.beta != 0.0,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            spec.beta,
            spec.alpha,
            false,
            false,
            false,
            par,
        );
    }
}

impl MatmulKernels for CpuBackend {
    fn gemm(&self, spec: &GemmSpec, a: &Vec<f32>, b: &Vec<f32>, c: &mut Vec<f32>) -> Result<()> {
        let (need_a, need_b, need_c) = spec.required_lengths();
        check_len("gemm", "A", a, need_a)?;
        check_len("gemm", "B", b, need_b)?;
        check_len("gemm", "C", c, need_c)?;
        let mn = spec.m * spec.n;
        if spec.batch > 1 && spec.stride_c < mn {
            return Err(Error::invalid(
                "gemm",
                format!(
                    "output stride {} overlaps {mn}-element outputs",
                    spec.stride_c
                ),
            ));
        }
        if spec.batch == 0 || mn == 0 {
            return Ok(());
        }
        let flops = spec.m * spec.n * spec.k;
        let threads = self.threads();
        if spec.batch == 1 || (flops >= PARALLEL_MIN_FLOPS * threads && spec.batch < threads) {
            let par = if flops >= PARALLEL_MIN_FLOPS {
                Parallelism::Rayon(threads)
            } else {
                Parallelism::None
            };
            for i in 0..spec.batch {
                let c_i = &mut c[i * spec.stride_c..i * spec.stride_c + mn];
                gemm_one(
                    spec,
                    &a[i * spec.stride_a..],
                    &b[i * spec.stride_b..],
                    c_i,
                    par,
                );
            }
        } else {
            // Many products: one per task, each single-threaded.
            c[..(spec.batch - 1) * spec.stride_c + mn]
                .par_chunks_mut(spec.stride_c)
                .take(spec.batch)
                .enumerate()
                .for_each(|(i, c_i)| {
                    gemm_one(
                        spec,
                        &a[i * spec.stride_a..],
                        &b[i * spec.stride_b..],
                        &mut c_i[..mn],
                        Parallelism::None,
                    )
                });
        }
        Ok(())
    }
}
