//! Fused multi-head self-attention on the GPU (kernels/attention.cu, launch
//! geometry as in its comments): flash-style forward, one warp per query and
//! 32-key tiles in shared memory; FlashAttention-2 style backward in three
//! kernels (D = rowsum(dO∘O), then dQ and dK/dV, no atomics).

use crate::backend::cuda_kernels::{KernelId, ids};
use cudarc::driver::{CudaSlice, PushKernelArg};

use crate::backend::BackendCore;
use crate::backend::cuda::{CudaBackend, check_len, driver_err, int};
use crate::error::{Error, Result};
use crate::ops::attention::kernels::{AttentionKernels, AttentionSpec};

/// The widest head the kernels handle (each lane owns up to 4 dims).
const MAX_HEAD_DIM: usize = 128;

/// Kernel arguments `(S, H, Dh)` after checking the head width and sizes.
fn dims(op: &'static str, spec: &AttentionSpec) -> Result<(i32, i32, i32)> {
    if spec.head_dim == 0 || spec.head_dim > MAX_HEAD_DIM {
        return Err(Error::invalid(
            op,
            format!(
                "head_dim {} is outside the CUDA kernels' 1..={MAX_HEAD_DIM}",
                spec.head_dim
            ),
        ));
    }
    int(op, "qkv length", spec.qkv_len())?;
    Ok((
        int(op, "seq", spec.seq)?,
        int(op, "heads", spec.heads)?,
        int(op, "head_dim", spec.head_dim)?,
    ))
}

/// Blocks of the per-query kernels: (query tiles of 8, heads, batch).
fn grid(spec: &AttentionSpec) -> (usize, usize, usize) {
    (spec.seq.div_ceil(8), spec.heads, spec.batch)
}

impl AttentionKernels for CudaBackend {
    fn attention_fwd(
        &self,
        spec: &AttentionSpec,
        qkv: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
        lse: &mut CudaSlice<f32>,
    ) -> Result<()> {
        const OP: &str = "attention";
        const K: KernelId = ids::attention::ATTENTION_FWD_F32;
        check_len(OP, "qkv", qkv, spec.qkv_len())?;
        check_len(OP, "out", out, spec.out_len())?;
        check_len(OP, "lse", lse, spec.lse_len())?;
        if spec.out_len() == 0 {
            return Ok(());
        }
        let (s, h, dh) = dims(OP, spec)?;
        let scale = spec.scale();
        let d = spec.head_dim;
        let f = self.function(K)?;
        let smem = (8 * d + 32 * (d + 1) + 32 * d) * 4;
        let cfg = self.config(&f, K.name, grid(spec), 256, smem)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(qkv)
            .arg(&s)
            .arg(&h)
            .arg(&dh)
            .arg(&scale)
            .arg(out)
            .arg(lse);
        // SAFETY: qkv, out and lse hold the spec's lengths (checked above);
        // the grid covers (query tile, head, batch) within them and the
        // dynamic shared memory is the Q, K.name and V tiles of the comment.
        unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        Ok(())
    }

    fn attention_bwd(
        &self,
        spec: &AttentionSpec,
        qkv: &CudaSlice<f32>,
        out: &CudaSlice<f32>,
        lse: &CudaSlice<f32>,
        grad_out: &CudaSlice<f32>,
        grad_qkv: &mut CudaSlice<f32>,
    ) -> Result<()> {
        const OP: &str = "attention backward";
        check_len(OP, "qkv", qkv, spec.qkv_len())?;
        check_len(OP, "out", out, spec.out_len())?;
        check_len(OP, "lse", lse, spec.lse_len())?;
        check_len(OP, "grad_out", grad_out, spec.out_len())?;
        check_len(OP, "grad_qkv", grad_qkv, spec.qkv_len())?;
        if spec.out_len() == 0 {
            return Ok(());
        }
        let (s, h, dh) = dims(OP, spec)?;
        let b = int(OP, "batch", spec.batch)?;
        let scale = spec.scale();
        let d = spec.head_dim;

        const DOT: KernelId = ids::attention::ATTENTION_BWD_DOT_F32;
        let mut delta = self.zeros(spec.lse_len())?;
        let f = self.function(DOT)?;
        let rows = spec.batch * spec.seq * spec.heads;
        let cfg = self.config(&f, DOT.name, (rows.div_ceil(8), 1, 1), 256, 0)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(out)
            .arg(grad_out)
            .arg(&b)
            .arg(&s)
            .arg(&h)
            .arg(&dh)
            .arg(&mut delta);
        // SAFETY: out and grad_out hold B·S·H·Dh floats, delta B·H·S; one
        // warp per (b, s, h) row, rows past the end return.
        unsafe { l.launch(cfg) }.map_err(driver_err(DOT.name))?;

        for (k, smem) in [
            (
                ids::attention::ATTENTION_BWD_DQ_F32,
                (2 * 8 * d + 2 * 32 * (d + 1)) * 4,
            ),
            (
                ids::attention::ATTENTION_BWD_DKDV_F32,
                (2 * 8 * d + 2 * 32 * (d + 1) + 64) * 4,
            ),
        ] {
            let f = self.function(k)?;
            let cfg = self.config(&f, k.name, grid(spec), 256, smem)?;
            let mut l = self.stream().launch_builder(&f);
            l.arg(qkv)
                .arg(grad_out)
                .arg(lse)
                .arg(&delta)
                .arg(&s)
                .arg(&h)
                .arg(&dh)
                .arg(&scale)
                .arg(&mut *grad_qkv);
            // SAFETY: qkv and grad_qkv hold B·S·3·H·Dh floats, grad_out
            // B·S·H·Dh, lse and delta B·H·S (checked above); dQ and dK/dV
            // write disjoint thirds of grad_qkv, in stream order.
            unsafe { l.launch(cfg) }.map_err(driver_err(k.name))?;
        }
        Ok(())
    }
}
