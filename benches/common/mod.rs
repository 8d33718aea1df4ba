//! Workloads shared by the criterion benchmarks (`benches/*.rs`), the
//! side-by-side comparison (`bench/compare_ours.rs`) and the regression gate
//! (`bench/perf_gate.rs`): each builds its inputs from a fixed seed, runs
//! through the public API, and checks its output against a reference (an f64
//! host definition or the naive composition of plain tape ops) before anyone
//! times it. A wrong result panics with the workload, the quantity and the
//! tolerance.
//!
//! Every target that includes this module uses only part of it, so unused
//! items are expected per target.
#![allow(dead_code)]
// The f64 references are written with the formulas' indices.
#![allow(clippy::needless_range_loop)]

use diccae_engine::autograd::{ParamId, ParamStore, Tape};
use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::config::Config;
use diccae_engine::data::LogMel;
use diccae_engine::data::melspec::{HOP_LENGTH, LOG_EPS, N_FFT, WIN_LENGTH};
use diccae_engine::gradcheck::all_close;
use diccae_engine::kmeans::{KMeansConfig, KMeansResult, kmeans_with_init};
use diccae_engine::model::AvModel;
use diccae_engine::ops::attention::attention;
use diccae_engine::ops::class_align::class_align;
use diccae_engine::ops::cross_entropy::cross_entropy;
use diccae_engine::ops::elementwise::{add, gelu, scale};
use diccae_engine::ops::infonce::infonce;
use diccae_engine::ops::matmul::matmul;
use diccae_engine::ops::norm::layer_norm;
use diccae_engine::ops::softmax::softmax;
use diccae_engine::ops::{GemmSpec, MatmulKernels};
use diccae_engine::optim::{AdamW, AdamWConfig, clip_grad_norm};
use diccae_engine::reference::{self, lse};
use diccae_engine::rng::{SeededRng, normal_vec, seeded, uniform_vec};
use diccae_engine::tensor::Tensor;
use diccae_engine::train::clusters::{ClusterSnapshot, ClusterState};
use diccae_engine::train::diccae_terms::{ClusterBatch, TermWeights, diccae_terms};
use rand::Rng;
use rayon::prelude::*;

/// The backend every workload runs on.
pub fn be() -> CpuBackend {
    CpuBackend::new()
}

/// Inputs held as parameters of a store, so a tape reads them in place (no
/// per-call copy, as a framework's leaf tensors).
pub struct Inputs {
    pub store: ParamStore<CpuBackend>,
    pub ids: Vec<ParamId>,
}

impl Inputs {
    pub fn new(tensors: Vec<(&[usize], &[f32])>) -> Self {
        let be = be();
        let mut store = ParamStore::new(be.clone());
        let ids = tensors
            .into_iter()
            .enumerate()
            .map(|(i, (shape, data))| {
                let t = Tensor::from_host(&be, shape, data).unwrap();
                store.add(&format!("input{i}"), t, false).unwrap()
            })
            .collect();
        Inputs { store, ids }
    }
}

/// Panics with `what` when `r` is an error.
fn ok(r: Result<(), String>, what: &str) {
    if let Err(e) = r {
        panic!("benchmark output is wrong: {what}: {e}");
    }
}

/// `all_close` with an absolute tolerance relative to the reference's largest entry.
fn close_scaled(got: &[f32], want: &[f32], rtol: f32) -> Result<(), String> {
    let peak = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    all_close(got, want, rtol, rtol * peak.max(1e-30))
}

/// `n` rows of dimension `d`, each scaled to unit length.
pub fn unit_rows(rng: &mut SeededRng, n: usize, d: usize) -> Vec<f32> {
    let mut v = normal_vec(rng, n * d, 1.0);
    for row in v.chunks_exact_mut(d) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

// ---------------------------------------------------------------- GEMM

/// `C = A·B` with `A [m,k]`, `B [k,n]` through [`MatmulKernels::gemm`].
pub struct GemmCase {
    pub spec: GemmSpec,
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

impl GemmCase {
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        let mut rng = seeded(0x6e_6d6d);
        GemmCase {
            spec: GemmSpec::new(m, n, k),
            a: uniform_vec(&mut rng, m * k, -1.0, 1.0),
            b: uniform_vec(&mut rng, k * n, -1.0, 1.0),
        }
    }

    /// `2·m·n·k`.
    pub fn flops(&self) -> f64 {
        2.0 * (self.spec.m * self.spec.n * self.spec.k) as f64
    }

    /// One product into `c` (`m·n` elements).
    pub fn run(&self, c: &mut Vec<f32>) {
        be().gemm(&self.spec, &self.a, &self.b, c).expect("gemm");
    }

    /// Checks 512 entries spread over C against f64 dot products:
    /// |error| ≤ 1e-5·Σ|a·b| (f32 accumulation over k terms).
    pub fn check(&self) {
        let (m, n, k) = (self.spec.m, self.spec.n, self.spec.k);
        let mut c = vec![0.0f32; m * n];
        self.run(&mut c);
        let mut rng = seeded(1);
        for _ in 0..512 {
            let (i, j) = (rng.random_range(0..m), rng.random_range(0..n));
            let (mut dot, mut mag) = (0.0f64, 0.0f64);
            for p in 0..k {
                let t = f64::from(self.a[i * k + p]) * f64::from(self.b[p * n + j]);
                dot += t;
                mag += t.abs();
            }
            let got = f64::from(c[i * n + j]);
            assert!(
                (got - dot).abs() <= 1e-5 * mag + 1e-6,
                "benchmark output is wrong: GEMM {m}x{n}x{k} C[{i},{j}] = {got}, f64 reference {dot} (tolerance 1e-5·Σ|a·b| = {})",
                1e-5 * mag
            );
        }
    }
}

// ---------------------------------------------------------------- InfoNCE

/// Fused symmetric InfoNCE on unit rows at the method's τ = 0.07.
pub struct InfoNceCase {
    pub b: usize,
    pub d: usize,
    pub tau: f32,
    pub za: Vec<f32>,
    pub zv: Vec<f32>,
    pub inputs: Inputs,
}

impl InfoNceCase {
    pub fn new(b: usize, d: usize) -> Self {
        let mut rng = seeded(0x1f0);
        let za = unit_rows(&mut rng, b, d);
        let zv = unit_rows(&mut rng, b, d);
        let inputs = Inputs::new(vec![(&[b, d], &za), (&[b, d], &zv)]);
        InfoNceCase {
            b,
            d,
            tau: 0.07,
            za,
            zv,
            inputs,
        }
    }

    /// Algorithmic FLOPs of the forward: the logits `2·B²·d`.
    pub fn fwd_flops(&self) -> f64 {
        2.0 * (self.b * self.b * self.d) as f64
    }

    /// Forward and backward as an unfused implementation counts them: logits
    /// plus the two gradient products, `6·B²·d` (recomputation not counted).
    pub fn fwd_bwd_flops(&self) -> f64 {
        3.0 * self.fwd_flops()
    }

    /// The loss (forward only).
    pub fn fwd(&self) -> f32 {
        let mut tape = Tape::no_grad(&self.inputs.store);
        let a = tape.param(self.inputs.ids[0]);
        let v = tape.param(self.inputs.ids[1]);
        let loss = infonce(&mut tape, a, v, self.tau).unwrap();
        tape.value(loss).buf()[0]
    }

    /// Forward and backward through the tape; `inspect` sees the loss and
    /// both gradients before they are freed (nothing is copied for timing).
    pub fn fwd_bwd<R>(&self, inspect: impl FnOnce(f32, &[f32], &[f32]) -> R) -> R {
        let mut tape = Tape::new(&self.inputs.store);
        let a = tape.param(self.inputs.ids[0]);
        let v = tape.param(self.inputs.ids[1]);
        let loss = infonce(&mut tape, a, v, self.tau).unwrap();
        let g = tape.backward(loss).unwrap();
        inspect(
            tape.value(loss).buf()[0],
            g.param(self.inputs.ids[0]).unwrap(),
            g.param(self.inputs.ids[1]).unwrap(),
        )
    }

    /// Against the naive composition `½·[CE(za·zvᵀ/τ) + CE(zv·zaᵀ/τ)]` with
    /// the explicit B×B logits: loss to 1e-5 relative, gradients to 1e-3 of
    /// their largest entry.
    pub fn check(&self) {
        let (b, d, tau) = (self.b, self.d, self.tau);
        let (loss, dza, dzv) = self.fwd_bwd(|l, a, v| (l, a.to_vec(), v.to_vec()));
        assert_eq!(
            loss,
            self.fwd(),
            "InfoNCE forward-only and forward+backward losses differ"
        );
        let be = be();
        let store = ParamStore::new(be.clone());
        let mut tape = Tape::new(&store);
        let a = tape.leaf(Tensor::from_host(&be, &[b, d], &self.za).unwrap());
        let v = tape.leaf(Tensor::from_host(&be, &[b, d], &self.zv).unwrap());
        let arange: Vec<usize> = (0..b).collect();
        let s_av = matmul(&mut tape, a, v, false, true).unwrap();
        let l_av = cross_entropy(&mut tape, s_av, &arange, 1.0 / tau).unwrap();
        let s_va = matmul(&mut tape, v, a, false, true).unwrap();
        let l_va = cross_entropy(&mut tape, s_va, &arange, 1.0 / tau).unwrap();
        let both = add(&mut tape, l_av, l_va).unwrap();
        let naive_loss = scale(&mut tape, both, 0.5).unwrap();
        let naive = tape.value(naive_loss).buf()[0];
        let g = tape.backward(naive_loss).unwrap();
        let what = format!("InfoNCE B{b} d{d}");
        assert!(
            (loss - naive).abs() <= 1e-5 * naive.abs().max(1.0),
            "benchmark output is wrong: {what}: fused loss {loss} vs composition {naive} (tolerance 1e-5 relative)"
        );
        ok(
            close_scaled(&dza, g.var(a).unwrap(), 1e-3),
            &format!("{what} dza (1e-3 of max)"),
        );
        ok(
            close_scaled(&dzv, g.var(v).unwrap(), 1e-3),
            &format!("{what} dzv (1e-3 of max)"),
        );
    }
}

// ---------------------------------------------------------------- attention

/// Fused self-attention on packed `qkv [B, S, 3·H·D]`.
pub struct AttentionCase {
    pub b: usize,
    pub h: usize,
    pub s: usize,
    pub dh: usize,
    pub qkv: Vec<f32>,
    pub grad_out: Vec<f32>,
    pub inputs: Inputs,
}

impl AttentionCase {
    pub fn new(b: usize, h: usize, s: usize, dh: usize) -> Self {
        let mut rng = seeded(0xa77);
        let qkv = normal_vec(&mut rng, b * s * 3 * h * dh, 1.0);
        let inputs = Inputs::new(vec![(&[b, s, 3 * h * dh], &qkv)]);
        AttentionCase {
            b,
            h,
            s,
            dh,
            qkv,
            grad_out: uniform_vec(&mut rng, b * s * h * dh, -1.0, 1.0),
            inputs,
        }
    }

    /// `4·B·H·S²·D` (the two products).
    pub fn fwd_flops(&self) -> f64 {
        4.0 * (self.b * self.h * self.s * self.s * self.dh) as f64
    }

    /// Forward plus the four backward products, `12·B·H·S²·D`
    /// (recomputation of the scores not counted).
    pub fn fwd_bwd_flops(&self) -> f64 {
        3.0 * self.fwd_flops()
    }

    /// The output `[B, S, H·D]`.
    pub fn fwd(&self) -> Vec<f32> {
        let mut tape = Tape::no_grad(&self.inputs.store);
        let x = tape.param(self.inputs.ids[0]);
        let y = attention(&mut tape, x, self.h).unwrap();
        tape.value(y).buf().clone()
    }

    /// Forward and the backward of `Σ out·seed` (`seed`: a copy of
    /// `grad_out`, made by the caller outside any timing); `inspect` sees
    /// the output and the gradient with respect to `qkv`.
    pub fn fwd_bwd<R>(&self, seed: Vec<f32>, inspect: impl FnOnce(&[f32], &[f32]) -> R) -> R {
        let mut tape = Tape::new(&self.inputs.store);
        let x = tape.param(self.inputs.ids[0]);
        let y = attention(&mut tape, x, self.h).unwrap();
        let g = tape.backward_with_seed(y, seed).unwrap();
        inspect(tape.value(y).buf(), g.param(self.inputs.ids[0]).unwrap())
    }

    /// Part `part` (0 q, 1 k, 2 v) of packed rows (`parts = 3`) or plain
    /// rows (`parts = 1`) as `[B·H, S, D]`.
    fn to_heads(&self, x: &[f32], parts: usize, part: usize) -> Vec<f32> {
        let (b, s, h, dh) = (self.b, self.s, self.h, self.dh);
        let w = h * dh;
        let mut y = Vec::with_capacity(b * h * s * dh);
        for bi in 0..b {
            for hi in 0..h {
                for t in 0..s {
                    let at = (bi * s + t) * parts * w + part * w + hi * dh;
                    y.extend_from_slice(&x[at..at + dh]);
                }
            }
        }
        y
    }

    /// Against the naive composition `softmax(Q·Kᵀ·scale)·V` of tape ops on
    /// per-head tensors: output to 1e-4 relative + 1e-5, gradients to
    /// 1e-3 relative + 1e-5.
    pub fn check(&self) {
        let (b, s, h, dh) = (self.b, self.s, self.h, self.dh);
        let what = format!("attention B{b} H{h} S{s} D{dh}");
        let (out, dqkv) = self.fwd_bwd(self.grad_out.clone(), |o, g| (o.to_vec(), g.to_vec()));
        assert_eq!(
            out,
            self.fwd(),
            "{what}: forward-only and forward+backward outputs differ"
        );
        let be = be();
        let store = ParamStore::new(be.clone());
        let mut tape = Tape::new(&store);
        let sc = 1.0 / (dh as f32).sqrt();
        let shape = [b * h, s, dh];
        let q: Vec<f32> = self
            .to_heads(&self.qkv, 3, 0)
            .iter()
            .map(|v| v * sc)
            .collect();
        let q = tape.leaf(Tensor::from_host(&be, &shape, &q).unwrap());
        let k = tape.leaf(Tensor::from_host(&be, &shape, &self.to_heads(&self.qkv, 3, 1)).unwrap());
        let v = tape.leaf(Tensor::from_host(&be, &shape, &self.to_heads(&self.qkv, 3, 2)).unwrap());
        let scores = matmul(&mut tape, q, k, false, true).unwrap();
        let p = softmax(&mut tape, scores).unwrap();
        let o = matmul(&mut tape, p, v, false, false).unwrap();
        let naive = tape.value(o).to_host(&be).unwrap();
        let ng = tape
            .backward_with_seed(o, self.to_heads(&self.grad_out, 1, 0))
            .unwrap();
        ok(
            all_close(&self.to_heads(&out, 1, 0), &naive, 1e-4, 1e-5),
            &format!("{what} output (1e-4 rel + 1e-5)"),
        );
        let dq: Vec<f32> = ng.var(q).unwrap().iter().map(|g| g * sc).collect();
        for (part, want) in [(0, &dq), (1, ng.var(k).unwrap()), (2, ng.var(v).unwrap())] {
            ok(
                all_close(&self.to_heads(&dqkv, 3, part), want, 1e-3, 1e-5),
                &format!("{what} gradient of qkv part {part} (1e-3 rel + 1e-5)"),
            );
        }
    }
}

// ---------------------------------------------------------------- class alignment

/// Confusion-weighted class alignment: `z [N,d]`, unit prototypes `[K,d]`,
/// random labels, W in [0.5, 3], with the soft confusion accumulated.
pub struct ClassAlignCase {
    pub n: usize,
    pub k: usize,
    pub d: usize,
    pub tau: f32,
    pub z: Vec<f32>,
    pub protos: Vec<f32>,
    pub labels: Vec<f32>,
    pub weights: Vec<f32>,
}

impl ClassAlignCase {
    pub fn new(n: usize, k: usize, d: usize) -> Self {
        let mut rng = seeded(0xc1a);
        ClassAlignCase {
            n,
            k,
            d,
            tau: 0.1,
            z: unit_rows(&mut rng, n, d),
            protos: unit_rows(&mut rng, k, d),
            labels: (0..n).map(|_| rng.random_range(0..k) as f32).collect(),
            weights: uniform_vec(&mut rng, k * k, 0.5, 3.0),
        }
    }

    /// Forward logits plus the backward product, `4·N·K·d`.
    pub fn fwd_bwd_flops(&self) -> f64 {
        4.0 * (self.n * self.k * self.d) as f64
    }

    /// Forward (accumulating the confusion from zero) and backward;
    /// `inspect` sees the loss, `dz` and the confusion.
    pub fn fwd_bwd<R>(&self, inspect: impl FnOnce(f32, &[f32], &[f32]) -> R) -> R {
        let be = be();
        let store = ParamStore::new(be.clone());
        let mut tape = Tape::new(&store);
        let z = tape.leaf(Tensor::from_host(&be, &[self.n, self.d], &self.z).unwrap());
        let protos = Tensor::from_host(&be, &[self.k, self.d], &self.protos).unwrap();
        let labels = Tensor::from_host(&be, &[self.n], &self.labels).unwrap();
        let w = Tensor::from_host(&be, &[self.k, self.k], &self.weights).unwrap();
        let mut conf = Tensor::zeros(&be, &[self.k, self.k]).unwrap();
        let loss = class_align(
            &mut tape,
            z,
            &protos,
            &labels,
            Some(&w),
            self.tau,
            Some(&mut conf),
        )
        .unwrap();
        let g = tape.backward(loss).unwrap();
        inspect(tape.value(loss).buf()[0], g.var(z).unwrap(), conf.buf())
    }

    /// The definition in f64: loss, `dz`, confusion.
    fn reference(&self) -> (f64, Vec<f32>, Vec<f32>) {
        let (n, k, d) = (self.n, self.k, self.d);
        let tau = f64::from(self.tau);
        let rows: Vec<(f64, Vec<f64>, Vec<f64>)> = (0..n)
            .into_par_iter()
            .map(|i| {
                let y = self.labels[i] as usize;
                let a: Vec<f64> = (0..k)
                    .map(|l| {
                        (0..d)
                            .map(|j| {
                                f64::from(self.z[i * d + j]) * f64::from(self.protos[l * d + j])
                            })
                            .sum::<f64>()
                            / tau
                    })
                    .collect();
                let logw: Vec<f64> = (0..k)
                    .map(|l| {
                        if l == y {
                            0.0
                        } else {
                            f64::from(self.weights[y * k + l]).ln()
                        }
                    })
                    .collect();
                let wl: Vec<f64> = a.iter().zip(&logw).map(|(a, w)| a + w).collect();
                let norm = lse(&wl);
                let plain = lse(&a);
                let mut dz = vec![0.0f64; d];
                for l in 0..k {
                    let coef = (wl[l] - norm).exp() - if l == y { 1.0 } else { 0.0 };
                    for j in 0..d {
                        dz[j] += coef * f64::from(self.protos[l * d + j]) / tau / n as f64;
                    }
                }
                let p: Vec<f64> = a.iter().map(|v| (v - plain).exp()).collect();
                (norm - a[y], dz, p)
            })
            .collect();
        let loss = rows.iter().map(|r| r.0).sum::<f64>() / n as f64;
        let dz = rows
            .iter()
            .flat_map(|r| r.1.iter().map(|&v| v as f32))
            .collect();
        let mut conf = vec![0.0f64; k * k];
        for (i, r) in rows.iter().enumerate() {
            let y = self.labels[i] as usize;
            for l in 0..k {
                conf[y * k + l] += r.2[l];
            }
        }
        (loss, dz, conf.into_iter().map(|v| v as f32).collect())
    }

    /// Loss to 1e-5 relative, `dz` to 1e-3 of its largest entry, confusion
    /// to 1e-4 relative + 1e-3 (sums of up to N probabilities in f32).
    pub fn check(&self) {
        let what = format!("class alignment N{} K{} d{}", self.n, self.k, self.d);
        let (loss, dz, conf) = self.fwd_bwd(|l, dz, c| (l, dz.to_vec(), c.to_vec()));
        let (rl, rdz, rconf) = self.reference();
        assert!(
            (f64::from(loss) - rl).abs() <= 1e-5 * rl.abs().max(1.0),
            "benchmark output is wrong: {what}: loss {loss} vs f64 {rl} (tolerance 1e-5 relative)"
        );
        ok(
            close_scaled(&dz, &rdz, 1e-3),
            &format!("{what} dz (1e-3 of max)"),
        );
        ok(
            all_close(&conf, &rconf, 1e-4, 1e-3),
            &format!("{what} confusion (1e-4 rel + 1e-3)"),
        );
    }
}

// ---------------------------------------------------------------- LayerNorm, GELU

/// LayerNorm over `rows × d` with random affine parameters.
pub struct LayerNormCase {
    pub rows: usize,
    pub d: usize,
    pub x: Vec<f32>,
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub grad_out: Vec<f32>,
    pub inputs: Inputs,
}

impl LayerNormCase {
    pub fn new(rows: usize, d: usize) -> Self {
        let mut rng = seeded(0x1a7);
        let mut x = normal_vec(&mut rng, rows * d, 1.0);
        // Row offsets, so the mean matters.
        for (r, row) in x.chunks_exact_mut(d).enumerate() {
            let off = (r % 7) as f32 - 3.0;
            row.iter_mut().for_each(|v| *v += off);
        }
        let gamma = uniform_vec(&mut rng, d, 0.5, 1.5);
        let beta = uniform_vec(&mut rng, d, -0.5, 0.5);
        let inputs = Inputs::new(vec![(&[rows, d], &x), (&[d], &gamma), (&[d], &beta)]);
        LayerNormCase {
            rows,
            d,
            x,
            gamma,
            beta,
            grad_out: uniform_vec(&mut rng, rows * d, -1.0, 1.0),
            inputs,
        }
    }

    /// Bytes a fused forward+backward must move at least: read x, write y,
    /// read x and dy again, write dx (5 passes of `rows·d` f32).
    pub fn fwd_bwd_bytes(&self) -> u64 {
        (5 * self.rows * self.d * 4) as u64
    }

    /// Forward and the backward of `Σ y·seed` (`seed`: a copy of
    /// `grad_out`); `inspect` sees `[y, dx, dgamma, dbeta]`.
    pub fn fwd_bwd<R>(&self, seed: Vec<f32>, inspect: impl FnOnce([&[f32]; 4]) -> R) -> R {
        let mut tape = Tape::new(&self.inputs.store);
        let [x, g, b] = [0, 1, 2].map(|i| tape.param(self.inputs.ids[i]));
        let y = layer_norm(&mut tape, x, g, b, 1e-5).unwrap();
        let gr = tape.backward_with_seed(y, seed).unwrap();
        inspect([
            tape.value(y).buf(),
            gr.param(self.inputs.ids[0]).unwrap(),
            gr.param(self.inputs.ids[1]).unwrap(),
            gr.param(self.inputs.ids[2]).unwrap(),
        ])
    }

    /// Against the f64 definition: everything to 1e-4 relative + 1e-4 of the
    /// reference's largest entry.
    pub fn check(&self) {
        let (rows, d) = (self.rows, self.d);
        let what = format!("LayerNorm {rows}x{d}");
        let got = self.fwd_bwd(self.grad_out.clone(), |v| v.map(<[f32]>::to_vec));
        let mut y = vec![0.0f32; rows * d];
        let mut dx = vec![0.0f32; rows * d];
        let mut dg = vec![0.0f64; d];
        let mut db = vec![0.0f64; d];
        for r in 0..rows {
            let xr: Vec<f64> = self.x[r * d..(r + 1) * d]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let gr: Vec<f64> = self.grad_out[r * d..(r + 1) * d]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let mean = xr.iter().sum::<f64>() / d as f64;
            let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d as f64;
            let rstd = 1.0 / (var + 1e-5).sqrt();
            let xh: Vec<f64> = xr.iter().map(|v| (v - mean) * rstd).collect();
            let dyh: Vec<f64> = (0..d).map(|j| gr[j] * f64::from(self.gamma[j])).collect();
            let m1 = dyh.iter().sum::<f64>() / d as f64;
            let m2 = dyh.iter().zip(&xh).map(|(a, b)| a * b).sum::<f64>() / d as f64;
            for j in 0..d {
                y[r * d + j] = (xh[j] * f64::from(self.gamma[j]) + f64::from(self.beta[j])) as f32;
                dx[r * d + j] = (rstd * (dyh[j] - m1 - xh[j] * m2)) as f32;
                dg[j] += gr[j] * xh[j];
                db[j] += gr[j];
            }
        }
        let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<_>>();
        for (name, g, want) in [
            ("y", &got[0], y),
            ("dx", &got[1], dx),
            ("dgamma", &got[2], f(dg)),
            ("dbeta", &got[3], f(db)),
        ] {
            ok(
                close_scaled(g, &want, 1e-4),
                &format!("{what} {name} (1e-4 of max)"),
            );
        }
    }
}

/// GELU (tanh form) over `n` values.
pub struct GeluCase {
    pub x: Vec<f32>,
    pub grad_out: Vec<f32>,
    pub inputs: Inputs,
}

impl GeluCase {
    pub fn new(n: usize) -> Self {
        let mut rng = seeded(0x9e1);
        let x = normal_vec(&mut rng, n, 2.0);
        let inputs = Inputs::new(vec![(&[n], &x)]);
        GeluCase {
            x,
            grad_out: uniform_vec(&mut rng, n, -1.0, 1.0),
            inputs,
        }
    }

    /// Read x, write y, read x and dy, write dx.
    pub fn fwd_bwd_bytes(&self) -> u64 {
        (5 * self.x.len() * 4) as u64
    }

    /// Forward and the backward of `Σ y·seed` (`seed`: a copy of
    /// `grad_out`); `inspect` sees `y` and `dx`.
    pub fn fwd_bwd<R>(&self, seed: Vec<f32>, inspect: impl FnOnce(&[f32], &[f32]) -> R) -> R {
        let mut tape = Tape::new(&self.inputs.store);
        let x = tape.param(self.inputs.ids[0]);
        let y = gelu(&mut tape, x).unwrap();
        let g = tape.backward_with_seed(y, seed).unwrap();
        inspect(tape.value(y).buf(), g.param(self.inputs.ids[0]).unwrap())
    }

    /// Against the f64 tanh form and its derivative: 1e-4 relative + 1e-5.
    pub fn check(&self) {
        let (y, dx) = self.fwd_bwd(self.grad_out.clone(), |y, dx| (y.to_vec(), dx.to_vec()));
        let c = (2.0 / std::f64::consts::PI).sqrt();
        let (mut ry, mut rdx) = (Vec::new(), Vec::new());
        for (&x, &g) in self.x.iter().zip(&self.grad_out) {
            let x = f64::from(x);
            let u = c * (x + 0.044715 * x * x * x);
            let t = u.tanh();
            ry.push((0.5 * x * (1.0 + t)) as f32);
            let du = c * (1.0 + 3.0 * 0.044715 * x * x);
            rdx.push((f64::from(g) * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)) as f32);
        }
        ok(all_close(&y, &ry, 1e-4, 1e-5), "GELU y (1e-4 rel + 1e-5)");
        ok(
            all_close(&dx, &rdx, 1e-4, 1e-5),
            "GELU dx (1e-4 rel + 1e-5)",
        );
    }
}

// ---------------------------------------------------------------- k-means

/// k-means on `n × d` points drawn around `k` centres with heavy overlap
/// (centres N(0, 1), noise N(0, 3²)), so Lloyd does not converge within the
/// iterations and every run does all of them; initial centroids are `k`
/// evenly spaced points (as faiss picks random points).
pub struct KMeansCase {
    pub n: usize,
    pub d: usize,
    pub k: usize,
    pub iters: usize,
    pub data: Tensor<CpuBackend>,
    pub init: Tensor<CpuBackend>,
}

impl KMeansCase {
    pub fn new(n: usize, d: usize, k: usize, iters: usize) -> Self {
        let mut rng = seeded(0x4b3);
        let centres = normal_vec(&mut rng, k * d, 1.0);
        let noise = normal_vec(&mut rng, n * d, 3.0);
        let x: Vec<f32> = (0..n * d)
            .map(|e| centres[((e / d) % k) * d + e % d] + noise[e])
            .collect();
        let step = n / k;
        let init: Vec<f32> = (0..k)
            .flat_map(|l| x[l * step * d..(l * step + 1) * d].to_vec())
            .collect();
        let be = be();
        KMeansCase {
            n,
            d,
            k,
            iters,
            data: Tensor::from_host(&be, &[n, d], &x).unwrap(),
            init: Tensor::from_host(&be, &[k, d], &init).unwrap(),
        }
    }

    /// The assignment products, `2·N·K·d` per iteration.
    pub fn flops(&self) -> f64 {
        2.0 * (self.n * self.k * self.d * self.iters) as f64
    }

    pub fn run(&self) -> KMeansResult<CpuBackend> {
        let cfg = KMeansConfig {
            k: self.k,
            iters: self.iters,
            seed: 0,
        };
        kmeans_with_init(&be(), &self.data, &self.init, &cfg).unwrap()
    }

    /// Every run must do all its iterations (for a fair time), and: when
    /// `N·K·d·iters` is small, the inertia equals a plain f64 Lloyd from the
    /// same centroids (1e-4 relative); always, the reported inertia equals
    /// the f64 sum of squared distances to the assigned centroids (1e-4
    /// relative), 2000 sampled points are assigned to their f64-nearest
    /// centroid (up to a 1e-4 relative tie), and the inertia is below the
    /// initial centroids' inertia.
    pub fn check(&self) {
        let be = be();
        let (n, d, k) = (self.n, self.d, self.k);
        let what = format!("k-means N{n} d{d} K{k} {} iterations", self.iters);
        let r = self.run();
        assert_eq!(
            r.iterations, self.iters,
            "{what}: stopped after {} iterations; the timing needs all of them",
            r.iterations
        );
        let x = self.data.to_host(&be).unwrap();
        let c = r.centroids.to_host(&be).unwrap();
        let labels = r.labels.to_host(&be).unwrap();
        let dist = |i: usize, cs: &[f32], l: usize| -> f64 {
            (0..d)
                .map(|j| {
                    let t = f64::from(x[i * d + j]) - f64::from(cs[l * d + j]);
                    t * t
                })
                .sum()
        };
        let inertia: f64 = (0..n)
            .into_par_iter()
            .map(|i| dist(i, &c, labels[i] as usize))
            .sum();
        let got = r.inertia[0];
        assert!(
            (got - inertia).abs() <= 1e-4 * inertia,
            "benchmark output is wrong: {what}: inertia {got} vs f64 recomputation {inertia} (1e-4 relative)"
        );
        let mut rng = seeded(2);
        for _ in 0..2000 {
            let i = rng.random_range(0..n);
            let mine = dist(i, &c, labels[i] as usize);
            let best = (0..k).map(|l| dist(i, &c, l)).fold(f64::INFINITY, f64::min);
            assert!(
                mine <= best * (1.0 + 1e-4),
                "benchmark output is wrong: {what}: point {i} assigned at squared distance {mine}, nearest centroid at {best}"
            );
        }
        let init = self.init.to_host(&be).unwrap();
        let start: f64 = (0..n)
            .into_par_iter()
            .map(|i| {
                (0..k)
                    .map(|l| dist(i, &init, l))
                    .fold(f64::INFINITY, f64::min)
            })
            .sum();
        assert!(
            got < start,
            "benchmark output is wrong: {what}: inertia {got} did not fall below the initial {start}"
        );
        if n * k * d * self.iters <= 50_000_000 {
            let want = reference::lloyd_inertia(&x, n, d, k, &init, self.iters);
            assert!(
                (got - want).abs() <= 1e-4 * want,
                "benchmark output is wrong: {what}: inertia {got} vs plain f64 Lloyd {want} (1e-4 relative)"
            );
        }
    }
}

// ---------------------------------------------------------------- log-mel

/// Log-mel spectrograms of `n` clips of `samples` 16 kHz samples each, one
/// clip per rayon task (as the dataset loader does).
pub struct LogMelCase {
    pub lm: LogMel,
    pub clips: Vec<Vec<f32>>,
}

impl LogMelCase {
    pub fn new(n: usize, samples: usize, n_mels: usize) -> Self {
        let mut rng = seeded(0x3e1);
        LogMelCase {
            lm: LogMel::new(n_mels).unwrap(),
            clips: (0..n)
                .map(|_| uniform_vec(&mut rng, samples, -0.8, 0.8))
                .collect(),
        }
    }

    pub fn run(&self) -> Vec<Vec<f32>> {
        self.clips
            .par_iter()
            .map(|c| self.lm.compute(c).unwrap())
            .collect()
    }

    /// Frames 0, 1 and the last of the first and last clips against an
    /// O(n²) f64 DFT and the HTK filterbank from the definition: 2e-3
    /// absolute in the log domain (0.2% relative energy).
    pub fn check(&self) {
        let out = self.run();
        let n_mels = self.lm.n_mels();
        let fb = reference::mel_filterbank(n_mels);
        for ci in [0, self.clips.len() - 1] {
            let x = &self.clips[ci];
            let frames = LogMel::num_frames(x.len());
            assert_eq!(out[ci].len(), n_mels * frames, "log-mel output length");
            for t in [0, 1, frames - 1] {
                let p = dft_power(&x[t * HOP_LENGTH..t * HOP_LENGTH + WIN_LENGTH]);
                for m in 0..n_mels {
                    let e: f64 = fb[m].iter().zip(&p).map(|(w, v)| w * v).sum();
                    let want = (e + f64::from(LOG_EPS)).ln();
                    let got = f64::from(out[ci][m * frames + t]);
                    assert!(
                        (got - want).abs() <= 2e-3,
                        "benchmark output is wrong: log-mel clip {ci} frame {t} band {m}: {got} vs f64 {want} (2e-3 absolute)"
                    );
                }
            }
        }
    }
}

fn dft_power(frame: &[f32]) -> Vec<f64> {
    let hann =
        |i: usize| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / WIN_LENGTH as f64).cos();
    let x: Vec<f64> = (0..WIN_LENGTH)
        .map(|i| f64::from(frame[i]) * hann(i))
        .collect();
    (0..=N_FFT / 2)
        .map(|k| {
            let (mut re, mut im) = (0.0, 0.0);
            for (n, &v) in x.iter().enumerate() {
                let ph = -2.0 * std::f64::consts::PI * ((k * n) % N_FFT) as f64 / N_FFT as f64;
                re += v * ph.cos();
                im += v * ph.sin();
            }
            re * re + im * im
        })
        .collect()
}

// ---------------------------------------------------------------- data loading

/// The built-in synthetic dataset at the `tiny` preset's feature sizes (20
/// training clips per class) and a batch of `batch` clips gathered from it
/// with the training-time random flip.
pub struct GatherCase {
    pub set: diccae_engine::train::features::FeatureSet,
    pub frame_size: usize,
    pub idx: Vec<usize>,
}

impl GatherCase {
    pub fn new(batch: usize) -> Self {
        let mut cfg = Config::preset("tiny").unwrap();
        cfg.data.synthetic_train_per_class = 20;
        cfg.data.synthetic_test_per_class = 1;
        let ds = diccae_engine::train::features::synthetic(&cfg).unwrap();
        let mut rng = seeded(0x9a7);
        let idx = (0..batch)
            .map(|_| rng.random_range(0..ds.train.len()))
            .collect();
        GatherCase {
            set: ds.train,
            frame_size: cfg.data.frame_size,
            idx,
        }
    }

    /// Bytes of one gathered batch (audio and video).
    pub fn batch_bytes(&self) -> u64 {
        let n = self.set.len();
        ((self.set.audio.len() / n + self.set.video.len() / n) * self.idx.len() * 4) as u64
    }

    pub fn run(&self) -> (Vec<f32>, Vec<f32>) {
        let mut rng = seeded(7);
        self.set.gather(&self.idx, self.frame_size, Some(&mut rng))
    }

    /// Every gathered clip equals its source rows, the frames mirrored
    /// exactly when the same RNG stream says so (bit-exact).
    pub fn check(&self) {
        let (audio, video) = self.run();
        let n = self.set.len();
        let (na, nv) = (self.set.audio.len() / n, self.set.video.len() / n);
        let s = self.frame_size;
        let mut rng = seeded(7);
        for (r, &i) in self.idx.iter().enumerate() {
            assert!(
                audio[r * na..(r + 1) * na] == self.set.audio[i * na..(i + 1) * na],
                "benchmark output is wrong: gathered audio row {r} is not clip {i}"
            );
            let flip = rng.random_bool(0.5);
            let src = &self.set.video[i * nv..(i + 1) * nv];
            let got = &video[r * nv..(r + 1) * nv];
            for (row_got, row_src) in got.chunks_exact(s).zip(src.chunks_exact(s)) {
                let same = if flip {
                    row_got.iter().eq(row_src.iter().rev())
                } else {
                    row_got == row_src
                };
                assert!(
                    same,
                    "benchmark output is wrong: gathered video of row {r} (clip {i}, flip {flip})"
                );
            }
        }
    }
}

// ---------------------------------------------------------------- training step

/// One `tiny` training step as the trainer runs it with every loss active:
/// forward, the DICCAE objective's terms (`train::diccae_terms`, the function
/// the trainer's objective calls) `L_ins + λ_cls·½(L_cls,a + L_cls,v) +
/// λ_conf·L_conf` (W and the soft confusion), backward from their gradient at
/// the embeddings, gradient clipping at 1, AdamW. Inputs are a fixed random
/// batch (N(0,1), the normalised features' scale); prototypes are unit
/// rows, labels random, W in [1, 2].
pub struct StepCase {
    pub cfg: Config,
    pub batch: usize,
    pub store: ParamStore<CpuBackend>,
    pub model: AvModel,
    pub opt: AdamW<CpuBackend>,
    pub audio: Vec<f32>,
    pub video: Vec<f32>,
    /// Pseudo-labels (of clips 0..batch), prototypes and W.
    pub clusters: ClusterState<CpuBackend>,
}

/// The scalars of a step, and (for the check) the embeddings.
pub struct StepOut {
    pub loss: f64,
    /// L_ins, L_cls (the mean over both directions), L_conf.
    pub terms: [f64; 3],
    pub z: Option<[Vec<f32>; 3]>,
    /// The clipped gradient of every parameter (with `keep`).
    pub grads: Option<Vec<Vec<f32>>>,
}

pub const STEP_LR: f32 = 1e-3;

impl StepCase {
    pub fn new(batch: usize) -> Self {
        let cfg = Config::preset("tiny").unwrap();
        let be = be();
        let mut store = ParamStore::new(be.clone());
        let model = AvModel::new(&mut store, &cfg.model, &cfg.data, 0).unwrap();
        let t = &cfg.train;
        let opt = AdamW::new(AdamWConfig {
            beta1: t.beta1,
            beta2: t.beta2,
            eps: 1e-8,
            weight_decay: t.weight_decay,
        });
        let d = &cfg.data;
        let mut rng = seeded(0x57e9);
        let audio = normal_vec(&mut rng, batch * d.n_mels * d.audio_frames, 1.0);
        let video = normal_vec(
            &mut rng,
            batch * d.frames * 3 * d.frame_size * d.frame_size,
            1.0,
        );
        let (k, p) = (d.synthetic_classes, cfg.model.proj_dim);
        let mut proto = || unit_rows(&mut rng, k, p);
        let prototypes = [proto(), proto(), proto()];
        let labels: Vec<usize> = (0..batch).map(|_| rng.random_range(0..k)).collect();
        let snapshot = ClusterSnapshot {
            k,
            dim: p,
            labels,
            confident: vec![true; batch],
            centroids: prototypes[2].clone(),
            prototypes,
            weights: uniform_vec(&mut rng, k * k, 1.0, 2.0),
            rounds: Vec::new(),
        };
        StepCase {
            clusters: ClusterState::restore(&be, snapshot).unwrap(),
            cfg,
            batch,
            store,
            model,
            opt,
            audio,
            video,
        }
    }

    /// Runs one step; with `keep`, also keeps the three embeddings and the
    /// clipped gradients.
    pub fn step(&mut self, keep: bool) -> StepOut {
        let be = be();
        let (d, c) = (&self.cfg.data, &self.cfg.diccae);
        let mut tape = Tape::new(&self.store);
        let a = tape.constant(
            Tensor::from_host(&be, &[self.batch, d.n_mels, d.audio_frames], &self.audio).unwrap(),
        );
        let v = tape.constant(
            Tensor::from_host(
                &be,
                &[self.batch, d.frames, 3, d.frame_size, d.frame_size],
                &self.video,
            )
            .unwrap(),
        );
        let e = self.model.forward(&mut tape, a, v).unwrap();
        let weights = TermWeights {
            tau: c.tau,
            tau_c: c.tau_c,
            lambda_fused: 0.0,
            lambda_cls: c.lambda_cls,
            lambda_conf: c.lambda_conf,
            cluster_grad_ratio: 0.0,
        };
        let idx: Vec<usize> = (0..self.batch).collect();
        let outputs = [e.z_a, e.z_v, e.z_f];
        let batch = ClusterBatch {
            state: &mut self.clusters,
            idx: &idx,
        };
        let terms = diccae_terms(
            &self.store,
            outputs.map(|v| tape.value(v)),
            &weights,
            Some(batch),
        )
        .unwrap();
        let mut out = StepOut {
            loss: terms.loss,
            terms: [
                terms.ins,
                terms.cls.expect("L_cls trains"),
                terms.conf.expect("L_conf trains"),
            ],
            z: keep.then(|| outputs.map(|z| tape.value(z).buf().clone())),
            grads: None,
        };
        let seeds = outputs
            .into_iter()
            .zip(terms.grads)
            .filter_map(|(v, g)| g.map(|g| (v, g)))
            .collect();
        let mut grads = tape.backward_from(seeds).unwrap();
        drop(tape);
        clip_grad_norm(&self.store, &mut grads, self.cfg.train.grad_clip).unwrap();
        if keep {
            out.grads = Some(
                self.store
                    .ids()
                    .map(|id| grads.param(id).expect("every parameter takes part").clone())
                    .collect(),
            );
        }
        self.opt.step(&mut self.store, &grads, STEP_LR).unwrap();
        out
    }

    /// On a fresh case: the three loss terms against f64 host definitions on
    /// the step's own embeddings (1e-4 relative), the total against their
    /// weighted sum, and every parameter after the first AdamW step against
    /// `p·(1 − lr·wd) − lr·ĝ/(|ĝ| + eps)` computed on the host from the
    /// clipped gradients (1e-6 absolute; the step is 1e-3).
    pub fn check(&mut self) {
        assert_eq!(
            self.opt.step_count(),
            0,
            "StepCase::check needs a fresh case"
        );
        let be = be();
        let before: Vec<Vec<f32>> = self
            .store
            .ids()
            .map(|id| self.store.get(id).to_host(&be).unwrap())
            .collect();
        let out = self.step(true);
        let [za, zv, zf] = out.z.expect("embeddings");
        let grads_host = out.grads.expect("gradients");
        let (b, p) = (self.batch, self.cfg.model.proj_dim);
        let c = &self.cfg.diccae;
        let ins = reference::infonce(&za, &zv, b, p, f64::from(c.tau)).0;
        let snapshot = self.clusters.export();
        let protos = &snapshot.prototypes;
        let labels: Vec<f32> = snapshot.labels.iter().map(|&l| l as f32).collect();
        let w = &snapshot.weights;
        let k = self.cfg.data.synthetic_classes;
        let ca = |z: &[f32], mu: &[f32], w: Option<&[f32]>| {
            reference::class_align_loss(z, mu, &labels, w, b, k, p, f64::from(c.tau_c))
        };
        let cls = 0.5 * (ca(&za, &protos[1], None) + ca(&zv, &protos[0], None));
        let want = [ins, cls, ca(&zf, &protos[2], Some(w))];
        for (name, (&got, want)) in ["L_ins", "L_cls", "L_conf"]
            .iter()
            .zip(out.terms.iter().zip(want))
        {
            assert!(
                (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                "benchmark output is wrong: tiny step {name} = {got}, f64 reference {want} (1e-4 relative)"
            );
        }
        let total =
            want[0] + f64::from(c.lambda_cls) * want[1] + f64::from(c.lambda_conf) * want[2];
        assert!(
            (out.loss - total).abs() <= 1e-4 * total.abs().max(1.0),
            "benchmark output is wrong: tiny step total loss {} vs {total}",
            out.loss
        );
        let wd = f64::from(self.cfg.train.weight_decay);
        let lr = f64::from(STEP_LR);
        for (j, id) in self.store.ids().collect::<Vec<_>>().into_iter().enumerate() {
            let after = self.store.get(id).to_host(&be).unwrap();
            let g = &grads_host[j];
            let decay = if self.store.decays(id) { wd } else { 0.0 };
            for (e, ((&p1, &p0), &g)) in after.iter().zip(&before[j]).zip(g).enumerate() {
                let (p0, g) = (f64::from(p0), f64::from(g));
                let want = p0 - lr * (g / (g.abs() + 1e-8) + decay * p0);
                assert!(
                    (f64::from(p1) - want).abs() <= 1e-6,
                    "benchmark output is wrong: tiny step parameter {}[{e}] = {p1} after AdamW, host formula {want}",
                    self.store.name(id)
                );
            }
        }
    }
}

// ---------------------------------------------------------------- memory

/// Peak resident memory of this process since the last [`reset_peak_rss`]
/// (Linux `VmHWM`), in bytes; `None` where /proc is unavailable.
pub fn peak_rss() -> Option<u64> {
    proc_status_kib("VmHWM:").map(|k| k * 1024)
}

/// Current resident memory (`VmRSS`), in bytes.
pub fn current_rss() -> Option<u64> {
    proc_status_kib("VmRSS:").map(|k| k * 1024)
}

/// Resets the peak (`VmHWM`) to the current resident size (Linux ≥ 4.0:
/// writing 5 to /proc/self/clear_refs). Returns false when not possible.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn proc_status_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
