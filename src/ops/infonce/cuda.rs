//! Fused symmetric InfoNCE on the GPU (kernels/infonce.cu, launch geometry
//! as in its comments): two row-LSE passes (the column LSE of S is the row
//! LSE of Sᵀ), a one-block loss, and two backward passes, one per side.

use crate::backend::cuda_kernels::{KernelId, ids};
use cudarc::driver::{CudaSlice, PushKernelArg};

use crate::backend::BackendCore;
use crate::backend::cuda::{CudaBackend, check_len, driver_err, int};
use crate::error::Result;
use crate::ops::infonce::kernels::{InfoNceGrads, InfoNceKernels, InfoNceLse, InfoNceSpec};

/// Checks the spec and the inputs' lengths; returns `(B, d, 1/τ)` as kernel arguments.
fn inputs(
    op: &'static str,
    spec: &InfoNceSpec,
    za: &CudaSlice<f32>,
    zv: &CudaSlice<f32>,
) -> Result<(i32, i32, f32)> {
    let n = spec.validate(op)?;
    check_len(op, "za", za, n)?;
    check_len(op, "zv", zv, n)?;
    int(op, "B·d", n)?;
    Ok((
        int(op, "batch", spec.batch)?,
        int(op, "dim", spec.dim)?,
        1.0 / spec.tau,
    ))
}

impl CudaBackend {
    /// `lse[r] = log Σ_c exp(own_r·other_c/τ)` (infonce_lse_f32).
    fn infonce_lse(
        &self,
        own: &CudaSlice<f32>,
        other: &CudaSlice<f32>,
        (b, d, inv_tau): (i32, i32, f32),
    ) -> Result<CudaSlice<f32>> {
        const K: KernelId = ids::infonce::INFONCE_LSE_F32;
        let mut lse = self.zeros(b as usize)?;
        let f = self.function(K)?;
        let cfg = self.config(&f, K.name, ((b as usize).div_ceil(32), 1, 1), 256, 0)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(own)
            .arg(other)
            .arg(&b)
            .arg(&d)
            .arg(&inv_tau)
            .arg(&mut lse);
        // SAFETY: own and other hold B·d floats and lse B (checked by
        // `inputs` and allocated here); the kernel reads rows < B only.
        unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        Ok(lse)
    }

    /// Adds one side's gradient into `d_own` (infonce_bwd_f32).
    #[allow(clippy::too_many_arguments)]
    fn infonce_side(
        &self,
        own: &CudaSlice<f32>,
        other: &CudaSlice<f32>,
        own_lse: &CudaSlice<f32>,
        other_lse: &CudaSlice<f32>,
        grad_loss: &CudaSlice<f32>,
        (b, d, inv_tau): (i32, i32, f32),
        d_own: &mut CudaSlice<f32>,
    ) -> Result<()> {
        const K: KernelId = ids::infonce::INFONCE_BWD_F32;
        let f = self.function(K)?;
        let smem = (32 * d as usize + 32 * 33) * 4;
        let cfg = self.config(&f, K.name, ((b as usize).div_ceil(32), 1, 1), 256, smem)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(own)
            .arg(other)
            .arg(own_lse)
            .arg(other_lse)
            .arg(grad_loss)
            .arg(&b)
            .arg(&d)
            .arg(&inv_tau)
            .arg(d_own);
        // SAFETY: own, other and d_own hold B·d floats, the LSEs B and
        // grad_loss 1 (checked by the caller); the dynamic shared memory
        // is the 32×d accumulator and the 32×33 weight tile.
        unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        Ok(())
    }
}

impl InfoNceKernels for CudaBackend {
    fn infonce_fwd(
        &self,
        spec: &InfoNceSpec,
        za: &CudaSlice<f32>,
        zv: &CudaSlice<f32>,
    ) -> Result<(CudaSlice<f32>, InfoNceLse<CudaSlice<f32>>)> {
        const K: KernelId = ids::infonce::INFONCE_LOSS_F32;
        let args = inputs("infonce", spec, za, zv)?;
        let row = self.infonce_lse(za, zv, args)?;
        let col = self.infonce_lse(zv, za, args)?;
        let mut loss = self.zeros(1)?;
        let (b, d, inv_tau) = args;
        let f = self.function(K)?;
        let cfg = self.config(&f, K.name, (1, 1, 1), 256, 0)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(za)
            .arg(zv)
            .arg(&row)
            .arg(&col)
            .arg(&b)
            .arg(&d)
            .arg(&inv_tau)
            .arg(&mut loss);
        // SAFETY: za, zv hold B·d floats, row and col B, loss 1.
        unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        Ok((loss, InfoNceLse { row, col }))
    }

    fn infonce_bwd(
        &self,
        spec: &InfoNceSpec,
        za: &CudaSlice<f32>,
        zv: &CudaSlice<f32>,
        lse: &InfoNceLse<CudaSlice<f32>>,
        grad_loss: &CudaSlice<f32>,
        grads: InfoNceGrads<'_, CudaSlice<f32>>,
    ) -> Result<()> {
        const OP: &str = "infonce backward";
        let args = inputs(OP, spec, za, zv)?;
        let b = spec.batch;
        check_len(OP, "row LSE", &lse.row, b)?;
        check_len(OP, "column LSE", &lse.col, b)?;
        check_len(OP, "loss gradient", grad_loss, 1)?;
        let n = b * spec.dim;
        if n == 0 {
            return Ok(());
        }
        if let Some(dza) = grads.dza {
            check_len(OP, "dza", dza, n)?;
            self.infonce_side(za, zv, &lse.row, &lse.col, grad_loss, args, dza)?;
        }
        if let Some(dzv) = grads.dzv {
            check_len(OP, "dzv", dzv, n)?;
            // Sᵀ = zv·zaᵀ/τ: a column's own LSE is the column LSE.
            self.infonce_side(zv, za, &lse.col, &lse.row, grad_loss, args, dzv)?;
        }
        Ok(())
    }
}
