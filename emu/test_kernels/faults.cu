// Kernels for the emulator's own tests (never built by nvcc): one correct
// kernel that exercises shared memory, barriers, shuffles and votes, and one
// per fault the emulator must report.
#include "common.cuh"

// Correct: out[i] = (block's x reversed)[i] + block sum (warp shuffles,
// shared memory through a barrier, a block reduction), plus the block's
// ballot count of positive entries in out[n + blockIdx.x]. blockDim.x = 64.
KERNEL void emu_selftest_f32(Buf<const float> x, int n, Buf<float> out) {
    EXTERN_SHARED(float, tile);
    SHARED_ARRAY(float, scratch, 33);
    int t = threadIdx.x, base = blockIdx.x * blockDim.x, i = base + t;
    float v = i < n ? x[i] : 0.0f;
    tile[t] = v;
    __syncthreads();
    int j = blockDim.x - 1 - t;
    float rev = base + j < n ? tile[j] : 0.0f;
    float total = block_sum(v, scratch);
    unsigned pos = __ballot_sync(FULL_MASK, v > 0.0f);
    if (t % 32 == 0) atomicAdd(&out[n + blockIdx.x], (float)__popc(pos));
    if (i < n) out[i] = rev + total;
}

// Fault: a barrier inside a branch only half the block takes.
KERNEL void emu_fault_divergent_barrier(Buf<float> out) {
    if (threadIdx.x < blockDim.x / 2) {
        __syncthreads();
    }
    out[threadIdx.x] = 1.0f;
}

// Fault: the two halves of the block wait at different barriers.
KERNEL void emu_fault_split_barrier(Buf<float> out) {
    if (threadIdx.x % 2 == 0) {
        out[threadIdx.x] = 1.0f;
        __syncthreads();
    } else {
        __syncthreads();
        out[threadIdx.x] = 2.0f;
    }
}

// Fault: writes one element per thread of the whole grid, without a bounds
// check, into a buffer shorter than the grid.
KERNEL void emu_fault_write_past_end(Buf<float> out) {
    out[blockIdx.x * blockDim.x + threadIdx.x] = 1.0f;
}

// Fault: reads one element before the start of its input.
KERNEL void emu_fault_read_before_start(Buf<const float> x, Buf<float> out) {
    out[threadIdx.x] = x[(int)threadIdx.x - 1];
}

// Fault: indexes dynamic shared memory past the bytes the launch gave.
KERNEL void emu_fault_shared_overflow(Buf<float> out) {
    EXTERN_SHARED(float, tile);
    tile[threadIdx.x] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = tile[threadIdx.x];
}

// Fault: a full-mask shuffle executed by half the warp.
KERNEL void emu_fault_divergent_shuffle(Buf<float> out) {
    float v = (float)threadIdx.x;
    if (threadIdx.x % 32 < 16) {
        v = __shfl_xor_sync(FULL_MASK, v, 1);
    }
    out[threadIdx.x] = v;
}
