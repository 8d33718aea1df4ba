//! Host emulation of diccae-engine's CUDA kernels.
//!
//! build.rs compiles every `kernels/*.cu` as C++17 with `include/cuda_emu.h`
//! force-included: `threadIdx`/`blockIdx`/`blockDim`/`gridDim`, per-block
//! `__shared__` memory (static and dynamic), `__syncthreads` as a real block
//! barrier, warp shuffles and votes with a warp barrier, atomics and the math
//! intrinsics. A launch runs its blocks one after another and a block's
//! threads as fibers on the calling thread (launches are serialised by a
//! global lock). Each `KERNEL` entry point is registered by name; [`launch`]
//! calls it with type-checked arguments.
//!
//! Detected and returned as [`EmuError`] (never a hang or a crash):
//! - [`EmuErrorKind::OutOfBounds`]: an index outside a buffer the launch was
//!   given (kernels take buffers as `Buf<T>`, a checked view here and a plain
//!   pointer under nvcc), or outside dynamic / `SHARED_ARRAY` shared memory;
//! - [`EmuErrorKind::BarrierDivergence`]: a `__syncthreads` that some threads
//!   of the block skip (they exit, or wait at a different `__syncthreads`);
//! - [`EmuErrorKind::WarpDivergence`]: a warp operation whose mask names a
//!   lane that never joins it.
//!
//! Dynamic shared memory is filled with NaN bytes before each block, and the
//! fibers of odd blocks run in reverse order, so a missing barrier or a read
//! of unwritten shared memory shows up as a wrong result.

use std::ffi::{CStr, CString, c_char, c_void};
use std::fmt;

#[repr(C)]
struct RawArg {
    kind: u32,
    reserved: u32,
    ptr: *mut c_void,
    len: u64,
    bits: u64,
}

#[repr(C)]
struct RawDims {
    grid: [u32; 3],
    block: [u32; 3],
    shared_bytes: u64,
}

unsafe extern "C" {
    fn emu_launch(
        name: *const c_char,
        dims: *const RawDims,
        args: *const RawArg,
        nargs: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn emu_kernel_count() -> usize;
    fn emu_kernel_name(i: usize) -> *const c_char;
}

/// One kernel argument. Buffers become `Buf<const T>` (inputs) or `Buf<T>`
/// (outputs) of exactly the slice's length; scalars become `float` / `int`.
pub enum Arg<'a> {
    /// An `int` parameter.
    I32(i32),
    /// A `float` parameter.
    F32(f32),
    /// A read-only f32 buffer (`Buf<const float>`).
    In(&'a [f32]),
    /// A writable f32 buffer (`Buf<float>`, also accepted as `Buf<const float>`).
    Out(&'a mut [f32]),
    /// A read-only i32 buffer (`Buf<const int>`).
    InI32(&'a [i32]),
    /// A writable i32 buffer (`Buf<int>`).
    OutI32(&'a mut [i32]),
}

/// Launch geometry: grid and block extents and dynamic shared memory bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    /// Blocks in x, y, z.
    pub grid: [u32; 3],
    /// Threads per block in x, y, z.
    pub block: [u32; 3],
    /// Bytes of dynamic (`extern __shared__`) shared memory.
    pub shared_bytes: usize,
}

/// What went wrong in an emulated launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmuErrorKind {
    /// No kernel of that name was compiled.
    UnknownKernel,
    /// Wrong number or types of arguments.
    BadArguments,
    /// Invalid grid, block or shared-memory size.
    BadLaunch,
    /// An index outside a buffer or shared array.
    OutOfBounds,
    /// A `__syncthreads` not reached by every thread of the block at the same site.
    BarrierDivergence,
    /// A warp operation some lane of its mask never joins.
    WarpDivergence,
    /// A C++ exception escaped the kernel, or an unknown error code.
    Exception,
}

/// An emulated launch's failure: its kind and a message naming the kernel,
/// block, thread and (for barriers) source line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmuError {
    /// The kind of failure.
    pub kind: EmuErrorKind,
    /// Human-readable details.
    pub message: String,
}

impl fmt::Display for EmuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for EmuError {}

fn error(kind: EmuErrorKind, message: impl Into<String>) -> EmuError {
    EmuError {
        kind,
        message: message.into(),
    }
}

impl Arg<'_> {
    fn raw(&mut self) -> RawArg {
        let (kind, ptr, len, bits) = match self {
            Arg::F32(v) => (1, std::ptr::null_mut(), 0, u64::from(v.to_bits())),
            Arg::I32(v) => (2, std::ptr::null_mut(), 0, u64::from(*v as u32)),
            Arg::In(s) => (3, s.as_ptr() as *mut c_void, s.len(), 0),
            Arg::Out(s) => (4, s.as_mut_ptr() as *mut c_void, s.len(), 0),
            Arg::InI32(s) => (5, s.as_ptr() as *mut c_void, s.len(), 0),
            Arg::OutI32(s) => (6, s.as_mut_ptr() as *mut c_void, s.len(), 0),
        };
        RawArg {
            kind,
            reserved: 0,
            ptr,
            len: len as u64,
            bits,
        }
    }
}

/// Runs kernel `name` over `dims` with `args` (in the kernel's parameter
/// order). Returns when every block has finished, or the first error.
pub fn launch(name: &str, dims: Dims, args: &mut [Arg<'_>]) -> Result<(), EmuError> {
    let cname = CString::new(name)
        .map_err(|_| error(EmuErrorKind::UnknownKernel, "kernel name contains NUL"))?;
    let raw: Vec<RawArg> = args.iter_mut().map(Arg::raw).collect();
    let raw_dims = RawDims {
        grid: dims.grid,
        block: dims.block,
        shared_bytes: dims.shared_bytes as u64,
    };
    let mut msg = vec![0u8; 1024];
    // SAFETY: `raw` points into slices borrowed (mutably for outputs) for the
    // duration of the call, with their exact lengths; the emulator checks
    // every access against those lengths and writes at most `msg.len()`
    // bytes (NUL-terminated) into `msg`.
    let code = unsafe {
        emu_launch(
            cname.as_ptr(),
            &raw_dims,
            raw.as_ptr(),
            raw.len(),
            msg.as_mut_ptr().cast(),
            msg.len(),
        )
    };
    if code == 0 {
        return Ok(());
    }
    let message = CStr::from_bytes_until_nul(&msg)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default();
    let kind = match code {
        1 => EmuErrorKind::UnknownKernel,
        2 => EmuErrorKind::BadArguments,
        3 => EmuErrorKind::BadLaunch,
        4 => EmuErrorKind::OutOfBounds,
        5 => EmuErrorKind::BarrierDivergence,
        6 => EmuErrorKind::WarpDivergence,
        _ => EmuErrorKind::Exception,
    };
    Err(error(kind, message))
}

/// Names of every compiled kernel, sorted.
pub fn kernel_names() -> Vec<String> {
    // SAFETY: the registry lives for the program; names are NUL-terminated
    // strings owned by it, and an index past the end returns NULL.
    unsafe {
        (0..emu_kernel_count())
            .filter_map(|i| {
                let p = emu_kernel_name(i);
                (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
            })
            .collect()
    }
}

/// The stand-in CUDA driver and cuBLAS libraries built from this crate
/// (`src/driver_api.cpp`, `src/blas_api.cpp`, with every kernel compiled
/// in): loading them makes cudarc, and with it diccae-engine's shipped CUDA
/// backend, run on the emulator.
pub mod driver {
    use std::ffi::{CStr, CString, c_char, c_int, c_void};

    /// Path of the stand-in `libcuda.so`.
    pub const LIBCUDA: &str = env!("DICCAE_EMU_LIBCUDA");
    /// Path of the stand-in `libcublas.so`.
    pub const LIBCUBLAS: &str = env!("DICCAE_EMU_LIBCUBLAS");

    const RTLD_NOW: c_int = 2;
    const RTLD_GLOBAL: c_int = 0x100;
    const RTLD_NOLOAD: c_int = 4;

    unsafe extern "C" {
        fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
        fn dlerror() -> *const c_char;
        fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    }

    fn open(path: &str, flags: c_int) -> Result<*mut c_void, String> {
        let c = CString::new(path).map_err(|_| format!("{path}: path contains NUL"))?;
        // SAFETY: dlopen with a NUL-terminated path; the stand-ins' static
        // initialisers only build the kernel registry.
        let handle = unsafe { dlopen(c.as_ptr(), flags) };
        if handle.is_null() {
            // SAFETY: dlerror returns NULL or a NUL-terminated message.
            let msg = unsafe { dlerror() };
            let msg = if msg.is_null() {
                "unknown error".to_string()
            } else {
                unsafe { CStr::from_ptr(msg) }
                    .to_string_lossy()
                    .into_owned()
            };
            return Err(format!("cannot load {path}: {msg}"));
        }
        Ok(handle)
    }

    /// Loads the stand-ins into this process, so that a later
    /// `dlopen("libcuda.so")` or `dlopen("libcublas.so")` (cudarc's first
    /// candidate names) resolves to them by their soname. Fails if another
    /// `libcuda.so` was loaded first (a real driver): the process would then
    /// mix the two. Call it before anything opens a CUDA device; calling it
    /// again is harmless.
    pub fn install() -> Result<(), String> {
        for (path, name) in [(LIBCUDA, "libcuda.so"), (LIBCUBLAS, "libcublas.so")] {
            let ours = open(path, RTLD_NOW | RTLD_GLOBAL)?;
            let resolved = open(name, RTLD_NOW | RTLD_NOLOAD)?;
            if resolved != ours {
                return Err(format!(
                    "{name} resolves to another library than the stand-in {path}: a real CUDA \
                     library was loaded in this process first"
                ));
            }
        }
        Ok(())
    }

    /// Names of every kernel launched through the stand-in driver so far in
    /// this process, sorted (empty before [`install`]).
    pub fn launched_kernels() -> Result<Vec<String>, String> {
        let handle = open(LIBCUDA, RTLD_NOW | RTLD_NOLOAD)
            .map_err(|_| "the stand-in driver is not loaded".to_string())?;
        // SAFETY: the symbols are the stand-in's exported functions of these
        // exact signatures (driver_api.cpp); names they return live for the
        // process.
        unsafe {
            let count = dlsym(handle, c"diccae_emu_launched_count".as_ptr());
            let name = dlsym(handle, c"diccae_emu_launched_name".as_ptr());
            if count.is_null() || name.is_null() {
                return Err("the stand-in driver lacks its coverage symbols".to_string());
            }
            let count: extern "C" fn() -> usize = std::mem::transmute(count);
            let name: extern "C" fn(usize) -> *const c_char = std::mem::transmute(name);
            Ok((0..count())
                .filter_map(|i| {
                    let p = name(i);
                    (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
                })
                .collect())
        }
    }
}
