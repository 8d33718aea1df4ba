//! Optimal one-to-one assignment (the Hungarian method), used to match
//! clusters to classes and clusters of one round to the previous round's.

/// Finds the assignment of rows to columns of a square `n×n` cost matrix
/// (row-major) with the smallest total cost, in O(n³) (Jonker-Volgenant style
/// shortest augmenting paths with potentials). Returns `col_of_row`.
pub fn min_cost_assignment(cost: &[f64], n: usize) -> Vec<usize> {
    assert_eq!(cost.len(), n * n, "cost matrix must be n×n");
    if n == 0 {
        return Vec::new();
    }
    // 1-based arrays with a virtual row/column 0, as in the classic formulation.
    let mut u = vec![0.0f64; n + 1];
    let mut v = vec![0.0f64; n + 1];
    let mut row_of_col = vec![0usize; n + 1];
    let mut way = vec![0usize; n + 1];
    for i in 1..=n {
        row_of_col[0] = i;
        let mut j0 = 0usize;
        let mut min_to = vec![f64::INFINITY; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = row_of_col[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0usize;
            for j in 1..=n {
                if used[j] {
                    continue;
                }
                let reduced = cost[(i0 - 1) * n + (j - 1)] - u[i0] - v[j];
                if reduced < min_to[j] {
                    min_to[j] = reduced;
                    way[j] = j0;
                }
                if min_to[j] < delta {
                    delta = min_to[j];
                    j1 = j;
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[row_of_col[j]] += delta;
                    v[j] -= delta;
                } else {
                    min_to[j] -= delta;
                }
            }
            j0 = j1;
            if row_of_col[j0] == 0 {
                break;
            }
        }
        // Augment along the path back to the virtual column.
        loop {
            let j1 = way[j0];
            row_of_col[j0] = row_of_col[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut col_of_row = vec![0usize; n];
    for j in 1..=n {
        if row_of_col[j] > 0 {
            col_of_row[row_of_col[j] - 1] = j - 1;
        }
    }
    col_of_row
}

/// The assignment of a rectangular `rows×cols` score matrix that maximises
/// the total score; rows beyond `cols` (or columns beyond `rows`) stay
/// unmatched (`None`).
pub fn max_score_assignment(score: &[f64], rows: usize, cols: usize) -> Vec<Option<usize>> {
    let n = rows.max(cols);
    let max = score.iter().copied().fold(0.0f64, f64::max);
    let mut cost = vec![max; n * n];
    for r in 0..rows {
        for c in 0..cols {
            cost[r * n + c] = max - score[r * cols + c];
        }
    }
    min_cost_assignment(&cost, n)
        .into_iter()
        .take(rows)
        .map(|c| (c < cols).then_some(c))
        .collect()
}
