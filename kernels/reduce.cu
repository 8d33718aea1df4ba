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

/// Block-wide f64 sum of one value per thread for blockDim.x a multiple of
/// 32 (at most 1024), in a fixed order; every thread must call it and gets
/// the sum. `scratch` holds at least 33 doubles of shared memory.
__device__ __forceinline__ double block_sum_f64(double v, Buf<double> scratch) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    double t = lane < warps ? scratch[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(FULL_MASK, t, o);
    if (threadIdx.x == 0) scratch[32] = t;
    __syncthreads();
    double r = scratch[32];
    __syncthreads();
    return r;
}

/// Writes s as the f32 pair (hi, lo) with hi + lo = s to about 48 bits
/// (read back on the host as (double)hi + (double)lo).
__device__ __forceinline__ void store_f64_pair(double s, Buf<float> out) {
    float hi = (float)s;
    out[0] = hi;
    out[1] = (float)(s - (double)hi);
}

// sum_squares, pass 1: block b sums x[i]² in f64 over its grid-stride share
// of i < n and writes the sum as the f32 pair partials[2b], partials[2b + 1].
// Deterministic for a fixed grid size G.
// Grid: G blocks of 256 threads, 1 ≤ G ≤ 1024 (e.g. min(ceil(n/2048), 1024));
// partials holds 2·G floats.
KERNEL void __launch_bounds__(256) sum_squares_partial_f32(Buf<const float> x, int n, Buf<float> partials) {
    SHARED_ARRAY(double, scratch, 33);
    double s = 0.0;
    for (long long i = grid_first(); i < n; i += grid_step()) {
        double v = (double)x[i];
        s += v * v;
    }
    double total = block_sum_f64(s, scratch);
    if (threadIdx.x == 0) store_f64_pair(total, partials + 2LL * blockIdx.x);
}

// sum_squares, pass 2: out[0], out[1] = the f32 pair of Σ_{b<count}
// (partials[2b] + partials[2b + 1]) summed in f64; the host's result is
// (double)out[0] + (double)out[1].
// Grid: 1 block of 256 threads.
KERNEL void __launch_bounds__(256) sum_squares_final_f32(Buf<const float> partials, int count, Buf<float> out) {
    SHARED_ARRAY(double, scratch, 33);
    double s = 0.0;
    for (int b = threadIdx.x; b < count; b += blockDim.x) s += (double)partials[2LL * b] + (double)partials[2LL * b + 1];
    double total = block_sum_f64(s, scratch);
    if (threadIdx.x == 0) store_f64_pair(total, out);
}
