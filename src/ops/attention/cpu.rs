//! Fused multi-head self-attention on the CPU, flash-style.
//!
//! Work is split into tasks over (sequence, head) pairs, and further into
//! query chunks (forward) or key chunks (backward) when there are too few
//! pairs to keep every thread busy. A task gathers its head's queries, keys
//! and values out of the packed `qkv` rows into contiguous scratch, then
//! walks `Q_TILE × KV_TILE` score tiles with single-threaded GEMMs: the
//! forward keeps an online softmax (running max, running sum, rescaled
//! accumulator) and saves each query's log-sum-exp; the backward recomputes
//! each tile's probabilities from that log-sum-exp. Output rows of
//! different tasks are disjoint, so each task receives mutable references to
//! exactly the head slices it writes.

use rayon::prelude::*;

use crate::backend::cpu::{CpuBackend, check_len};
use crate::error::Result;
use crate::ops::attention::kernels::{AttentionKernels, AttentionSpec};
use crate::ops::matmul::cpu::gemm_serial;
use crate::ops::matmul::kernels::GemmSpec;
use crate::ops::softmax::cpu::{dot, exp_shift_sum, row_max, vectorized};

/// Queries per score tile.
const Q_TILE: usize = 128;
/// Keys per score tile.
const KV_TILE: usize = 128;
/// With fewer (sequence, head) pairs than this many per thread, each head is
/// split into chunks of tiles that run as separate tasks.
const MIN_PAIRS_PER_THREAD: usize = 2;

/// Rows per chunk (a whole number of `tile`s) and chunks per head, so that
/// `pairs · chunks` tasks keep `threads` threads busy. `len` is at least 1.
fn split(pairs: usize, len: usize, tile: usize, threads: usize) -> (usize, usize) {
    let tiles = len.div_ceil(tile);
    let wanted = (MIN_PAIRS_PER_THREAD * threads).div_ceil(pairs.max(1));
    let chunk_tiles = tiles.div_ceil(wanted.clamp(1, tiles));
    let rows = chunk_tiles * tile;
    (rows, len.div_ceil(rows))
}

/// Sizes derived from a spec that every task uses.
#[derive(Clone, Copy)]
struct Geom {
    seq: usize,
    heads: usize,
    dh: usize,
    /// Output row width `heads·dh`.
    width: usize,
    /// Packed input row width `3·width`.
    row: usize,
    scale: f32,
}

impl Geom {
    fn new(spec: &AttentionSpec) -> Self {
        Geom {
            seq: spec.seq,
            heads: spec.heads,
            dh: spec.head_dim,
            width: spec.width(),
            row: 3 * spec.width(),
            scale: spec.scale(),
        }
    }
}

/// Copies `dst.len() / dh` consecutive rows of `dh` elements starting at
/// row `t0` of `src` (rows `stride` apart, each read from column `col`)
/// into contiguous `dst`.
fn gather(src: &[f32], stride: usize, col: usize, dh: usize, t0: usize, dst: &mut [f32]) {
    for (t, d) in (t0..).zip(dst.chunks_exact_mut(dh)) {
        let at = t * stride + col;
        d.copy_from_slice(&src[at..at + dh]);
    }
}

/// Adds contiguous rows of `dh` elements of `src` into the referenced rows.
fn scatter_add(rows: &mut [&mut [f32]], src: &[f32], dh: usize) {
    for (dst, s) in rows.iter_mut().zip(src.chunks_exact(dh)) {
        dst.iter_mut().zip(s).for_each(|(d, s)| *d += s);
    }
}

/// `C = alpha·op(A)·op(B) + beta·C` for one tile product.
fn tile_gemm(
    (m, n, k): (usize, usize, usize),
    (trans_a, trans_b): (bool, bool),
    alpha: f32,
    beta: f32,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
) {
    let spec = GemmSpec {
        alpha,
        ..GemmSpec::new(m, n, k)
            .transposed(trans_a, trans_b)
            .beta(beta)
    };
    gemm_serial(&spec, a, b, c);
}

/// One forward task: queries `q0..q0 + out_rows.len()` of pair `pair`.
struct FwdTask<'a> {
    pair: usize,
    q0: usize,
    /// The head's slice of each of the task's output rows.
    out_rows: Vec<&'a mut [f32]>,
    /// The task's queries' log-sum-exp.
    lse: &'a mut [f32],
}

/// Per-thread forward buffers, grown on first use.
#[derive(Default)]
struct FwdScratch {
    k: Vec<f32>,
    v: Vec<f32>,
    q: Vec<f32>,
    scores: Vec<f32>,
    acc: Vec<f32>,
    max: Vec<f32>,
    sum: Vec<f32>,
}

fn grow(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

#[inline(always)]
fn forward_task(qkv: &[f32], g: Geom, task: FwdTask<'_>, scr: &mut FwdScratch) {
    let FwdTask {
        pair,
        q0,
        mut out_rows,
        lse,
    } = task;
    let (bi, hi) = (pair / g.heads, pair % g.heads);
    let (s, dh) = (g.seq, g.dh);
    let seq_qkv = &qkv[bi * s * g.row..(bi + 1) * s * g.row];
    let k = grow(&mut scr.k, s * dh);
    gather(seq_qkv, g.row, g.width + hi * dh, dh, 0, k);
    let v = grow(&mut scr.v, s * dh);
    gather(seq_qkv, g.row, 2 * g.width + hi * dh, dh, 0, v);
    let (k, v) = (&scr.k[..s * dh], &scr.v[..s * dh]);

    for (ti, (out_tile, lse_tile)) in out_rows
        .chunks_mut(Q_TILE)
        .zip(lse.chunks_mut(Q_TILE))
        .enumerate()
    {
        let tq = out_tile.len();
        let q = grow(&mut scr.q, tq * dh);
        gather(seq_qkv, g.row, hi * dh, dh, q0 + ti * Q_TILE, q);
        let q = &scr.q[..tq * dh];
        let acc = grow(&mut scr.acc, tq * dh);
        acc.fill(0.0);
        let max = grow(&mut scr.max, tq);
        max.fill(f32::NEG_INFINITY);
        let sum = grow(&mut scr.sum, tq);
        sum.fill(0.0);
        for j0 in (0..s).step_by(KV_TILE) {
            let tk = KV_TILE.min(s - j0);
            let scores = grow(&mut scr.scores, tq * tk);
            let kj = &k[j0 * dh..(j0 + tk) * dh];
            tile_gemm((tq, tk, dh), (false, true), g.scale, 0.0, q, kj, scores);
            for (((row, m), l), a) in scores
                .chunks_exact_mut(tk)
                .zip(scr.max.iter_mut())
                .zip(scr.sum.iter_mut())
                .zip(scr.acc.chunks_exact_mut(dh))
            {
                let m_new = m.max(row_max(row));
                let correction = (*m - m_new).exp();
                *l = *l * correction + exp_shift_sum(row, m_new);
                if correction != 1.0 {
                    a.iter_mut().for_each(|x| *x *= correction);
                }
                *m = m_new;
            }
            let vj = &v[j0 * dh..(j0 + tk) * dh];
            let acc = &mut scr.acc[..tq * dh];
            tile_gemm((tq, dh, tk), (false, false), 1.0, 1.0, scores, vj, acc);
        }
        for ((((out, a), m), l), lse) in out_tile
            .iter_mut()
            .zip(scr.acc.chunks_exact(dh))
            .zip(&scr.max)
            .zip(&scr.sum)
            .zip(lse_tile.iter_mut())
        {
            let inv = 1.0 / l;
            out.iter_mut().zip(a).for_each(|(o, a)| *o = a * inv);
            *lse = m + l.ln();
        }
    }
}

/// One backward task: keys `k0..k0 + k_rows.len()` of pair `pair`, against
/// every query of the pair.
struct BwdTask<'a> {
    pair: usize,
    k0: usize,
    /// The head's query gradient rows when the task owns the whole head;
    /// empty when the head is split (the task then returns its partial dQ).
    q_rows: Vec<&'a mut [f32]>,
    k_rows: Vec<&'a mut [f32]>,
    v_rows: Vec<&'a mut [f32]>,
}

/// Per-thread backward buffers, grown on first use.
#[derive(Default)]
struct BwdScratch {
    q: Vec<f32>,
    dout: Vec<f32>,
    delta: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    dq: Vec<f32>,
    dk: Vec<f32>,
    dv: Vec<f32>,
    p: Vec<f32>,
    dp: Vec<f32>,
}

/// The forward values and output gradient a backward task reads.
struct BwdInputs<'a> {
    qkv: &'a [f32],
    out: &'a [f32],
    lse: &'a [f32],
    grad_out: &'a [f32],
}

#[inline(always)]
fn backward_task(
    x: &BwdInputs<'_>,
    g: Geom,
    task: BwdTask<'_>,
    scr: &mut BwdScratch,
) -> Option<Vec<f32>> {
    let BwdTask {
        pair,
        k0,
        mut q_rows,
        mut k_rows,
        mut v_rows,
    } = task;
    let (bi, hi) = (pair / g.heads, pair % g.heads);
    let (s, dh) = (g.seq, g.dh);
    let nk = k_rows.len();
    let seq_qkv = &x.qkv[bi * s * g.row..(bi + 1) * s * g.row];
    let seq_out = &x.out[bi * s * g.width..(bi + 1) * s * g.width];
    let seq_dout = &x.grad_out[bi * s * g.width..(bi + 1) * s * g.width];
    let lse = &x.lse[pair * s..(pair + 1) * s];

    gather(seq_qkv, g.row, hi * dh, dh, 0, grow(&mut scr.q, s * dh));
    gather(
        seq_dout,
        g.width,
        hi * dh,
        dh,
        0,
        grow(&mut scr.dout, s * dh),
    );
    gather(
        seq_qkv,
        g.row,
        g.width + hi * dh,
        dh,
        k0,
        grow(&mut scr.k, nk * dh),
    );
    gather(
        seq_qkv,
        g.row,
        2 * g.width + hi * dh,
        dh,
        k0,
        grow(&mut scr.v, nk * dh),
    );
    // D_i = rowsum(dO_i ∘ O_i).
    for ((d, t), dout) in grow(&mut scr.delta, s)
        .iter_mut()
        .zip(0..)
        .zip(scr.dout.chunks_exact(dh))
    {
        let at = t * g.width + hi * dh;
        *d = dot(dout, &seq_out[at..at + dh]);
    }
    grow(&mut scr.dq, s * dh).fill(0.0);
    grow(&mut scr.dk, nk * dh).fill(0.0);
    grow(&mut scr.dv, nk * dh).fill(0.0);
    let (q, dout, delta) = (&scr.q[..s * dh], &scr.dout[..s * dh], &scr.delta[..s]);

    for j0 in (0..nk).step_by(KV_TILE) {
        let tk = KV_TILE.min(nk - j0);
        let kv = j0 * dh..(j0 + tk) * dh;
        let (kj, vj) = (&scr.k[kv.clone()], &scr.v[kv.clone()]);
        for i0 in (0..s).step_by(Q_TILE) {
            let tq = Q_TILE.min(s - i0);
            let qi = &q[i0 * dh..(i0 + tq) * dh];
            let doi = &dout[i0 * dh..(i0 + tq) * dh];
            // P = exp(Q_i K_jᵀ·scale − LSE_i).
            let p = grow(&mut scr.p, tq * tk);
            tile_gemm((tq, tk, dh), (false, true), g.scale, 0.0, qi, kj, p);
            for (row, &l) in p.chunks_exact_mut(tk).zip(&lse[i0..i0 + tq]) {
                exp_shift_sum(row, l);
            }
            // dV_j += Pᵀ dO_i.
            tile_gemm(
                (tk, dh, tq),
                (true, false),
                1.0,
                1.0,
                p,
                doi,
                &mut scr.dv[kv.clone()],
            );
            // dS = P ∘ (dO_i V_jᵀ − D_i).
            let dp = grow(&mut scr.dp, tq * tk);
            tile_gemm((tq, tk, dh), (false, true), 1.0, 0.0, doi, vj, dp);
            for ((ds, p), &d) in dp
                .chunks_exact_mut(tk)
                .zip(scr.p.chunks_exact(tk))
                .zip(&delta[i0..i0 + tq])
            {
                ds.iter_mut().zip(p).for_each(|(ds, p)| *ds = p * (*ds - d));
            }
            let ds = &scr.dp[..tq * tk];
            // dQ_i += dS K_j·scale; dK_j += dSᵀ Q_i·scale.
            let dqi = &mut scr.dq[i0 * dh..(i0 + tq) * dh];
            tile_gemm((tq, dh, tk), (false, false), g.scale, 1.0, ds, kj, dqi);
            let dkj = &mut scr.dk[kv.clone()];
            tile_gemm((tk, dh, tq), (true, false), g.scale, 1.0, ds, qi, dkj);
        }
    }
    scatter_add(&mut k_rows, &scr.dk[..nk * dh], dh);
    scatter_add(&mut v_rows, &scr.dv[..nk * dh], dh);
    if q_rows.is_empty() {
        scr.dq.truncate(s * dh);
        Some(std::mem::take(&mut scr.dq))
    } else {
        scatter_add(&mut q_rows, &scr.dq[..s * dh], dh);
        None
    }
}

fn check_lens(op: &'static str, bufs: &[(&str, &[f32], usize)]) -> Result<()> {
    for &(what, buf, need) in bufs {
        check_len(op, what, buf, need)?;
    }
    Ok(())
}

impl AttentionKernels for CpuBackend {
    fn attention_fwd(
        &self,
        spec: &AttentionSpec,
        qkv: &Vec<f32>,
        out: &mut Vec<f32>,
        lse: &mut Vec<f32>,
    ) -> Result<()> {
        check_lens(
            "attention",
            &[
                ("qkv", qkv, spec.qkv_len()),
                ("out", out, spec.out_len()),
                ("lse", lse, spec.lse_len()),
            ],
        )?;
        if spec.out_len() == 0 {
            return Ok(());
        }
        let g = Geom::new(spec);
        let pairs = spec.batch * spec.heads;
        let (rows, chunks) = split(pairs, g.seq, Q_TILE, self.threads());
        let mut tasks: Vec<FwdTask<'_>> = lse[..spec.lse_len()]
            .chunks_mut(g.seq)
            .enumerate()
            .flat_map(|(pair, lse)| {
                lse.chunks_mut(rows)
                    .enumerate()
                    .map(move |(c, lse)| FwdTask {
                        pair,
                        q0: c * rows,
                        out_rows: Vec::with_capacity(lse.len()),
                        lse,
                    })
            })
            .collect();
        for (bt, out_row) in out[..spec.out_len()].chunks_exact_mut(g.width).enumerate() {
            let (bi, t) = (bt / g.seq, bt % g.seq);
            for (hi, cell) in out_row.chunks_exact_mut(g.dh).enumerate() {
                tasks[(bi * g.heads + hi) * chunks + t / rows]
                    .out_rows
                    .push(cell);
            }
        }
        let qkv = &qkv[..spec.qkv_len()];
        tasks
            .into_par_iter()
            .for_each_init(FwdScratch::default, |scr, task| {
                vectorized(
                    #[inline(always)]
                    || forward_task(qkv, g, task, scr),
                )
            });
        Ok(())
    }

    fn attention_bwd(
        &self,
        spec: &AttentionSpec,
        qkv: &Vec<f32>,
        out: &Vec<f32>,
        lse: &Vec<f32>,
        grad_out: &Vec<f32>,
        grad_qkv: &mut Vec<f32>,
    ) -> Result<()> {
        check_lens(
            "attention backward",
            &[
                ("qkv", qkv, spec.qkv_len()),
                ("out", out, spec.out_len()),
                ("lse", lse, spec.lse_len()),
                ("grad_out", grad_out, spec.out_len()),
                ("grad_qkv", grad_qkv, spec.qkv_len()),
            ],
        )?;
        if spec.out_len() == 0 {
            return Ok(());
        }
        let g = Geom::new(spec);
        let pairs = spec.batch * spec.heads;
        let (rows, chunks) = split(pairs, g.seq, KV_TILE, self.threads());
        let mut tasks: Vec<BwdTask<'_>> = (0..pairs * chunks)
            .map(|i| {
                let k0 = (i % chunks) * rows;
                let nk = rows.min(g.seq - k0);
                BwdTask {
                    pair: i / chunks,
                    k0,
                    q_rows: Vec::with_capacity(if chunks == 1 { g.seq } else { 0 }),
                    k_rows: Vec::with_capacity(nk),
                    v_rows: Vec::with_capacity(nk),
                }
            })
            .collect();
        let grad_qkv = &mut grad_qkv[..spec.qkv_len()];
        for (bt, grad_row) in grad_qkv.chunks_exact_mut(g.row).enumerate() {
            let (bi, t) = (bt / g.seq, bt % g.seq);
            for (j, cell) in grad_row.chunks_exact_mut(g.dh).enumerate() {
                let (part, hi) = (j / g.heads, j % g.heads);
                let first = (bi * g.heads + hi) * chunks;
                match part {
                    0 if chunks == 1 => tasks[first].q_rows.push(cell),
                    0 => {}
                    1 => tasks[first + t / rows].k_rows.push(cell),
                    _ => tasks[first + t / rows].v_rows.push(cell),
                }
            }
        }
        let inputs = BwdInputs {
            qkv: &qkv[..spec.qkv_len()],
            out: &out[..spec.out_len()],
            lse: &lse[..spec.lse_len()],
            grad_out: &grad_out[..spec.out_len()],
        };
        let partial_dq: Vec<Option<Vec<f32>>> = tasks
            .into_par_iter()
            .map_init(BwdScratch::default, |scr, task| {
                vectorized(
                    #[inline(always)]
                    || backward_task(&inputs, g, task, scr),
                )
            })
            .collect();
        if chunks > 1 {
            // Sum each head's per-chunk query gradients into its rows.
            let (s, dh) = (g.seq, g.dh);
            grad_qkv
                .par_chunks_mut(s * g.row)
                .enumerate()
                .for_each(|(bi, seq_grad)| {
                    for hi in 0..g.heads {
                        let first = (bi * g.heads + hi) * chunks;
                        for part in partial_dq[first..first + chunks].iter().flatten() {
                            for (t, src) in part.chunks_exact(dh).enumerate() {
                                let at = t * g.row + hi * dh;
                                seq_grad[at..at + dh]
                                    .iter_mut()
                                    .zip(src)
                                    .for_each(|(d, s)| *d += s);
                            }
                        }
                    }
                });
        }
        Ok(())
    }
}
