// Launch plumbing between Rust and the emulated kernels: the C ABI argument
// record, type-checked unpacking of it into a kernel's parameters, and the
// registry of kernels by name. Included by the generated per-file launcher
// translation units (build.rs) after the kernel source.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <tuple>
#include <utility>

#include "cuda_emu.h"

extern "C" {
/// One kernel argument as Rust passes it.
struct EmuArg {
    uint32_t kind;
    uint32_t reserved;
    void* ptr;
    uint64_t len;
    uint64_t bits;
};

/// Launch geometry.
struct EmuDims {
    uint32_t grid[3];
    uint32_t block[3];
    uint64_t shared_bytes;
};
}

namespace emu {

enum ArgKind : uint32_t {
    ARG_F32 = 1,
    ARG_I32 = 2,
    ARG_IN_F32 = 3,
    ARG_OUT_F32 = 4,
    ARG_IN_I32 = 5,
    ARG_OUT_I32 = 6,
};

/// Raised while unpacking arguments.
struct BadArgs {
    std::string msg;
};

const char* arg_name(size_t index);

template <class P>
struct ArgConv;

template <>
struct ArgConv<float> {
    static float get(const EmuArg& a, size_t i) {
        if (a.kind != ARG_F32) throw BadArgs{"argument " + std::to_string(i) + " must be an f32 scalar"};
        float f;
        std::memcpy(&f, &a.bits, 4);
        return f;
    }
};
template <>
struct ArgConv<int> {
    static int get(const EmuArg& a, size_t i) {
        if (a.kind != ARG_I32) throw BadArgs{"argument " + std::to_string(i) + " must be an i32 scalar"};
        int v;
        std::memcpy(&v, &a.bits, 4);
        return v;
    }
};
template <>
struct ArgConv<Buf<const float>> {
    static Buf<const float> get(const EmuArg& a, size_t i) {
        if (a.kind != ARG_IN_F32 && a.kind != ARG_OUT_F32)
            throw BadArgs{"argument " + std::to_string(i) + " must be an f32 buffer"};
        return Buf<const float>(static_cast<const float*>(a.ptr), (long long)a.len, arg_name(i));
    }
};
template <>
struct ArgConv<Buf<float>> {
    static Buf<float> get(const EmuArg& a, size_t i) {
        if (a.kind != ARG_OUT_F32) throw BadArgs{"argument " + std::to_string(i) + " must be a mutable f32 buffer"};
        return Buf<float>(static_cast<float*>(a.ptr), (long long)a.len, arg_name(i));
    }
};
template <>
struct ArgConv<Buf<const int>> {
    static Buf<const int> get(const EmuArg& a, size_t i) {
        if (a.kind != ARG_IN_I32 && a.kind != ARG_OUT_I32)
            throw BadArgs{"argument " + std::to_string(i) + " must be an i32 buffer"};
        return Buf<const int>(static_cast<const int*>(a.ptr), (long long)a.len, arg_name(i));
    }
};
template <>
struct ArgConv<Buf<int>> {
    static Buf<int> get(const EmuArg& a, size_t i) {
        if (a.kind != ARG_OUT_I32) throw BadArgs{"argument " + std::to_string(i) + " must be a mutable i32 buffer"};
        return Buf<int>(static_cast<int*>(a.ptr), (long long)a.len, arg_name(i));
    }
};

/// Whether device pointer `ptr` lies in a live allocation of the emulated
/// driver; if so, `*bytes` is the room from `ptr` to the allocation's end.
bool device_extent(uint64_t ptr, uint64_t* bytes);

/// A kernel parameter as the driver API passes it: `params[i]` points to the
/// value (a `CUdeviceptr` for a buffer). Buffers are checked against the
/// driver's allocation table and get the room left in their allocation as
/// their length, so an access past an allocation's end is reported.
template <class P>
struct DrvConv;

template <>
struct DrvConv<float> {
    static float get(void* p, size_t) {
        float f;
        std::memcpy(&f, p, 4);
        return f;
    }
};
template <>
struct DrvConv<int> {
    static int get(void* p, size_t) {
        int v;
        std::memcpy(&v, p, 4);
        return v;
    }
};
template <class T>
struct DrvConv<Buf<T>> {
    static Buf<T> get(void* p, size_t i) {
        uint64_t dptr;
        std::memcpy(&dptr, p, 8);
        if (dptr == 0) return Buf<T>();
        uint64_t bytes = 0;
        if (!device_extent(dptr, &bytes)) {
            throw BadArgs{"argument " + std::to_string(i) + " (" + std::to_string(dptr) +
                          ") is not a pointer into a live device allocation"};
        }
        if (dptr % alignof(T) != 0) {
            throw BadArgs{"argument " + std::to_string(i) + " is not aligned to " + std::to_string(alignof(T)) +
                          " bytes"};
        }
        return Buf<T>(reinterpret_cast<T*>(static_cast<uintptr_t>(dptr)), (long long)(bytes / sizeof(T)),
                      arg_name(i));
    }
};

/// Runs `body` as every thread of every block of the launch; returns an
/// ErrKind and writes a message into `err` on failure. `static_bytes` is the
/// kernel's static shared memory as build.rs read it from its SHARED_ARRAYs:
/// the launch checks it against what the kernel declares.
int run_grid(const char* kernel, const EmuDims* dims, uint64_t static_bytes, const std::function<void()>& body,
             char* err, size_t err_len);
/// Writes `msg` into `err` (truncated, NUL-terminated) and returns `kind`.
int report(int kind, const std::string& msg, char* err, size_t err_len);

template <class... Ps, size_t... I>
std::tuple<Ps...> unpack(const EmuArg* a, std::index_sequence<I...>) {
    return std::tuple<Ps...>(ArgConv<Ps>::get(a[I], I)...);
}

template <class... Ps, size_t... I>
std::tuple<Ps...> unpack_params(void** params, std::index_sequence<I...>) {
    return std::tuple<Ps...>(DrvConv<Ps>::get(params[I], I)...);
}

/// Runs `kernel` over the launch with the arguments `unpack` produces; an
/// argument it rejects (BadArgs) is reported as ERR_BAD_ARGS.
template <class... Ps, class Unpack>
int run_unpacked(const char* name, void (*kernel)(Ps...), const EmuDims* dims, uint64_t static_bytes,
                 Unpack unpack, char* err, size_t err_len) {
    try {
        std::tuple<Ps...> unpacked = unpack();
        std::function<void()> body = [&]() { std::apply(kernel, unpacked); };
        return run_grid(name, dims, static_bytes, body, err, err_len);
    } catch (const BadArgs& e) {
        return report(ERR_BAD_ARGS, std::string(name) + ": " + e.msg, err, err_len);
    }
}

template <class... Ps>
int launch_packed(const char* name, void (*kernel)(Ps...), const EmuDims* dims, uint64_t static_bytes,
                  const EmuArg* args, size_t n, char* err, size_t err_len) {
    if (n != sizeof...(Ps)) {
        return report(ERR_BAD_ARGS,
                      std::string(name) + " takes " + std::to_string(sizeof...(Ps)) + " arguments, got " +
                          std::to_string(n),
                      err, err_len);
    }
    return run_unpacked(name, kernel, dims, static_bytes,
                        [&] { return unpack<Ps...>(args, std::index_sequence_for<Ps...>{}); }, err, err_len);
}

template <class... Ps>
int launch_params(const char* name, void (*kernel)(Ps...), const EmuDims* dims, uint64_t static_bytes,
                  void** params, char* err, size_t err_len) {
    if (sizeof...(Ps) > 0 && params == nullptr) {
        return report(ERR_BAD_ARGS, std::string(name) + ": launched without kernelParams", err, err_len);
    }
    return run_unpacked(name, kernel, dims, static_bytes,
                        [&] { return unpack_params<Ps...>(params, std::index_sequence_for<Ps...>{}); }, err,
                        err_len);
}

/// A registered kernel's launcher from the Rust argument records.
using LaunchFn = int (*)(const char*, const EmuDims*, uint64_t, const EmuArg*, size_t, char*, size_t);
/// A registered kernel's launcher from the driver API's `kernelParams`.
using ParamsLaunchFn = int (*)(const char*, const EmuDims*, uint64_t, void**, char*, size_t);

/// The launchers of kernel `K` (one instantiation per kernel, generated).
template <auto K>
struct Launcher {
    static int launch(const char* name, const EmuDims* dims, uint64_t static_bytes, const EmuArg* args, size_t n,
                      char* err, size_t err_len) {
        return launch_packed(name, K, dims, static_bytes, args, n, err, err_len);
    }
    static int launch_params(const char* name, const EmuDims* dims, uint64_t static_bytes, void** params,
                             char* err, size_t err_len) {
        return ::emu::launch_params(name, K, dims, static_bytes, params, err, err_len);
    }
};

/// One registered kernel: its file stem, static shared memory and launchers.
struct KernelEntry {
    std::string name;
    std::string file;
    uint64_t static_bytes;
    LaunchFn launch;
    ParamsLaunchFn launch_params;
};

/// Name → kernel table, filled by the generated `emu_register_all`.
struct Registry {
    void add(const char* name, const char* file, uint64_t static_bytes, LaunchFn fn, ParamsLaunchFn params_fn);
};

/// The registered kernel `name`, or null.
const KernelEntry* find_kernel(const char* name);

/// Runs a driver-API launch of `k` under the emulator's launch lock.
int launch_from_params(const KernelEntry& k, const EmuDims* dims, void** params, char* err, size_t err_len);

/// Records (or, with `live` false, forgets) a device allocation of the
/// emulated driver; false when forgetting a pointer that is not the base of
/// a live allocation.
bool track_allocation(uint64_t ptr, uint64_t bytes, bool live);

}  // namespace emu

#define EMU_REGISTER(reg, file, kernel, static_bytes)                                     \
    (reg).add(#kernel, file, (uint64_t)(static_bytes), &::emu::Launcher<&kernel>::launch, \
              &::emu::Launcher<&kernel>::launch_params)
