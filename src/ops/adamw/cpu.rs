//! AdamW on the CPU.

use rayon::prelude::*;

use crate::backend::cpu::{CpuBackend, PARALLEL_MIN_ELEMS};
use crate::error::{Error, Result};
use crate::ops::adamw::kernels::{AdamWStep, OptimKernels};

/// Updates one contiguous chunk.
fn update_chunk(s: &AdamWStep, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    let (c1, c2) = (1.0 / s.bias_correction1, 1.0 / s.bias_correction2);
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        *m = s.beta1 * *m + (1.0 - s.beta1) * g;
        *v = s.beta2 * *v + (1.0 - s.beta2) * g * g;
        let update = (*m * c1) / ((*v * c2).sqrt() + s.eps) + s.weight_decay * *p;
        *p -= s.lr * update;
    }
}

impl OptimKernels for CpuBackend {
    fn adamw_update(
        &self,
        step: &AdamWStep,
        param: &mut Vec<f32>,
        grad: &Vec<f32>,
        m: &mut Vec<f32>,
        v: &mut Vec<f32>,
    ) -> Result<()> {
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
        if n >= PARALLEL_MIN_ELEMS {
            const CHUNK: usize = 8192;
            param
                .par_chunks_mut(CHUNK)
                .zip(grad.par_chunks(CHUNK))
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .for_each(|(((p, g), m), v)| update_chunk(step, p, g, m, v));
        } else {
            update_chunk(step, param, grad, m, v);
        }
        Ok(())
    }
}
