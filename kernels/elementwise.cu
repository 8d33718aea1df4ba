// Elementwise kernels (ElementwiseKernels): sums, scaling, the bias /
// residual row add, its gradient (column sums), GELU with the tanh
// approximation and the logistic sigmoid. Every kernel overwrites its output.
//
// Flat kernels are grid-stride loops: any 1-D grid of 256-thread blocks
// covers any n (suggested: min(ceil(n/256), 65535) blocks).
#include "common.cuh"

/// √(2/π), the scale inside GELU's tanh.
#define GELU_K 0.7978846f
/// The cubic coefficient of GELU's tanh approximation.
#define GELU_C 0.044715f

// out[i] = a[i] + b[i] for i < n.
// Grid: any number of blocks of 256 threads (grid-stride).
KERNEL void __launch_bounds__(256) add_f32(Buf<const float> a, Buf<const float> b, int n, Buf<float> out) {
    for (long long i = grid_first(); i < n; i += grid_step()) out[i] = a[i] + b[i];
}

// out[i] = c·x[i] for i < n.
// Grid: any number of blocks of 256 threads (grid-stride).
KERNEL void __launch_bounds__(256) scaled_f32(Buf<const float> x, int n, float c, Buf<float> out) {
    for (long long i = grid_first(); i < n; i += grid_step()) out[i] = c * x[i];
}

// out[r·d + j] = x[r·d + j] + row[j] for a rows × d matrix x.
// Grid: any number of blocks of 256 threads (grid-stride over rows·d).
KERNEL void __launch_bounds__(256) add_row_f32(Buf<const float> x, Buf<const float> row, int rows, int d, Buf<float> out) {
    long long n = (long long)rows * d;
    for (long long i = grid_first(); i < n; i += grid_step()) out[i] = x[i] + row[i % d];
}

// Column sums of rows × d x, split into row chunks of rows_per_split:
// out[s·d + j] = Σ_{r in chunk s} x[r·d + j], for chunk s = blockIdx.y.
// Each block sums 32 columns (lane = column) over its chunk, 8 warps
// taking every 8th row, then adds the 8 warp partials in order: the
// result depends only on the shape and rows_per_split (deterministic).
// With gridDim.y = 1 (rows_per_split ≥ rows) out is the d column sums.
// For many rows, run it with S = ceil(rows/rows_per_split) chunks into an
// S × d scratch, then again on the scratch (rows = S, gridDim.y = 1).
// Grid: (ceil(d/32), ceil(rows/rows_per_split)) blocks of 256 threads.
KERNEL void __launch_bounds__(256) sum_rows_f32(Buf<const float> x, int rows, int d, int rows_per_split, Buf<float> out) {
    SHARED_ARRAY(float, scratch, 256);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int j = blockIdx.x * 32 + lane;
    long long r0 = (long long)blockIdx.y * rows_per_split;
    long long r1 = r0 + rows_per_split < rows ? r0 + rows_per_split : rows;
    float s = 0.0f;
    if (j < d)
        for (long long r = r0 + warp; r < r1; r += 8) s += x[r * d + j];
    float t = column_sum_8x32(s, scratch);
    if (warp == 0 && j < d) out[(long long)blockIdx.y * d + j] = t;
}

/// tanh(√(2/π)·(x + 0.044715·x³)).
__device__ __forceinline__ float gelu_tanh(float x) { return tanhf(GELU_K * (x + GELU_C * x * x * x)); }

// out[i] = ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) for i < n.
// Grid: any number of blocks of 256 threads (grid-stride).
KERNEL void __launch_bounds__(256) gelu_fwd_f32(Buf<const float> x, int n, Buf<float> out) {
    for (long long i = grid_first(); i < n; i += grid_step()) {
        float v = x[i];
        out[i] = 0.5f * v * (1.0f + gelu_tanh(v));
    }
}

// out[i] = grad_out[i]·gelu'(x[i]), the exact derivative of the tanh form.
// Grid: any number of blocks of 256 threads (grid-stride).
KERNEL void __launch_bounds__(256) gelu_bwd_f32(Buf<const float> x, Buf<const float> grad_out, int n, Buf<float> out) {
    for (long long i = grid_first(); i < n; i += grid_step()) {
        float v = x[i];
        float t = gelu_tanh(v);
        float du = GELU_K * (1.0f + 3.0f * GELU_C * v * v);
        out[i] = grad_out[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du);
    }
}

// out[i] = 1 / (1 + e^(−x[i])) for i < n (0 and 1 in the limits, no NaN).
// Grid: any number of blocks of 256 threads (grid-stride).
KERNEL void __launch_bounds__(256) sigmoid_fwd_f32(Buf<const float> x, int n, Buf<float> out) {
    for (long long i = grid_first(); i < n; i += grid_step()) out[i] = 1.0f / (1.0f + expf(-x[i]));
}

// out[i] = grad_out[i]·y[i]·(1 − y[i]) from the forward's output y = σ(x).
// Grid: any number of blocks of 256 threads (grid-stride).
KERNEL void __launch_bounds__(256) sigmoid_bwd_f32(Buf<const float> y, Buf<const float> grad_out, int n, Buf<float> out) {
    for (long long i = grid_first(); i < n; i += grid_step()) {
        float v = y[i];
        out[i] = grad_out[i] * v * (1.0f - v);
    }
}
