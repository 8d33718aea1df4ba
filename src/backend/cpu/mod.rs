//! The CPU backend: buffers are `Vec<f32>`, kernels are multi-threaded with
//! rayon, matrix products go through the `gemm` crate.

use rayon::prelude::*;

use crate::backend::BackendCore;
use crate::error::{Error, Result};

/// Below this many elements an elementwise loop runs on one thread: splitting
/// it would cost more than it saves.
pub(crate) const PARALLEL_MIN_ELEMS: usize = 1 << 15;

/// The CPU backend. Cheap to clone; all clones share rayon's global pool.
#[derive(Clone, Debug, Default)]
pub struct CpuBackend;

impl CpuBackend {
    /// The CPU backend on rayon's global thread pool.
    pub fn new() -> Self {
        CpuBackend
    }

    /// Number of worker threads kernels may use.
    pub fn threads(&self) -> usize {
        rayon::current_num_threads()
    }
}

/// Checks that `buf` holds at least `need` elements.
pub(crate) fn check_len(op: &'static str, what: &str, buf: &[f32], need: usize) -> Result<()> {
    if buf.len() < need {
        return Err(Error::shape(
            op,
            format!("{what} holds {} elements, needs {need}", buf.len()),
        ));
    }
    Ok(())
}

impl BackendCore for CpuBackend {
    type Buf = Vec<f32>;

    fn name(&self) -> String {
        "cpu".to_string()
    }

    fn zeros(&self, len: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; len])
    }

    fn upload(&self, host: &[f32]) -> Result<Vec<f32>> {
        Ok(host.to_vec())
    }

    fn download(&self, buf: &Vec<f32>) -> Result<Vec<f32>> {
        Ok(buf.clone())
    }

    fn len(&self, buf: &Vec<f32>) -> usize {
        buf.len()
    }

    fn duplicate(&self, buf: &Vec<f32>) -> Result<Vec<f32>> {
        Ok(buf.clone())
    }

    fn fill(&self, buf: &mut Vec<f32>, value: f32) -> Result<()> {
        buf.fill(value);
        Ok(())
    }

    fn axpy(&self, alpha: f32, x: &Vec<f32>, y: &mut Vec<f32>) -> Result<()> {
        if x.len() != y.len() {
            return Err(Error::shape(
                "axpy",
                format!("x has {} elements, y has {}", x.len(), y.len()),
            ));
        }
        if y.len() >= PARALLEL_MIN_ELEMS {
            y.par_iter_mut()
                .zip(x.par_iter())
                .for_each(|(y, x)| *y += alpha * x);
        } else {
            y.iter_mut().zip(x).for_each(|(y, x)| *y += alpha * x);
        }
        Ok(())
    }

    fn scale(&self, alpha: f32, x: &mut Vec<f32>) -> Result<()> {
        if x.len() >= PARALLEL_MIN_ELEMS {
            x.par_iter_mut().for_each(|v| *v *= alpha);
        } else {
            x.iter_mut().for_each(|v| *v *= alpha);
        }
        Ok(())
    }

    fn sum_squares(&self, x: &Vec<f32>) -> Result<f64> {
        let sq = |c: &[f32]| c.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>();
        Ok(if x.len() >= PARALLEL_MIN_ELEMS {
            x.par_chunks(4096).map(sq).sum()
        } else {
            sq(x)
        })
    }
}
