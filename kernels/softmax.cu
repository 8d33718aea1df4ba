// Row-wise softmax over the last dim of a rows × cols matrix
// (SoftmaxKernels): one warp per row (8 rows per 256-thread block), the warp
// looping over the row so any cols ≥ 1 works.
#include "common.cuh"

// y[r] = softmax(x[r]) (overwritten), shifted by the row maximum.
// Grid: ceil(rows/8) blocks of 256 threads.
KERNEL void __launch_bounds__(256) softmax_fwd_f32(Buf<const float> x, int rows, int cols, Buf<float> y) {
    int lane = threadIdx.x % 32;
    long long r = (long long)blockIdx.x * 8 + threadIdx.x / 32;
    if (r >= rows) return;  // whole warp; no block barrier
    Buf<const float> xr = x + r * cols;
    Buf<float> yr = y + r * cols;
    float m = neg_inf();
    for (int j = lane; j < cols; j += 32) m = fmaxf(m, xr[j]);
    m = warp_max(m);
    float s = 0.0f;
    for (int j = lane; j < cols; j += 32) {
        float e = expf(xr[j] - m);
        yr[j] = e;
        s += e;
    }
    float inv = 1.0f / warp_sum(s);
    for (int j = lane; j < cols; j += 32) yr[j] *= inv;  // each lane rescales what it wrote
}

// dx[r] += y[r] ∘ (dy[r] − Σ_j dy[r,j]·y[r,j]) (accumulated).
// Grid: ceil(rows/8) blocks of 256 threads.
KERNEL void __launch_bounds__(256) softmax_bwd_f32(Buf<const float> y, Buf<const float> dy, int rows, int cols, Buf<float> dx) {
    int lane = threadIdx.x % 32;
    long long r = (long long)blockIdx.x * 8 + threadIdx.x / 32;
    if (r >= rows) return;  // whole warp; no block barrier
    Buf<const float> yr = y + r * cols;
    Buf<const float> dyr = dy + r * cols;
    Buf<float> dxr = dx + r * cols;
    float s = 0.0f;
    for (int j = lane; j < cols; j += 32) s += yr[j] * dyr[j];
    s = warp_sum(s);
    for (int j = lane; j < cols; j += 32) dxr[j] += yr[j] * (dyr[j] - s);
}
