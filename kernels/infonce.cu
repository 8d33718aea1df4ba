// Fused symmetric InfoNCE (METHOD.md §3.1, §6.1) without the B×B logit
// matrix: S = za·zvᵀ/τ exists only as 32×32 tiles in shared memory.
//
// Forward: infonce_lse_f32 twice — (za, zv) gives the row log-sum-exps,
// (zv, za) the column ones, since colLSE(S) = rowLSE(Sᵀ) — then
// infonce_loss_f32 (one block) L = ½·mean_i(rowLSE_i + colLSE_i − 2·S_ii).
// Backward: infonce_bwd_f32 twice, (za, zv, row, col) → dza and
// (zv, za, col, row) → dzv; each block owns 32 rows and streams every
// column tile, so no atomics and no shared B×B state.
#include "common.cuh"

// lse[r] = log Σ_c exp(own_r·other_c·inv_tau) for r < B.
// Grid: ceil(B/32) blocks of 256 threads; no dynamic shared memory.
KERNEL void __launch_bounds__(256) infonce_lse_f32(Buf<const float> own, Buf<const float> other, int B, int d, float inv_tau, Buf<float> lse) {
    SHARED_ARRAY(float, own_s, TILE * TILE_LD);
    SHARED_ARRAY(float, other_s, TILE * TILE_LD);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, r0 = blockIdx.x * TILE;
    float m[4], s[4], acc[4];
    for (int j = 0; j < 4; ++j) {
        m[j] = neg_inf();
        s[j] = 0.0f;
    }
    for (int c0 = 0; c0 < B; c0 += TILE) {
        dot_tile_32x32(own, B, r0, other, B, c0, d, own_s, other_s, acc);
        for (int j = 0; j < 4; ++j) {
            float v = c0 + lane < B ? acc[j] * inv_tau : neg_inf();
            lse_merge(m[j], s[j], warp_lse(v), 1.0f);
        }
    }
    for (int j = 0; j < 4; ++j) {
        int r = r0 + warp + 8 * j;
        if (lane == 0 && r < B) lse[r] = m[j] + logf(s[j]);
    }
}

// loss[0] = ½·mean_i(row_lse_i + col_lse_i − 2·za_i·zv_i·inv_tau).
// Grid: 1 block of 256 threads (a deterministic reduction).
KERNEL void __launch_bounds__(256) infonce_loss_f32(Buf<const float> za, Buf<const float> zv, Buf<const float> row_lse, Buf<const float> col_lse, int B, int d, float inv_tau, Buf<float> loss) {
    SHARED_ARRAY(float, scratch, 33);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    float part = 0.0f;
    for (int i = warp; i < B; i += 8) {
        float dot = 0.0f;
        for (int k = lane; k < d; k += 32) dot += za[(long long)i * d + k] * zv[(long long)i * d + k];
        dot = warp_sum(dot);
        if (lane == 0) part += row_lse[i] + col_lse[i] - 2.0f * dot * inv_tau;
    }
    float total = block_sum(part, scratch);
    if (threadIdx.x == 0) loss[0] = 0.5f * total / (float)B;
}

// d_own_r += g/(2Bτ)·[Σ_c (exp(S_rc − own_lse_r) + exp(S_rc − other_lse_c))·other_c − 2·other_r],
// S_rc = own_r·other_c·inv_tau, g = grad_loss[0].
// Grid: ceil(B/32) blocks of 256 threads; dynamic shared memory
// (32·d + 32·33)·4 bytes (a 32×d accumulator and the weight tile).
KERNEL void __launch_bounds__(256) infonce_bwd_f32(Buf<const float> own, Buf<const float> other, Buf<const float> own_lse, Buf<const float> other_lse, Buf<const float> grad_loss, int B, int d, float inv_tau, Buf<float> d_own) {
    SHARED_ARRAY(float, own_s, TILE * TILE_LD);
    SHARED_ARRAY(float, other_s, TILE * TILE_LD);
    EXTERN_SHARED(float, smem);
    Buf<float> acc_s = smem;                     // [32][d]
    Buf<float> w_s = smem + (long long)TILE * d;  // [32][TILE_LD]
    int t = threadIdx.x, lane = t % 32, warp = t / 32, r0 = blockIdx.x * TILE;
    for (int e = t; e < TILE * d; e += 256) acc_s[e] = 0.0f;
    float row_lse[4];
    for (int j = 0; j < 4; ++j) {
        int r = r0 + warp + 8 * j;
        row_lse[j] = r < B ? own_lse[r] : 0.0f;
    }
    float acc[4];
    for (int c0 = 0; c0 < B; c0 += TILE) {
        dot_tile_32x32(own, B, r0, other, B, c0, d, own_s, other_s, acc);
        int c = c0 + lane;
        float col_lse = c < B ? other_lse[c] : 0.0f;
        for (int j = 0; j < 4; ++j) {
            int r = r0 + warp + 8 * j;
            float sv = acc[j] * inv_tau;
            float w = (c < B && r < B) ? expf(sv - row_lse[j]) + expf(sv - col_lse) : 0.0f;
            w_s[(warp + 8 * j) * TILE_LD + lane] = w;
        }
        __syncthreads();
        int cols = B - c0 < TILE ? B - c0 : TILE;
        for (int k = lane; k < d; k += 32) {
            float a[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            for (int cc = 0; cc < cols; ++cc) {
                float o = other[(long long)(c0 + cc) * d + k];
                for (int j = 0; j < 4; ++j) a[j] += w_s[(warp + 8 * j) * TILE_LD + cc] * o;
            }
            for (int j = 0; j < 4; ++j) acc_s[(warp + 8 * j) * d + k] += a[j];
        }
        __syncthreads();
    }
    float scale = grad_loss[0] * inv_tau / (2.0f * (float)B);
    for (int j = 0; j < 4; ++j) {
        int r = r0 + warp + 8 * j;
        if (r >= B) continue;
        for (int k = lane; k < d; k += 32) {
            long long at = (long long)r * d + k;
            d_own[at] += scale * (acc_s[(warp + 8 * j) * d + k] - 2.0f * other[at]);
        }
    }
}
