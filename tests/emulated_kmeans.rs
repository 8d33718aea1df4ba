//! The k-means CUDA kernels (kernels/kmeans.cu, sq_norms in reduce.cu) under
//! host emulation, against the CPU backend's `KMeansKernels` on random
//! awkward shapes with several problems per launch.
//!
//! Tolerances: labels equal, except where the CPU's and the kernel's
//! distances to the two candidates differ by less than 1e-4 (a near-tie that
//! f32 rounding may break either way); min_dist rtol 1e-5 / atol 1e-5;
//! sums rtol 1e-5 / atol 1e-5 (f32 vs the CPU's f64 accumulation); counts exact.

mod emu_common;

use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::ops::kmeans::kernels::{KMeansKernels, KMeansSpec};
use diccae_engine::rng::normal_vec;
use emu_common::{Arg, assert_close, dims, dims3, launch, rng};
use rand::Rng;

fn emu_assign(s: &KMeansSpec, data: &[f32], cent: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (p, n, k, d) = (s.problems, s.n, s.k, s.d);
    let mut cnorm = vec![0.0f32; p * k];
    launch(
        "sq_norms_f32",
        dims((p * k).div_ceil(8), 256, 0),
        &mut [
            Arg::In(cent),
            Arg::I32((p * k) as i32),
            Arg::I32(d as i32),
            Arg::Out(&mut cnorm),
        ],
    )
    .unwrap();
    let mut labels = vec![-1.0f32; p * n];
    let mut dist = vec![-1.0f32; p * n];
    launch(
        "kmeans_assign_f32",
        dims3([n.div_ceil(32), p, 1], 256, 0),
        &mut [
            Arg::In(data),
            Arg::In(cent),
            Arg::In(&cnorm),
            Arg::I32(n as i32),
            Arg::I32(k as i32),
            Arg::I32(d as i32),
            Arg::Out(&mut labels),
            Arg::Out(&mut dist),
        ],
    )
    .unwrap();
    (labels, dist)
}

fn emu_update(s: &KMeansSpec, data: &[f32], labels: &[f32]) -> (Vec<f32>, Vec<f32>, i32) {
    let (p, n, k, d) = (s.problems, s.n, s.k, s.d);
    let mut sums = vec![f32::NAN; p * k * d];
    let mut counts = vec![f32::NAN; p * k];
    let mut status = vec![0i32; 1];
    launch(
        "kmeans_update_f32",
        dims3([k, p, 1], 128, 0),
        &mut [
            Arg::In(data),
            Arg::In(labels),
            Arg::I32(n as i32),
            Arg::I32(k as i32),
            Arg::I32(d as i32),
            Arg::Out(&mut sums),
            Arg::Out(&mut counts),
            Arg::OutI32(&mut status),
        ],
    )
    .unwrap();
    (sums, counts, status[0])
}

fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

#[test]
fn kmeans_assign_and_update_match_the_cpu_backend() {
    let mut r = rng("kmeans_emulated");
    let cpu = CpuBackend::new();
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
        let (labels, dist) = emu_assign(&s, &data, &cent);
        let mut cl = vec![0.0f32; p * n];
        let mut cd = vec![0.0f32; p * n];
        cpu.kmeans_assign(&s, &data, &cent, &mut cl, &mut cd)
            .unwrap();
        for q in 0..p * n {
            if labels[q] != cl[q] {
                let (pi, x) = (q / n, &data[q * d..(q + 1) * d]);
                let c = |l: f32| &cent[(pi * k + l as usize) * d..(pi * k + l as usize + 1) * d];
                let gap = (sq_dist(x, c(labels[q])) - sq_dist(x, c(cl[q]))).abs();
                assert!(
                    gap < 1e-4,
                    "{shape}: point {q}: label {} vs CPU {} (gap {gap})",
                    labels[q],
                    cl[q]
                );
            }
        }
        assert_close("min_dist", &shape, &dist, &cd, 1e-5, 1e-5);

        // Update from random labels (some clusters empty when k > n).
        let lab: Vec<f32> = (0..p * n).map(|_| r.random_range(0..k) as f32).collect();
        let (sums, counts, status) = emu_update(&s, &data, &lab);
        assert_eq!(status, 0, "{shape}: no bad labels");
        let mut cs = vec![0.0f32; p * k * d];
        let mut cc = vec![0.0f32; p * k];
        cpu.kmeans_update(&s, &data, &lab, &mut cs, &mut cc)
            .unwrap();
        assert_close("sums", &shape, &sums, &cs, 1e-5, 1e-5);
        assert_eq!(counts, cc, "{shape}: counts");
    }
}

#[test]
fn kmeans_update_flags_a_bad_label() {
    let s = KMeansSpec {
        problems: 2,
        n: 40,
        k: 3,
        d: 4,
    };
    let data = vec![1.0f32; 2 * 40 * 4];
    let mut lab = vec![0.0f32; 80];
    lab[57] = 3.0; // problem 1, point 17: not in 0..3
    lab[12] = 0.5;
    let (_, _, status) = emu_update(&s, &data, &lab);
    assert_eq!(
        status,
        i32::MAX - 12,
        "status names the first bad label (INT_MAX − (p·n + i))"
    );
}
