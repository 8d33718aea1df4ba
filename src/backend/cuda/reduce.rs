//! The small reductions of kernels/reduce.cu, shared by the loss kernels.

use crate::backend::cuda_kernels::{KernelId, ids};
use cudarc::driver::{CudaSlice, PushKernelArg};

use super::{CudaBackend, check_len, driver_err, int};
use crate::error::Result;

impl CudaBackend {
    /// `out[0] = scale·Σ x` over all of `x`, in a fixed order (sum_scale_f32,
    /// one block of 256 threads).
    pub(crate) fn sum_scale(
        &self,
        x: &CudaSlice<f32>,
        scale: f32,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        const K: KernelId = ids::reduce::SUM_SCALE_F32;
        check_len(K.name, "out", out, 1)?;
        let n = int(K.name, "length", x.len())?;
        let f = self.function(K)?;
        let cfg = self.config(&f, K.name, (1, 1, 1), 256, 0)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(x).arg(&n).arg(&scale).arg(out);
        // SAFETY: the kernel reads x[0..n) with n = x.len() and writes out[0].
        unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        Ok(())
    }

    /// `out[r] = Σ_k x[r·d + k]²` for `r < rows` (sq_norms_f32, a warp per
    /// row, 8 rows per block of 256 threads).
    pub(crate) fn sq_norms(
        &self,
        x: &CudaSlice<f32>,
        rows: usize,
        d: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        const K: KernelId = ids::reduce::SQ_NORMS_F32;
        check_len(K.name, "x", x, rows * d)?;
        check_len(K.name, "out", out, rows)?;
        if rows == 0 {
            return Ok(());
        }
        let (r, dd) = (int(K.name, "rows", rows)?, int(K.name, "d", d)?);
        let f = self.function(K)?;
        let cfg = self.config(&f, K.name, (rows.div_ceil(8), 1, 1), 256, 0)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(x).arg(&r).arg(&dd).arg(out);
        // SAFETY: x holds rows·d floats and out rows (checked above).
        unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        Ok(())
    }
}
