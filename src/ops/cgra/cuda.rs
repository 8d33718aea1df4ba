//! The CGRA alignment loss on the GPU (kernels/cgra.cu, with sq_norms_f32
//! and sum_scale_f32 of reduce.cu), in the launch sequence of the .cu
//! header: the logits exist only as 32×32 tiles in shared memory, every
//! tiled kernel is launched once per side with (own, other) = (ha, hv) and
//! (hv, ha), on a grid of (row tiles × clips) blocks.

use crate::backend::cuda_kernels::{KernelId, ids};
use cudarc::driver::{CudaSlice, PushKernelArg};

use crate::backend::BackendCore;
use crate::backend::cuda::{BLOCK, CudaBackend, check_len, driver_err, int};
use crate::error::Result;
use crate::ops::cgra::kernels::{CgraGrads, CgraKernels, CgraSaved, CgraSpec};

/// The kernels' scalar arguments of a spec.
#[derive(Clone, Copy)]
struct Args {
    batch: i32,
    ta: i32,
    tv: i32,
    d: i32,
    inv_tau: f32,
    eps: f32,
}

/// Checks the spec and the inputs' lengths as the CPU backend does.
fn inputs(
    op: &'static str,
    spec: &CgraSpec,
    ha: &CudaSlice<f32>,
    hv: &CudaSlice<f32>,
) -> Result<Args> {
    let (na, nv) = spec.validate(op)?;
    check_len(op, "ha", ha, na)?;
    check_len(op, "hv", hv, nv)?;
    int(op, "B·Ta·d", na)?;
    int(op, "B·Tv·d", nv)?;
    int(op, "B·4·d", spec.batch * 4 * spec.dim)?;
    Ok(Args {
        batch: int(op, "batch", spec.batch)?,
        ta: int(op, "Ta", spec.ta)?,
        tv: int(op, "Tv", spec.tv)?,
        d: int(op, "dim", spec.dim)?,
        inv_tau: 1.0 / spec.tau,
        eps: spec.eps,
    })
}

/// One side of the tiled kernels: its tokens and their squared norms, the
/// other side's, and both token counts.
struct Side<'a> {
    own: &'a CudaSlice<f32>,
    other: &'a CudaSlice<f32>,
    own_sq: &'a CudaSlice<f32>,
    other_sq: &'a CudaSlice<f32>,
    t_own: i32,
    t_other: i32,
}

impl CudaBackend {
    /// `cgra_lse_f32`, `cgra_mean_prob_f32` or `cgra_prob_dot_f32` for one
    /// side: `vectors` are the per-token inputs the kernel takes after the
    /// squared norms; returns its `B·t_own` outputs.
    fn cgra_stream(
        &self,
        k: KernelId,
        a: Args,
        side: &Side<'_>,
        vectors: &[&CudaSlice<f32>],
    ) -> Result<CudaSlice<f32>> {
        let t_own = side.t_own as usize;
        let mut out = self.zeros(a.batch as usize * t_own)?;
        let f = self.function(k)?;
        let grid = (t_own.div_ceil(32), a.batch as usize, 1);
        let cfg = self.config(&f, k.name, grid, BLOCK, 0)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(side.own)
            .arg(side.other)
            .arg(side.own_sq)
            .arg(side.other_sq);
        for v in vectors {
            l.arg(*v);
        }
        l.arg(&side.t_own)
            .arg(&side.t_other)
            .arg(&a.d)
            .arg(&a.inv_tau)
            .arg(&a.eps)
            .arg(&mut out);
        // SAFETY: own / other hold B·t·d floats of their sides, the norms
        // and per-token vectors B·t of theirs (checked or allocated by the
        // callers), out B·t_own; blockIdx.y < B.
        unsafe { l.launch(cfg) }.map_err(driver_err(k.name))?;
        Ok(out)
    }

    /// Squared row norms of `rows` rows of `d` floats.
    fn cgra_sq_norms(&self, x: &CudaSlice<f32>, rows: usize, d: usize) -> Result<CudaSlice<f32>> {
        let mut out = self.zeros(rows)?;
        self.sq_norms(x, rows, d, &mut out)?;
        Ok(out)
    }
}

impl CgraKernels for CudaBackend {
    fn cgra_fwd(
        &self,
        spec: &CgraSpec,
        ha: &CudaSlice<f32>,
        hv: &CudaSlice<f32>,
    ) -> Result<(CudaSlice<f32>, CgraSaved<CudaSlice<f32>>)> {
        let a = inputs("cgra", spec, ha, hv)?;
        let (b, ta, tv, d) = (spec.batch, spec.ta, spec.tv, spec.dim);
        let sq_a = self.cgra_sq_norms(ha, b * ta, d)?;
        let sq_v = self.cgra_sq_norms(hv, b * tv, d)?;
        let audio = Side {
            own: ha,
            other: hv,
            own_sq: &sq_a,
            other_sq: &sq_v,
            t_own: a.ta,
            t_other: a.tv,
        };
        let video = Side {
            own: hv,
            other: ha,
            own_sq: &sq_v,
            other_sq: &sq_a,
            t_own: a.tv,
            t_other: a.ta,
        };
        let row_lse = self.cgra_stream(ids::cgra::CGRA_LSE_F32, a, &audio, &[])?;
        let col_lse = self.cgra_stream(ids::cgra::CGRA_LSE_F32, a, &video, &[])?;
        let weight_a = self.cgra_stream(ids::cgra::CGRA_MEAN_PROB_F32, a, &audio, &[&col_lse])?;
        let weight_v = self.cgra_stream(ids::cgra::CGRA_MEAN_PROB_F32, a, &video, &[&row_lse])?;

        const K: KernelId = ids::cgra::CGRA_POOL_F32;
        let mut pooled = self.zeros(b * 4 * d)?;
        let mut clip_loss = self.zeros(b)?;
        let f = self.function(K)?;
        let cfg = self.config(&f, K.name, (b, 1, 1), BLOCK, 0)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(ha)
            .arg(hv)
            .arg(&weight_a)
            .arg(&weight_v)
            .arg(&a.ta)
            .arg(&a.tv)
            .arg(&a.d)
            .arg(&a.eps)
            .arg(&mut pooled)
            .arg(&mut clip_loss);
        // SAFETY: ha / hv hold B·Ta·d / B·Tv·d floats, the weights B·Ta and
        // B·Tv, pooled B·4·d and clip_loss B (all allocated above).
        unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        let mut loss = self.zeros(1)?;
        self.sum_scale(&clip_loss, 1.0 / b as f32, &mut loss)?;
        Ok((
            loss,
            CgraSaved {
                sq_norm_a: sq_a,
                sq_norm_v: sq_v,
                row_lse,
                col_lse,
                weight_a,
                weight_v,
                pooled,
            },
        ))
    }

    fn cgra_bwd(
        &self,
        spec: &CgraSpec,
        ha: &CudaSlice<f32>,
        hv: &CudaSlice<f32>,
        saved: &CgraSaved<CudaSlice<f32>>,
        grad_loss: &CudaSlice<f32>,
        grads: CgraGrads<'_, CudaSlice<f32>>,
    ) -> Result<()> {
        const OP: &str = "cgra backward";
        let a = inputs(OP, spec, ha, hv)?;
        let (b, ta, tv, d) = (spec.batch, spec.ta, spec.tv, spec.dim);
        for (what, buf, need) in saved.expected_lengths(spec) {
            check_len(OP, what, buf, need)?;
        }
        check_len(OP, "loss gradient", grad_loss, 1)?;
        if let Some(g) = grads.dha.as_deref() {
            check_len(OP, "dha", g, b * ta * d)?;
        }
        if let Some(g) = grads.dhv.as_deref() {
            check_len(OP, "dhv", g, b * tv * d)?;
        }
        if grads.dha.is_none() && grads.dhv.is_none() {
            return Ok(());
        }

        // coef = [g_ā, g_v̄, g_ã, g_ṽ] per clip, α_j = V_j·g_ã, β_i = A_i·g_ṽ.
        const KC: KernelId = ids::cgra::CGRA_BWD_COEF_F32;
        let mut coef = self.zeros(b * 4 * d)?;
        let mut alpha = self.zeros(b * tv)?;
        let mut beta = self.zeros(b * ta)?;
        let f = self.function(KC)?;
        let cfg = self.config(&f, KC.name, (b, 1, 1), BLOCK, 2 * d * 4)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(ha)
            .arg(hv)
            .arg(&saved.pooled)
            .arg(grad_loss)
            .arg(&a.batch)
            .arg(&a.ta)
            .arg(&a.tv)
            .arg(&a.d)
            .arg(&a.eps)
            .arg(&mut coef)
            .arg(&mut alpha)
            .arg(&mut beta);
        // SAFETY: the inputs hold the lengths checked above, the outputs
        // were allocated with B·4·d, B·Tv and B·Ta floats; the dynamic
        // shared memory is the kernel's two d-vectors.
        unsafe { l.launch(cfg) }.map_err(driver_err(KC.name))?;

        let (sa, sv) = (&saved.sq_norm_a, &saved.sq_norm_v);
        let audio = Side {
            own: ha,
            other: hv,
            own_sq: sa,
            other_sq: sv,
            t_own: a.ta,
            t_other: a.tv,
        };
        let video = Side {
            own: hv,
            other: ha,
            own_sq: sv,
            other_sq: sa,
            t_own: a.tv,
            t_other: a.ta,
        };
        // ρ_i = Σ_j P_ij α_j and κ_j = Σ_i Q_ij β_i (both sides need both).
        let pd = ids::cgra::CGRA_PROB_DOT_F32;
        let rho = self.cgra_stream(pd, a, &audio, &[&saved.row_lse, &alpha])?;
        let kappa = self.cgra_stream(pd, a, &video, &[&saved.col_lse, &beta])?;

        const K: KernelId = ids::cgra::CGRA_BWD_F32;
        let f = self.function(K)?;
        let smem = (32 * d + 32 * 33) * 4;
        // (side, own LSE, other LSE, x1, x2, y1, y2, own weights, bar, tilde, out)
        let sides = [
            (
                &audio,
                &saved.row_lse,
                &saved.col_lse,
                &rho,
                &beta,
                &alpha,
                &kappa,
                &saved.weight_a,
                0i32,
                3i32,
                grads.dha,
            ),
            (
                &video,
                &saved.col_lse,
                &saved.row_lse,
                &kappa,
                &alpha,
                &beta,
                &rho,
                &saved.weight_v,
                1,
                2,
                grads.dhv,
            ),
        ];
        for (side, own_lse, oth_lse, x1, x2, y1, y2, weight, bar, tilde, out) in sides {
            let Some(out) = out else { continue };
            let (t_own, t_other) = (side.t_own as usize, side.t_other as usize);
            let (s_own, s_oth) = (1.0 / t_own as f32, 1.0 / t_other as f32);
            let cfg = self.config(&f, K.name, (t_own.div_ceil(32), b, 1), BLOCK, smem)?;
            let mut l = self.stream().launch_builder(&f);
            l.arg(side.own)
                .arg(side.other)
                .arg(side.own_sq)
                .arg(side.other_sq)
                .arg(own_lse)
                .arg(oth_lse)
                .arg(x1)
                .arg(x2)
                .arg(y1)
                .arg(y2)
                .arg(weight)
                .arg(&coef)
                .arg(&bar)
                .arg(&tilde)
                .arg(&side.t_own)
                .arg(&side.t_other)
                .arg(&a.d)
                .arg(&s_own)
                .arg(&s_oth)
                .arg(&a.inv_tau)
                .arg(&a.eps)
                .arg(out);
            // SAFETY: every per-token vector holds B·t of its side (checked
            // or allocated above), coef B·4·d, out B·t_own·d (checked);
            // the dynamic shared memory is the 32×d accumulator and the
            // 32×33 weight tile, opted in above 48 KiB by `config`.
            unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        }
        Ok(())
    }
}
