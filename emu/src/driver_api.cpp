// A stand-in for the CUDA driver library (libcuda.so): the subset of the
// driver API that cudarc's safe layer calls for diccae-engine's backend,
// backed by the host emulator. Device memory is host memory (a device pointer
// is the host address, tracked in the emulator's allocation table), every call
// completes before it returns (streams are in order trivially), and a kernel
// launch runs the emulated kernel of that name with its parameters unpacked
// by the kernel's own signature.
//
// It enforces what a real driver enforces and tests must not get wrong: one
// device of compute capability 8.0, grid and block limits, 48 KiB of static
// plus dynamic shared memory unless the function opted in
// (CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES), 163 KiB at most with the
// opt-in, copies and launches only within live allocations. A launch the
// emulator rejects (out of bounds, barrier divergence) returns
// CUDA_ERROR_LAUNCH_FAILED, and cuGetErrorString then gives the emulator's
// message.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "emu_launch.h"

namespace {

using CUresult = int;
constexpr CUresult CUDA_SUCCESS = 0;
constexpr CUresult CUDA_ERROR_INVALID_VALUE = 1;
constexpr CUresult CUDA_ERROR_OUT_OF_MEMORY = 2;
constexpr CUresult CUDA_ERROR_INVALID_DEVICE = 101;
constexpr CUresult CUDA_ERROR_INVALID_IMAGE = 200;
constexpr CUresult CUDA_ERROR_INVALID_HANDLE = 400;
constexpr CUresult CUDA_ERROR_NOT_FOUND = 500;
constexpr CUresult CUDA_ERROR_LAUNCH_FAILED = 719;
constexpr CUresult CUDA_ERROR_NOT_SUPPORTED = 801;

/// The emulated device: an sm_80 part (A100-like limits).
constexpr int kMajor = 8;
constexpr int kMinor = 0;
constexpr int kDefaultSharedBytes = 48 * 1024;
constexpr int kOptinSharedBytes = 163 * 1024;
constexpr const char* kDeviceName = "diccae-kernel-emu (host emulation of an sm_80 GPU)";

/// A loaded module: the kernel file it holds, or every kernel (a real
/// fatbin, which the emulator cannot read, stands for all of them).
struct Module {
    std::string file;  // empty: any kernel
    std::map<std::string, std::unique_ptr<struct Function>> functions;
};

struct Function {
    const emu::KernelEntry* kernel;
    int max_dynamic;  // the opt-in attribute; -1 while unset
};

std::mutex g_mutex;
int g_context_token = 0;
thread_local void* g_current = nullptr;
/// The last failed call's account, per thread (as errno): cuGetErrorString
/// on the thread that got the error reads its own.
thread_local std::string g_last_error = "none";
/// Every kernel launched so far (for coverage checks), sorted.
std::set<std::string> g_launched;

/// Returns `code` after keeping `msg` for cuGetErrorString.
CUresult fail_with(CUresult code, const std::string& msg) {
    g_last_error = msg;
    return code;
}

CUresult check_range(uint64_t ptr, uint64_t bytes, const char* what) {
    if (bytes == 0) return CUDA_SUCCESS;
    uint64_t room = 0;
    if (!emu::device_extent(ptr, &room)) {
        return fail_with(CUDA_ERROR_INVALID_VALUE, std::string(what) + " of " + std::to_string(bytes) +
                                                       " bytes at a pointer outside every live allocation");
    }
    if (room < bytes) {
        return fail_with(CUDA_ERROR_INVALID_VALUE, std::string(what) + " of " + std::to_string(bytes) +
                                                       " bytes with only " + std::to_string(room) +
                                                       " left in its allocation");
    }
    return CUDA_SUCCESS;
}

CUresult alloc(uint64_t* out, size_t bytes) {
    if (!out) return CUDA_ERROR_INVALID_VALUE;
    size_t rounded = (bytes + 255) / 256 * 256;
    void* p = std::aligned_alloc(256, rounded == 0 ? 256 : rounded);
    if (!p) return CUDA_ERROR_OUT_OF_MEMORY;
    *out = reinterpret_cast<uintptr_t>(p);
    emu::track_allocation(*out, bytes, true);
    return CUDA_SUCCESS;
}

CUresult release(uint64_t ptr) {
    if (ptr == 0) return CUDA_SUCCESS;
    if (!emu::track_allocation(ptr, 0, false)) {
        return fail_with(CUDA_ERROR_INVALID_VALUE, "free of a pointer that is not the base of a live allocation");
    }
    std::free(reinterpret_cast<void*>(static_cast<uintptr_t>(ptr)));
    return CUDA_SUCCESS;
}

const char* error_name(CUresult r) {
    switch (r) {
        case CUDA_SUCCESS: return "CUDA_SUCCESS";
        case CUDA_ERROR_INVALID_VALUE: return "CUDA_ERROR_INVALID_VALUE";
        case CUDA_ERROR_OUT_OF_MEMORY: return "CUDA_ERROR_OUT_OF_MEMORY";
        case CUDA_ERROR_INVALID_DEVICE: return "CUDA_ERROR_INVALID_DEVICE";
        case CUDA_ERROR_INVALID_IMAGE: return "CUDA_ERROR_INVALID_IMAGE";
        case CUDA_ERROR_INVALID_HANDLE: return "CUDA_ERROR_INVALID_HANDLE";
        case CUDA_ERROR_NOT_FOUND: return "CUDA_ERROR_NOT_FOUND";
        case CUDA_ERROR_LAUNCH_FAILED: return "CUDA_ERROR_LAUNCH_FAILED";
        case CUDA_ERROR_NOT_SUPPORTED: return "CUDA_ERROR_NOT_SUPPORTED";
        default: return "CUDA_ERROR_UNKNOWN";
    }
}

}  // namespace

#define API extern "C" __attribute__((visibility("default")))

API CUresult cuInit(unsigned) { return CUDA_SUCCESS; }

API CUresult cuDriverGetVersion(int* v) {
    if (!v) return CUDA_ERROR_INVALID_VALUE;
    *v = 13000;
    return CUDA_SUCCESS;
}

API CUresult cuDeviceGetCount(int* n) {
    if (!n) return CUDA_ERROR_INVALID_VALUE;
    *n = 1;
    return CUDA_SUCCESS;
}

API CUresult cuDeviceGet(int* dev, int ordinal) {
    if (!dev) return CUDA_ERROR_INVALID_VALUE;
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *dev = 0;
    return CUDA_SUCCESS;
}

API CUresult cuDeviceGetName(char* name, int len, int dev) {
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!name || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    std::strncpy(name, kDeviceName, (size_t)len - 1);
    name[len - 1] = '\0';
    return CUDA_SUCCESS;
}

API CUresult cuDeviceTotalMem_v2(size_t* bytes, int dev) {
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!bytes) return CUDA_ERROR_INVALID_VALUE;
    *bytes = (size_t)16 << 30;
    return CUDA_SUCCESS;
}

API CUresult cuDeviceGetAttribute(int* v, int attrib, int dev) {
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!v) return CUDA_ERROR_INVALID_VALUE;
    switch (attrib) {
        case 1: *v = 1024; return CUDA_SUCCESS;                // MAX_THREADS_PER_BLOCK
        case 2: case 3: *v = 1024; return CUDA_SUCCESS;        // MAX_BLOCK_DIM_X, _Y
        case 4: *v = 64; return CUDA_SUCCESS;                  // MAX_BLOCK_DIM_Z
        case 5: *v = 2147483647; return CUDA_SUCCESS;          // MAX_GRID_DIM_X
        case 6: case 7: *v = 65535; return CUDA_SUCCESS;       // MAX_GRID_DIM_Y, _Z
        case 8: *v = kDefaultSharedBytes; return CUDA_SUCCESS; // MAX_SHARED_MEMORY_PER_BLOCK
        case 10: *v = 32; return CUDA_SUCCESS;                 // WARP_SIZE
        case 16: *v = 1; return CUDA_SUCCESS;                  // MULTIPROCESSOR_COUNT
        case 75: *v = kMajor; return CUDA_SUCCESS;             // COMPUTE_CAPABILITY_MAJOR
        case 76: *v = kMinor; return CUDA_SUCCESS;             // COMPUTE_CAPABILITY_MINOR
        case 97: *v = kOptinSharedBytes; return CUDA_SUCCESS;  // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
        case 115: *v = 1; return CUDA_SUCCESS;                 // MEMORY_POOLS_SUPPORTED
        default: return CUDA_ERROR_INVALID_VALUE;
    }
}

API CUresult cuDevicePrimaryCtxRetain(void** ctx, int dev) {
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!ctx) return CUDA_ERROR_INVALID_VALUE;
    *ctx = &g_context_token;
    return CUDA_SUCCESS;
}

API CUresult cuDevicePrimaryCtxRelease_v2(int dev) { return dev == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE; }

API CUresult cuCtxSetCurrent(void* ctx) {
    if (ctx != nullptr && ctx != &g_context_token) return CUDA_ERROR_INVALID_VALUE;
    g_current = ctx;
    return CUDA_SUCCESS;
}

API CUresult cuCtxGetCurrent(void** ctx) {
    if (!ctx) return CUDA_ERROR_INVALID_VALUE;
    *ctx = g_current;
    return CUDA_SUCCESS;
}

API CUresult cuCtxSynchronize() { return CUDA_SUCCESS; }

API CUresult cuStreamCreate(void** stream, unsigned) {
    if (!stream) return CUDA_ERROR_INVALID_VALUE;
    *stream = &g_context_token;
    return CUDA_SUCCESS;
}

API CUresult cuStreamDestroy_v2(void*) { return CUDA_SUCCESS; }
API CUresult cuStreamSynchronize(void*) { return CUDA_SUCCESS; }

// Events: every call has completed when it returns, so an event is complete
// as soon as it is recorded, and waiting on one returns at once.
API CUresult cuEventCreate(void** event, unsigned) {
    if (!event) return CUDA_ERROR_INVALID_VALUE;
    *event = new int(0);
    return CUDA_SUCCESS;
}
API CUresult cuEventDestroy_v2(void* event) {
    delete static_cast<int*>(event);
    return CUDA_SUCCESS;
}
API CUresult cuEventRecord(void* event, void*) { return event ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE; }
API CUresult cuEventSynchronize(void* event) { return event ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE; }
API CUresult cuEventQuery(void* event) { return event ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE; }
API CUresult cuStreamWaitEvent(void*, void* event, unsigned) { return event ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE; }

API CUresult cuMemAlloc_v2(uint64_t* ptr, size_t bytes) { return alloc(ptr, bytes); }
API CUresult cuMemAllocAsync(uint64_t* ptr, size_t bytes, void*) { return alloc(ptr, bytes); }
API CUresult cuMemFree_v2(uint64_t ptr) { return release(ptr); }
API CUresult cuMemFreeAsync(uint64_t ptr, void*) { return release(ptr); }

API CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    if (!free_bytes || !total) return CUDA_ERROR_INVALID_VALUE;
    *total = (size_t)16 << 30;
    *free_bytes = *total;
    return CUDA_SUCCESS;
}

API CUresult cuMemsetD8Async(uint64_t dst, unsigned char value, size_t n, void*) {
    if (CUresult r = check_range(dst, n, "memset")) return r;
    if (n) std::memset(reinterpret_cast<void*>(static_cast<uintptr_t>(dst)), value, n);
    return CUDA_SUCCESS;
}
API CUresult cuMemsetD8_v2(uint64_t dst, unsigned char value, size_t n) { return cuMemsetD8Async(dst, value, n, nullptr); }

API CUresult cuMemcpyHtoDAsync_v2(uint64_t dst, const void* src, size_t n, void*) {
    if (CUresult r = check_range(dst, n, "host-to-device copy")) return r;
    if (n) std::memcpy(reinterpret_cast<void*>(static_cast<uintptr_t>(dst)), src, n);
    return CUDA_SUCCESS;
}
API CUresult cuMemcpyHtoD_v2(uint64_t dst, const void* src, size_t n) { return cuMemcpyHtoDAsync_v2(dst, src, n, nullptr); }

API CUresult cuMemcpyDtoHAsync_v2(void* dst, uint64_t src, size_t n, void*) {
    if (CUresult r = check_range(src, n, "device-to-host copy")) return r;
    if (n) std::memcpy(dst, reinterpret_cast<const void*>(static_cast<uintptr_t>(src)), n);
    return CUDA_SUCCESS;
}
API CUresult cuMemcpyDtoH_v2(void* dst, uint64_t src, size_t n) { return cuMemcpyDtoHAsync_v2(dst, src, n, nullptr); }

API CUresult cuMemcpyDtoDAsync_v2(uint64_t dst, uint64_t src, size_t n, void*) {
    if (CUresult r = check_range(dst, n, "device-to-device copy (destination)")) return r;
    if (CUresult r = check_range(src, n, "device-to-device copy (source)")) return r;
    if (n)
        std::memmove(reinterpret_cast<void*>(static_cast<uintptr_t>(dst)),
                     reinterpret_cast<const void*>(static_cast<uintptr_t>(src)), n);
    return CUDA_SUCCESS;
}
API CUresult cuMemcpyDtoD_v2(uint64_t dst, uint64_t src, size_t n) { return cuMemcpyDtoDAsync_v2(dst, src, n, nullptr); }

/// The image prefix of a kernel file built for the emulator
/// (`diccae-emu-module:<stem>`); any other image is taken for a real
/// fatbin of unknown content.
constexpr const char* kModulePrefix = "diccae-emu-module:";

API CUresult cuModuleLoadData(void** module, const void* image) {
    if (!module || !image) return CUDA_ERROR_INVALID_VALUE;
    auto* m = new Module();
    const char* text = static_cast<const char*>(image);
    size_t plen = std::strlen(kModulePrefix);
    if (std::strncmp(text, kModulePrefix, plen) == 0) m->file = text + plen;
    *module = m;
    return CUDA_SUCCESS;
}

API CUresult cuModuleUnload(void* module) {
    delete static_cast<Module*>(module);
    return CUDA_SUCCESS;
}

API CUresult cuModuleGetFunction(void** fn, void* module, const char* name) {
    if (!fn || !module || !name) return CUDA_ERROR_INVALID_VALUE;
    auto* m = static_cast<Module*>(module);
    std::lock_guard<std::mutex> lock(g_mutex);
    auto it = m->functions.find(name);
    if (it == m->functions.end()) {
        const emu::KernelEntry* k = emu::find_kernel(name);
        if (!k || (!m->file.empty() && k->file != m->file)) return CUDA_ERROR_NOT_FOUND;
        it = m->functions.emplace(name, std::make_unique<Function>(Function{k, -1})).first;
    }
    *fn = it->second.get();
    return CUDA_SUCCESS;
}

/// The dynamic shared memory a launch of `f` may use.
int dynamic_limit(const Function& f) {
    if (f.max_dynamic >= 0) return f.max_dynamic;
    return kDefaultSharedBytes - (int)f.kernel->static_bytes;
}

API CUresult cuFuncGetAttribute(int* v, int attrib, void* fn) {
    if (!v || !fn) return CUDA_ERROR_INVALID_VALUE;
    auto* f = static_cast<Function*>(fn);
    std::lock_guard<std::mutex> lock(g_mutex);
    switch (attrib) {
        case 0: *v = 1024; return CUDA_SUCCESS;                            // MAX_THREADS_PER_BLOCK
        case 1: *v = (int)f->kernel->static_bytes; return CUDA_SUCCESS;    // SHARED_SIZE_BYTES
        case 8: *v = dynamic_limit(*f); return CUDA_SUCCESS;               // MAX_DYNAMIC_SHARED_SIZE_BYTES
        default: return CUDA_ERROR_NOT_SUPPORTED;
    }
}

API CUresult cuFuncSetAttribute(void* fn, int attrib, int value) {
    if (!fn) return CUDA_ERROR_INVALID_HANDLE;
    auto* f = static_cast<Function*>(fn);
    std::lock_guard<std::mutex> lock(g_mutex);
    if (attrib != 8) return CUDA_ERROR_NOT_SUPPORTED;
    if (value < 0 || (uint64_t)value + f->kernel->static_bytes > (uint64_t)kOptinSharedBytes) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    f->max_dynamic = value;
    return CUDA_SUCCESS;
}

API CUresult cuLaunchKernel(void* fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                            unsigned smem, void*, void** params, void** extra) {
    if (!fn) return CUDA_ERROR_INVALID_HANDLE;
    if (extra) return CUDA_ERROR_NOT_SUPPORTED;
    auto* f = static_cast<Function*>(fn);
    uint64_t threads = (uint64_t)bx * by * bz;
    int limit;
    {
        std::lock_guard<std::mutex> lock(g_mutex);
        limit = dynamic_limit(*f);
    }
    std::string why;
    if (gx == 0 || gy == 0 || gz == 0 || gx > 2147483647u || gy > 65535 || gz > 65535) {
        why = "grid (" + std::to_string(gx) + "," + std::to_string(gy) + "," + std::to_string(gz) +
              ") is outside the device's limits";
    } else if (threads == 0 || threads > 1024 || bx > 1024 || by > 1024 || bz > 64) {
        why = "block (" + std::to_string(bx) + "," + std::to_string(by) + "," + std::to_string(bz) +
              ") is outside the device's limits";
    } else if ((int64_t)smem > (int64_t)limit) {
        why = std::to_string(smem) + " bytes of dynamic shared memory besides " +
              std::to_string(f->kernel->static_bytes) + " static exceed the function's limit of " +
              std::to_string(limit) + " (48 KiB in all unless CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES is set)";
    }
    if (!why.empty()) return fail_with(CUDA_ERROR_INVALID_VALUE, f->kernel->name + ": " + why);
    {
        std::lock_guard<std::mutex> lock(g_mutex);
        g_launched.insert(f->kernel->name);
    }
    EmuDims dims{{gx, gy, gz}, {bx, by, bz}, smem};
    char err[1024] = {0};
    int code = emu::launch_from_params(*f->kernel, &dims, params, err, sizeof err);
    if (code != emu::ERR_OK) return fail_with(CUDA_ERROR_LAUNCH_FAILED, err);
    return CUDA_SUCCESS;
}

API CUresult cuGetErrorName(CUresult r, const char** out) {
    if (!out) return CUDA_ERROR_INVALID_VALUE;
    *out = error_name(r);
    return CUDA_SUCCESS;
}

API CUresult cuGetErrorString(CUresult r, const char** out) {
    if (!out) return CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS) {
        *out = error_name(r);
        return CUDA_SUCCESS;
    }
    // The name and the emulated driver's account of its last failed call;
    // kept for the process (a caller may hold the pointer), one copy per
    // distinct message.
    static std::map<std::string, std::string> kept;
    std::lock_guard<std::mutex> lock(g_mutex);
    std::string msg = std::string(error_name(r)) + " (emulated driver: " + g_last_error + ")";
    *out = kept.emplace(msg, msg).first->second.c_str();
    return CUDA_SUCCESS;
}

/// Whether `ptr` lies in a live allocation, and the bytes left in it (for
/// the stand-in cuBLAS).
API int diccae_emu_device_extent(uint64_t ptr, uint64_t* bytes) { return emu::device_extent(ptr, bytes) ? 1 : 0; }

/// How many distinct kernels were launched so far.
API size_t diccae_emu_launched_count() {
    std::lock_guard<std::mutex> lock(g_mutex);
    return g_launched.size();
}

/// The name of launched kernel `i` (sorted), or NULL; valid for the process.
API const char* diccae_emu_launched_name(size_t i) {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (i >= g_launched.size()) return nullptr;
    auto it = g_launched.begin();
    std::advance(it, (long)i);
    return it->c_str();
}
