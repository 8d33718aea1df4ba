//! Clustering, assignment and retrieval metrics against known values and
//! brute force.

use diccae_engine::eval::assignment::{max_score_assignment, min_cost_assignment};
use diccae_engine::eval::metrics::{
    ari, hungarian_accuracy, nmi, purity, recall_at_k, top_k_accuracy,
};
use diccae_engine::gradcheck::test_seed;
use diccae_engine::rng::{seeded, uniform_vec};

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

#[test]
fn assignment_matches_brute_force() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    for n in [1usize, 2, 3, 5, 7] {
        for _ in 0..5 {
            let cost: Vec<f64> = uniform_vec(&mut rng, n * n, -3.0, 5.0)
                .into_iter()
                .map(f64::from)
                .collect();
            let got = min_cost_assignment(&cost, n);
            let total = |p: &[usize]| {
                p.iter()
                    .enumerate()
                    .map(|(r, &c)| cost[r * n + c])
                    .sum::<f64>()
            };
            let best = permutations(n)
                .iter()
                .map(|p| total(p))
                .fold(f64::INFINITY, f64::min);
            let mut sorted = got.clone();
            sorted.sort();
            assert_eq!(
                sorted,
                (0..n).collect::<Vec<_>>(),
                "seed {seed}: not a permutation"
            );
            assert!(
                (total(&got) - best).abs() < 1e-9,
                "seed {seed} n {n}: {} vs {best}",
                total(&got)
            );
        }
    }
    // Rectangular, 2 rows × 3 columns: the best is row 0 → col 1 (5), row 1 → col 0 (4).
    let m = max_score_assignment(&[1.0, 5.0, 2.0, 4.0, 6.0, 0.0], 2, 3);
    assert_eq!(m, vec![Some(1), Some(0)]);
    // 3 rows × 2 columns: one row stays unmatched.
    let m = max_score_assignment(&[1.0, 0.0, 0.0, 1.0, 0.5, 0.5], 3, 2);
    assert_eq!(m, vec![Some(0), Some(1), None]);
}

#[test]
fn clustering_metrics_on_known_cases() {
    let truth = [0, 0, 0, 1, 1, 1, 2, 2, 2];
    let relabelled = [2, 2, 2, 0, 0, 0, 1, 1, 1];
    assert!((nmi(&truth, &relabelled) - 1.0).abs() < 1e-12);
    assert!((ari(&truth, &relabelled) - 1.0).abs() < 1e-12);
    assert!((hungarian_accuracy(&relabelled, &truth) - 1.0).abs() < 1e-12);
    // One point moved: Hungarian accuracy 8/9.
    let one_off = [2, 2, 0, 0, 0, 0, 1, 1, 1];
    assert!((hungarian_accuracy(&one_off, &truth) - 8.0 / 9.0).abs() < 1e-12);
    // scikit-learn reference values for this pair:
    // normalized_mutual_info_score([0,0,1,1],[0,0,1,2]) = 0.8
    assert!((nmi(&[0, 0, 1, 1], &[0, 0, 1, 2]) - 0.8).abs() < 1e-9);
    // adjusted_rand_score([0,0,1,1],[0,0,1,2]) = 0.5714285714285715
    assert!((ari(&[0, 0, 1, 1], &[0, 0, 1, 2]) - 0.571_428_571_428_571_5).abs() < 1e-9);
    // Independent labelings: NMI 0.
    assert!(nmi(&[0, 0, 1, 1], &[0, 1, 0, 1]).abs() < 1e-12);
}

#[test]
fn top_k_and_recall() {
    let scores = [0.1, 0.7, 0.2, 0.5, 0.3, 0.2, 0.0, 0.1, 0.9];
    let truth = [2, 0, 2];
    assert!((top_k_accuracy(&scores, 3, &truth, 1) - 2.0 / 3.0).abs() < 1e-12);
    assert!((top_k_accuracy(&scores, 3, &truth, 2) - 1.0).abs() < 1e-12);
    let sim = [0.9, 0.1, 0.0, 0.8, 0.2, 0.1, 0.0, 0.3, 0.7];
    assert!((recall_at_k(&sim, 3, 1) - 2.0 / 3.0).abs() < 1e-12);
    assert!((recall_at_k(&sim, 3, 2) - 1.0).abs() < 1e-12);
    assert!((recall_at_k(&sim, 3, 3) - 1.0).abs() < 1e-12);
}

#[test]
fn purity_is_many_to_one_and_not_capped_by_overclustering() {
    let truth = [0, 0, 0, 0, 1, 1, 1, 1];
    // Four pure clusters for two classes: purity 1, Hungarian accuracy 1/2.
    let over = [0, 0, 1, 1, 2, 2, 3, 3];
    assert!((purity(&over, &truth) - 1.0).abs() < 1e-12);
    assert!((hungarian_accuracy(&over, &truth) - 0.5).abs() < 1e-12);
    // One cluster for everything: the majority class, 1/2.
    assert!((purity(&[0; 8], &truth) - 0.5).abs() < 1e-12);
    // Clusters {0, 0, 0, 1} and {0, 1, 1, 1}: (3 + 3) / 8.
    let mixed = [0, 0, 0, 1, 1, 1, 1, 0];
    assert!((purity(&mixed, &truth) - 6.0 / 8.0).abs() < 1e-12);
    // Against a brute-force majority count on random labelings.
    let mut rng = seeded(test_seed());
    for _ in 0..20 {
        let u = uniform_vec(&mut rng, 60, 0.0, 1.0);
        let pred: Vec<usize> = u[..30].iter().map(|v| (v * 7.0) as usize).collect();
        let truth: Vec<usize> = u[30..].iter().map(|v| (v * 3.0) as usize).collect();
        let mut hits = 0;
        for c in 0..7 {
            let best = (0..3)
                .map(|k| {
                    pred.iter()
                        .zip(&truth)
                        .filter(|&(&p, &t)| p == c && t == k)
                        .count()
                })
                .max()
                .unwrap();
            hits += best;
        }
        assert!((purity(&pred, &truth) - hits as f64 / 30.0).abs() < 1e-12);
    }
}

#[test]
fn ties_and_non_finite_scores_count_as_misses() {
    // A collapsed model: every score equal. Counted against the truth, no
    // row is a hit at k < classes, however the labels fall.
    let constant = [0.5f32; 12];
    assert_eq!(top_k_accuracy(&constant, 4, &[0, 1, 2], 1), 0.0);
    assert_eq!(top_k_accuracy(&constant, 4, &[0, 1, 2], 3), 0.0);
    assert_eq!(
        top_k_accuracy(&constant, 4, &[0, 1, 2], 4),
        1.0,
        "k = classes"
    );
    // The truth tied with one other class: a miss at k = 1, a hit at k = 2.
    let tied = [0.9f32, 0.9, 0.1];
    assert_eq!(top_k_accuracy(&tied, 3, &[0], 1), 0.0);
    assert_eq!(top_k_accuracy(&tied, 3, &[1], 1), 0.0);
    assert_eq!(top_k_accuracy(&tied, 3, &[0], 2), 1.0);
    // NaN: a NaN truth score is a miss; a NaN elsewhere ranks above the truth.
    let nan = [f32::NAN, 0.2, 0.1];
    assert_eq!(top_k_accuracy(&nan, 3, &[0], 3), 0.0);
    assert_eq!(top_k_accuracy(&nan, 3, &[1], 1), 0.0);
    assert_eq!(top_k_accuracy(&nan, 3, &[1], 2), 1.0);
    // Retrieval over identical candidates (test clips with identical
    // frames): every similarity ties, so R@1 is 0, not 100 %.
    let same = [0.3f32; 9];
    assert_eq!(recall_at_k(&same, 3, 1), 0.0);
    assert_eq!(recall_at_k(&same, 3, 3), 1.0);
    let mut with_nan = [0.9f32, 0.1, 0.0, 0.8, 0.2, 0.1, 0.0, 0.3, 0.7];
    with_nan[4] = f32::NAN;
    assert!((recall_at_k(&with_nan, 3, 1) - 2.0 / 3.0).abs() < 1e-12);
}
