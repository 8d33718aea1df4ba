// Small reductions shared by the loss kernels.
#include "common.cuh"

// out[0] = scale·Σ_{i<n} x[i], in a fixed order (deterministic).
// Grid: 1 block of 256 threads.
KERNEL void __launch_bounds__(256) sum_scale_f32(Buf<const float> x, int n, float scale, Buf<float> out) {
    SHARED_ARRAY(float, scratch, 33);
    float part = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) part += x[i];
    float total = block_sum(part, scratch);
    if (threadIdx.x == 0) out[0] = scale * total;
}

// out[r] = Σ_k x[r·d + k]² for r < rows: one warp per row.
// Grid: ceil(rows/8) blocks of 256 threads.
KERNEL void __launch_bounds__(256) sq_norms_f32(Buf<const float> x, int rows, int d, Buf<float> out) {
    int lane = threadIdx.x % 32, r = blockIdx.x * 8 + threadIdx.x / 32;
    if (r >= rows) return;
    float s = 0.0f;
    for (int k = lane; k < d; k += 32) {
        float v = x[(long long)r * d + k];
        s += v * v;
    }
    s = warp_sum(s);
    if (lane == 0) out[r] = s;
}
