// LayerNorm over the last dim (NormKernels::layer_norm_fwd / _bwd) of a
// rows × d matrix: one warp per row (8 rows per 256-thread block), the warp
// looping over the row so any d ≥ 1 works. Outputs are overwritten.
//
// Backward: layer_norm_bwd_dx_f32 for dx (a warp per row) and
// layer_norm_bwd_params_f32 for dgamma / dbeta as deterministic column sums
// (fixed order, no float atomics), split into row chunks like
// elementwise.cu's sum_rows_f32 (which then reduces the chunk partials).
#include "common.cuh"

// y = (x − mean)·rstd·gamma + beta per row, biased variance (two passes);
// mean[r] and rstd[r] = 1/√(var + eps) saved for the backward.
// Grid: ceil(rows/8) blocks of 256 threads.
KERNEL void __launch_bounds__(256) layer_norm_fwd_f32(Buf<const float> x, Buf<const float> gamma, Buf<const float> beta, int rows, int d, float eps, Buf<float> y, Buf<float> mean, Buf<float> rstd) {
    int lane = threadIdx.x % 32;
    long long r = (long long)blockIdx.x * 8 + threadIdx.x / 32;
    if (r >= rows) return;  // whole warp; no block barrier
    Buf<const float> xr = x + r * d;
    float inv_d = 1.0f / (float)d;
    float s = 0.0f;
    for (int j = lane; j < d; j += 32) s += xr[j];
    float mu = warp_sum(s) * inv_d;
    float v = 0.0f;
    for (int j = lane; j < d; j += 32) {
        float c = xr[j] - mu;
        v += c * c;
    }
    float rs = 1.0f / sqrtf(warp_sum(v) * inv_d + eps);
    Buf<float> yr = y + r * d;
    for (int j = lane; j < d; j += 32) yr[j] = (xr[j] - mu) * rs * gamma[j] + beta[j];
    if (lane == 0) {
        mean[r] = mu;
        rstd[r] = rs;
    }
}

// dx = rstd·(dŷ − mean(dŷ) − ŷ·mean(dŷ∘ŷ)) per row, with ŷ = (x − mean)·rstd
// and dŷ = grad_out∘gamma.
// Grid: ceil(rows/8) blocks of 256 threads.
KERNEL void __launch_bounds__(256) layer_norm_bwd_dx_f32(Buf<const float> x, Buf<const float> gamma, Buf<const float> mean, Buf<const float> rstd, Buf<const float> grad_out, int rows, int d, Buf<float> dx) {
    int lane = threadIdx.x % 32;
    long long r = (long long)blockIdx.x * 8 + threadIdx.x / 32;
    if (r >= rows) return;  // whole warp; no block barrier
    Buf<const float> xr = x + r * d;
    Buf<const float> gr = grad_out + r * d;
    float mu = mean[r], rs = rstd[r], inv_d = 1.0f / (float)d;
    float s1 = 0.0f, s2 = 0.0f;
    for (int j = lane; j < d; j += 32) {
        float dy = gr[j] * gamma[j];
        s1 += dy;
        s2 += dy * (xr[j] - mu);
    }
    float m1 = warp_sum(s1) * inv_d;
    // mean(dŷ∘ŷ) with ŷ = (x − mean)·rstd, folded into one factor.
    float m2r = warp_sum(s2) * inv_d * rs * rs;
    Buf<float> dxr = dx + r * d;
    for (int j = lane; j < d; j += 32) dxr[j] = rs * (gr[j] * gamma[j] - m1 - (xr[j] - mu) * m2r);
}

// Partial parameter gradients over row chunk s = blockIdx.y of
// rows_per_split rows: dgamma_part[s·d + j] = Σ_r grad_out[r,j]·(x[r,j] − mean_r)·rstd_r,
// dbeta_part[s·d + j] = Σ_r grad_out[r,j]. Each block covers 32 columns
// (lane = column), 8 warps taking every 8th row, partials added in warp
// order. With gridDim.y = 1 these are dgamma and dbeta; otherwise reduce
// each S × d partial with sum_rows_f32 (rows = S, gridDim.y = 1).
// Grid: (ceil(d/32), ceil(rows/rows_per_split)) blocks of 256 threads.
KERNEL void __launch_bounds__(256) layer_norm_bwd_params_f32(Buf<const float> x, Buf<const float> mean, Buf<const float> rstd, Buf<const float> grad_out, int rows, int d, int rows_per_split, Buf<float> dgamma_part, Buf<float> dbeta_part) {
    SHARED_ARRAY(float, scratch, 256);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int j = blockIdx.x * 32 + lane;
    long long r0 = (long long)blockIdx.y * rows_per_split;
    long long r1 = r0 + rows_per_split < rows ? r0 + rows_per_split : rows;
    float pg = 0.0f, pb = 0.0f;
    if (j < d) {
        for (long long r = r0 + warp; r < r1; r += 8) {
            float g = grad_out[r * d + j];
            pg += g * (x[r * d + j] - mean[r]) * rstd[r];
            pb += g;
        }
    }
    float tg = column_sum_8x32(pg, scratch);
    float tb = column_sum_8x32(pb, scratch);
    if (warp == 0 && j < d) {
        dgamma_part[(long long)blockIdx.y * d + j] = tg;
        dbeta_part[(long long)blockIdx.y * d + j] = tb;
    }
}
