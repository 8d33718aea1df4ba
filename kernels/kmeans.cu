// Batched k-means steps (METHOD.md §3.2, §6.2) over `P` independent
// problems: data [P,n,d], centroids [P,k,d], labels and min_dist [P,n]
// (labels are f32-encoded indices).
//
// Assign: sq_norms_f32 (reduce.cu) gives ‖c‖² once per centroid; then each
// block takes 32 points and streams 32-centroid tiles of dot products
// (dot_tile_32x32), scoring ‖c‖² − 2x·c and keeping a warp arg-min per point
// (ties to the lowest index): the n×k distance matrix never exists. The
// winner's distance is recomputed directly as ‖x − c‖².
// Update: one block per (cluster, problem) scans the labels in order and
// sums its points, so the result is deterministic (no float atomics).
#include "common.cuh"

// Grid (ceil(n/32), P) blocks of 256 threads; no dynamic shared memory.
// `cnorm` is [P·k] squared centroid norms.
KERNEL void __launch_bounds__(256) kmeans_assign_f32(Buf<const float> data, Buf<const float> centroids, Buf<const float> cnorm, int n, int k, int d, Buf<float> labels, Buf<float> min_dist) {
    SHARED_ARRAY(float, own_s, TILE * TILE_LD);
    SHARED_ARRAY(float, other_s, TILE * TILE_LD);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, p = blockIdx.y, r0 = blockIdx.x * TILE;
    Buf<const float> x = data + (long long)p * n * d;
    Buf<const float> c = centroids + (long long)p * k * d;
    float best[4], acc[4];
    int best_idx[4];
    for (int j = 0; j < 4; ++j) {
        best[j] = pos_inf();
        best_idx[j] = 0;
    }
    for (int c0 = 0; c0 < k; c0 += TILE) {
        dot_tile_32x32(x, n, r0, c, k, c0, d, own_s, other_s, acc);
        int cc = c0 + lane;
        float cn = cc < k ? cnorm[(long long)p * k + cc] : 0.0f;
        for (int j = 0; j < 4; ++j) {
            float v = cc < k ? cn - 2.0f * acc[j] : pos_inf();
            int idx = cc < k ? cc : k;
            warp_argmin(v, idx);
            if (v < best[j]) {
                best[j] = v;
                best_idx[j] = idx;
            }
        }
    }
    for (int j = 0; j < 4; ++j) {
        int r = r0 + warp + 8 * j;
        if (r >= n) continue;  // uniform across the warp
        float dist = 0.0f;
        for (int e = lane; e < d; e += 32) {
            float diff = x[(long long)r * d + e] - c[(long long)best_idx[j] * d + e];
            dist += diff * diff;
        }
        dist = warp_sum(dist);
        if (lane == 0) {
            labels[(long long)p * n + r] = (float)best_idx[j];
            min_dist[(long long)p * n + r] = dist;
        }
    }
}

// sums[p,c,:] = Σ_{i: label_i = c} x_i and counts[p,c] = #{i: label_i = c}
// (overwritten). A label that is not an index in 0..k flags p·n + i in
// status[0] (the first such: flag_first in common.cuh) and is skipped.
// Grid (k, P) blocks of 128 threads; no dynamic shared memory.
KERNEL void __launch_bounds__(128) kmeans_update_f32(Buf<const float> data, Buf<const float> labels, int n, int k, int d, Buf<float> sums, Buf<float> counts, Buf<int> status) {
    SHARED_ARRAY(int, lab_s, 128);
    int t = threadIdx.x, cl = blockIdx.x, p = blockIdx.y;
    Buf<const float> x = data + (long long)p * n * d;
    float count = 0.0f;
    for (int k0 = 0; k0 < d; k0 += 128) {
        int e = k0 + t;
        float acc = 0.0f;
        for (int i0 = 0; i0 < n; i0 += 128) {
            int i = i0 + t;
            int lab = i < n ? decode_label(labels[(long long)p * n + i], k) : -2;
            if (lab == -1 && cl == 0 && k0 == 0) atomicMax(&status[0], flag_first((long long)p * n + i));
            lab_s[t] = lab;
            __syncthreads();
            int m = n - i0 < 128 ? n - i0 : 128;
            for (int q = 0; q < m; ++q) {
                if (lab_s[q] != cl) continue;
                if (e < d) acc += x[(long long)(i0 + q) * d + e];
                if (k0 == 0) count += 1.0f;
            }
            __syncthreads();
        }
        if (e < d) sums[((long long)p * k + cl) * d + e] = acc;
    }
    if (t == 0) counts[(long long)p * k + cl] = count;
}
