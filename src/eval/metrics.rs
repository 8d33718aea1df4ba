//! Clustering and retrieval metrics on host data.

use crate::eval::assignment::max_score_assignment;

/// Contingency table `counts[a][b]` of two labelings with `ka` and `kb` values.
fn contingency(a: &[usize], b: &[usize]) -> (Vec<Vec<f64>>, usize, usize) {
    let ka = a.iter().copied().max().map_or(0, |m| m + 1);
    let kb = b.iter().copied().max().map_or(0, |m| m + 1);
    let mut t = vec![vec![0.0f64; kb]; ka];
    for (&x, &y) in a.iter().zip(b) {
        t[x][y] += 1.0;
    }
    (t, ka, kb)
}

fn entropy(counts: impl Iterator<Item = f64>, n: f64) -> f64 {
    counts
        .filter(|&c| c > 0.0)
        .map(|c| {
            let p = c / n;
            -p * p.ln()
        })
        .sum()
}

/// Normalised mutual information with arithmetic-mean normalisation
/// (scikit-learn's default): `I(a;b) / ((H(a)+H(b))/2)`; 1 when both are
/// constant and equal.
pub fn nmi(a: &[usize], b: &[usize]) -> f64 {
    assert_eq!(a.len(), b.len(), "labelings differ in length");
    let n = a.len() as f64;
    if a.is_empty() {
        return 1.0;
    }
    let (t, _, _) = contingency(a, b);
    let row: Vec<f64> = t.iter().map(|r| r.iter().sum()).collect();
    let col: Vec<f64> = (0..t.first().map_or(0, Vec::len))
        .map(|j| t.iter().map(|r| r[j]).sum())
        .collect();
    let (ha, hb) = (
        entropy(row.iter().copied(), n),
        entropy(col.iter().copied(), n),
    );
    let mut mi = 0.0;
    for (i, r) in t.iter().enumerate() {
        for (j, &c) in r.iter().enumerate() {
            if c > 0.0 {
                mi += c / n * (c * n / (row[i] * col[j])).ln();
            }
        }
    }
    let denom = 0.5 * (ha + hb);
    if denom <= 0.0 {
        1.0
    } else {
        (mi / denom).clamp(0.0, 1.0)
    }
}

/// Adjusted Rand index; 1 for identical partitions, about 0 for random ones.
pub fn ari(a: &[usize], b: &[usize]) -> f64 {
    assert_eq!(a.len(), b.len(), "labelings differ in length");
    let n = a.len() as f64;
    let comb2 = |x: f64| x * (x - 1.0) / 2.0;
    let (t, _, _) = contingency(a, b);
    let sum_cells: f64 = t.iter().flatten().map(|&c| comb2(c)).sum();
    let sum_rows: f64 = t.iter().map(|r| comb2(r.iter().sum())).sum();
    let cols = t.first().map_or(0, Vec::len);
    let sum_cols: f64 = (0..cols).map(|j| comb2(t.iter().map(|r| r[j]).sum())).sum();
    let expected = sum_rows * sum_cols / comb2(n).max(1.0);
    let max_index = 0.5 * (sum_rows + sum_cols);
    if (max_index - expected).abs() < 1e-12 {
        return 1.0;
    }
    (sum_cells - expected) / (max_index - expected)
}

/// Accuracy of `pred` against `truth` after the best one-to-one relabelling
/// of predicted clusters (Hungarian matching).
pub fn hungarian_accuracy(pred: &[usize], truth: &[usize]) -> f64 {
    assert_eq!(pred.len(), truth.len(), "labelings differ in length");
    if pred.is_empty() {
        return 1.0;
    }
    let (t, kp, kt) = contingency(pred, truth);
    let scores: Vec<f64> = t.into_iter().flatten().collect();
    let matched: f64 = max_score_assignment(&scores, kp, kt)
        .iter()
        .enumerate()
        .filter_map(|(p, c)| c.map(|c| scores[p * kt + c]))
        .sum();
    matched / pred.len() as f64
}

/// Purity (many-to-one accuracy): each predicted cluster takes its most
/// frequent true label. Unlike [`hungarian_accuracy`] it is not capped at
/// `classes / K` when there are more clusters than classes.
pub fn purity(pred: &[usize], truth: &[usize]) -> f64 {
    assert_eq!(pred.len(), truth.len(), "labelings differ in length");
    if pred.is_empty() {
        return 1.0;
    }
    let (t, _, _) = contingency(pred, truth);
    let majority: f64 = t
        .iter()
        .map(|row| row.iter().copied().fold(0.0, f64::max))
        .sum();
    majority / pred.len() as f64
}

/// Whether `row[truth]` is among the `k` highest entries of `row`, counted
/// against the truth: every other entry that ties it or is not a number
/// ranks above it, and a truth score that is not finite is a miss. So a
/// collapsed model (constant, tied or NaN scores) scores 0, never 100 %.
fn truth_in_top_k(row: &[f32], truth: usize, k: usize) -> bool {
    let s = row[truth];
    if !s.is_finite() {
        return false;
    }
    let above = row
        .iter()
        .enumerate()
        .filter(|&(j, &v)| j != truth && v.partial_cmp(&s) != Some(std::cmp::Ordering::Less))
        .count();
    above < k
}

/// Fraction of rows whose true label is among the `k` highest scores
/// (`scores` is `n × classes`, row-major); ties and NaN count as misses
/// (see `truth_in_top_k`).
pub fn top_k_accuracy(scores: &[f32], classes: usize, truth: &[usize], k: usize) -> f64 {
    let n = truth.len();
    assert_eq!(scores.len(), n * classes, "scores must be n × classes");
    if n == 0 {
        return 0.0;
    }
    let hits = scores
        .chunks_exact(classes)
        .zip(truth)
        .filter(|&(row, &y)| truth_in_top_k(row, y, k))
        .count();
    hits as f64 / n as f64
}

/// Recall@k of cross-modal retrieval: `sim` is `n × n` with `sim[i][j]` the
/// similarity of query i to candidate j, and candidate i is query i's match;
/// ties and NaN count as misses (see `truth_in_top_k`).
pub fn recall_at_k(sim: &[f32], n: usize, k: usize) -> f64 {
    assert_eq!(sim.len(), n * n, "similarity matrix must be n × n");
    if n == 0 {
        return 0.0;
    }
    let hits = sim
        .chunks_exact(n)
        .enumerate()
        .filter(|(i, row)| truth_in_top_k(row, *i, k))
        .count();
    hits as f64 / n as f64
}
