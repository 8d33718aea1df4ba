//! LayerNorm and L2 normalisation on the GPU (kernels/layernorm.cu and
//! kernels/l2norm.cu): one warp per row for the forward passes and the
//! input gradients; the LayerNorm parameter gradients as column sums in row
//! chunks, reduced by `sum_rows_f32` when there is more than one chunk.

use crate::backend::cuda_kernels::{KernelId, ids};
use cudarc::driver::{CudaSlice, PushKernelArg};

use crate::backend::BackendCore;
use crate::backend::cuda::{
    BLOCK, CudaBackend, check_exact, driver_err, int, row_warp_grid, rows_per_split,
};
use crate::error::{Error, Result};
use crate::ops::norm::kernels::{
    LayerNormGrads, LayerNormNeeds, LayerNormStats, NormKernels, NormSpec,
};

/// Checks `eps` and `d` as the CPU backend does; returns `(rows, d)` as
/// kernel arguments.
fn check_spec(op: &'static str, spec: &NormSpec) -> Result<(i32, i32)> {
    if !(spec.eps > 0.0 && spec.eps.is_finite()) {
        return Err(Error::invalid(
            op,
            format!("eps must be positive and finite, got {}", spec.eps),
        ));
    }
    if spec.d == 0 {
        return Err(Error::shape(op, "rows of length 0"));
    }
    int(op, "rows·d", spec.rows * spec.d)?;
    Ok((int(op, "rows", spec.rows)?, int(op, "d", spec.d)?))
}

impl NormKernels for CudaBackend {
    fn layer_norm_fwd(
        &self,
        spec: &NormSpec,
        x: &CudaSlice<f32>,
        gamma: &CudaSlice<f32>,
        beta: &CudaSlice<f32>,
    ) -> Result<(CudaSlice<f32>, LayerNormStats<CudaSlice<f32>>)> {
        const OP: &str = "layer_norm_fwd";
        const K: KernelId = ids::layernorm::LAYER_NORM_FWD_F32;
        let (ri, di) = check_spec(OP, spec)?;
        let (rows, d) = (spec.rows, spec.d);
        check_exact(OP, "x", x, rows * d)?;
        check_exact(OP, "gamma", gamma, d)?;
        check_exact(OP, "beta", beta, d)?;
        let mut y = self.zeros(rows * d)?;
        let mut mean = self.zeros(rows)?;
        let mut rstd = self.zeros(rows)?;
        if rows > 0 {
            let eps = spec.eps;
            let f = self.function(K)?;
            let cfg = self.config(&f, K.name, row_warp_grid(rows), BLOCK, 0)?;
            let mut l = self.stream().launch_builder(&f);
            l.arg(x)
                .arg(gamma)
                .arg(beta)
                .arg(&ri)
                .arg(&di)
                .arg(&eps)
                .arg(&mut y)
                .arg(&mut mean)
                .arg(&mut rstd);
            // SAFETY: x and y hold rows·d floats, gamma and beta d, mean
            // and rstd rows (checked and allocated above).
            unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        }
        Ok((y, LayerNormStats { mean, rstd }))
    }

    fn layer_norm_bwd(
        &self,
        spec: &NormSpec,
        x: &CudaSlice<f32>,
        gamma: &CudaSlice<f32>,
        stats: &LayerNormStats<CudaSlice<f32>>,
        grad_out: &CudaSlice<f32>,
        needs: LayerNormNeeds,
    ) -> Result<LayerNormGrads<CudaSlice<f32>>> {
        const OP: &str = "layer_norm_bwd";
        let (ri, di) = check_spec(OP, spec)?;
        let (rows, d) = (spec.rows, spec.d);
        let n = rows * d;
        check_exact(OP, "x", x, n)?;
        check_exact(OP, "grad_out", grad_out, n)?;
        check_exact(OP, "gamma", gamma, d)?;
        check_exact(OP, "mean", &stats.mean, rows)?;
        check_exact(OP, "rstd", &stats.rstd, rows)?;
        let mut dx = None;
        if needs.dx {
            const K: KernelId = ids::layernorm::LAYER_NORM_BWD_DX_F32;
            let mut out = self.zeros(n)?;
            if rows > 0 {
                let f = self.function(K)?;
                let cfg = self.config(&f, K.name, row_warp_grid(rows), BLOCK, 0)?;
                let mut l = self.stream().launch_builder(&f);
                l.arg(x)
                    .arg(gamma)
                    .arg(&stats.mean)
                    .arg(&stats.rstd)
                    .arg(grad_out)
                    .arg(&ri)
                    .arg(&di)
                    .arg(&mut out);
                // SAFETY: x, grad_out and out hold rows·d floats, gamma d,
                // mean and rstd rows (checked above).
                unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
            }
            dx = Some(out);
        }
        let (mut dgamma, mut dbeta) = (None, None);
        if needs.params {
            const K: KernelId = ids::layernorm::LAYER_NORM_BWD_PARAMS_F32;
            if rows == 0 {
                dgamma = Some(self.zeros(d)?);
                dbeta = Some(self.zeros(d)?);
            } else {
                let split = rows_per_split(rows);
                let chunks = rows.div_ceil(split);
                let si = int(OP, "rows per split", split)?;
                let mut pg = self.zeros(chunks * d)?;
                let mut pb = self.zeros(chunks * d)?;
                let f = self.function(K)?;
                let cfg = self.config(&f, K.name, (d.div_ceil(32), chunks, 1), BLOCK, 0)?;
                let mut l = self.stream().launch_builder(&f);
                l.arg(x)
                    .arg(&stats.mean)
                    .arg(&stats.rstd)
                    .arg(grad_out)
                    .arg(&ri)
                    .arg(&di)
                    .arg(&si)
                    .arg(&mut pg)
                    .arg(&mut pb);
                // SAFETY: x and grad_out hold rows·d floats, mean and rstd
                // rows, the partials chunks·d (blockIdx.y < chunks).
                unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
                if chunks == 1 {
                    dgamma = Some(pg);
                    dbeta = Some(pb);
                } else {
                    dgamma = Some(self.reduce_partials(&pg, chunks, d)?);
                    dbeta = Some(self.reduce_partials(&pb, chunks, d)?);
                }
            }
        }
        Ok(LayerNormGrads { dx, dgamma, dbeta })
    }

    fn l2_normalize_fwd(
        &self,
        spec: &NormSpec,
        x: &CudaSlice<f32>,
    ) -> Result<(CudaSlice<f32>, CudaSlice<f32>)> {
        const OP: &str = "l2_normalize_fwd";
        const K: KernelId = ids::l2norm::L2_NORMALIZE_FWD_F32;
        let (ri, di) = check_spec(OP, spec)?;
        let rows = spec.rows;
        check_exact(OP, "x", x, rows * spec.d)?;
        let mut y = self.zeros(rows * spec.d)?;
        let mut norms = self.zeros(rows)?;
        if rows > 0 {
            let eps = spec.eps;
            let f = self.function(K)?;
            let cfg = self.config(&f, K.name, row_warp_grid(rows), BLOCK, 0)?;
            let mut l = self.stream().launch_builder(&f);
            l.arg(x)
                .arg(&ri)
                .arg(&di)
                .arg(&eps)
                .arg(&mut y)
                .arg(&mut norms);
            // SAFETY: x and y hold rows·d floats, norms rows.
            unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        }
        Ok((y, norms))
    }

    fn l2_normalize_bwd(
        &self,
        spec: &NormSpec,
        x: &CudaSlice<f32>,
        norms: &CudaSlice<f32>,
        grad_out: &CudaSlice<f32>,
    ) -> Result<CudaSlice<f32>> {
        const OP: &str = "l2_normalize_bwd";
        const K: KernelId = ids::l2norm::L2_NORMALIZE_BWD_F32;
        let (ri, di) = check_spec(OP, spec)?;
        let (rows, n) = (spec.rows, spec.rows * spec.d);
        check_exact(OP, "x", x, n)?;
        check_exact(OP, "grad_out", grad_out, n)?;
        check_exact(OP, "norms", norms, rows)?;
        let mut dx = self.zeros(n)?;
        if rows > 0 {
            let eps = spec.eps;
            let f = self.function(K)?;
            let cfg = self.config(&f, K.name, row_warp_grid(rows), BLOCK, 0)?;
            let mut l = self.stream().launch_builder(&f);
            l.arg(x)
                .arg(norms)
                .arg(grad_out)
                .arg(&ri)
                .arg(&di)
                .arg(&eps)
                .arg(&mut dx);
            // SAFETY: x, grad_out and dx hold rows·d floats, norms rows.
            unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        }
        Ok(dx)
    }
}
