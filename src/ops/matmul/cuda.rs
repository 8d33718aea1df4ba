//! Matrix products through cuBLAS sgemm (full f32: the handle's default
//! math mode, no TF32).
//!
//! cuBLAS is column-major. A row-major `m×n` C is the column-major `n×m`
//! matrix Cᵀ, and `Cᵀ = op(B)ᵀ·op(A)ᵀ`, so a row-major product is one
//! column-major call with the operands swapped: `(B, A)`, sizes `(n, m, k)`,
//! each operand keeping its own transpose flag and its row-major row length
//! as leading dimension. Batches go through the strided-batched call (a
//! stride of 0 broadcasts an operand, as in [`GemmSpec`]).

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{Gemm, GemmConfig, StridedBatchedConfig};
use cudarc::driver::CudaSlice;

use crate::backend::cuda::{CudaBackend, blas_err, check_len, int};
use crate::error::{Error, Result};
use crate::ops::matmul::kernels::{GemmSpec, MatmulKernels};

const OP: &str = "gemm";

fn op(trans: bool) -> cublasOperation_t {
    if trans {
        cublasOperation_t::CUBLAS_OP_T
    } else {
        cublasOperation_t::CUBLAS_OP_N
    }
}

impl MatmulKernels for CudaBackend {
    fn gemm(
        &self,
        spec: &GemmSpec,
        a: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
        c: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let (need_a, need_b, need_c) = spec.required_lengths();
        check_len(OP, "A", a, need_a)?;
        check_len(OP, "B", b, need_b)?;
        check_len(OP, "C", c, need_c)?;
        let mn = spec.m * spec.n;
        if spec.batch > 1 && spec.stride_c < mn {
            return Err(Error::invalid(
                OP,
                format!(
                    "output stride {} overlaps {mn}-element outputs",
                    spec.stride_c
                ),
            ));
        }
        if spec.batch == 0 || mn == 0 {
            return Ok(());
        }
        // Row lengths of the stored row-major operands (at least 1, as
        // cuBLAS requires even when k = 0).
        let lda = if spec.trans_a { spec.m } else { spec.k }.max(1);
        let ldb = if spec.trans_b { spec.k } else { spec.n }.max(1);
        let gemm = GemmConfig {
            transa: op(spec.trans_b),
            transb: op(spec.trans_a),
            m: int(OP, "n", spec.n)?,
            n: int(OP, "m", spec.m)?,
            k: int(OP, "k", spec.k)?,
            alpha: spec.alpha,
            lda: int(OP, "ldb", ldb)?,
            ldb: int(OP, "lda", lda)?,
            beta: spec.beta,
            ldc: int(OP, "n", spec.n.max(1))?,
        };
        let blas = self.blas()?;
        if spec.batch == 1 {
            // SAFETY: the lengths checked above cover every element the
            // call reads (A, B) and writes (C) with these sizes and leading
            // dimensions; C does not alias A or B (distinct borrows).
            unsafe { blas.gemm(gemm, b, a, c) }.map_err(blas_err("sgemm"))
        } else {
            let strided = StridedBatchedConfig {
                gemm,
                batch_size: int(OP, "batch", spec.batch)?,
                stride_a: spec.stride_b as i64,
                stride_b: spec.stride_a as i64,
                stride_c: spec.stride_c as i64,
            };
            // SAFETY: as above, `required_lengths` covers the last batch
            // entry, and output strides of at least m·n keep the batch's
            // outputs apart.
            unsafe { blas.gemm_strided_batched(strided, b, a, c) }
                .map_err(blas_err("sgemm_strided_batched"))
        }
    }
}
