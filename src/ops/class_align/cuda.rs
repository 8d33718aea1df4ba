//! Confusion-weighted class alignment on the GPU (kernels/class_align.cu and
//! sum_scale_f32 of reduce.cu, launch geometry as in their comments): one
//! warp per row, four rows per block, the row's k logits in shared memory.
//!
//! The kernels flag an invalid label or weight in a status word instead of
//! failing; it is read back after each call (one synchronisation) and
//! turned into the same kind of error the CPU backend returns.

use crate::backend::cuda_kernels::{KernelId, ids};
use cudarc::driver::{CudaSlice, PushKernelArg};

use crate::backend::BackendCore;
use crate::backend::cuda::{CudaBackend, check_len, driver_err, int};
use crate::error::{Error, Result};
use crate::ops::class_align::kernels::{ClassAlignKernels, ClassAlignSpec};

const OP: &str = "class_align";

/// Kernel arguments `(n, k, d)` after checking the spec and the inputs.
fn check(
    s: &ClassAlignSpec,
    z: &CudaSlice<f32>,
    protos: &CudaSlice<f32>,
    labels: &CudaSlice<f32>,
    weights: Option<&CudaSlice<f32>>,
) -> Result<(i32, i32, i32)> {
    if s.n == 0 || s.k == 0 {
        return Err(Error::invalid(
            OP,
            format!("n = {} and k = {} must both be at least 1", s.n, s.k),
        ));
    }
    check_len(OP, "z", z, s.n * s.d)?;
    check_len(OP, "prototypes", protos, s.k * s.d)?;
    check_len(OP, "labels", labels, s.n)?;
    if let Some(w) = weights {
        check_len(OP, "weights", w, s.k * s.k)?;
    }
    int(OP, "n·d", s.n * s.d)?;
    int(OP, "k·k", s.k * s.k)?;
    Ok((int(OP, "n", s.n)?, int(OP, "k", s.k)?, int(OP, "d", s.d)?))
}

impl CudaBackend {
    /// Turns the kernels' status words into the CPU backend's errors.
    fn class_align_status(
        &self,
        s: &ClassAlignSpec,
        status: &CudaSlice<i32>,
        labels: &CudaSlice<f32>,
        weights: Option<&CudaSlice<f32>>,
    ) -> Result<()> {
        let st = self.read_status(status)?;
        if let Some(row) = Self::flagged(st[0]) {
            let v = self.element(labels, row)?;
            return Err(Error::invalid(
                OP,
                format!("label {v} at row {row} is not a class index in 0..{}", s.k),
            ));
        }
        if let (Some(at), Some(w)) = (Self::flagged(st[1]), weights) {
            let v = self.element(w, at)?;
            return Err(Error::invalid(
                OP,
                format!(
                    "weight W[{}, {}] = {v} must be finite and positive",
                    at / s.k,
                    at % s.k
                ),
            ));
        }
        Ok(())
    }
}

/// A null device pointer for an optional buffer the kernel is told to ignore.
const NULL: u64 = 0;

impl ClassAlignKernels for CudaBackend {
    fn class_align_fwd(
        &self,
        s: &ClassAlignSpec,
        z: &CudaSlice<f32>,
        prototypes: &CudaSlice<f32>,
        labels: &CudaSlice<f32>,
        weights: Option<&CudaSlice<f32>>,
        loss: &mut CudaSlice<f32>,
        lse: &mut CudaSlice<f32>,
        confusion: Option<&mut CudaSlice<f32>>,
    ) -> Result<()> {
        const K: KernelId = ids::class_align::CLASS_ALIGN_FWD_F32;
        let (n, k, d) = check(s, z, prototypes, labels, weights)?;
        check_len(OP, "loss", loss, 1)?;
        check_len(OP, "lse", lse, s.n)?;
        if let Some(c) = confusion.as_deref() {
            check_len(OP, "confusion", c, s.k * s.k)?;
        }
        let mut row_loss = self.zeros(s.n)?;
        let mut status = self.status(2)?;
        let has_w = i32::from(weights.is_some());
        let has_conf = i32::from(confusion.is_some());
        let inv_tau = s.inv_tau;
        let f = self.function(K)?;
        let cfg = self.config(&f, K.name, (s.n.div_ceil(4), 1, 1), 128, 4 * s.k * 4)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(z).arg(prototypes).arg(labels);
        match weights {
            Some(w) => l.arg(w),
            None => l.arg(&NULL),
        };
        l.arg(&has_w)
            .arg(&n)
            .arg(&k)
            .arg(&d)
            .arg(&inv_tau)
            .arg(&has_conf)
            .arg(&mut row_loss)
            .arg(&mut *lse);
        match confusion {
            Some(c) => l.arg(c),
            None => l.arg(&NULL),
        };
        l.arg(&mut status);
        // SAFETY: z, prototypes, labels, weights, lse and confusion hold
        // the n·d, k·d, n, k·k, n and k·k floats the kernel indexes
        // (checked above); a null weights/confusion pointer is never read
        // because has_w/has_conf is 0; the dynamic shared memory holds the
        // k logits of each of the block's 4 rows.
        unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        self.sum_scale(&row_loss, 1.0 / s.n as f32, loss)?;
        self.class_align_status(s, &status, labels, weights)
    }

    fn class_align_bwd(
        &self,
        s: &ClassAlignSpec,
        z: &CudaSlice<f32>,
        prototypes: &CudaSlice<f32>,
        labels: &CudaSlice<f32>,
        weights: Option<&CudaSlice<f32>>,
        lse: &CudaSlice<f32>,
        grad_loss: &CudaSlice<f32>,
        dz: &mut CudaSlice<f32>,
    ) -> Result<()> {
        const K: KernelId = ids::class_align::CLASS_ALIGN_BWD_F32;
        let (n, k, d) = check(s, z, prototypes, labels, weights)?;
        check_len(OP, "lse", lse, s.n)?;
        check_len(OP, "grad_loss", grad_loss, 1)?;
        check_len(OP, "dz", dz, s.n * s.d)?;
        if s.d == 0 {
            return Ok(());
        }
        let mut status = self.status(2)?;
        let has_w = i32::from(weights.is_some());
        let inv_tau = s.inv_tau;
        let f = self.function(K)?;
        let cfg = self.config(&f, K.name, (s.n.div_ceil(4), 1, 1), 128, 4 * s.k * 4)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(z).arg(prototypes).arg(labels);
        match weights {
            Some(w) => l.arg(w),
            None => l.arg(&NULL),
        };
        l.arg(&has_w)
            .arg(lse)
            .arg(grad_loss)
            .arg(&n)
            .arg(&k)
            .arg(&d)
            .arg(&inv_tau)
            .arg(dz)
            .arg(&mut status);
        // SAFETY: as in the forward; dz holds n·d floats, grad_loss 1.
        unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        self.class_align_status(s, &status, labels, weights)
    }
}
