//! The CUDA tier's test bodies: every kernel family of the CUDA backend
//! against the CPU backend on random awkward shapes (including those above
//! 48 KiB of static plus dynamic shared memory), and training steps on both.
//! One body per family, run by `tests/gpu_kernels.rs` on a real GPU and by
//! `tests/emulated_cuda_backend.rs` on the emulated device (the stand-in
//! driver and cuBLAS of `diccae-kernel-emu`), so the shipped host code in
//! `src/backend/cuda` and `src/ops/*/cuda.rs` runs in `cargo test`.
//!
//! Tolerances (CUDA vs CPU, both f32): losses, LSEs, attention outputs and
//! distances rtol 1e-5 / atol 1e-5; gradients rtol 1e-4 / atol 1e-5
//! (1e-6 where stated); gemm rtol 1e-5 / atol 2e-6·k (summation order
//! differs); k-means sums rtol 1e-5 / atol 1e-5; the other families state
//! theirs at each check, loosened only where a GPU may fuse a multiply-add
//! (mean_tokens backward) or a column sum runs over hundreds of rows. Last,
//! training steps on both backends, per-step losses within a relative 1e-3
//! growing to 1e-2 at step 20.
#![allow(dead_code)]

use cudarc::driver::CudaSlice;
use diccae_engine::backend::BackendCore;
use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::backend::cuda::CudaBackend;
use diccae_engine::config::Config;
use diccae_engine::device::Opened;
use diccae_engine::gradcheck::{all_close, test_seed};
use diccae_engine::ops::cgra::kernels::{CGRA_EPS, CgraGrads};
use diccae_engine::ops::{
    AdamWStep, AttentionKernels, AttentionSpec, CgraKernels, CgraSpec, ClassAlignKernels,
    ClassAlignSpec, CrossEntropyKernels, CrossEntropySpec, ElementwiseKernels, GemmSpec,
    InfoNceGrads, InfoNceKernels, InfoNceSpec, KMeansKernels, KMeansSpec, LayerNormNeeds,
    MatmulKernels, NormKernels, NormSpec, OptimKernels, PatchSpec, SoftmaxKernels, TokenBlock,
    TokenKernels,
};
use diccae_engine::rng::{SeededRng, normal_vec, seeded, uniform_vec};
use diccae_engine::train::trainer::{TrainOptions, train};
use rand::Rng;

/// A seeded generator; the seed is printed for replay with `DICCAE_TEST_SEED`.
fn rng(test: &str) -> SeededRng {
    let seed = test_seed();
    eprintln!("{test}: DICCAE_TEST_SEED={seed}");
    seeded(seed)
}

/// `n·d` normal values, rows scaled to unit length.
fn unit_rows(r: &mut SeededRng, n: usize, d: usize) -> Vec<f32> {
    let mut v = normal_vec(r, n * d, 1.0);
    for row in v.chunks_exact_mut(d.max(1)) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

fn close(what: &str, shape: &str, got: &[f32], want: &[f32], rtol: f32, atol: f32) {
    if let Err(e) = all_close(got, want, rtol, atol) {
        panic!("{what} at {shape}: GPU vs CPU backend: {e}");
    }
}

/// The `core` check.
pub fn core_buffers_and_vector_primitives_match_the_cpu(g: &CudaBackend) {
    let cpu = CpuBackend::new();
    let mut r = rng("core");
    for n in [1usize, 7, 33, 4097, 1 << 20 | 3] {
        let shape = format!("n={n}");
        let x = normal_vec(&mut r, n, 1.0);
        let y = normal_vec(&mut r, n, 1.0);
        let gx = g.upload(&x).unwrap();
        assert_eq!(g.len(&gx), n);
        assert_eq!(g.download(&gx).unwrap(), x, "{shape}: round trip");
        assert_eq!(g.download(&g.duplicate(&gx).unwrap()).unwrap(), x);
        assert_eq!(g.download(&g.zeros(n).unwrap()).unwrap(), vec![0.0; n]);
        let mut f = g.zeros(n).unwrap();
        g.fill(&mut f, -2.5).unwrap();
        assert_eq!(g.download(&f).unwrap(), vec![-2.5; n], "{shape}: fill");

        let mut gy = g.upload(&y).unwrap();
        g.axpy(0.75, &gx, &mut gy).unwrap();
        g.scale(-1.5, &mut gy).unwrap();
        let mut cy = y.clone();
        cpu.axpy(0.75, &x, &mut cy).unwrap();
        cpu.scale(-1.5, &mut cy).unwrap();
        close(
            "axpy+scale",
            &shape,
            &g.download(&gy).unwrap(),
            &cy,
            1e-6,
            1e-6,
        );
        let (gs, cs) = (g.sum_squares(&gx).unwrap(), cpu.sum_squares(&x).unwrap());
        assert!(
            (gs - cs).abs() <= 1e-5 * cs,
            "{shape}: sum_squares {gs} vs {cs}"
        );
    }
    let short = g.zeros(3).unwrap();
    let mut long = g.zeros(4).unwrap();
    assert!(g.axpy(1.0, &short, &mut long).is_err(), "length mismatch");
}

/// The `gemm` check.
pub fn gemm_matches_the_cpu_for_every_layout(g: &CudaBackend) {
    let cpu = CpuBackend::new();
    let mut r = rng("gemm");
    for &(m, n, k) in &[
        (1usize, 1usize, 1usize),
        (7, 33, 5),
        (129, 17, 70),
        (33, 65, 0),
    ] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            for &(batch, bcast_b) in &[(1usize, false), (3, false), (4, true)] {
                let shape = format!("m={m} n={n} k={k} ta={ta} tb={tb} batch={batch}/{bcast_b}");
                let spec = GemmSpec {
                    alpha: 0.5,
                    ..GemmSpec::new(m, n, k)
                        .transposed(ta, tb)
                        .beta(if batch == 3 { 1.0 } else { 0.0 })
                        .batched(batch, m * k, if bcast_b { 0 } else { k * n }, m * n + 2)
                };
                let (la, lb, lc) = spec.required_lengths();
                let a = normal_vec(&mut r, la, 1.0);
                let b = normal_vec(&mut r, lb, 1.0);
                let c0 = normal_vec(&mut r, lc, 1.0);
                let mut gc = g.upload(&c0).unwrap();
                g.gemm(
                    &spec,
                    &g.upload(&a).unwrap(),
                    &g.upload(&b).unwrap(),
                    &mut gc,
                )
                .unwrap();
                let mut cc = c0;
                cpu.gemm(&spec, &a, &b, &mut cc).unwrap();
                let atol = 2e-6 * k.max(1) as f32;
                close("C", &shape, &g.download(&gc).unwrap(), &cc, 1e-5, atol);
            }
        }
    }
}

/// The `infonce` check.
pub fn infonce_forward_and_backward_match_the_cpu(g: &CudaBackend) {
    let cpu = CpuBackend::new();
    let mut r = rng("infonce");
    for &(b, d, tau) in &[
        (1usize, 7usize, 0.1f32),
        (33, 45, 0.07),
        (70, 33, 0.2),
        (97, 16, 0.05),
        (300, 512, 0.07), // opts in to more than 48 KiB of shared memory
    ] {
        let shape = format!("B={b} d={d} tau={tau}");
        let spec = InfoNceSpec {
            batch: b,
            dim: d,
            tau,
        };
        let za = unit_rows(&mut r, b, d);
        let zv = unit_rows(&mut r, b, d);
        let (gza, gzv) = (g.upload(&za).unwrap(), g.upload(&zv).unwrap());
        let (gl, glse) = g.infonce_fwd(&spec, &gza, &gzv).unwrap();
        let (cl, clse) = cpu.infonce_fwd(&spec, &za, &zv).unwrap();
        close("loss", &shape, &g.download(&gl).unwrap(), &cl, 1e-5, 1e-5);
        close(
            "row LSE",
            &shape,
            &g.download(&glse.row).unwrap(),
            &clse.row,
            1e-5,
            1e-5,
        );
        close(
            "col LSE",
            &shape,
            &g.download(&glse.col).unwrap(),
            &clse.col,
            1e-5,
            1e-5,
        );

        let start = unit_rows(&mut r, b, d);
        let grad = vec![0.75f32];
        let (mut gdza, mut gdzv) = (g.upload(&start).unwrap(), g.upload(&start).unwrap());
        g.infonce_bwd(
            &spec,
            &gza,
            &gzv,
            &glse,
            &g.upload(&grad).unwrap(),
            InfoNceGrads {
                dza: Some(&mut gdza),
                dzv: Some(&mut gdzv),
            },
        )
        .unwrap();
        let (mut cdza, mut cdzv) = (start.clone(), start);
        cpu.infonce_bwd(
            &spec,
            &za,
            &zv,
            &clse,
            &grad,
            InfoNceGrads {
                dza: Some(&mut cdza),
                dzv: Some(&mut cdzv),
            },
        )
        .unwrap();
        close(
            "dza",
            &shape,
            &g.download(&gdza).unwrap(),
            &cdza,
            1e-4,
            1e-6,
        );
        close(
            "dzv",
            &shape,
            &g.download(&gdzv).unwrap(),
            &cdzv,
            1e-4,
            1e-6,
        );
    }
}

/// The `class_align` check.
pub fn class_align_forward_backward_and_confusion_match_the_cpu(g: &CudaBackend) {
    let cpu = CpuBackend::new();
    let mut r = rng("class_align");
    for &(n, k, d, weighted) in &[
        (1usize, 1usize, 5usize, false),
        (33, 7, 45, true),
        (70, 37, 16, true),
        (13, 70, 33, false),
    ] {
        let shape = format!("n={n} k={k} d={d} weighted={weighted}");
        let s = ClassAlignSpec {
            n,
            k,
            d,
            inv_tau: 10.0,
        };
        let z = unit_rows(&mut r, n, d);
        let mu = unit_rows(&mut r, k, d);
        let y: Vec<f32> = (0..n).map(|_| r.random_range(0..k) as f32).collect();
        let w = weighted.then(|| uniform_vec(&mut r, k * k, 0.2, 2.0));
        let conf0 = uniform_vec(&mut r, k * k, 0.0, 1.0);
        let (gz, gmu, gy) = (
            g.upload(&z).unwrap(),
            g.upload(&mu).unwrap(),
            g.upload(&y).unwrap(),
        );
        let gw = w.as_ref().map(|w| g.upload(w).unwrap());
        let (mut gloss, mut glse) = (g.zeros(1).unwrap(), g.zeros(n).unwrap());
        let mut gconf = g.upload(&conf0).unwrap();
        g.class_align_fwd(
            &s,
            &gz,
            &gmu,
            &gy,
            gw.as_ref(),
            &mut gloss,
            &mut glse,
            Some(&mut gconf),
        )
        .unwrap();
        let (mut closs, mut clse, mut cconf) = (vec![0.0f32], vec![0.0f32; n], conf0);
        cpu.class_align_fwd(
            &s,
            &z,
            &mu,
            &y,
            w.as_ref(),
            &mut closs,
            &mut clse,
            Some(&mut cconf),
        )
        .unwrap();
        close(
            "loss",
            &shape,
            &g.download(&gloss).unwrap(),
            &closs,
            1e-5,
            1e-5,
        );
        close(
            "lse",
            &shape,
            &g.download(&glse).unwrap(),
            &clse,
            1e-5,
            1e-5,
        );
        close(
            "confusion",
            &shape,
            &g.download(&gconf).unwrap(),
            &cconf,
            1e-5,
            1e-6,
        );

        let grad = vec![1.3f32];
        let start = unit_rows(&mut r, n, d);
        let mut gdz = g.upload(&start).unwrap();
        g.class_align_bwd(
            &s,
            &gz,
            &gmu,
            &gy,
            gw.as_ref(),
            &glse,
            &g.upload(&grad).unwrap(),
            &mut gdz,
        )
        .unwrap();
        let mut cdz = start;
        cpu.class_align_bwd(&s, &z, &mu, &y, w.as_ref(), &clse, &grad, &mut cdz)
            .unwrap();
        close("dz", &shape, &g.download(&gdz).unwrap(), &cdz, 1e-4, 1e-6);
    }
}

/// The `class_align_bad` check.
pub fn class_align_rejects_a_bad_label_naming_its_row(g: &CudaBackend) {
    let mut r = rng("class_align_bad");
    let (n, k, d) = (9, 3, 4);
    let s = ClassAlignSpec {
        n,
        k,
        d,
        inv_tau: 2.0,
    };
    let mut y = vec![1.0f32; n];
    y[6] = 3.0;
    let (mut loss, mut lse) = (g.zeros(1).unwrap(), g.zeros(n).unwrap());
    let e = g
        .class_align_fwd(
            &s,
            &g.upload(&unit_rows(&mut r, n, d)).unwrap(),
            &g.upload(&unit_rows(&mut r, k, d)).unwrap(),
            &g.upload(&y).unwrap(),
            None,
            &mut loss,
            &mut lse,
            None,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("label 3 at row 6"), "{e}");

    // A bad weight (the first in row-major order: W[1,2] = -1 before the NaN
    // at W[2,1]) is named once the labels are valid.
    y[6] = 1.0;
    let mut w = vec![1.0f32; k * k];
    w[k + 2] = -1.0;
    w[k * 2 + 1] = f32::NAN;
    let e = g
        .class_align_fwd(
            &s,
            &g.upload(&unit_rows(&mut r, n, d)).unwrap(),
            &g.upload(&unit_rows(&mut r, k, d)).unwrap(),
            &g.upload(&y).unwrap(),
            Some(&g.upload(&w).unwrap()),
            &mut loss,
            &mut lse,
            None,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("W[1, 2] = -1"), "{e}");
}

/// The `kmeans` check.
pub fn kmeans_assign_and_update_match_the_cpu(g: &CudaBackend) {
    let cpu = CpuBackend::new();
    let mut r = rng("kmeans");
    for &(p, n, k, d) in &[
        (1usize, 1usize, 1usize, 3usize),
        (2, 45, 7, 33),
        (3, 70, 37, 5),
        (1, 33, 65, 130),
    ] {
        let shape = format!("p={p} n={n} k={k} d={d}");
        let s = KMeansSpec {
            problems: p,
            n,
            k,
            d,
        };
        let data = normal_vec(&mut r, p * n * d, 1.0);
        let cent = normal_vec(&mut r, p * k * d, 1.0);
        let gdata = g.upload(&data).unwrap();
        let (mut gl, mut gd) = (g.zeros(p * n).unwrap(), g.zeros(p * n).unwrap());
        g.kmeans_assign(&s, &gdata, &g.upload(&cent).unwrap(), &mut gl, &mut gd)
            .unwrap();
        let (mut cl, mut cd) = (vec![0.0f32; p * n], vec![0.0f32; p * n]);
        cpu.kmeans_assign(&s, &data, &cent, &mut cl, &mut cd)
            .unwrap();
        let labels = g.download(&gl).unwrap();
        for q in 0..p * n {
            if labels[q] != cl[q] {
                // A near tie may go either way: the two distances must agree.
                let (pi, x) = (q / n, &data[q * d..(q + 1) * d]);
                let dist = |l: f32| -> f32 {
                    let c = &cent[(pi * k + l as usize) * d..(pi * k + l as usize + 1) * d];
                    x.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum()
                };
                let gap = (dist(labels[q]) - dist(cl[q])).abs();
                assert!(
                    gap < 1e-4,
                    "{shape}: point {q}: {} vs CPU {}",
                    labels[q],
                    cl[q]
                );
            }
        }
        close(
            "min_dist",
            &shape,
            &g.download(&gd).unwrap(),
            &cd,
            1e-5,
            1e-5,
        );

        let lab: Vec<f32> = (0..p * n).map(|_| r.random_range(0..k) as f32).collect();
        let (mut gs, mut gc) = (g.zeros(p * k * d).unwrap(), g.zeros(p * k).unwrap());
        g.kmeans_update(&s, &gdata, &g.upload(&lab).unwrap(), &mut gs, &mut gc)
            .unwrap();
        let (mut cs, mut cc) = (vec![0.0f32; p * k * d], vec![0.0f32; p * k]);
        cpu.kmeans_update(&s, &data, &lab, &mut cs, &mut cc)
            .unwrap();
        close("sums", &shape, &g.download(&gs).unwrap(), &cs, 1e-5, 1e-5);
        assert_eq!(g.download(&gc).unwrap(), cc, "{shape}: counts");
    }
}

/// The `kmeans_bad` check.
pub fn kmeans_update_rejects_a_bad_label(g: &CudaBackend) {
    let s = KMeansSpec {
        problems: 2,
        n: 40,
        k: 3,
        d: 4,
    };
    let mut lab = vec![0.0f32; 80];
    lab[57] = 3.0;
    let (mut sums, mut counts) = (g.zeros(2 * 3 * 4).unwrap(), g.zeros(6).unwrap());
    let e = g
        .kmeans_update(
            &s,
            &g.upload(&vec![1.0f32; 2 * 40 * 4]).unwrap(),
            &g.upload(&lab).unwrap(),
            &mut sums,
            &mut counts,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("label 3 of point 17 in problem 1"), "{e}");
}

/// The `attention` check.
pub fn attention_forward_and_backward_match_the_cpu(g: &CudaBackend) {
    let cpu = CpuBackend::new();
    let mut r = rng("attention");
    for &(batch, seq, heads, head_dim) in &[
        (1usize, 1usize, 1usize, 5usize),
        (2, 13, 3, 16),
        (1, 37, 2, 33),
        (2, 70, 1, 8),
        (2, 130, 4, 128),
    ] {
        let s = AttentionSpec {
            batch,
            seq,
            heads,
            head_dim,
        };
        let shape = format!("{s:?}");
        let qkv = normal_vec(&mut r, s.qkv_len(), 1.0);
        let gqkv = g.upload(&qkv).unwrap();
        let (mut gout, mut glse) = (g.zeros(s.out_len()).unwrap(), g.zeros(s.lse_len()).unwrap());
        g.attention_fwd(&s, &gqkv, &mut gout, &mut glse).unwrap();
        let (mut cout, mut clse) = (vec![0.0f32; s.out_len()], vec![0.0f32; s.lse_len()]);
        cpu.attention_fwd(&s, &qkv, &mut cout, &mut clse).unwrap();
        close(
            "out",
            &shape,
            &g.download(&gout).unwrap(),
            &cout,
            1e-5,
            1e-5,
        );
        close(
            "lse",
            &shape,
            &g.download(&glse).unwrap(),
            &clse,
            1e-5,
            1e-5,
        );

        let dout = normal_vec(&mut r, s.out_len(), 1.0);
        let start = normal_vec(&mut r, s.qkv_len(), 1.0);
        let mut gd = g.upload(&start).unwrap();
        g.attention_bwd(&s, &gqkv, &gout, &glse, &g.upload(&dout).unwrap(), &mut gd)
            .unwrap();
        let mut cd = start;
        cpu.attention_bwd(&s, &qkv, &cout, &clse, &dout, &mut cd)
            .unwrap();
        close(
            "grad_qkv",
            &shape,
            &g.download(&gd).unwrap(),
            &cd,
            1e-4,
            1e-5,
        );
    }
}

/// Uploads, runs `f` on the GPU, downloads.
fn on_gpu(
    g: &CudaBackend,
    x: &[f32],
    f: impl FnOnce(&CudaBackend, &mut CudaSlice<f32>),
) -> Vec<f32> {
    let mut buf = g.upload(x).unwrap();
    f(g, &mut buf);
    g.download(&buf).unwrap()
}

/// The `elementwise` check.
pub fn elementwise_matches_the_cpu(g: &CudaBackend) {
    let cpu = CpuBackend::new();
    let mut r = rng("elementwise");
    for &(rows, d) in &[
        (1usize, 1usize),
        (7, 5),
        (33, 257),
        (129, 33),
        (3, 769),
        (1000, 37), // sum_rows in row chunks plus a second pass
    ] {
        let shape = format!("rows={rows} d={d}");
        let n = rows * d;
        let a = normal_vec(&mut r, n, 3.0);
        let b = normal_vec(&mut r, n, 1.0);
        let row = normal_vec(&mut r, d, 1.0);
        let (ga, gb, grow) = (
            g.upload(&a).unwrap(),
            g.upload(&b).unwrap(),
            g.upload(&row).unwrap(),
        );
        let dl = |buf: CudaSlice<f32>| g.download(&buf).unwrap();
        close(
            "add",
            &shape,
            &dl(g.add(&ga, &gb).unwrap()),
            &cpu.add(&a, &b).unwrap(),
            0.0,
            0.0,
        );
        close(
            "scaled",
            &shape,
            &dl(g.scaled(&ga, -0.37).unwrap()),
            &cpu.scaled(&a, -0.37).unwrap(),
            0.0,
            0.0,
        );
        close(
            "add_row",
            &shape,
            &dl(g.add_row(&ga, &grow, rows, d).unwrap()),
            &cpu.add_row(&a, &row, rows, d).unwrap(),
            0.0,
            0.0,
        );
        // f32 column sums in another order: atol grows with the row count.
        let atol = if rows > 256 { 1e-4 } else { 1e-5 };
        close(
            "sum_rows",
            &shape,
            &dl(g.sum_rows(&gb, rows, d).unwrap()),
            &cpu.sum_rows(&b, rows, d).unwrap(),
            1e-5,
            atol,
        );
        close(
            "gelu_fwd",
            &shape,
            &dl(g.gelu_fwd(&ga).unwrap()),
            &cpu.gelu_fwd(&a).unwrap(),
            1e-5,
            1e-6,
        );
        close(
            "gelu_bwd",
            &shape,
            &dl(g.gelu_bwd(&ga, &gb).unwrap()),
            &cpu.gelu_bwd(&a, &b).unwrap(),
            1e-5,
            2e-5,
        );
        // rtol 1e-5 / atol 1e-6: expf against the
        // CPU's exp, and the backward from the same forward output.
        close(
            "sigmoid_fwd",
            &shape,
            &dl(g.sigmoid_fwd(&ga).unwrap()),
            &cpu.sigmoid_fwd(&a).unwrap(),
            1e-5,
            1e-7,
        );
        close(
            "sigmoid_bwd",
            &shape,
            &dl(g.sigmoid_bwd(&ga, &gb).unwrap()),
            &cpu.sigmoid_bwd(&a, &b).unwrap(),
            1e-5,
            1e-7,
        );
    }
    let (short, long) = (g.zeros(3).unwrap(), g.zeros(4).unwrap());
    assert!(g.add(&short, &long).is_err(), "length mismatch");
}

/// The `norm` check.
pub fn layer_norm_and_l2_normalize_match_the_cpu(g: &CudaBackend) {
    let cpu = CpuBackend::new();
    let mut r = rng("norm");
    for &(rows, d) in &[
        (1usize, 1usize),
        (7, 5),
        (33, 257),
        (129, 33),
        (9, 769),
        (600, 40), // parameter gradients in row chunks
    ] {
        let shape = format!("rows={rows} d={d}");
        let spec = NormSpec { rows, d, eps: 1e-5 };
        let x: Vec<f32> = normal_vec(&mut r, rows * d, 2.0)
            .iter()
            .map(|v| v + 0.5)
            .collect();
        let gamma = normal_vec(&mut r, d, 1.0);
        let beta = normal_vec(&mut r, d, 1.0);
        let grad = normal_vec(&mut r, rows * d, 1.0);
        let (gx, ggamma, gbeta, ggrad) = (
            g.upload(&x).unwrap(),
            g.upload(&gamma).unwrap(),
            g.upload(&beta).unwrap(),
            g.upload(&grad).unwrap(),
        );
        let (gy, gstats) = g.layer_norm_fwd(&spec, &gx, &ggamma, &gbeta).unwrap();
        let (cy, cstats) = cpu.layer_norm_fwd(&spec, &x, &gamma, &beta).unwrap();
        let dl = |buf: &CudaSlice<f32>| g.download(buf).unwrap();
        close("y", &shape, &dl(&gy), &cy, 1e-5, 1e-5);
        close("mean", &shape, &dl(&gstats.mean), &cstats.mean, 1e-5, 1e-5);
        close("rstd", &shape, &dl(&gstats.rstd), &cstats.rstd, 1e-5, 1e-5);
        let needs = LayerNormNeeds {
            dx: true,
            params: true,
        };
        let gg = g
            .layer_norm_bwd(&spec, &gx, &ggamma, &gstats, &ggrad, needs)
            .unwrap();
        let cg = cpu
            .layer_norm_bwd(&spec, &x, &gamma, &cstats, &grad, needs)
            .unwrap();
        let pick = |v: &Option<CudaSlice<f32>>| dl(v.as_ref().unwrap());
        let atol = if rows > 256 { 2e-4 } else { 5e-5 };
        close(
            "dx",
            &shape,
            &pick(&gg.dx),
            cg.dx.as_ref().unwrap(),
            1e-4,
            1e-5,
        );
        close(
            "dgamma",
            &shape,
            &pick(&gg.dgamma),
            cg.dgamma.as_ref().unwrap(),
            1e-5,
            atol,
        );
        close(
            "dbeta",
            &shape,
            &pick(&gg.dbeta),
            cg.dbeta.as_ref().unwrap(),
            1e-5,
            atol,
        );

        // L2: the last row's norm below eps (the clamped branch).
        let spec = NormSpec { rows, d, eps: 1e-3 };
        let mut x = normal_vec(&mut r, rows * d, 1.5);
        x[(rows - 1) * d..].iter_mut().for_each(|v| *v *= 1e-5);
        let gx = g.upload(&x).unwrap();
        let (gy, gnorms) = g.l2_normalize_fwd(&spec, &gx).unwrap();
        let (cy, cnorms) = cpu.l2_normalize_fwd(&spec, &x).unwrap();
        close("l2 y", &shape, &dl(&gy), &cy, 1e-5, 1e-6);
        close("l2 norms", &shape, &dl(&gnorms), &cnorms, 1e-5, 1e-6);
        let gdx = g.l2_normalize_bwd(&spec, &gx, &gnorms, &ggrad).unwrap();
        let cdx = cpu.l2_normalize_bwd(&spec, &x, &cnorms, &grad).unwrap();
        close("l2 dx", &shape, &dl(&gdx), &cdx, 1e-4, 1e-5);
    }
}

/// The `tokens` check.
pub fn token_layout_kernels_match_the_cpu(g: &CudaBackend) {
    let cpu = CpuBackend::new();
    let mut r = rng("tokens");
    // mean_tokens: f64 sums like the CPU (exact); the backward's `+= g/T`
    // may be fused into an FMA on the GPU (rtol 1e-6 / atol 1e-7).
    for &(b, t, w) in &[
        (1usize, 1usize, 1usize),
        (3, 7, 5),
        (2, 33, 257),
        (5, 129, 3),
    ] {
        let shape = format!("batch={b} tokens={t} width={w}");
        let x = normal_vec(&mut r, b * t * w, 1.0);
        let got = on_gpu(g, &vec![f32::NAN; b * w], |g, out| {
            g.mean_tokens(b, t, w, &g.upload(&x).unwrap(), out).unwrap()
        });
        let mut want = vec![f32::NAN; b * w];
        cpu.mean_tokens(b, t, w, &x, &mut want).unwrap();
        close("mean_tokens", &shape, &got, &want, 0.0, 0.0);
        let grad = normal_vec(&mut r, b * w, 1.0);
        let start = normal_vec(&mut r, b * t * w, 1.0);
        let got = on_gpu(g, &start, |g, gx| {
            g.mean_tokens_backward(b, t, w, &g.upload(&grad).unwrap(), gx)
                .unwrap()
        });
        let mut want = start;
        cpu.mean_tokens_backward(b, t, w, &grad, &mut want).unwrap();
        close("mean_tokens_backward", &shape, &got, &want, 1e-6, 1e-7);
    }
    for &(batch, width, src_tokens, src_start, dst_tokens, dst_start, len) in &[
        (1usize, 1usize, 1usize, 0usize, 1usize, 0usize, 1usize),
        (3, 5, 7, 2, 9, 4, 5),
        (2, 257, 33, 0, 40, 7, 33),
        (4, 33, 129, 100, 29, 0, 29),
    ] {
        let block = TokenBlock {
            batch,
            width,
            src_tokens,
            src_start,
            dst_tokens,
            dst_start,
            len,
        };
        let shape = format!("{block:?}");
        let (ns, nd) = block.required_lengths();
        let src = normal_vec(&mut r, ns, 1.0);
        let start = normal_vec(&mut r, nd, 1.0);
        for accumulate in [false, true] {
            let got = on_gpu(g, &start, |g, dst| {
                g.copy_tokens(&block, accumulate, &g.upload(&src).unwrap(), dst)
                    .unwrap()
            });
            let mut want = start.clone();
            cpu.copy_tokens(&block, accumulate, &src, &mut want)
                .unwrap();
            close("copy_tokens", &shape, &got, &want, 0.0, 0.0);
        }
    }
    for &(batch, frames, channels, height, width, tubelet, patch) in &[
        (1usize, 1usize, 1usize, 1usize, 1usize, 1usize, 1usize),
        (2, 4, 3, 10, 15, 2, 5),
        (1, 1, 1, 6, 33, 1, 3),
        (3, 3, 1, 7, 7, 3, 7),
        (4, 4, 3, 32, 32, 2, 8),
    ] {
        let spec = PatchSpec {
            batch,
            frames,
            channels,
            height,
            width,
            tubelet,
            patch,
        };
        let shape = format!("{spec:?}");
        let n = spec.numel();
        let x = normal_vec(&mut r, n, 1.0);
        let got = on_gpu(g, &vec![f32::NAN; n], |g, out| {
            g.patchify(&spec, &g.upload(&x).unwrap(), out).unwrap()
        });
        let mut want = vec![f32::NAN; n];
        cpu.patchify(&spec, &x, &mut want).unwrap();
        close("patchify", &shape, &got, &want, 0.0, 0.0);
        let patches = normal_vec(&mut r, n, 1.0);
        let start = normal_vec(&mut r, n, 1.0);
        let got = on_gpu(g, &start, |g, xb| {
            g.unpatchify_add(&spec, &g.upload(&patches).unwrap(), xb)
                .unwrap()
        });
        let mut want = start;
        cpu.unpatchify_add(&spec, &patches, &mut want).unwrap();
        close("unpatchify_add", &shape, &got, &want, 0.0, 0.0);
    }
}

/// The `softmax` check.
pub fn softmax_matches_the_cpu(g: &CudaBackend) {
    let cpu = CpuBackend::new();
    let mut r = rng("softmax");
    for &(rows, cols) in &[(1usize, 1usize), (7, 5), (33, 257), (129, 33), (2, 769)] {
        let shape = format!("rows={rows} cols={cols}");
        let n = rows * cols;
        let x = normal_vec(&mut r, n, 3.0);
        let got = on_gpu(g, &vec![f32::NAN; n], |g, y| {
            g.softmax_fwd(rows, cols, &g.upload(&x).unwrap(), y)
                .unwrap()
        });
        let mut y = vec![f32::NAN; n];
        cpu.softmax_fwd(rows, cols, &x, &mut y).unwrap();
        close("softmax", &shape, &got, &y, 1e-5, 1e-7);
        let dy = normal_vec(&mut r, n, 1.0);
        let start = normal_vec(&mut r, n, 1.0);
        let got = on_gpu(g, &start, |g, dx| {
            let (gy, gdy) = (g.upload(&y).unwrap(), g.upload(&dy).unwrap());
            g.softmax_bwd(rows, cols, &gy, &gdy, dx).unwrap()
        });
        let mut want = start;
        cpu.softmax_bwd(rows, cols, &y, &dy, &mut want).unwrap();
        close("softmax backward", &shape, &got, &want, 1e-5, 1e-6);
    }
}

/// The `cross_entropy` check.
pub fn cross_entropy_matches_the_cpu_and_names_a_bad_target(g: &CudaBackend) {
    let cpu = CpuBackend::new();
    let mut r = rng("cross_entropy");
    for &(rows, classes, scale) in &[
        (1usize, 1usize, 1.0f32),
        (7, 5, 5.0),
        (33, 257, 0.3),
        (129, 33, 2.0),
    ] {
        let shape = format!("rows={rows} classes={classes} scale={scale}");
        let spec = CrossEntropySpec {
            rows,
            classes,
            scale,
        };
        let logits = normal_vec(&mut r, rows * classes, 2.0);
        let targets: Vec<f32> = (0..rows)
            .map(|_| r.random_range(0..classes) as f32)
            .collect();
        let (gl, gt) = (g.upload(&logits).unwrap(), g.upload(&targets).unwrap());
        let (gloss, glse) = g.cross_entropy_fwd(&spec, &gl, &gt).unwrap();
        let (closs, clse) = cpu.cross_entropy_fwd(&spec, &logits, &targets).unwrap();
        close(
            "loss",
            &shape,
            &g.download(&gloss).unwrap(),
            &closs,
            1e-5,
            1e-5,
        );
        close(
            "LSE",
            &shape,
            &g.download(&glse).unwrap(),
            &clse,
            1e-5,
            1e-5,
        );
        let start = normal_vec(&mut r, rows * classes, 1.0);
        let grad = vec![0.8f32];
        let got = on_gpu(g, &start, |g, dl| {
            g.cross_entropy_bwd(&spec, &gl, &gt, &glse, &g.upload(&grad).unwrap(), dl)
                .unwrap()
        });
        let mut want = start;
        cpu.cross_entropy_bwd(&spec, &logits, &targets, &clse, &grad, &mut want)
            .unwrap();
        close("dlogits", &shape, &got, &want, 1e-4, 1e-6);
    }
    let spec = CrossEntropySpec {
        rows: 3,
        classes: 4,
        scale: 1.0,
    };
    let logits = g.upload(&[0.5f32; 12]).unwrap();
    for bad in [4.0f32, -1.0, 1.5] {
        let targets = g.upload(&[0.0, bad, 3.0]).unwrap();
        let e = g.cross_entropy_fwd(&spec, &logits, &targets).unwrap_err();
        assert!(e.to_string().contains("row 1"), "target {bad}: {e}");
    }
}

/// The `adamw` check.
pub fn adamw_update_matches_the_cpu(g: &CudaBackend) {
    let cpu = CpuBackend::new();
    let mut r = rng("adamw");
    for &(n, wd) in &[(1usize, 0.0f32), (7, 0.05), (33, 0.1), (100_003, 0.01)] {
        let shape = format!("n={n} weight_decay={wd}");
        let p0 = normal_vec(&mut r, n, 1.0);
        let (mut gp, mut gm, mut gv) = (
            g.upload(&p0).unwrap(),
            g.zeros(n).unwrap(),
            g.zeros(n).unwrap(),
        );
        let (mut cp, mut cm, mut cv) = (p0, vec![0.0f32; n], vec![0.0f32; n]);
        let (beta1, beta2) = (0.9f32, 0.999f32);
        for t in 1..=3 {
            let grad = normal_vec(&mut r, n, 0.5);
            let step = AdamWStep {
                lr: 1e-3 * t as f32,
                beta1,
                beta2,
                eps: 1e-8,
                weight_decay: wd,
                bias_correction1: 1.0 - beta1.powi(t),
                bias_correction2: 1.0 - beta2.powi(t),
            };
            g.adamw_update(&step, &mut gp, &g.upload(&grad).unwrap(), &mut gm, &mut gv)
                .unwrap();
            cpu.adamw_update(&step, &mut cp, &grad, &mut cm, &mut cv)
                .unwrap();
            let at = format!("{shape} step {t}");
            close("param", &at, &g.download(&gp).unwrap(), &cp, 1e-6, 1e-7);
            close("m", &at, &g.download(&gm).unwrap(), &cm, 1e-6, 1e-7);
            close("v", &at, &g.download(&gv).unwrap(), &cv, 1e-6, 1e-7);
        }
    }
}

/// The `cgra` check.
pub fn cgra_forward_and_backward_match_the_cpu(g: &CudaBackend) {
    let cpu = CpuBackend::new();
    let mut r = rng("cgra");
    for &(b, ta, tv, d, tau) in &[
        (1usize, 1usize, 5usize, 7usize, 1.0f32),
        (3, 37, 70, 45, 0.5),
        (2, 65, 9, 33, 0.1),
        (1, 40, 33, 300, 1.0),
        (2, 33, 40, 400, 0.2), // cgra_bwd_f32 opts in to > 48 KiB of shared memory
    ] {
        let shape = format!("B={b} Ta={ta} Tv={tv} d={d} tau={tau}");
        let spec = CgraSpec {
            batch: b,
            ta,
            tv,
            dim: d,
            tau,
            eps: CGRA_EPS,
        };
        let ha = normal_vec(&mut r, b * ta * d, 1.0);
        let hv = normal_vec(&mut r, b * tv * d, 0.5);
        let (gha, ghv) = (g.upload(&ha).unwrap(), g.upload(&hv).unwrap());
        let (gl, gs) = g.cgra_fwd(&spec, &gha, &ghv).unwrap();
        let (cl, cs) = cpu.cgra_fwd(&spec, &ha, &hv).unwrap();
        let dl = |buf: &CudaSlice<f32>| g.download(buf).unwrap();
        close("loss", &shape, &dl(&gl), &cl, 1e-4, 1e-5);
        close(
            "‖A‖²",
            &shape,
            &dl(&gs.sq_norm_a),
            &cs.sq_norm_a,
            1e-4,
            1e-5,
        );
        close(
            "‖V‖²",
            &shape,
            &dl(&gs.sq_norm_v),
            &cs.sq_norm_v,
            1e-4,
            1e-5,
        );
        close("row LSE", &shape, &dl(&gs.row_lse), &cs.row_lse, 1e-4, 1e-5);
        close(
            "column LSE",
            &shape,
            &dl(&gs.col_lse),
            &cs.col_lse,
            1e-4,
            1e-5,
        );
        close("u", &shape, &dl(&gs.weight_a), &cs.weight_a, 1e-4, 1e-5);
        close("w", &shape, &dl(&gs.weight_v), &cs.weight_v, 1e-4, 1e-5);
        close("pooled", &shape, &dl(&gs.pooled), &cs.pooled, 1e-4, 1e-5);

        let grad = vec![0.9f32];
        let start_a = normal_vec(&mut r, b * ta * d, 0.1);
        let start_v = normal_vec(&mut r, b * tv * d, 0.1);
        let (mut gda, mut gdv) = (g.upload(&start_a).unwrap(), g.upload(&start_v).unwrap());
        g.cgra_bwd(
            &spec,
            &gha,
            &ghv,
            &gs,
            &g.upload(&grad).unwrap(),
            CgraGrads {
                dha: Some(&mut gda),
                dhv: Some(&mut gdv),
            },
        )
        .unwrap();
        let (mut cda, mut cdv) = (start_a, start_v);
        cpu.cgra_bwd(
            &spec,
            &ha,
            &hv,
            &cs,
            &grad,
            CgraGrads {
                dha: Some(&mut cda),
                dhv: Some(&mut cdv),
            },
        )
        .unwrap();
        // rtol 1e-3, atol 1e-3 of the largest CPU gradient entry.
        for (what, got, want) in [("dha", dl(&gda), cda), ("dhv", dl(&gdv), cdv)] {
            let peak = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            close(what, &shape, &got, &want, 1e-3, 1e-3 * peak.max(1e-30));
        }
    }
}

/// Per-step losses of a `steps`-step run on `backend` (one step per epoch,
/// so each epoch record's mean loss is one step's loss).
fn step_losses(backend: &Opened, dir: &std::path::Path, steps: usize) -> Vec<f64> {
    let epochs = format!("train.epochs={steps}");
    let sets: Vec<String> = [
        "data.synthetic_classes=4",
        "data.synthetic_train_per_class=4",
        "data.synthetic_test_per_class=2",
        "train.batch_size=16",
        &epochs,
        "train.warmup_epochs=2",
        "train.seed=7",
        "eval.probe_epochs=5",
        "eval.knn_k=3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cfg = Config::resolve(Some("tiny"), None, &sets).unwrap();
    let _ = std::fs::remove_dir_all(dir);
    let opts = TrainOptions {
        out: dir.to_path_buf(),
        data: None,
        resume: false,
        quiet: true,
        overwrite: false,
    };
    train(&cfg, &opts, backend).unwrap();
    let log = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let losses: Vec<f64> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "epoch")
        .map(|v| v["record"]["loss"].as_f64().unwrap())
        .collect();
    let _ = std::fs::remove_dir_all(dir);
    losses
}

/// The same training steps (tiny preset, 16 synthetic clips, one step per
/// epoch, seed 7) on the CPU and on the CUDA
/// backend, with the final evaluation. Tolerance: relative 1e-3 on the first
/// step, growing linearly to 1e-2 at step 20 (f32 summation orders differ in
/// every kernel, and the difference compounds through the optimiser).
pub fn training_steps_match_the_cpu(g: &CudaBackend, steps: usize) {
    let tmp = std::env::temp_dir().join(format!("diccae-cuda-train-{}", std::process::id()));
    let cpu_losses = step_losses(&Opened::cpu(), &tmp.join("cpu"), steps);
    let gpu_losses = step_losses(&Opened::Cuda(g.clone()), &tmp.join("cuda"), steps);
    assert_eq!(cpu_losses.len(), steps, "one record per step");
    assert_eq!(gpu_losses.len(), steps, "one record per step");
    for (i, (c, gl)) in cpu_losses.iter().zip(&gpu_losses).enumerate() {
        let tol = 1e-3 + (1e-2 - 1e-3) * i as f64 / 19.0;
        let rel = (c - gl).abs() / c.abs().max(1e-12);
        assert!(
            rel <= tol,
            "step {}: CPU loss {c} vs GPU {gl} (relative {rel:.2e} > {tol:.2e}); CPU {cpu_losses:?}, GPU {gpu_losses:?}",
            i + 1
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
