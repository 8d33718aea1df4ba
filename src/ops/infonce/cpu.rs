//! Fused symmetric InfoNCE on the CPU.
//!
//! The logit matrix `S = za·zvᵀ/τ` is only ever materialised one tile at a
//! time: `TILE_OWN × TILE_STREAM` floats (128 KiB) per task, computed with
//! [`gemm_serial`] while rayon spreads tasks over the cores.
//!
//! Forward: the row tiles are split into a few contiguous groups (about two
//! per thread). A group streams its rows' tiles across all columns, keeping a
//! running (max, sum-of-exp) per row — finished in the group — and a running
//! (max, sum-of-exp) per column over the group's rows. The groups' column
//! pairs are then merged (`M = max m_g`, `Σ s_g·e^{m_g−M}`), so the column
//! LSE costs no second pass over the tiles and `O(groups·B)` extra memory.
//!
//! Backward: `dza` is parallel over row tiles and `dzv` over column tiles.
//! Each task recomputes its tiles of `S` (or `Sᵀ`), turns them in place into
//! `p + q` from the saved LSE vectors, and multiplies by the other side's
//! embeddings into a `TILE_OWN × d` accumulator. No task writes outside its
//! own rows, so there are no atomics and no shared `B×B` state.

use rayon::prelude::*;

use crate::backend::cpu::{CpuBackend, check_len};
use crate::error::Result;
use crate::ops::infonce::kernels::{InfoNceGrads, InfoNceKernels, InfoNceLse, InfoNceSpec};
use crate::ops::matmul::cpu::gemm_serial;
use crate::ops::matmul::kernels::GemmSpec;

/// Rows of a tile: the embeddings a task owns.
const TILE_OWN: usize = 128;
/// Columns of a tile: the embeddings a task streams past its rows.
const TILE_STREAM: usize = 256;
/// Lanes of the vectorisable reductions.
const LANES: usize = 8;

/// `e^x` to about 2 ulp, written so loops over it vectorise (no branches,
/// no libm call). Inputs are clamped to `[-87.3, 88.3]`, so results below
/// `≈1e-38` come out as `≈1e-38`; NaN propagates.
#[inline(always)]
pub(crate) fn exp_fast(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2²³: adding it rounds to an integer held in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    const MAGIC_BITS: i32 = 0x4B40_0000;
    let x = x.clamp(-87.3, 88.3);
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    // Cephes expf polynomial on [-ln2/2, ln2/2].
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let y = p * (r * r) + r + 1.0;
    let e = (t.to_bits() as i32 - MAGIC_BITS + 127) << 23;
    y * f32::from_bits(e as u32)
}

/// Largest element (−∞ for an empty slice).
fn max_of(v: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = v.chunks_exact(LANES);
    let mut m = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = a.max(x);
        }
    }
    for a in acc {
        m = m.max(a);
    }
    m
}

/// `Σ exp(v_k − shift)`.
fn sum_exp_shifted(v: &[f32], shift: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|&x| exp_fast(x - shift))
        .sum();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += exp_fast(x - shift);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Largest spread of log-sum-exp references over which one shared reference
/// keeps every `exp` of a tile in f32 range (`e^±60` is far from `e^±87`).
const SHARED_SHIFT_SPAN: f32 = 60.0;

/// Merges a (max, sum of `exp(· − max)`) pair into a running one.
fn merge(m_run: &mut f32, s_run: &mut f32, m: f32, sum: f32) {
    let top = m_run.max(m);
    if top > f32::NEG_INFINITY {
        *s_run = *s_run * (*m_run - top).exp() + sum * (m - top).exp();
        *m_run = top;
    }
}

/// Per-row and per-column (max, sum of `exp(· − max)`) of a logit tile `s`
/// with `tc` columns; `s` is overwritten.
///
/// When the rows' and columns' maxima all lie within [`SHARED_SHIFT_SPAN`]
/// of the tile's maximum, one `exp` per element against that shared maximum
/// serves both the row and the column sums; otherwise rows and columns each
/// take their own maximum (two `exp`s per element).
fn tile_stats(
    s: &mut [f32],
    tc: usize,
    rmax: &mut [f32],
    rsum: &mut [f32],
    cmax: &mut [f32],
    csum: &mut [f32],
) {
    cmax.fill(f32::NEG_INFINITY);
    for (row, rm) in s.chunks_exact(tc).zip(rmax.iter_mut()) {
        *rm = max_of(row);
        cmax.iter_mut().zip(row).for_each(|(m, &v)| *m = m.max(v));
    }
    let top = max_of(rmax);
    let low = rmax
        .iter()
        .chain(cmax.iter())
        .fold(f32::INFINITY, |a, &b| a.min(b));
    csum.fill(0.0);
    if top - low < SHARED_SHIFT_SPAN {
        for (row, rs) in s.chunks_exact_mut(tc).zip(rsum.iter_mut()) {
            row.iter_mut().for_each(|v| *v = exp_fast(*v - top));
            *rs = sum_lanes(row);
            csum.iter_mut().zip(row.iter()).for_each(|(a, &e)| *a += e);
        }
        rmax.fill(top);
        cmax.fill(top);
    } else {
        for ((row, rs), &rm) in s.chunks_exact(tc).zip(rsum.iter_mut()).zip(rmax.iter()) {
            *rs = sum_exp_shifted(row, rm);
            csum.iter_mut()
                .zip(row)
                .zip(cmax.iter())
                .for_each(|((a, &v), &m)| *a += exp_fast(v - m));
        }
    }
}

/// Sum of a slice in [`LANES`] interleaved partial sums.
fn sum_lanes(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Overwrites a logit tile `s` (`tc` columns) with `p + q`,
/// `p_ij = exp(s_ij − own_i)`, `q_ij = exp(s_ij − other_j)`.
///
/// Every logit is at most both of its LSEs, so when the tile's LSEs span
/// less than [`SHARED_SHIFT_SPAN`] one `exp` per element suffices:
/// `p + q = exp(s − r)·(exp(r − own_i) + exp(r − other_j))` with `r` the
/// smallest LSE. Otherwise each term takes its own `exp`.
fn p_plus_q(s: &mut [f32], tc: usize, own: &[f32], other: &[f32], weights: &mut [f32]) {
    let lo = own
        .iter()
        .chain(other)
        .fold(f32::INFINITY, |a, &b| a.min(b));
    let hi = own
        .iter()
        .chain(other)
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    if hi - lo < SHARED_SHIFT_SPAN {
        let (wr, wc) = weights.split_at_mut(own.len());
        wr.iter_mut()
            .zip(own)
            .for_each(|(w, &l)| *w = (lo - l).exp());
        let wc = &mut wc[..tc];
        wc.iter_mut()
            .zip(other)
            .for_each(|(w, &l)| *w = (lo - l).exp());
        for (row, &w) in s.chunks_exact_mut(tc).zip(wr.iter()) {
            row.iter_mut()
                .zip(wc.iter())
                .for_each(|(v, &c)| *v = exp_fast(*v - lo) * (w + c));
        }
    } else {
        for (row, &l) in s.chunks_exact_mut(tc).zip(own) {
            row.iter_mut()
                .zip(other)
                .for_each(|(v, &lc)| *v = exp_fast(*v - l) + exp_fast(*v - lc));
        }
    }
}

/// `S[..tr, ..tc] = x_rows · y_colsᵀ / τ` for `tr` rows of `x` and `tc` rows of `y`.
fn logits_tile(x_rows: &[f32], y_cols: &[f32], d: usize, inv_tau: f32, s: &mut [f32]) {
    let tr = x_rows.len() / d;
    let tc = y_cols.len() / d;
    let spec = GemmSpec {
        alpha: inv_tau,
        ..GemmSpec::new(tr, tc, d).transposed(false, true)
    };
    gemm_serial(&spec, x_rows, y_cols, s);
}

/// Running (max, sum of `exp(· − max)`) of every column, over some rows.
struct ColStats {
    max: Vec<f32>,
    sum: Vec<f32>,
    /// `Σ za_i·zv_i/τ` over the same rows, in f64.
    diag: f64,
}

/// Forward over one group of consecutive rows starting at `row0`: writes the
/// rows' LSE into `row_lse` and returns the group's column statistics.
fn forward_group(
    za: &[f32],
    zv: &[f32],
    spec: &InfoNceSpec,
    row0: usize,
    row_lse: &mut [f32],
) -> ColStats {
    let (b, d) = (spec.batch, spec.dim);
    let inv_tau = 1.0 / spec.tau;
    let mut col_max = vec![f32::NEG_INFINITY; b];
    let mut col_sum = vec![0.0f32; b];
    let mut tile = vec![0.0f32; TILE_OWN * TILE_STREAM];
    let (mut tile_rmax, mut tile_rsum) = ([0.0f32; TILE_OWN], [0.0f32; TILE_OWN]);
    let (mut tile_cmax, mut tile_csum) = ([0.0f32; TILE_STREAM], [0.0f32; TILE_STREAM]);
    let mut diag = 0.0f64;
    for (t, lse_t) in row_lse.chunks_mut(TILE_OWN).enumerate() {
        let r0 = row0 + t * TILE_OWN;
        let tr = lse_t.len();
        let x_rows = &za[r0 * d..(r0 + tr) * d];
        let mut run_max = [f32::NEG_INFINITY; TILE_OWN];
        let mut run_sum = [0.0f32; TILE_OWN];
        for c0 in (0..b).step_by(TILE_STREAM) {
            let tc = (b - c0).min(TILE_STREAM);
            let s = &mut tile[..tr * tc];
            logits_tile(x_rows, &zv[c0 * d..(c0 + tc) * d], d, inv_tau, s);
            let (rmax, rsum) = (&mut tile_rmax[..tr], &mut tile_rsum[..tr]);
            let (cmax, csum) = (&mut tile_cmax[..tc], &mut tile_csum[..tc]);
            tile_stats(s, tc, rmax, rsum, cmax, csum);
            let rows = run_max.iter_mut().zip(&mut run_sum);
            for ((m_run, s_run), (&m, &sum)) in rows.zip(rmax.iter().zip(rsum.iter())) {
                merge(m_run, s_run, m, sum);
            }
            let cols = col_max[c0..c0 + tc]
                .iter_mut()
                .zip(&mut col_sum[c0..c0 + tc]);
            for ((m_run, s_run), (&m, &sum)) in cols.zip(cmax.iter().zip(csum.iter())) {
                merge(m_run, s_run, m, sum);
            }
        }
        for ((l, &m), &s) in lse_t.iter_mut().zip(&run_max).zip(&run_sum) {
            *l = m + s.ln();
        }
        let y_rows = &zv[r0 * d..(r0 + tr) * d];
        for (x, y) in x_rows
            .chunks_exact(d.max(1))
            .zip(y_rows.chunks_exact(d.max(1)))
        {
            let dot: f32 = x.iter().zip(y).map(|(a, b)| a * b).sum();
            diag += f64::from(dot * inv_tau);
        }
    }
    ColStats {
        max: col_max,
        sum: col_sum,
        diag,
    }
}

/// The loss and both LSE vectors (`b ≥ 1`, slices of exactly `b·d`).
fn forward(za: &[f32], zv: &[f32], spec: &InfoNceSpec) -> (f32, Vec<f32>, Vec<f32>) {
    let b = spec.batch;
    let row_tiles = b.div_ceil(TILE_OWN);
    let groups = row_tiles.min(2 * rayon::current_num_threads()).max(1);
    let group_rows = row_tiles.div_ceil(groups) * TILE_OWN;
    let mut row_lse = vec![0.0f32; b];
    let parts: Vec<ColStats> = row_lse
        .par_chunks_mut(group_rows)
        .enumerate()
        .map(|(g, lse)| forward_group(za, zv, spec, g * group_rows, lse))
        .collect();
    let mut col_lse = vec![0.0f32; b];
    for (j, l) in col_lse.iter_mut().enumerate() {
        let m = parts.iter().fold(f32::NEG_INFINITY, |a, p| a.max(p.max[j]));
        let s: f32 = parts.iter().map(|p| p.sum[j] * (p.max[j] - m).exp()).sum();
        *l = m + s.ln();
    }
    let lse_sum: f64 = row_lse.iter().chain(&col_lse).map(|&l| f64::from(l)).sum();
    let diag: f64 = parts.iter().map(|p| p.diag).sum();
    let loss = (lse_sum - 2.0 * diag) / (2.0 * b as f64);
    (loss as f32, row_lse, col_lse)
}

/// One side of the backward: for every row `i` of `x` (the side whose
/// gradient this is), adds `coef·[Σ_j (e^{S_ij − own_i} + e^{S_ij − other_j})·y_j − 2·y_i]`
/// into `out`, with `S = x·yᵀ/τ`.
fn backward_side(
    x: &[f32],
    y: &[f32],
    lse_own: &[f32],
    lse_other: &[f32],
    spec: &InfoNceSpec,
    coef: f32,
    out: &mut [f32],
) {
    let (b, d) = (spec.batch, spec.dim);
    let inv_tau = 1.0 / spec.tau;
    out.par_chunks_mut(TILE_OWN * d)
        .enumerate()
        .for_each(|(t, out_t)| {
            let r0 = t * TILE_OWN;
            let tr = out_t.len() / d;
            let x_rows = &x[r0 * d..(r0 + tr) * d];
            let own = &lse_own[r0..r0 + tr];
            let mut tile = vec![0.0f32; tr * TILE_STREAM];
            let mut acc = vec![0.0f32; tr * d];
            let mut weights = [0.0f32; TILE_OWN + TILE_STREAM];
            for c0 in (0..b).step_by(TILE_STREAM) {
                let tc = (b - c0).min(TILE_STREAM);
                let y_cols = &y[c0 * d..(c0 + tc) * d];
                let s = &mut tile[..tr * tc];
                logits_tile(x_rows, y_cols, d, inv_tau, s);
                p_plus_q(s, tc, own, &lse_other[c0..c0 + tc], &mut weights);
                let beta = if c0 == 0 { 0.0 } else { 1.0 };
                gemm_serial(&GemmSpec::new(tr, d, tc).beta(beta), s, y_cols, &mut acc);
            }
            let y_rows = &y[r0 * d..(r0 + tr) * d];
            for ((o, &a), &yv) in out_t.iter_mut().zip(&acc).zip(y_rows) {
                *o += coef * (a - 2.0 * yv);
            }
        });
}

/// Checks the spec and returns the exact `B·d` slices of the inputs.
fn inputs<'a>(
    op: &'static str,
    spec: &InfoNceSpec,
    za: &'a [f32],
    zv: &'a [f32],
) -> Result<(&'a [f32], &'a [f32])> {
    let n = spec.validate(op)?;
    check_len(op, "za", za, n)?;
    check_len(op, "zv", zv, n)?;
    Ok((&za[..n], &zv[..n]))
}

impl InfoNceKernels for CpuBackend {
    fn infonce_fwd(
        &self,
        spec: &InfoNceSpec,
        za: &Vec<f32>,
        zv: &Vec<f32>,
    ) -> Result<(Vec<f32>, InfoNceLse<Vec<f32>>)> {
        let (za, zv) = inputs("infonce", spec, za, zv)?;
        let (loss, row, col) = forward(za, zv, spec);
        Ok((vec![loss], InfoNceLse { row, col }))
    }

    fn infonce_bwd(
        &self,
        spec: &InfoNceSpec,
        za: &Vec<f32>,
        zv: &Vec<f32>,
        lse: &InfoNceLse<Vec<f32>>,
        grad_loss: &Vec<f32>,
        grads: InfoNceGrads<'_, Vec<f32>>,
    ) -> Result<()> {
        const OP: &str = "infonce backward";
        let (za, zv) = inputs(OP, spec, za, zv)?;
        let b = spec.batch;
        check_len(OP, "row LSE", &lse.row, b)?;
        check_len(OP, "column LSE", &lse.col, b)?;
        check_len(OP, "loss gradient", grad_loss, 1)?;
        let n = b * spec.dim;
        if n == 0 {
            return Ok(());
        }
        let coef = grad_loss[0] / (2.0 * b as f32 * spec.tau);
        let (row, col) = (&lse.row[..b], &lse.col[..b]);
        if let Some(dza) = grads.dza {
            check_len(OP, "dza", dza, n)?;
            backward_side(za, zv, row, col, spec, coef, &mut dza[..n]);
        }
        if let Some(dzv) = grads.dzv {
            check_len(OP, "dzv", dzv, n)?;
            // Sᵀ = zv·zaᵀ/τ: a column's own LSE is the column LSE.
            backward_side(zv, za, col, row, spec, coef, &mut dzv[..n]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::exp_fast;

    #[test]
    fn exp_fast_is_within_a_few_ulp_of_exp() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -87.0 + 175.0 * i as f32 / 200_000.0;
            let want = f64::from(x).exp();
            let rel = (f64::from(exp_fast(x)) - want).abs() / want;
            worst = worst.max(rel);
        }
        // f32 spacing is 1.2e-7 relative (6e-8 rounding): allow 3 ulp.
        assert!(worst < 3.6e-7, "worst relative error {worst:e}");
        assert!(exp_fast(f32::NAN).is_nan());
        assert!(exp_fast(-1e4) < 1.5e-38);
    }
}
