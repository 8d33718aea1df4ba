//! Row softmax on the GPU (kernels/softmax.cu): one warp per row.

use crate::backend::cuda_kernels::{KernelId, ids};
use cudarc::driver::{CudaSlice, PushKernelArg};

use crate::backend::cuda::{BLOCK, CudaBackend, check_len, driver_err, int, row_warp_grid};
use crate::error::Result;
use crate::ops::softmax::kernels::SoftmaxKernels;

/// `(rows, cols)` as kernel arguments.
fn dims(op: &'static str, rows: usize, cols: usize) -> Result<(i32, i32)> {
    int(op, "rows·cols", rows * cols)?;
    Ok((int(op, "rows", rows)?, int(op, "cols", cols)?))
}

impl SoftmaxKernels for CudaBackend {
    fn softmax_fwd(
        &self,
        rows: usize,
        cols: usize,
        x: &CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        const K: KernelId = ids::softmax::SOFTMAX_FWD_F32;
        let n = rows * cols;
        check_len("softmax", "x", x, n)?;
        check_len("softmax", "y", y, n)?;
        if n == 0 {
            return Ok(());
        }
        let (r, c) = dims("softmax", rows, cols)?;
        let f = self.function(K)?;
        let cfg = self.config(&f, K.name, row_warp_grid(rows), BLOCK, 0)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(x).arg(&r).arg(&c).arg(y);
        // SAFETY: x and y hold rows·cols floats (checked above).
        unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        Ok(())
    }

    fn softmax_bwd(
        &self,
        rows: usize,
        cols: usize,
        y: &CudaSlice<f32>,
        dy: &CudaSlice<f32>,
        dx: &mut CudaSlice<f32>,
    ) -> Result<()> {
        const OP: &str = "softmax backward";
        const K: KernelId = ids::softmax::SOFTMAX_BWD_F32;
        let n = rows * cols;
        check_len(OP, "y", y, n)?;
        check_len(OP, "dy", dy, n)?;
        check_len(OP, "dx", dx, n)?;
        if n == 0 {
            return Ok(());
        }
        let (r, c) = dims(OP, rows, cols)?;
        let f = self.function(K)?;
        let cfg = self.config(&f, K.name, row_warp_grid(rows), BLOCK, 0)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(y).arg(dy).arg(&r).arg(&c).arg(dx);
        // SAFETY: y, dy and dx hold rows·cols floats (checked above); the
        // kernel adds into dx.
        unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        Ok(())
    }
}
