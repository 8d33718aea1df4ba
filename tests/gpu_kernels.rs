//! The GPU tier: every kernel family the CUDA backend implements, against the
//! CPU backend on random awkward shapes (the shapes of tests/emulated_*.rs,
//! plus a few wider ones). Built only with `--features cuda`; each test
//! prints `<test>: skipped: <reason>` and returns when no GPU can be opened
//! (scripts/gpu-check.sh tabulates passes and skips).
//!
//! Tolerances (GPU vs CPU, both f32): losses, LSEs, attention outputs and
//! distances rtol 1e-5 / atol 1e-5; gradients rtol 1e-4 / atol 1e-5
//! (1e-6 where the emulated tests use it); gemm rtol 1e-5 / atol 2e-6·k
//! (summation order differs); k-means sums rtol 1e-5 / atol 1e-5.
#![cfg(feature = "cuda")]

use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::backend::cuda::CudaBackend;
use diccae_engine::backend::{
    AttentionKernels, AttentionSpec, BackendCore, ClassAlignKernels, ClassAlignSpec, GemmSpec,
    InfoNceGrads, InfoNceKernels, InfoNceSpec, KMeansKernels, KMeansSpec, MatmulKernels,
};
use diccae_engine::gradcheck::{all_close, test_seed};
use diccae_engine::rng::{SeededRng, normal_vec, seeded, uniform_vec};
use rand::Rng;

/// The GPU, or `None` after printing why the test is skipped.
fn gpu(test: &str) -> Option<CudaBackend> {
    match CudaBackend::open(0) {
        Ok(g) => {
            eprintln!("{test}: on {}", g.describe());
            Some(g)
        }
        Err(e) => {
            println!("{test}: skipped: {e}");
            None
        }
    }
}

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

#[test]
fn core_buffers_and_vector_primitives_match_the_cpu() {
    let Some(g) = gpu("core") else { return };
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

#[test]
fn gemm_matches_the_cpu_for_every_layout() {
    let Some(g) = gpu("gemm") else { return };
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

#[test]
fn infonce_forward_and_backward_match_the_cpu() {
    let Some(g) = gpu("infonce") else { return };
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

#[test]
fn class_align_forward_backward_and_confusion_match_the_cpu() {
    let Some(g) = gpu("class_align") else { return };
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

#[test]
fn class_align_rejects_a_bad_label_naming_its_row() {
    let Some(g) = gpu("class_align_bad") else {
        return;
    };
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
}

#[test]
fn kmeans_assign_and_update_match_the_cpu() {
    let Some(g) = gpu("kmeans") else { return };
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

#[test]
fn kmeans_update_rejects_a_bad_label() {
    let Some(g) = gpu("kmeans_bad") else { return };
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

#[test]
fn attention_forward_and_backward_match_the_cpu() {
    let Some(g) = gpu("attention") else { return };
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
