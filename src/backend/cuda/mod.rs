//! The CUDA backend (feature `cuda`): buffers are `CudaSlice<f32>` resident
//! on one GPU, kernels are the fatbins build.rs compiled from `kernels/*.cu`,
//! matrix products go through cuBLAS.
//!
//! Every library (the driver, cuBLAS) is loaded at run time, so a `cuda`
//! build runs on a machine without CUDA as long as nobody asks for a GPU;
//! [`CudaBackend::open`] checks for each library before touching it and
//! returns an [`Error`] naming what is missing. Kernel modules are loaded on
//! first use, one per `.cu` file, and cached with their functions.
//!
//! All work goes to the context's default stream, in order; the only host
//! synchronisations are downloads, the scalar of `sum_squares` and the
//! status words kernels raise on invalid labels, targets or weights.
//!
//! Every kernel family of [`crate::ops::Backend`] is wired (one file per
//! family), so `CudaBackend` is a complete backend.

pub(crate) mod reduce;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::cublas::CudaBlas;
use cudarc::driver::sys::{CUdevice_attribute, CUfunction_attribute};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};

use crate::backend::BackendCore;
use crate::backend::cuda_kernels::{
    EMULATED_DEVICE, KERNELS_BUILT, KernelId, ids, kernel_image, missing_kernels_hint,
};
use crate::error::{Error, Result};

/// Shared memory (static plus dynamic) a kernel may use without opting in.
const DEFAULT_DYNAMIC_SMEM: usize = 48 * 1024;

/// One GPU: its context and stream, a cuBLAS handle and the kernel modules
/// loaded so far. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct CudaBackend {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    label: String,
    /// Loaded modules by kernel file stem.
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    /// Loaded functions by kernel name.
    functions: Mutex<HashMap<&'static str, CudaFunction>>,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("device", &self.inner.label)
            .finish_non_exhaustive()
    }
}

/// A `cuda` backend error.
fn fail(detail: impl Into<String>) -> Error {
    Error::Backend {
        backend: "cuda".to_string(),
        detail: detail.into(),
    }
}

thread_local! {
    /// Set while this thread runs [`catch_unwind_silently`].
    static SILENCED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, catching a panic without printing it. The panic hook is
/// wrapped once for the process, and only the thread inside this call is
/// silenced: swapping the hook for the call would race with other threads
/// (their panics lost, or the hook restored wrongly).
fn catch_unwind_silently<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    static WRAPPED: std::sync::Once = std::sync::Once::new();
    WRAPPED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !SILENCED.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    SILENCED.with(|s| s.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    SILENCED.with(|s| s.set(false));
    result
}

/// The message of a caught panic.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

impl CudaBackend {
    /// Opens GPU `ordinal`. Fails with a one-line [`Error::Backend`] when the
    /// CUDA driver library is missing or fails, there is no such GPU, the
    /// kernels were not built into this binary, the GPU is older than sm_80,
    /// or cuBLAS cannot be loaded. Never panics.
    ///
    /// The emulated device of `diccae-kernel-emu` (a stand-in driver that
    /// tests load) opens without built kernels: it compiles their sources.
    pub fn open(ordinal: usize) -> Result<Self> {
        // cudarc panics when a symbol it needs is missing from a library
        // that loaded (e.g. a driver older than the bindings). The presence
        // checks in `open_checked` avoid the common cases; this is the last
        // resort, with the panic message kept and the hook silenced so the
        // caller's error stays one line.
        let opened = catch_unwind_silently(|| Self::open_checked(ordinal));
        opened.unwrap_or_else(|p| {
            Err(fail(format!(
                "opening cuda:{ordinal} failed inside the CUDA bindings: {}",
                panic_message(p.as_ref())
            )))
        })
    }

    fn open_checked(ordinal: usize) -> Result<Self> {
        // SAFETY: only tries to load the library (libloading), calls nothing.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(fail(
                "the CUDA driver library (libcuda.so) was not found: this machine has no NVIDIA \
                 driver, or it is not on the library path",
            ));
        }
        let count = CudaContext::device_count()
            .map_err(|e| fail(format!("the CUDA driver failed to initialise: {e}")))?;
        let count = usize::try_from(count).unwrap_or(0);
        if count == 0 {
            return Err(fail("the CUDA driver found no GPU"));
        }
        if ordinal >= count {
            return Err(fail(format!(
                "cuda:{ordinal} does not exist: {count} GPU(s) found (cuda:0..cuda:{})",
                count - 1
            )));
        }
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| fail(format!("cannot open cuda:{ordinal}: {e}")))?;
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".to_string());
        if !KERNELS_BUILT && !name.starts_with(EMULATED_DEVICE) {
            return Err(fail(missing_kernels_hint()));
        }
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| fail(format!("cuda:{ordinal}: {e}")))?;
        if major < 8 {
            return Err(fail(format!(
                "cuda:{ordinal} ({name}) has compute capability {major}.{minor}; the kernels need \
                 8.0 or newer"
            )));
        }
        // SAFETY: as above, a load attempt only.
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            return Err(fail(
                "cuBLAS (libcublas.so.13) was not found: install CUDA 13's cuBLAS (e.g. `pip \
                 install nvidia-cublas` and add its lib directory to LD_LIBRARY_PATH)",
            ));
        }
        // SAFETY: every buffer of this backend is allocated, used and freed
        // on the one stream below, in order, so cross-stream events (two
        // per allocation) would only cost time.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone())
            .map_err(|e| fail(format!("cuBLAS failed to start on cuda:{ordinal}: {e}")))?;
        Ok(CudaBackend {
            inner: Arc::new(Inner {
                label: format!("cuda:{ordinal} ({name}, sm_{major}{minor})"),
                ctx,
                stream,
                blas,
                modules: Mutex::new(HashMap::new()),
                functions: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Loads the module of every kernel file built into this binary, so a
    /// driver that cannot load them fails here, before a command starts,
    /// rather than at a kernel's first launch.
    pub fn load_kernels(&self) -> Result<()> {
        for &(stem, _) in ids::KERNEL_FILES {
            self.module(stem)?;
        }
        Ok(())
    }

    /// The device's name and compute capability, e.g. `cuda:0 (NVIDIA H100, sm_90)`.
    pub fn describe(&self) -> &str {
        &self.inner.label
    }

    /// Waits until every queued kernel and copy has finished (for timing).
    pub fn synchronize(&self) -> Result<()> {
        self.inner
            .stream
            .synchronize()
            .map_err(|e| fail(format!("synchronize: {e}")))
    }

    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.inner.stream
    }

    /// The cuBLAS handle, with this GPU's context made current on the
    /// calling thread first (cuBLAS, unlike the stream's launches, does not
    /// bind it, and a training step may run on any thread).
    pub(crate) fn blas(&self) -> Result<&CudaBlas> {
        self.inner.ctx.bind_to_thread().map_err(|e| {
            fail(format!(
                "cannot make {}'s context current: {e}",
                self.inner.label
            ))
        })?;
        Ok(&self.inner.blas)
    }

    /// The kernel `id` (e.g. `ids::infonce::INFONCE_LSE_F32`), loading its
    /// file's module on first use.
    pub(crate) fn function(&self, id: KernelId) -> Result<CudaFunction> {
        let (stem, name) = (id.file, id.name);
        let mut functions = self
            .inner
            .functions
            .lock()
            .map_err(|_| fail("the kernel cache was poisoned by a panic"))?;
        if let Some(f) = functions.get(name) {
            return Ok(f.clone());
        }
        let module = self.module(stem)?;
        let f = module
            .load_function(name)
            .map_err(|e| fail(format!("kernel {name} is not in {stem}.cu's module: {e}")))?;
        functions.insert(name, f.clone());
        Ok(f)
    }

    fn module(&self, stem: &'static str) -> Result<Arc<CudaModule>> {
        let mut modules = self
            .inner
            .modules
            .lock()
            .map_err(|_| fail("the module cache was poisoned by a panic"))?;
        if let Some(m) = modules.get(stem) {
            return Ok(m.clone());
        }
        let image = kernel_image(stem)
            .ok_or_else(|| fail(format!("kernels/{stem}.cu is not built into this binary")))?;
        let module = self
            .inner
            .ctx
            .load_module(cudarc::nvrtc::Ptx::from_binary(image))
            .map_err(|e| {
                fail(format!(
                    "loading the {stem} kernels on {} failed: {e} (they were built with CUDA \
                     13.0: the driver must be r580 or newer)",
                    self.inner.label
                ))
            })?;
        modules.insert(stem, module.clone());
        Ok(module)
    }

    /// A launch configuration of `grid` blocks of `threads` threads with
    /// `smem` bytes of dynamic shared memory, after allowing `f` that much
    /// shared memory when it is above the default 48 KiB.
    pub(crate) fn config(
        &self,
        f: &CudaFunction,
        kernel: &str,
        grid: (usize, usize, usize),
        threads: u32,
        smem: usize,
    ) -> Result<LaunchConfig> {
        let dim = |v: usize, max: usize, axis: &str| -> Result<u32> {
            if v == 0 || v > max {
                return Err(fail(format!(
                    "{kernel}: grid {axis} of {v} blocks is outside 1..={max}"
                )));
            }
            Ok(v as u32)
        };
        let grid_dim = (
            dim(grid.0, i32::MAX as usize, "x")?,
            dim(grid.1, 65_535, "y")?,
            dim(grid.2, 65_535, "z")?,
        );
        // The 48 KiB default counts the kernel's static shared memory and the
        // dynamic part together: above it, the function must be allowed the
        // dynamic part explicitly, up to the opt-in limit less the static part.
        let err = |e| fail(format!("{kernel}: {e}"));
        let fixed = usize::try_from(f.shared_size_bytes().map_err(err)?).unwrap_or(0);
        if fixed + smem > DEFAULT_DYNAMIC_SMEM {
            let optin = self
                .inner
                .ctx
                .attribute(
                    CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
                )
                .map_err(err)?;
            let room = usize::try_from(optin).unwrap_or(0).saturating_sub(fixed);
            if smem > room {
                return Err(fail(format!(
                    "{kernel} needs {smem} bytes of dynamic shared memory besides {fixed} static, \
                     {} offers {room}: the problem is too wide for this kernel",
                    self.inner.label
                )));
            }
            f.set_attribute(
                CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                smem as i32,
            )
            .map_err(err)?;
        }
        Ok(LaunchConfig {
            grid_dim,
            block_dim: (threads, 1, 1),
            shared_mem_bytes: smem as u32,
        })
    }

    /// A zeroed i32 status buffer of `len` words for kernels that flag bad input.
    pub(crate) fn status(&self, len: usize) -> Result<CudaSlice<i32>> {
        self.stream()
            .alloc_zeros::<i32>(len)
            .map_err(|e| fail(format!("allocating a status word: {e}")))
    }

    /// Reads a status buffer back (a synchronisation).
    pub(crate) fn read_status(&self, status: &CudaSlice<i32>) -> Result<Vec<i32>> {
        self.stream()
            .clone_dtoh(status)
            .map_err(|e| fail(format!("reading a kernel status: {e}")))
    }

    /// The index a kernel flagged in a status word (`flag_first` in
    /// kernels/common.cuh: the first bad index), if any.
    pub(crate) fn flagged(word: i32) -> Option<usize> {
        (word > 0).then(|| (i32::MAX - word) as usize)
    }

    /// Reads element `i` of `buf` (for an error message).
    pub(crate) fn element(&self, buf: &CudaSlice<f32>, i: usize) -> Result<f32> {
        let host = self
            .stream()
            .clone_dtoh(&buf.slice(i..i + 1))
            .map_err(|e| fail(format!("reading back one element: {e}")))?;
        Ok(host[0])
    }
}

/// Maps a driver or cuBLAS error of `what` to an [`Error`].
pub(crate) fn driver_err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> Error + '_ {
    move |e| fail(format!("{what}: {e}"))
}

/// Maps a cuBLAS error of `what` to an [`Error`].
pub(crate) fn blas_err(what: &str) -> impl Fn(cudarc::cublas::result::CublasError) -> Error + '_ {
    move |e| fail(format!("{what}: cuBLAS {e:?}"))
}

/// Checks that `buf` holds at least `need` elements.
pub(crate) fn check_len<T>(
    op: &'static str,
    what: &str,
    buf: &CudaSlice<T>,
    need: usize,
) -> Result<()> {
    if buf.len() < need {
        return Err(Error::shape(
            op,
            format!("{what} holds {} elements, needs {need}", buf.len()),
        ));
    }
    Ok(())
}

/// `v` as a kernel's `int` argument.
pub(crate) fn int(op: &'static str, what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| {
        Error::invalid(
            op,
            format!("{what} = {v} is beyond the kernels' 32-bit range"),
        )
    })
}

/// Fails unless `buf` holds exactly `need` elements (as the CPU backend's
/// elementwise and normalisation kernels require).
pub(crate) fn check_exact<T>(
    op: &'static str,
    what: &str,
    buf: &CudaSlice<T>,
    need: usize,
) -> Result<()> {
    if buf.len() != need {
        return Err(Error::shape(
            op,
            format!("{what} holds {} elements, expected {need}", buf.len()),
        ));
    }
    Ok(())
}

/// Threads per block of every kernel launched by the families wired here.
pub(crate) const BLOCK: u32 = 256;

/// Blocks of [`BLOCK`] threads for a grid-stride ("flat") kernel over `n`
/// elements: one element per thread up to 65 535 blocks, then the loop.
pub(crate) fn flat_grid(n: usize) -> (usize, usize, usize) {
    (n.div_ceil(BLOCK as usize).clamp(1, 65_535), 1, 1)
}

/// Blocks for a "row-warp" kernel: one warp per row, 8 rows per block.
pub(crate) fn row_warp_grid(rows: usize) -> (usize, usize, usize) {
    (rows.div_ceil(8).max(1), 1, 1)
}

/// Row chunks of the column-sum kernels (`sum_rows_f32`,
/// `layer_norm_bwd_params_f32`): one chunk up to 256 rows, otherwise at most
/// 1024 chunks of at least 64 rows (so the grid's y extent stays small and
/// the second pass is one launch). Depends only on `rows`, so results are
/// reproducible.
pub(crate) fn rows_per_split(rows: usize) -> usize {
    if rows <= 256 {
        rows.max(1)
    } else {
        rows.div_ceil(1024).max(64)
    }
}

impl BackendCore for CudaBackend {
    type Buf = CudaSlice<f32>;

    fn name(&self) -> String {
        self.inner.label.clone()
    }

    fn zeros(&self, len: usize) -> Result<CudaSlice<f32>> {
        self.stream()
            .alloc_zeros::<f32>(len)
            .map_err(driver_err("allocating device memory"))
    }

    fn upload(&self, host: &[f32]) -> Result<CudaSlice<f32>> {
        self.stream()
            .clone_htod(host)
            .map_err(driver_err("copying to the device"))
    }

    fn download(&self, buf: &CudaSlice<f32>) -> Result<Vec<f32>> {
        self.stream()
            .clone_dtoh(buf)
            .map_err(driver_err("copying from the device"))
    }

    fn len(&self, buf: &CudaSlice<f32>) -> usize {
        buf.len()
    }

    fn duplicate(&self, buf: &CudaSlice<f32>) -> Result<CudaSlice<f32>> {
        self.stream()
            .clone_dtod(buf)
            .map_err(driver_err("copying on the device"))
    }

    fn fill(&self, buf: &mut CudaSlice<f32>, value: f32) -> Result<()> {
        const K: KernelId = ids::core::FILL_F32;
        if buf.is_empty() {
            return Ok(());
        }
        let n = int(K.name, "length", buf.len())?;
        let f = self.function(K)?;
        let cfg = self.config(&f, K.name, flat_grid(buf.len()), BLOCK, 0)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(&n).arg(&value).arg(buf);
        // SAFETY: the kernel writes buf[0..n) with n = buf.len().
        unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        Ok(())
    }

    fn axpy(&self, alpha: f32, x: &CudaSlice<f32>, y: &mut CudaSlice<f32>) -> Result<()> {
        const K: KernelId = ids::core::AXPY_F32;
        if x.len() != y.len() {
            return Err(Error::shape(
                "axpy",
                format!("x has {} elements, y has {}", x.len(), y.len()),
            ));
        }
        if y.is_empty() {
            return Ok(());
        }
        let n = int(K.name, "length", y.len())?;
        let f = self.function(K)?;
        let cfg = self.config(&f, K.name, flat_grid(y.len()), BLOCK, 0)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(&alpha).arg(x).arg(&n).arg(y);
        // SAFETY: x and y hold n floats each (checked above).
        unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        Ok(())
    }

    fn scale(&self, alpha: f32, x: &mut CudaSlice<f32>) -> Result<()> {
        const K: KernelId = ids::core::SCALE_F32;
        if x.is_empty() {
            return Ok(());
        }
        let n = int(K.name, "length", x.len())?;
        let f = self.function(K)?;
        let cfg = self.config(&f, K.name, flat_grid(x.len()), BLOCK, 0)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(&alpha).arg(&n).arg(x);
        // SAFETY: the kernel scales x[0..n) with n = x.len().
        unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        Ok(())
    }

    fn sum_squares(&self, x: &CudaSlice<f32>) -> Result<f64> {
        const K1: KernelId = ids::reduce::SUM_SQUARES_PARTIAL_F32;
        const K2: KernelId = ids::reduce::SUM_SQUARES_FINAL_F32;
        if x.is_empty() {
            return Ok(0.0);
        }
        let n = int(K1.name, "length", x.len())?;
        // G blocks of partials (1 ≤ G ≤ 1024), each an (hi, lo) f32 pair.
        let g = x.len().div_ceil(2048).clamp(1, 1024);
        let mut partials = self.zeros(2 * g)?;
        let mut out = self.zeros(2)?;
        let f = self.function(K1)?;
        let cfg = self.config(&f, K1.name, (g, 1, 1), BLOCK, 0)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(x).arg(&n).arg(&mut partials);
        // SAFETY: x holds n floats; partials holds the 2·G floats the G
        // blocks write.
        unsafe { l.launch(cfg) }.map_err(driver_err(K1.name))?;
        let count = g as i32;
        let f = self.function(K2)?;
        let cfg = self.config(&f, K2.name, (1, 1, 1), BLOCK, 0)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(&partials).arg(&count).arg(&mut out);
        // SAFETY: partials holds 2·count floats, out 2.
        unsafe { l.launch(cfg) }.map_err(driver_err(K2.name))?;
        let host = self.download(&out)?;
        // The kernels sum in f64 and return it as an f32 pair (hi + lo).
        Ok(f64::from(host[0]) + f64::from(host[1]))
    }
}
