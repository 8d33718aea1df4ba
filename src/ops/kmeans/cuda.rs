//! Batched k-means steps on the GPU (kernels/kmeans.cu and sq_norms_f32 of
//! reduce.cu, launch geometry as in their comments): assignment through
//! 32×32 dot-product tiles with a fused arg-min, update as one block per
//! (cluster, problem) scanning the labels in order (deterministic).

use crate::backend::cuda_kernels::{KernelId, ids};
use cudarc::driver::{CudaSlice, PushKernelArg};

use crate::backend::BackendCore;
use crate::backend::cuda::{CudaBackend, check_len, driver_err, int};
use crate::error::{Error, Result};
use crate::ops::kmeans::kernels::{KMeansKernels, KMeansSpec};

/// Kernel arguments `(n, k, d)` after checking the spec and the data.
fn check(op: &'static str, s: &KMeansSpec, data: &CudaSlice<f32>) -> Result<(i32, i32, i32)> {
    if s.k == 0 || s.d == 0 {
        return Err(Error::invalid(
            op,
            format!("k = {} and d = {} must both be at least 1", s.k, s.d),
        ));
    }
    check_len(op, "data", data, s.problems * s.n * s.d)?;
    int(op, "p·n·d", s.problems * s.n * s.d)?;
    int(op, "p·k·d", s.problems * s.k * s.d)?;
    Ok((int(op, "n", s.n)?, int(op, "k", s.k)?, int(op, "d", s.d)?))
}

impl KMeansKernels for CudaBackend {
    fn kmeans_assign(
        &self,
        s: &KMeansSpec,
        data: &CudaSlice<f32>,
        centroids: &CudaSlice<f32>,
        labels: &mut CudaSlice<f32>,
        min_dist: &mut CudaSlice<f32>,
    ) -> Result<()> {
        const OP: &str = "kmeans_assign";
        let (n, k, d) = check(OP, s, data)?;
        let (p, pk) = (s.problems, s.problems * s.k);
        check_len(OP, "centroids", centroids, pk * s.d)?;
        check_len(OP, "labels", labels, p * s.n)?;
        check_len(OP, "min_dist", min_dist, p * s.n)?;
        if p == 0 || s.n == 0 {
            return Ok(());
        }
        let mut cnorm = self.zeros(pk)?;
        self.sq_norms(centroids, pk, s.d, &mut cnorm)?;
        const K: KernelId = ids::kmeans::KMEANS_ASSIGN_F32;
        let f = self.function(K)?;
        let cfg = self.config(&f, K.name, (s.n.div_ceil(32), p, 1), 256, 0)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(data)
            .arg(centroids)
            .arg(&cnorm)
            .arg(&n)
            .arg(&k)
            .arg(&d)
            .arg(labels)
            .arg(min_dist);
        // SAFETY: data holds p·n·d floats, centroids p·k·d, cnorm p·k,
        // labels and min_dist p·n (checked above); blockIdx.y < p.
        unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        Ok(())
    }

    fn kmeans_update(
        &self,
        s: &KMeansSpec,
        data: &CudaSlice<f32>,
        labels: &CudaSlice<f32>,
        sums: &mut CudaSlice<f32>,
        counts: &mut CudaSlice<f32>,
    ) -> Result<()> {
        const OP: &str = "kmeans_update";
        const K: KernelId = ids::kmeans::KMEANS_UPDATE_F32;
        let (n, k, d) = check(OP, s, data)?;
        let p = s.problems;
        check_len(OP, "labels", labels, p * s.n)?;
        check_len(OP, "sums", sums, p * s.k * s.d)?;
        check_len(OP, "counts", counts, p * s.k)?;
        if p == 0 {
            return Ok(());
        }
        let mut status = self.status(1)?;
        let f = self.function(K)?;
        let cfg = self.config(&f, K.name, (s.k, p, 1), 128, 0)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(data)
            .arg(labels)
            .arg(&n)
            .arg(&k)
            .arg(&d)
            .arg(&mut *sums)
            .arg(&mut *counts)
            .arg(&mut status);
        // SAFETY: data holds p·n·d floats, labels p·n, sums p·k·d and
        // counts p·k (checked above); status one word.
        unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        let st = self.read_status(&status)?;
        if let Some(at) = Self::flagged(st[0]) {
            let v = self.element(labels, at)?;
            return Err(Error::invalid(
                OP,
                format!(
                    "label {v} of point {} in problem {} is not in 0..{}",
                    at % s.n,
                    at / s.n,
                    s.k
                ),
            ));
        }
        Ok(())
    }
}
