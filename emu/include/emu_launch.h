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

/// Runs `body` as every thread of every block of the launch; returns an
/// ErrKind and writes a message into `err` on failure.
int run_grid(const char* kernel, const EmuDims* dims, const std::function<void()>& body, char* err, size_t err_len);
/// Writes `msg` into `err` (truncated, NUL-terminated) and returns `kind`.
int report(int kind, const std::string& msg, char* err, size_t err_len);

template <class... Ps, size_t... I>
std::tuple<Ps...> unpack(const EmuArg* a, std::index_sequence<I...>) {
    return std::tuple<Ps...>(ArgConv<Ps>::get(a[I], I)...);
}

template <class... Ps>
int launch_packed(const char* name, void (*kernel)(Ps...), const EmuDims* dims, const EmuArg* args, size_t n,
                  char* err, size_t err_len) {
    if (n != sizeof...(Ps)) {
        return report(ERR_BAD_ARGS,
                      std::string(name) + " takes " + std::to_string(sizeof...(Ps)) + " arguments, got " +
                          std::to_string(n),
                      err, err_len);
    }
    try {
        std::tuple<Ps...> unpacked = unpack<Ps...>(args, std::index_sequence_for<Ps...>{});
        std::function<void()> body = [&]() { std::apply(kernel, unpacked); };
        return run_grid(name, dims, body, err, err_len);
    } catch (const BadArgs& e) {
        return report(ERR_BAD_ARGS, std::string(name) + ": " + e.msg, err, err_len);
    }
}

/// A registered kernel's packed launcher.
using LaunchFn = int (*)(const char*, const EmuDims*, const EmuArg*, size_t, char*, size_t);

/// The packed launcher of kernel `K` (one instantiation per kernel, generated).
template <auto K>
struct Launcher {
    static int launch(const char* name, const EmuDims* dims, const EmuArg* args, size_t n, char* err,
                      size_t err_len) {
        return launch_packed(name, K, dims, args, n, err, err_len);
    }
};

/// Name → launcher table, filled by the generated `emu_register_all`.
struct Registry {
    void add(const char* name, LaunchFn fn);
};

}  // namespace emu

#define EMU_REGISTER(reg, kernel) (reg).add(#kernel, &::emu::Launcher<&kernel>::launch)
