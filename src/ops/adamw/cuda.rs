//! The AdamW update on the GPU (kernels/adamw.cu): one grid-stride pass over
//! the parameter, in place on it and its two moments.

use crate::backend::cuda_kernels::{KernelId, ids};
use cudarc::driver::{CudaSlice, PushKernelArg};

use crate::backend::cuda::{BLOCK, CudaBackend, driver_err, flat_grid, int};
use crate::error::{Error, Result};
use crate::ops::adamw::kernels::{AdamWStep, OptimKernels};

impl OptimKernels for CudaBackend {
    fn adamw_update(
        &self,
        step: &AdamWStep,
        param: &mut CudaSlice<f32>,
        grad: &CudaSlice<f32>,
        m: &mut CudaSlice<f32>,
        v: &mut CudaSlice<f32>,
    ) -> Result<()> {
        const K: KernelId = ids::adamw::ADAMW_UPDATE_F32;
        let n = param.len();
        if grad.len() != n || m.len() != n || v.len() != n {
            return Err(Error::shape(
                "adamw_update",
                format!(
                    "param {n}, grad {}, m {}, v {} elements",
                    grad.len(),
                    m.len(),
                    v.len()
                ),
            ));
        }
        if n == 0 {
            return Ok(());
        }
        let ni = int("adamw_update", "length", n)?;
        let s = *step;
        let f = self.function(K)?;
        let cfg = self.config(&f, K.name, flat_grid(n), BLOCK, 0)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(param)
            .arg(grad)
            .arg(m)
            .arg(v)
            .arg(&ni)
            .arg(&s.lr)
            .arg(&s.beta1)
            .arg(&s.beta2)
            .arg(&s.eps)
            .arg(&s.weight_decay)
            .arg(&s.bias_correction1)
            .arg(&s.bias_correction2);
        // SAFETY: param, grad, m and v hold n floats each (checked above).
        unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        Ok(())
    }
}
