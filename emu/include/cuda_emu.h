// Host emulation of the CUDA device-side language subset the kernels in
// ../../kernels use. Force-included (`-include cuda_emu.h`) when the emu crate
// compiles a .cu file as plain C++17; under nvcc (__CUDACC__) it is empty.
//
// Model: a launch runs its blocks one after another; the threads of a block
// are fibers (ucontext) on one OS thread, each running until it reaches a
// barrier, a warp-level operation or its end. The scheduler then releases
// complete barriers, and reports (as an error returned to Rust) any barrier
// that can never complete: a __syncthreads some threads of the block skip or
// reach at a different call site, a warp operation some named lane never
// joins. Buffers arrive as Buf<T>, whose operator[] checks the index against
// the length the launch was given.
#pragma once
#ifndef __CUDACC__

#include <cfloat>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

struct uint3 {
    unsigned x, y, z;
};

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace emu {

/// Error kinds, mirrored by `EmuErrorKind` on the Rust side.
enum ErrKind : int {
    ERR_OK = 0,
    ERR_UNKNOWN_KERNEL = 1,
    ERR_BAD_ARGS = 2,
    ERR_BAD_LAUNCH = 3,
    ERR_OUT_OF_BOUNDS = 4,
    ERR_BARRIER_DIVERGENCE = 5,
    ERR_WARP_DIVERGENCE = 6,
    ERR_EXCEPTION = 7,
};

/// Identity of the CUDA thread a fiber runs.
struct ThreadCtx {
    uint3 tid;
    unsigned linear;  // threadIdx linearised (x fastest)
    unsigned lane;    // linear % 32
    unsigned warp;    // linear / 32
};

extern ThreadCtx* g_cur;
extern uint3 g_block_idx;
extern dim3 g_block_dim;
extern dim3 g_grid_dim;

/// Aborts the current CUDA thread with an error; the launch returns it.
[[noreturn]] void fail(int kind, const char* msg);
/// Reports an index outside a buffer.
[[noreturn]] void out_of_bounds(const char* name, long long index, long long len);
/// Block-wide barrier (__syncthreads) at a source location.
void syncthreads(const char* file, int line);
/// Warp barrier among the lanes of `mask`, for the warp operation `op`.
void warp_sync(unsigned mask, const char* op);
/// 32 exchange slots of the current thread's warp.
uint64_t* warp_slots();
/// The launch's dynamic shared memory and its size in bytes.
unsigned char* dynamic_shared_base(size_t* bytes);
/// A static shared array reached by the current thread: counted towards the
/// launch's static shared memory, and poisoned (NaN bytes) the first time a
/// block reaches it, as the dynamic part is.
void declare_static_shared(void* storage, size_t bytes);

}  // namespace emu

/// A buffer with its length: every element access is bounds-checked. Under
/// nvcc `Buf<T>` is `T*` (kernels/common.cuh), so kernels index it, offset it
/// with `+` and take `&b[i]` the same way in both builds.
template <class T>
class Buf {
public:
    Buf() : base_(nullptr), len_(0), off_(0), name_("null buffer") {}
    Buf(T* base, long long len, const char* name, long long off = 0)
        : base_(base), len_(len), off_(off), name_(name) {}
    template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
    Buf(const Buf<U>& o) : base_(o.base_), len_(o.len_), off_(o.off_), name_(o.name_) {}

    T& operator[](long long i) const {
        long long j = off_ + i;
        if (j < 0 || j >= len_) {
            emu::out_of_bounds(name_, j, len_);
        }
        return base_[j];
    }
    T& operator*() const { return (*this)[0]; }
    Buf operator+(long long k) const { return Buf(base_, len_, name_, off_ + k); }
    Buf operator-(long long k) const { return Buf(base_, len_, name_, off_ - k); }
    explicit operator bool() const { return base_ != nullptr; }

private:
    template <class U>
    friend class Buf;
    T* base_;
    long long len_;
    long long off_;
    const char* name_;
};

// ---- language ---------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// Blocks run one at a time, so a function-static variable is per-block memory.
#define __shared__ static
#define __constant__ static const

#define threadIdx (::emu::g_cur->tid)
#define blockIdx (::emu::g_block_idx)
#define blockDim (::emu::g_block_dim)
#define gridDim (::emu::g_grid_dim)
constexpr int warpSize = 32;

#define __syncthreads() ::emu::syncthreads(__FILE__, __LINE__)
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::emu::warp_sync(mask, "__syncwarp"); }

// Static shared array, bounds-checked here, a plain __shared__ array under nvcc.
#define SHARED_ARRAY(T, name, n)                                                    \
    static T name##_emu_storage[n];                                                 \
    ::emu::declare_static_shared(name##_emu_storage, sizeof(name##_emu_storage));   \
    const Buf<T> name(name##_emu_storage, (n), #name)
// Dynamic shared memory (the launch's shared_mem_bytes), bounds-checked here.
#define EXTERN_SHARED(T, name)                                                                \
    size_t name##_emu_bytes = 0;                                                              \
    unsigned char* name##_emu_base = ::emu::dynamic_shared_base(&name##_emu_bytes);           \
    const Buf<T> name(reinterpret_cast<T*>(name##_emu_base), (long long)(name##_emu_bytes / sizeof(T)), \
                      "dynamic shared memory (" #name ")")

// ---- warp operations --------------------------------------------------------
namespace emu {
template <class T>
inline T shfl_from(unsigned mask, T v, unsigned src, const char* op) {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "shuffle of a 1-8 byte value");
    uint64_t* slots = warp_slots();
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    unsigned lane = g_cur->lane;
    slots[lane] = bits;
    warp_sync(mask, op);
    if (src >= 32 || !((mask >> src) & 1u)) {
        fail(ERR_WARP_DIVERGENCE, "warp shuffle reads a lane outside its mask");
    }
    uint64_t got = slots[src];
    warp_sync(mask, op);
    T out;
    std::memcpy(&out, &got, sizeof(T));
    return out;
}

inline unsigned vote_ballot(unsigned mask, int pred, const char* op) {
    uint64_t* slots = warp_slots();
    slots[g_cur->lane] = pred ? 1u : 0u;
    warp_sync(mask, op);
    unsigned bits = 0;
    for (unsigned l = 0; l < 32; ++l) {
        if (((mask >> l) & 1u) && slots[l]) bits |= 1u << l;
    }
    warp_sync(mask, op);
    return bits;
}
}  // namespace emu

template <class T>
inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
    unsigned lane = ::emu::g_cur->lane;
    unsigned src = (lane / width) * width + ((unsigned)src_lane % (unsigned)width);
    return ::emu::shfl_from(mask, v, src, "__shfl_sync");
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    unsigned lane = ::emu::g_cur->lane;
    unsigned src = lane ^ (unsigned)lane_mask;
    if (src / width > lane / width) src = lane;
    return ::emu::shfl_from(mask, v, src, "__shfl_xor_sync");
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    unsigned lane = ::emu::g_cur->lane;
    unsigned src = (lane % width) + delta < (unsigned)width ? lane + delta : lane;
    return ::emu::shfl_from(mask, v, src, "__shfl_down_sync");
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    unsigned lane = ::emu::g_cur->lane;
    unsigned src = (lane % width) >= delta ? lane - delta : lane;
    return ::emu::shfl_from(mask, v, src, "__shfl_up_sync");
}
inline unsigned __ballot_sync(unsigned mask, int pred) { return ::emu::vote_ballot(mask, pred, "__ballot_sync"); }
inline int __any_sync(unsigned mask, int pred) { return ::emu::vote_ballot(mask, pred, "__any_sync") != 0; }
inline int __all_sync(unsigned mask, int pred) { return ::emu::vote_ballot(mask, pred, "__all_sync") == mask; }

// ---- atomics (fibers never interleave inside one, so plain RMW is atomic) ----
template <class T>
inline T emu_atomic_rmw(T* p, T v, int op) {
    T old = *p;
    switch (op) {
        case 0: *p = old + v; break;
        case 1: *p = old > v ? old : v; break;
        case 2: *p = old < v ? old : v; break;
        default: *p = v; break;
    }
    return old;
}
inline float atomicAdd(float* p, float v) { return emu_atomic_rmw(p, v, 0); }
inline int atomicAdd(int* p, int v) { return emu_atomic_rmw(p, v, 0); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return emu_atomic_rmw(p, v, 0); }
inline int atomicMax(int* p, int v) { return emu_atomic_rmw(p, v, 1); }
inline unsigned atomicMax(unsigned* p, unsigned v) { return emu_atomic_rmw(p, v, 1); }
inline int atomicMin(int* p, int v) { return emu_atomic_rmw(p, v, 2); }
inline unsigned atomicMin(unsigned* p, unsigned v) { return emu_atomic_rmw(p, v, 2); }
inline int atomicExch(int* p, int v) { return emu_atomic_rmw(p, v, 3); }
inline float atomicExch(float* p, float v) { return emu_atomic_rmw(p, v, 3); }
inline int atomicCAS(int* p, int compare, int v) {
    int old = *p;
    if (old == compare) *p = v;
    return old;
}
inline unsigned atomicCAS(unsigned* p, unsigned compare, unsigned v) {
    unsigned old = *p;
    if (old == compare) *p = v;
    return old;
}

// ---- math intrinsics ---------------------------------------------------------
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}
inline int __float_as_int(float f) {
    int i;
    std::memcpy(&i, &f, 4);
    return i;
}
inline unsigned __float_as_uint(float f) {
    unsigned i;
    std::memcpy(&i, &f, 4);
    return i;
}
inline float __uint_as_float(unsigned i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }

#endif  // __CUDACC__
