// L2 normalisation of the rows of a rows × d matrix
// (NormKernels::l2_normalize_fwd / _bwd): one warp per row (8 rows per
// 256-thread block), looping over the row so any d ≥ 1 works. Outputs are
// overwritten.
#include "common.cuh"

// y = x / max(‖x‖, eps) per row; norms[r] = ‖x_r‖ (unclamped).
// Grid: ceil(rows/8) blocks of 256 threads.
KERNEL void __launch_bounds__(256) l2_normalize_fwd_f32(Buf<const float> x, int rows, int d, float eps, Buf<float> y, Buf<float> norms) {
    int lane = threadIdx.x % 32;
    long long r = (long long)blockIdx.x * 8 + threadIdx.x / 32;
    if (r >= rows) return;  // whole warp; no block barrier
    Buf<const float> xr = x + r * d;
    float s = 0.0f;
    for (int j = lane; j < d; j += 32) s += xr[j] * xr[j];
    float nrm = sqrtf(warp_sum(s));
    float inv = 1.0f / fmaxf(nrm, eps);
    Buf<float> yr = y + r * d;
    for (int j = lane; j < d; j += 32) yr[j] = xr[j] * inv;
    if (lane == 0) norms[r] = nrm;
}

// dx = (g − y·(y·g)) / ‖x‖ per row with y = x/‖x‖ where ‖x‖ > eps, and
// dx = g / eps where the norm was clamped.
// Grid: ceil(rows/8) blocks of 256 threads.
KERNEL void __launch_bounds__(256) l2_normalize_bwd_f32(Buf<const float> x, Buf<const float> norms, Buf<const float> grad_out, int rows, int d, float eps, Buf<float> dx) {
    int lane = threadIdx.x % 32;
    long long r = (long long)blockIdx.x * 8 + threadIdx.x / 32;
    if (r >= rows) return;  // whole warp; no block barrier
    Buf<const float> xr = x + r * d;
    Buf<const float> gr = grad_out + r * d;
    Buf<float> dxr = dx + r * d;
    float nrm = norms[r];
    if (nrm > eps) {  // uniform across the warp (one row)
        float inv = 1.0f / nrm;
        float s = 0.0f;
        for (int j = lane; j < d; j += 32) s += xr[j] * gr[j];
        float c = warp_sum(s) * inv * inv;  // (y·g)/‖x‖
        for (int j = lane; j < d; j += 32) dxr[j] = (gr[j] - xr[j] * c) * inv;
    } else {
        float inv = 1.0f / eps;
        for (int j = lane; j < d; j += 32) dxr[j] = gr[j] * inv;
    }
}
