//! The cluster side of DICCAE: pseudo-labels, identity matching across
//! rounds, and the confident members the cluster terms train on.

use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::kmeans::KMeansConfig;
use diccae_engine::rng::{normal_vec, seeded};
use diccae_engine::train::clusters::{ClusterState, RoundInput, confident_members};

/// `per` noisy unit vectors around each of `k` orthogonal directions in `d`
/// dimensions, with their true cluster.
fn blobs(k: usize, per: usize, d: usize, noise: f32, seed: u64) -> (Vec<f32>, Vec<usize>) {
    let mut rng = seeded(seed);
    let mut x = Vec::new();
    let mut truth = Vec::new();
    for c in 0..k {
        for _ in 0..per {
            let mut row = normal_vec(&mut rng, d, noise);
            row[c] += 1.0;
            let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            x.extend(row.iter().map(|v| v / n));
            truth.push(c);
        }
    }
    (x, truth)
}

#[test]
fn confident_members_keep_the_largest_margins_of_each_cluster() {
    // Two clusters on a line of 2-D unit vectors: cluster 0 around (1, 0),
    // cluster 1 around (0, 1); the margin grows with the distance from the
    // diagonal.
    let angles = [0.0f32, 0.2, 0.5, 0.7, 1.0, 1.2, 1.4, 1.5];
    let x: Vec<f32> = angles.iter().flat_map(|a| [a.cos(), a.sin()]).collect();
    let labels: Vec<usize> = angles
        .iter()
        .map(|&a| usize::from(a > std::f32::consts::FRAC_PI_4))
        .collect();
    let centroids = [1.0f32, 0.0, 0.0, 1.0];
    let half = confident_members(&x, &labels, &centroids, 2, 2, 0.5);
    assert_eq!(
        half,
        [true, true, false, false, false, false, true, true],
        "the two clips of each cluster farthest from the boundary"
    );
    assert!(
        confident_members(&x, &labels, &centroids, 2, 2, 1.0)
            .iter()
            .all(|&c| c)
    );
    // At least one member per non-empty cluster, however small the fraction.
    let tiny = confident_members(&x, &labels, &centroids, 2, 2, 0.01);
    assert_eq!(tiny.iter().filter(|&&c| c).count(), 2);
    assert!(tiny[0] && tiny[7]);
}

#[test]
fn rounds_recover_clusters_keep_identities_and_score_confident_labels() {
    // Fixed seeds: k-means++ may, rarely, seed two centroids in one blob,
    // and this test is about matching, not about k-means' luck.
    let seed = 9;
    let (k, per, d) = (5, 41, 7);
    let (x, truth) = blobs(k, per, d, 0.05, seed);
    let be = CpuBackend::new();
    let input = RoundInput {
        space: &x,
        modalities: [&x, &x, &x],
        truth: Some(&truth),
        keep_fraction: 0.5,
    };
    let km = |s: u64| KMeansConfig {
        k,
        iters: 30,
        seed: s,
    };
    let first = ClusterState::recluster(None, &be, &input, d, &km(seed), 0).unwrap();
    let r = first.last_round().unwrap().clone();
    assert!(r.nmi.unwrap() > 0.9, "seed {seed}: NMI {:?}", r.nmi);
    let kept = first.confident.iter().filter(|&&c| c).count();
    assert_eq!(r.confident_fraction, Some(kept as f64 / (k * per) as f64));
    assert!((0.5..0.56).contains(&r.confident_fraction.unwrap()));
    // The confident half is at least as pure as the whole.
    assert!(r.confident_accuracy.unwrap() >= r.accuracy.unwrap());

    // A second round with another k-means seed finds the same clusters; the
    // matching keeps every clip's cluster identity.
    let labels = first.labels.clone();
    let second = ClusterState::recluster(Some(first), &be, &input, d, &km(seed + 1), 3).unwrap();
    assert!(
        second.last_round().unwrap().nmi.unwrap() > 0.99,
        "seed {seed}: second NMI {:?}, first {:?}",
        second.last_round().unwrap().nmi,
        r.nmi
    );
    assert_eq!(second.labels, labels, "seed {seed}");
    assert_eq!(second.last_round().unwrap().stability, Some(1.0));
    assert_eq!(second.rounds.len(), 2);
}
