//! Softmax cross-entropy on the GPU (kernels/cross_entropy.cu, and
//! sum_scale_f32 of reduce.cu for the mean): one warp per row.
//!
//! The kernels flag a target that is not a class index in a status word
//! (the first bad row, whatever order the blocks ran in) instead of failing; it is read back after
//! each call (one synchronisation) and turned into the CPU backend's error.

use crate::backend::cuda_kernels::{KernelId, ids};
use cudarc::driver::{CudaSlice, PushKernelArg};

use crate::backend::BackendCore;
use crate::backend::cuda::{BLOCK, CudaBackend, check_len, driver_err, int, row_warp_grid};
use crate::error::{Error, Result};
use crate::ops::cross_entropy::kernels::{CrossEntropyKernels, CrossEntropySpec};

/// Checks the spec and the inputs' lengths; returns `(rows, classes)` as
/// kernel arguments.
fn inputs(
    op: &'static str,
    spec: &CrossEntropySpec,
    logits: &CudaSlice<f32>,
    targets: &CudaSlice<f32>,
) -> Result<(i32, i32)> {
    if spec.rows == 0 || spec.classes == 0 {
        return Err(Error::invalid(
            op,
            format!("{} rows of {} classes", spec.rows, spec.classes),
        ));
    }
    let n = spec.rows * spec.classes;
    check_len(op, "logits", logits, n)?;
    check_len(op, "targets", targets, spec.rows)?;
    int(op, "rows·classes", n)?;
    Ok((
        int(op, "rows", spec.rows)?,
        int(op, "classes", spec.classes)?,
    ))
}

impl CudaBackend {
    /// Turns the status word into the CPU backend's error for a bad target.
    fn cross_entropy_status(
        &self,
        spec: &CrossEntropySpec,
        status: &CudaSlice<i32>,
        targets: &CudaSlice<f32>,
    ) -> Result<()> {
        let st = self.read_status(status)?;
        if let Some(row) = Self::flagged(st[0]) {
            let t = self.element(targets, row)?;
            return Err(Error::invalid(
                "cross_entropy",
                format!(
                    "target {t} of row {row} is not a class index below {}",
                    spec.classes
                ),
            ));
        }
        Ok(())
    }
}

impl CrossEntropyKernels for CudaBackend {
    fn cross_entropy_fwd(
        &self,
        spec: &CrossEntropySpec,
        logits: &CudaSlice<f32>,
        targets: &CudaSlice<f32>,
    ) -> Result<(CudaSlice<f32>, CudaSlice<f32>)> {
        const K: KernelId = ids::cross_entropy::CROSS_ENTROPY_FWD_F32;
        let (r, c) = inputs("cross_entropy", spec, logits, targets)?;
        let mut row_loss = self.zeros(spec.rows)?;
        let mut lse = self.zeros(spec.rows)?;
        let mut loss = self.zeros(1)?;
        let mut status = self.status(1)?;
        let scale = spec.scale;
        let f = self.function(K)?;
        let cfg = self.config(&f, K.name, row_warp_grid(spec.rows), BLOCK, 0)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(logits)
            .arg(targets)
            .arg(&r)
            .arg(&c)
            .arg(&scale)
            .arg(&mut row_loss)
            .arg(&mut lse)
            .arg(&mut status);
        // SAFETY: logits hold rows·classes floats, targets, row_loss and
        // lse rows, status 1 word (checked and allocated above).
        unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        self.sum_scale(&row_loss, 1.0 / spec.rows as f32, &mut loss)?;
        self.cross_entropy_status(spec, &status, targets)?;
        Ok((loss, lse))
    }

    fn cross_entropy_bwd(
        &self,
        spec: &CrossEntropySpec,
        logits: &CudaSlice<f32>,
        targets: &CudaSlice<f32>,
        lse: &CudaSlice<f32>,
        grad_loss: &CudaSlice<f32>,
        dlogits: &mut CudaSlice<f32>,
    ) -> Result<()> {
        const OP: &str = "cross_entropy backward";
        const K: KernelId = ids::cross_entropy::CROSS_ENTROPY_BWD_F32;
        let (r, c) = inputs(OP, spec, logits, targets)?;
        check_len(OP, "LSE", lse, spec.rows)?;
        check_len(OP, "loss gradient", grad_loss, 1)?;
        check_len(OP, "dlogits", dlogits, spec.rows * spec.classes)?;
        let mut status = self.status(1)?;
        let scale = spec.scale;
        let f = self.function(K)?;
        let cfg = self.config(&f, K.name, row_warp_grid(spec.rows), BLOCK, 0)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(logits)
            .arg(targets)
            .arg(lse)
            .arg(grad_loss)
            .arg(&r)
            .arg(&c)
            .arg(&scale)
            .arg(dlogits)
            .arg(&mut status);
        // SAFETY: logits and dlogits hold rows·classes floats, targets and
        // lse rows, grad_loss 1, status 1 word (checked above); the kernel
        // adds into dlogits and skips a row whose target is invalid.
        unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        self.cross_entropy_status(spec, &status, targets)
    }
}
