// The vector primitives of BackendCore: fill, axpy and scale, one element
// per thread of a grid-stride loop (any 1-D grid of 256-thread blocks,
// e.g. min(ceil(n/256), 65535)). sum_squares is the two-pass reduction
// sum_squares_partial_f32 + sum_pairs_f32 in reduce.cu.
#include "common.cuh"

// buf[i] = value for i < n.
// Grid: any number of blocks of 256 threads (grid-stride).
KERNEL void __launch_bounds__(256) fill_f32(int n, float value, Buf<float> buf) {
    for (long long i = grid_first(); i < n; i += grid_step()) buf[i] = value;
}

// y[i] += alpha·x[i] for i < n.
// Grid: any number of blocks of 256 threads (grid-stride).
KERNEL void __launch_bounds__(256) axpy_f32(float alpha, Buf<const float> x, int n, Buf<float> y) {
    for (long long i = grid_first(); i < n; i += grid_step()) y[i] += alpha * x[i];
}

// x[i] *= alpha for i < n.
// Grid: any number of blocks of 256 threads (grid-stride).
KERNEL void __launch_bounds__(256) scale_f32(float alpha, int n, Buf<float> x) {
    for (long long i = grid_first(); i < n; i += grid_step()) x[i] *= alpha;
}
