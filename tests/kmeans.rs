//! Batched k-means: the kernels against naive loops, the whole run against a
//! plain reference from the same seeding, degenerate inputs (duplicate
//! points, empty clusters), batching, and errors.

// The references are plain index loops on purpose: they spell out the definition.
#![allow(clippy::needless_range_loop)]

use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::gradcheck::{all_close, test_seed};
use diccae_engine::kmeans::{
    KMeansConfig, SPLIT_EPS, kmeans, kmeans_plus_plus_init, kmeans_with_init, problem_seed,
};
use diccae_engine::ops::{KMeansKernels, KMeansSpec};
use diccae_engine::reference::{lloyd_inertia, sq_dist};
use diccae_engine::rng::{SeededRng, normal_vec, seeded};
use diccae_engine::tensor::Tensor;

/// `n` points around `blobs` random centres in `d` dims.
fn blobs(rng: &mut SeededRng, n: usize, d: usize, blobs: usize) -> Vec<f32> {
    let centres = normal_vec(rng, blobs * d, 4.0);
    let noise = normal_vec(rng, n * d, 1.0);
    (0..n * d)
        .map(|e| centres[((e / d) % blobs) * d + e % d] + noise[e])
        .collect()
}

#[test]
fn inertia_matches_plain_reference_from_the_same_seeding() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let be = CpuBackend::new();
    // n = 1037 is not a multiple of any tile; 9 clusters over 6 blobs.
    for &(n, d, k) in &[(1037, 7, 9), (300, 33, 4), (5, 3, 5)] {
        let x = blobs(&mut rng, n, d, 6);
        let init = kmeans_plus_plus_init(&x, n, d, k, seed).unwrap();
        let data = Tensor::from_host(&be, &[n, d], &x).unwrap();
        let init_t = Tensor::from_host(&be, &[k, d], &init).unwrap();
        let cfg = KMeansConfig { k, iters: 20, seed };
        let res = kmeans_with_init(&be, &data, &init_t, &cfg).unwrap();
        let want = lloyd_inertia(&x, n, d, k, &init, 20);
        let got = res.inertia[0];
        assert!(
            (got - want).abs() <= 1e-4 * want.abs().max(1e-12),
            "seed {seed} n{n} d{d} k{k}: inertia {got} vs reference {want}"
        );
        assert_eq!(res.sizes[0].iter().sum::<usize>(), n);
        // kmeans() is the seeding followed by kmeans_with_init().
        let full = kmeans(&be, &data, &cfg).unwrap();
        assert_eq!(full.inertia, res.inertia, "seed {seed}");
        assert_eq!(
            full.labels.to_host(&be).unwrap(),
            res.labels.to_host(&be).unwrap()
        );
    }
}

#[test]
fn more_clusters_than_distinct_points_stays_finite() {
    let be = CpuBackend::new();
    let values = [[1.0f32, -2.0], [3.0, 0.5], [0.0, 0.0]];
    let x: Vec<f32> = (0..20).flat_map(|i| values[i % 3]).collect();
    let data = Tensor::from_host(&be, &[20, 2], &x).unwrap();
    for seed in [0, 1, test_seed()] {
        let cfg = KMeansConfig {
            k: 8,
            iters: 20,
            seed,
        };
        let res = kmeans(&be, &data, &cfg).unwrap();
        let c = res.centroids.to_host(&be).unwrap();
        assert!(c.iter().all(|v| v.is_finite()), "seed {seed}: {c:?}");
        // Splits that cannot separate identical points leave the pair each
        // SPLIT_EPS (relative) off them: at most 20·2·(3·SPLIT_EPS)² ≈ 3e-4.
        assert!(
            res.inertia[0].is_finite() && res.inertia[0] < 1e-3,
            "seed {seed}: {:?}",
            res.inertia
        );
        assert_eq!(res.sizes[0].iter().sum::<usize>(), 20);
        // Exactly the three distinct values hold points.
        assert_eq!(
            res.sizes[0].iter().filter(|&&s| s > 0).count(),
            3,
            "seed {seed}"
        );
        let labels = res.labels.to_host(&be).unwrap();
        assert!(
            labels
                .iter()
                .all(|&l| (0.0..8.0).contains(&l) && l.fract() == 0.0)
        );
    }
}

#[test]
fn an_empty_cluster_is_reseeded_by_splitting_the_largest() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let be = CpuBackend::new();
    let (n, d) = (257, 4);
    let x = blobs(&mut rng, n, d, 2);
    let data = Tensor::from_host(&be, &[n, d], &x).unwrap();
    // Centroids 0 and 1 on real points; centroid 2 far from everything.
    let mut init = x[..2 * d].to_vec();
    init.extend([1e3f32; 4]);
    let init = Tensor::from_host(&be, &[3, d], &init).unwrap();
    // One step: centroid 2 gets no point and becomes a split copy.
    let one = kmeans_with_init(
        &be,
        &data,
        &init,
        &KMeansConfig {
            k: 3,
            iters: 1,
            seed,
        },
    )
    .unwrap();
    let c = one.centroids.to_host(&be).unwrap();
    let split_of = (0..2)
        .find(|&b| {
            (0..d).all(|j| {
                let (a, s) = (c[b * d + j], c[2 * d + j]);
                (a - s).abs() <= 2.5 * SPLIT_EPS * a.abs().max(s.abs())
            })
        })
        .unwrap_or_else(|| panic!("seed {seed}: centroid 2 is no split copy: {c:?}"));
    assert!(
        c[2 * d..].iter().all(|v| v.abs() < 100.0),
        "seed {seed}: {c:?}"
    );
    assert!(split_of < 2);
    // Run on: every cluster ends up used and the inertia beats two clusters.
    let full = kmeans_with_init(
        &be,
        &data,
        &init,
        &KMeansConfig {
            k: 3,
            iters: 30,
            seed,
        },
    )
    .unwrap();
    assert!(
        full.sizes[0].iter().all(|&s| s > 0),
        "seed {seed}: {:?}",
        full.sizes
    );
    let two = kmeans(
        &be,
        &data,
        &KMeansConfig {
            k: 2,
            iters: 30,
            seed,
        },
    )
    .unwrap();
    assert!(
        full.inertia[0] <= two.inertia[0] * (1.0 + 1e-6),
        "seed {seed}"
    );
}

#[test]
fn several_problems_equal_one_at_a_time() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let be = CpuBackend::new();
    let (p, n, d, k) = (3, 301, 5, 4);
    let x: Vec<f32> = (0..p).flat_map(|_| blobs(&mut rng, n, d, 5)).collect();
    let data = Tensor::from_host(&be, &[p, n, d], &x).unwrap();
    let cfg = KMeansConfig { k, iters: 15, seed };
    let all = kmeans(&be, &data, &cfg).unwrap();
    assert_eq!(all.centroids.shape(), &[p, k, d]);
    assert_eq!(all.labels.shape(), &[p, n]);
    let c_all = all.centroids.to_host(&be).unwrap();
    let l_all = all.labels.to_host(&be).unwrap();
    for q in 0..p {
        let one_data = Tensor::from_host(&be, &[n, d], &x[q * n * d..(q + 1) * n * d]).unwrap();
        let one_cfg = KMeansConfig {
            seed: problem_seed(seed, q),
            ..cfg
        };
        let one = kmeans(&be, &one_data, &one_cfg).unwrap();
        // Problems run in lockstep, so a problem may run more (no-op) steps.
        assert_eq!(one.inertia[0], all.inertia[q], "seed {seed} problem {q}");
        assert_eq!(one.sizes[0], all.sizes[q]);
        assert_eq!(
            one.centroids.to_host(&be).unwrap(),
            c_all[q * k * d..(q + 1) * k * d]
        );
        assert_eq!(one.labels.to_host(&be).unwrap(), l_all[q * n..(q + 1) * n]);
    }
}

#[test]
fn assign_and_update_kernels_match_naive_loops() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let be = CpuBackend::new();
    // n = 4099 spans several assignment tiles and update chunks.
    for &(p, n, k, d) in &[(2, 259, 17, 33), (1, 4099, 5, 3), (3, 1, 1, 1)] {
        let spec = KMeansSpec {
            problems: p,
            n,
            k,
            d,
        };
        let x = normal_vec(&mut rng, p * n * d, 1.0);
        let c = normal_vec(&mut rng, p * k * d, 1.0);
        let mut labels = vec![0.0; p * n];
        let mut dist = vec![0.0; p * n];
        be.kmeans_assign(&spec, &x, &c, &mut labels, &mut dist)
            .unwrap();
        for q in 0..p {
            for i in 0..n {
                let xi = &x[(q * n + i) * d..(q * n + i + 1) * d];
                let ds: Vec<f64> = (0..k)
                    .map(|l| {
                        let cl: Vec<f64> = c[(q * k + l) * d..(q * k + l + 1) * d]
                            .iter()
                            .map(|&v| f64::from(v))
                            .collect();
                        sq_dist(xi, &cl)
                    })
                    .collect();
                let best = ds.iter().cloned().fold(f64::INFINITY, f64::min);
                let got = labels[q * n + i] as usize;
                // The chosen centroid is the nearest up to f32 rounding.
                assert!(
                    ds[got] <= best + 1e-4 * (1.0 + best),
                    "seed {seed}: point {i}"
                );
                all_close(&[dist[q * n + i]], &[ds[got] as f32], 1e-5, 1e-5)
                    .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            }
        }
        let mut sums = vec![f32::NAN; p * k * d];
        let mut counts = vec![f32::NAN; p * k];
        be.kmeans_update(&spec, &x, &labels, &mut sums, &mut counts)
            .unwrap();
        let mut want_sums = vec![0.0f64; p * k * d];
        let mut want_counts = vec![0.0f32; p * k];
        for q in 0..p {
            for i in 0..n {
                let l = labels[q * n + i] as usize;
                want_counts[q * k + l] += 1.0;
                for j in 0..d {
                    want_sums[(q * k + l) * d + j] += f64::from(x[(q * n + i) * d + j]);
                }
            }
        }
        let want_sums: Vec<f32> = want_sums.iter().map(|&v| v as f32).collect();
        assert_eq!(counts, want_counts, "seed {seed}");
        all_close(&sums, &want_sums, 1e-5, 1e-4).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

#[test]
fn runs_are_deterministic_in_the_seed() {
    let mut rng = seeded(test_seed());
    let be = CpuBackend::new();
    let x = blobs(&mut rng, 500, 6, 4);
    let data = Tensor::from_host(&be, &[500, 6], &x).unwrap();
    let cfg = KMeansConfig {
        k: 5,
        iters: 10,
        seed: 42,
    };
    let a = kmeans(&be, &data, &cfg).unwrap();
    let b = kmeans(&be, &data, &cfg).unwrap();
    assert_eq!(
        a.centroids.to_host(&be).unwrap(),
        b.centroids.to_host(&be).unwrap()
    );
    assert_eq!(a.inertia, b.inertia);
    assert!(a.iterations >= 1 && a.iterations <= 10);
}

#[test]
fn rejects_bad_sizes_and_data() {
    let be = CpuBackend::new();
    let data = Tensor::from_host(&be, &[4, 2], &[0.0; 8]).unwrap();
    let err = kmeans(&be, &data, &KMeansConfig::new(5))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("K = 5") && err.contains("N = 4"), "{err}");
    assert!(kmeans(&be, &data, &KMeansConfig::new(0)).is_err());
    let empty = Tensor::from_host(&be, &[0, 2], &[]).unwrap();
    let err = kmeans(&be, &empty, &KMeansConfig::new(1))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("N = 0"), "{err}");
    let nan = Tensor::from_host(&be, &[2, 1], &[0.0, f32::NAN]).unwrap();
    assert!(kmeans(&be, &nan, &KMeansConfig::new(1)).is_err());
    let flat = Tensor::from_host(&be, &[8], &[0.0; 8]).unwrap();
    assert!(kmeans(&be, &flat, &KMeansConfig::new(1)).is_err());
    let init = Tensor::from_host(&be, &[2, 3], &[0.0; 6]).unwrap();
    let err = kmeans_with_init(&be, &data, &init, &KMeansConfig::new(2))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("[2, 3]") && err.contains("[2, 2]"), "{err}");
    // K = N works: every point its own cluster.
    let x = Tensor::from_host(&be, &[4, 2], &[0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0]).unwrap();
    let res = kmeans(&be, &x, &KMeansConfig::new(4)).unwrap();
    assert!(res.inertia[0] < 1e-9 && res.sizes[0].iter().all(|&s| s == 1));
}
