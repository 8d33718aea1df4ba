// Shared helpers of the diccae-engine kernels. Every .cu file includes this.
//
// The same source compiles under nvcc (real kernels) and as C++ under the
// host emulator (emu/include/cuda_emu.h, force-included), so kernels use a
// few macros instead of the raw syntax:
//   KERNEL void name(...)        extern "C" __global__ entry point; keep it on one line
//   Buf<T>                       a buffer parameter: T* under nvcc, a bounds-checked view in emulation
//   SHARED_ARRAY(T, name, n)     a static __shared__ T name[n]
//   EXTERN_SHARED(T, name)       the launch's dynamic shared memory as T
// Kernels must reach every __syncthreads with the whole block (no early
// return before a barrier), and warp operations with every lane of the mask.
#pragma once

#ifdef __CUDACC__
template <class T>
using Buf = T*;
#define SHARED_ARRAY(T, name, n) __shared__ T name[n]
#define EXTERN_SHARED(T, name) extern __shared__ __align__(16) unsigned char name##_raw[]; T* name = reinterpret_cast<T*>(name##_raw)
#endif

#define KERNEL extern "C" __global__

#define FULL_MASK 0xffffffffu

/// Negative infinity without <cmath> macros (NVRTC-safe).
__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

/// Positive infinity (NVRTC-safe).
__device__ __forceinline__ float pos_inf() { return __int_as_float(0x7f800000); }

/// First index of a grid-stride loop over a 1-D grid of 1-D blocks.
__device__ __forceinline__ long long grid_first() { return (long long)blockIdx.x * blockDim.x + threadIdx.x; }

/// Step of a grid-stride loop: every thread of the grid once.
__device__ __forceinline__ long long grid_step() { return (long long)gridDim.x * blockDim.x; }

/// Sum over the 32 lanes of a warp (every lane gets it).
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

/// Maximum over the 32 lanes of a warp (every lane gets it).
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

/// Log-sum-exp over the lanes of a warp of one value per lane: every lane
/// gets `log Σ_lanes exp(v)`; −∞ lanes contribute nothing. Returns −∞ when
/// every lane is −∞.
__device__ __forceinline__ float warp_lse(float v) {
    float m = warp_max(v);
    float s = m == neg_inf() ? 0.0f : warp_sum(v == neg_inf() ? 0.0f : expf(v - m));
    return m == neg_inf() ? neg_inf() : m + logf(s);
}

/// Arg-min over the lanes of a warp, ties to the lowest index; every lane
/// gets the winning (value, index).
__device__ __forceinline__ void warp_argmin(float& v, int& idx) {
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(FULL_MASK, v, o);
        int oi = __shfl_xor_sync(FULL_MASK, idx, o);
        if (ov < v || (ov == v && oi < idx)) {
            v = ov;
            idx = oi;
        }
    }
}

/// Merges the running log-sum-exp pair (m, s), meaning `m + log s`, with
/// another (m2, s2).
__device__ __forceinline__ void lse_merge(float& m, float& s, float m2, float s2) {
    if (m2 == neg_inf()) return;
    if (m == neg_inf()) {
        m = m2;
        s = s2;
        return;
    }
    float mm = fmaxf(m, m2);
    s = s * expf(m - mm) + s2 * expf(m2 - mm);
    m = mm;
}

/// Block-wide sum of one value per thread for blockDim.x a multiple of 32
/// (at most 1024). Every thread must call it; every thread gets the sum.
/// `scratch` holds at least 33 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, Buf<float> scratch) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = lane < warps ? scratch[lane] : 0.0f;
    t = warp_sum(t);
    if (threadIdx.x == 0) scratch[32] = t;
    __syncthreads();
    float r = scratch[32];
    __syncthreads();
    return r;
}

/// Column sums of a 256-thread block laid out as 8 warps × 32 lanes (lane =
/// column): lane l of warp 0 gets Σ_w v(w, l), added in warp order (fixed,
/// so deterministic); the other warps get 0. `scratch` holds at least 256
/// floats of shared memory. Every thread of the block must call it.
__device__ __forceinline__ float column_sum_8x32(float v, Buf<float> scratch) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    scratch[warp * 32 + lane] = v;
    __syncthreads();
    float t = 0.0f;
    if (warp == 0)
        for (int w = 0; w < 8; ++w) t += scratch[w * 32 + lane];
    __syncthreads();
    return t;
}

/// Decodes an f32-encoded class index; −1 when it is not an integer in 0..k.
__device__ __forceinline__ int decode_label(float v, int k) {
    if (!(v >= 0.0f) || !(v < (float)k) || v != floorf(v)) return -1;
    return (int)v;
}

/// Side of the square score tiles of `dot_tile_32x32`.
#define TILE 32
/// Row stride of a shared 32×32 tile (padded against bank conflicts).
#define TILE_LD 33

/// One 32×32 tile of dot products for a block of 256 threads (8 warps):
/// warp w, lane l gets `acc[j] = own[r0 + w + 8j] · other[c0 + l]` (j < 4)
/// over rows of length `d`. Rows at or past `own_rows` / `other_rows` read as
/// zeros. `own_s` and `other_s` are shared tiles of TILE·TILE_LD floats.
/// Every thread of the block must call it (it synchronises).
__device__ __forceinline__ void dot_tile_32x32(Buf<const float> own, int own_rows, int r0, Buf<const float> other,
                                               int other_rows, int c0, int d, Buf<float> own_s, Buf<float> other_s,
                                               float acc[4]) {
    int t = threadIdx.x, lane = t % 32, warp = t / 32;
    for (int j = 0; j < 4; ++j) acc[j] = 0.0f;
    for (int k0 = 0; k0 < d; k0 += TILE) {
        for (int e = t; e < TILE * TILE; e += 256) {
            int rr = e / TILE, kk = e % TILE, k = k0 + kk;
            own_s[rr * TILE_LD + kk] = (r0 + rr < own_rows && k < d) ? own[(long long)(r0 + rr) * d + k] : 0.0f;
            other_s[rr * TILE_LD + kk] =
                (c0 + rr < other_rows && k < d) ? other[(long long)(c0 + rr) * d + k] : 0.0f;
        }
        __syncthreads();
        for (int kk = 0; kk < TILE; ++kk) {
            float b = other_s[lane * TILE_LD + kk];
            for (int j = 0; j < 4; ++j) acc[j] += own_s[(warp + 8 * j) * TILE_LD + kk] * b;
        }
        __syncthreads();
    }
}

// Status words name the first bad index: a kernel flags index i with
// atomicMax(&status[w], flag_first(i)), so the smallest index wins whatever
// the order blocks run in; 0 means nothing was flagged. The host decodes
// INT_MAX − word.
__device__ __forceinline__ int flag_first(long long index) { return (int)(0x7fffffffLL - index); }
