//! CGRA alignment loss on the CPU: one rayon task per clip.
//!
//! A task normalises its clip's tokens, forms the `Ta × Tv` logits with
//! [`gemm_serial`], and reduces them to the row / column log-sum-exps and
//! the pooled softmax weights (`w_j = mean_i P_ij`, `u_i = mean_j Q_ij`), so
//! the guided features are only ever formed pooled. The backward recomputes
//! the clip's logits from the saved norms and log-sum-exps, builds `∂S` in
//! place, and returns through two more products (`∂S·v̂`, `∂Sᵀ·â`).

use rayon::prelude::*;

use crate::backend::cpu::{CpuBackend, check_len};
use crate::error::Result;
use crate::ops::cgra::kernels::{CgraGrads, CgraKernels, CgraSaved, CgraSpec};
use crate::ops::infonce::cpu::exp_fast;
use crate::ops::matmul::cpu::gemm_serial;
use crate::ops::matmul::kernels::GemmSpec;

/// `Σ x_k·y_k`.
fn dot(x: &[f32], y: &[f32]) -> f32 {
    x.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// `1 / max(sqrt(sq), eps)`.
fn inv_norm(sq: f32, eps: f32) -> f32 {
    1.0 / sq.sqrt().max(eps)
}

/// Row-normalised copy of `x` (`d` columns) given its rows' squared norms.
fn normalised(x: &[f32], sq: &[f32], d: usize, eps: f32) -> Vec<f32> {
    let mut out = x.to_vec();
    for (row, &s) in out.chunks_exact_mut(d).zip(sq) {
        let k = inv_norm(s, eps);
        row.iter_mut().for_each(|v| *v *= k);
    }
    out
}

/// `S = x̂·ŷᵀ/τ` for normalised rows `x̂ [tx, d]`, `ŷ [ty, d]`.
fn logits(xn: &[f32], yn: &[f32], tx: usize, ty: usize, d: usize, tau: f32) -> Vec<f32> {
    let mut s = vec![0.0f32; tx * ty];
    let spec = GemmSpec {
        alpha: 1.0 / tau,
        ..GemmSpec::new(tx, ty, d).transposed(false, true)
    };
    gemm_serial(&spec, xn, yn, &mut s);
    s
}

/// Row and column log-sum-exp of `s` (`tv` columns).
fn lse_rows_cols(s: &[f32], tv: usize, row_lse: &mut [f32], col_lse: &mut [f32]) {
    let mut cmax = vec![f32::NEG_INFINITY; tv];
    for (row, rl) in s.chunks_exact(tv).zip(row_lse.iter_mut()) {
        let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let sum: f32 = row.iter().map(|&v| exp_fast(v - m)).sum();
        *rl = m + sum.ln();
        cmax.iter_mut().zip(row).for_each(|(c, &v)| *c = c.max(v));
    }
    let mut csum = vec![0.0f32; tv];
    for row in s.chunks_exact(tv) {
        csum.iter_mut()
            .zip(row)
            .zip(&cmax)
            .for_each(|((a, &v), &m)| *a += exp_fast(v - m));
    }
    for ((l, &m), &sum) in col_lse.iter_mut().zip(&cmax).zip(&csum) {
        *l = m + sum.ln();
    }
}

/// Overwrites `s` with `P = exp(s − row_lse_i)` and returns `Q = exp(s − col_lse_j)`.
fn probabilities(s: &mut [f32], tv: usize, row_lse: &[f32], col_lse: &[f32]) -> Vec<f32> {
    let mut q = vec![0.0f32; s.len()];
    for ((row, qrow), &rl) in s
        .chunks_exact_mut(tv)
        .zip(q.chunks_exact_mut(tv))
        .zip(row_lse)
    {
        qrow.iter_mut()
            .zip(row.iter())
            .zip(col_lse)
            .for_each(|((q, &v), &cl)| *q = exp_fast(v - cl));
        row.iter_mut().for_each(|v| *v = exp_fast(*v - rl));
    }
    q
}

/// `out = Σ_r c_r·x_r` over the rows of `x` (`d` columns).
fn weighted_rows(x: &[f32], c: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    for (row, &k) in x.chunks_exact(out.len()).zip(c) {
        out.iter_mut().zip(row).for_each(|(o, &v)| *o += k * v);
    }
}

/// Norms `max(‖x‖, ε)` of two vectors and their cosine.
fn cosine(x: &[f32], y: &[f32], eps: f32) -> (f32, f32, f32) {
    let (nx, ny) = (dot(x, x).sqrt(), dot(y, y).sqrt());
    let c = dot(x, y) / (nx.max(eps) * ny.max(eps));
    (nx, ny, c)
}

/// Adds `k·∂cos(x, y)/∂x` into `gx` (`nx = ‖x‖`, `ny = ‖y‖`, `c = cos`).
fn add_cos_grad(
    gx: &mut [f32],
    x: &[f32],
    y: &[f32],
    (nx, ny, c): (f32, f32, f32),
    k: f32,
    eps: f32,
) {
    let a = k / (nx.max(eps) * ny.max(eps));
    let b = if nx > eps { k * c / (nx * nx) } else { 0.0 };
    gx.iter_mut()
        .zip(x.iter().zip(y))
        .for_each(|(g, (&xv, &yv))| *g += a * yv - b * xv);
}

/// One clip's forward: fills its saved slices and returns `L_clip`.
#[allow(clippy::too_many_arguments)]
fn forward_clip(
    spec: &CgraSpec,
    a: &[f32],
    v: &[f32],
    sq_a: &mut [f32],
    sq_v: &mut [f32],
    row_lse: &mut [f32],
    col_lse: &mut [f32],
    u: &mut [f32],
    w: &mut [f32],
    pooled: &mut [f32],
) -> f64 {
    let (ta, tv, d, eps) = (spec.ta, spec.tv, spec.dim, spec.eps);
    for (s, row) in sq_a.iter_mut().zip(a.chunks_exact(d)) {
        *s = dot(row, row);
    }
    for (s, row) in sq_v.iter_mut().zip(v.chunks_exact(d)) {
        *s = dot(row, row);
    }
    let an = normalised(a, sq_a, d, eps);
    let vn = normalised(v, sq_v, d, eps);
    let mut s = logits(&an, &vn, ta, tv, d, spec.tau);
    lse_rows_cols(&s, tv, row_lse, col_lse);
    let q = probabilities(&mut s, tv, row_lse, col_lse);
    // w_j = mean_i P_ij, u_i = mean_j Q_ij.
    weighted_rows(&s, &vec![1.0 / ta as f32; ta], w);
    for (ui, qrow) in u.iter_mut().zip(q.chunks_exact(tv)) {
        *ui = qrow.iter().sum::<f32>() / tv as f32;
    }
    let (abar, rest) = pooled.split_at_mut(d);
    let (vbar, rest) = rest.split_at_mut(d);
    let (atil, vtil) = rest.split_at_mut(d);
    weighted_rows(a, &vec![1.0 / ta as f32; ta], abar);
    weighted_rows(v, &vec![1.0 / tv as f32; tv], vbar);
    weighted_rows(v, w, atil);
    weighted_rows(a, u, vtil);
    let (_, _, c1) = cosine(abar, vtil, eps);
    let (_, _, c2) = cosine(vbar, atil, eps);
    2.0 - f64::from(c1) - f64::from(c2)
}

/// The saved slices of one clip.
struct ClipSaved<'a> {
    sq_a: &'a [f32],
    sq_v: &'a [f32],
    row_lse: &'a [f32],
    col_lse: &'a [f32],
    u: &'a [f32],
    w: &'a [f32],
    pooled: &'a [f32],
}

/// Adds one side's token gradients into `out`: back through
/// `x̂ = x / max(‖x‖, ε)` from `∂x̂` (`dxn`), plus the pooled terms
/// `weights_r·g_tilde + g_bar/T`.
#[allow(clippy::too_many_arguments)]
fn finish_side(
    xn: &[f32],
    dxn: &[f32],
    sq: &[f32],
    weights: &[f32],
    g_tilde: &[f32],
    g_bar: &[f32],
    eps: f32,
    out: &mut [f32],
) {
    let d = g_bar.len();
    let mean = 1.0 / sq.len() as f32;
    for (((o, (nr, dr)), &s), &wt) in out
        .chunks_exact_mut(d)
        .zip(xn.chunks_exact(d).zip(dxn.chunks_exact(d)))
        .zip(sq)
        .zip(weights)
    {
        let norm = s.sqrt();
        let inv = 1.0 / norm.max(eps);
        let proj = if norm > eps { dot(nr, dr) } else { 0.0 };
        o.iter_mut()
            .zip(nr.iter().zip(dr))
            .zip(g_tilde.iter().zip(g_bar))
            .for_each(|((o, (&n, &dn)), (&gt, &gb))| {
                *o += (dn - n * proj) * inv + wt * gt + mean * gb;
            });
    }
}

/// One clip's backward: adds into the wanted gradient slices.
fn backward_clip(
    spec: &CgraSpec,
    a: &[f32],
    v: &[f32],
    sv: &ClipSaved<'_>,
    g: f32,
    da: Option<&mut [f32]>,
    dv: Option<&mut [f32]>,
) {
    let (ta, tv, d, eps) = (spec.ta, spec.tv, spec.dim, spec.eps);
    let an = normalised(a, sv.sq_a, d, eps);
    let vn = normalised(v, sv.sq_v, d, eps);
    let mut s = logits(&an, &vn, ta, tv, d, spec.tau);
    let q = probabilities(&mut s, tv, sv.row_lse, sv.col_lse);
    let p = &mut s;

    // Gradients of −g·(cos(ā, ṽ) + cos(v̄, ã)) with respect to the pooled vectors.
    let (abar, vbar) = (&sv.pooled[..d], &sv.pooled[d..2 * d]);
    let (atil, vtil) = (&sv.pooled[2 * d..3 * d], &sv.pooled[3 * d..4 * d]);
    let c1 = cosine(abar, vtil, eps);
    let c2 = cosine(vbar, atil, eps);
    let (mut g_abar, mut g_vtil) = (vec![0.0f32; d], vec![0.0f32; d]);
    let (mut g_vbar, mut g_atil) = (vec![0.0f32; d], vec![0.0f32; d]);
    add_cos_grad(&mut g_abar, abar, vtil, c1, -g, eps);
    add_cos_grad(&mut g_vtil, vtil, abar, (c1.1, c1.0, c1.2), -g, eps);
    add_cos_grad(&mut g_vbar, vbar, atil, c2, -g, eps);
    add_cos_grad(&mut g_atil, atil, vbar, (c2.1, c2.0, c2.2), -g, eps);

    // α_j = V_j·g_ã, β_i = A_i·g_ṽ, ρ_i = Σ_j P_ij α_j, κ_j = Σ_i Q_ij β_i.
    let alpha: Vec<f32> = v.chunks_exact(d).map(|r| dot(r, &g_atil)).collect();
    let beta: Vec<f32> = a.chunks_exact(d).map(|r| dot(r, &g_vtil)).collect();
    let rho: Vec<f32> = p.chunks_exact(tv).map(|r| dot(r, &alpha)).collect();
    let mut kappa = vec![0.0f32; tv];
    weighted_rows(&q, &beta, &mut kappa);

    // ∂S_ij / τ into P's storage.
    let (ka, kv) = (1.0 / (ta as f32 * spec.tau), 1.0 / (tv as f32 * spec.tau));
    for (((prow, qrow), &r), &b) in p
        .chunks_exact_mut(tv)
        .zip(q.chunks_exact(tv))
        .zip(&rho)
        .zip(&beta)
    {
        prow.iter_mut()
            .zip(qrow)
            .zip(alpha.iter().zip(&kappa))
            .for_each(|((pv, &qv), (&al, &ka_j))| {
                *pv = *pv * (al - r) * ka + qv * (b - ka_j) * kv;
            });
    }
    let ds = &*p;

    if let Some(da) = da {
        let mut dan = vec![0.0f32; ta * d];
        gemm_serial(&GemmSpec::new(ta, d, tv), ds, &vn, &mut dan);
        finish_side(&an, &dan, sv.sq_a, sv.u, &g_vtil, &g_abar, eps, da);
    }
    if let Some(dv) = dv {
        let mut dvn = vec![0.0f32; tv * d];
        gemm_serial(
            &GemmSpec::new(tv, d, ta).transposed(true, false),
            ds,
            &an,
            &mut dvn,
        );
        finish_side(&vn, &dvn, sv.sq_v, sv.w, &g_atil, &g_vbar, eps, dv);
    }
}

/// Checks the spec and the inputs' lengths; returns the exact input slices.
fn inputs<'a>(
    op: &'static str,
    spec: &CgraSpec,
    ha: &'a [f32],
    hv: &'a [f32],
) -> Result<(&'a [f32], &'a [f32])> {
    let (na, nv) = spec.validate(op)?;
    check_len(op, "ha", ha, na)?;
    check_len(op, "hv", hv, nv)?;
    Ok((&ha[..na], &hv[..nv]))
}

/// Per-clip mutable chunks of an optional gradient buffer (`None` per clip
/// when the gradient is not wanted).
fn clip_chunks(
    buf: Option<&mut Vec<f32>>,
    per_clip: usize,
    batch: usize,
) -> Vec<Option<&mut [f32]>> {
    match buf {
        Some(b) => b[..per_clip * batch]
            .chunks_exact_mut(per_clip)
            .map(Some)
            .collect(),
        None => (0..batch).map(|_| None).collect(),
    }
}

impl CgraKernels for CpuBackend {
    fn cgra_fwd(
        &self,
        spec: &CgraSpec,
        ha: &Vec<f32>,
        hv: &Vec<f32>,
    ) -> Result<(Vec<f32>, CgraSaved<Vec<f32>>)> {
        let (ha, hv) = inputs("cgra", spec, ha, hv)?;
        let (b, ta, tv, d) = (spec.batch, spec.ta, spec.tv, spec.dim);
        let mut sq_a = vec![0.0f32; b * ta];
        let mut sq_v = vec![0.0f32; b * tv];
        let mut row_lse = vec![0.0f32; b * ta];
        let mut col_lse = vec![0.0f32; b * tv];
        let mut weight_a = vec![0.0f32; b * ta];
        let mut weight_v = vec![0.0f32; b * tv];
        let mut pooled = vec![0.0f32; b * 4 * d];
        let total: f64 = sq_a
            .par_chunks_mut(ta)
            .zip(sq_v.par_chunks_mut(tv))
            .zip(row_lse.par_chunks_mut(ta))
            .zip(col_lse.par_chunks_mut(tv))
            .zip(weight_a.par_chunks_mut(ta))
            .zip(weight_v.par_chunks_mut(tv))
            .zip(pooled.par_chunks_mut(4 * d))
            .enumerate()
            .map(|(i, ((((((sa, sv), rl), cl), u), w), pl))| {
                let a = &ha[i * ta * d..(i + 1) * ta * d];
                let v = &hv[i * tv * d..(i + 1) * tv * d];
                forward_clip(spec, a, v, sa, sv, rl, cl, u, w, pl)
            })
            .sum();
        let loss = (total / b as f64) as f32;
        Ok((
            vec![loss],
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
        ha: &Vec<f32>,
        hv: &Vec<f32>,
        saved: &CgraSaved<Vec<f32>>,
        grad_loss: &Vec<f32>,
        grads: CgraGrads<'_, Vec<f32>>,
    ) -> Result<()> {
        const OP: &str = "cgra backward";
        let (ha, hv) = inputs(OP, spec, ha, hv)?;
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
        let g = grad_loss[0] / b as f32;
        let da = clip_chunks(grads.dha, ta * d, b);
        let dv = clip_chunks(grads.dhv, tv * d, b);
        da.into_par_iter()
            .zip(dv)
            .enumerate()
            .for_each(|(i, (da, dv))| {
                let sv = ClipSaved {
                    sq_a: &saved.sq_norm_a[i * ta..(i + 1) * ta],
                    sq_v: &saved.sq_norm_v[i * tv..(i + 1) * tv],
                    row_lse: &saved.row_lse[i * ta..(i + 1) * ta],
                    col_lse: &saved.col_lse[i * tv..(i + 1) * tv],
                    u: &saved.weight_a[i * ta..(i + 1) * ta],
                    w: &saved.weight_v[i * tv..(i + 1) * tv],
                    pooled: &saved.pooled[i * 4 * d..(i + 1) * 4 * d],
                };
                let a = &ha[i * ta * d..(i + 1) * ta * d];
                let v = &hv[i * tv * d..(i + 1) * tv * d];
                backward_clip(spec, a, v, &sv, g, da, dv);
            });
        Ok(())
    }
}
