//! Device selection: which backend a command runs on (`--device`).
//!
//! Always compiled. In a build without the `cuda` feature every CUDA choice
//! resolves to a one-line error saying how to rebuild; in a `cuda` build the
//! GPU is opened (and its kernels loaded) before a command does anything, so
//! a missing driver or GPU is named exactly and nothing is written.
//!
//! [`resolve`] returns the opened backend as an [`Opened`]; commands run
//! their generic work on it through [`Opened::run`], the one place that
//! dispatches from a device to a concrete [`Backend`].

use std::fmt;
use std::str::FromStr;

use crate::backend::cpu::CpuBackend;
use crate::error::{Error, Result};
use crate::ops::Backend;

/// A device as named on the command line: `cpu`, `cuda`, `cuda:N` or `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// The CPU backend.
    Cpu,
    /// GPU `N` through the CUDA backend (`cuda` is `cuda:0`).
    Cuda(usize),
    /// The first GPU when it can be used, otherwise the CPU (with a notice).
    Auto,
}

impl FromStr for Device {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            "auto" => Ok(Device::Auto),
            _ => t
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .map(Device::Cuda)
                .ok_or_else(|| {
                    Error::invalid(
                        "--device",
                        format!("{s:?} is not a device: use cpu, cuda, cuda:N or auto"),
                    )
                }),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
            Device::Auto => write!(f, "auto"),
        }
    }
}

/// A backend opened for a command: the CPU, or a GPU of the CUDA backend.
#[derive(Clone, Debug)]
pub enum Opened {
    /// The CPU backend.
    Cpu(CpuBackend),
    /// An opened GPU (its kernels already loaded).
    #[cfg(feature = "cuda")]
    Cuda(crate::backend::cuda::CudaBackend),
}

/// Work generic over the backend, run by [`Opened::run`] on the concrete
/// backend a command resolved to.
pub trait OnBackend {
    /// What the work returns.
    type Output;
    /// Runs the work on `backend`.
    fn run<B: Backend>(self, backend: B) -> Result<Self::Output>;
}

impl Opened {
    /// The CPU backend on every core.
    pub fn cpu() -> Self {
        Opened::Cpu(CpuBackend::new())
    }

    /// Runs `job` on this backend.
    pub fn run<J: OnBackend>(&self, job: J) -> Result<J::Output> {
        match self {
            Opened::Cpu(b) => job.run(b.clone()),
            #[cfg(feature = "cuda")]
            Opened::Cuda(b) => job.run(b.clone()),
        }
    }

    /// The backend's name, e.g. `cpu` or `cuda:0 (NVIDIA H100, sm_90)`.
    pub fn name(&self) -> String {
        use crate::backend::BackendCore;
        match self {
            Opened::Cpu(b) => b.name(),
            #[cfg(feature = "cuda")]
            Opened::Cuda(b) => b.name(),
        }
    }
}

/// A device choice resolved to the device a command runs on, opened.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The device the command uses (never [`Device::Auto`]).
    pub device: Device,
    /// The opened backend of `device`.
    pub backend: Opened,
    /// One line for the user when the choice was changed (`auto` falling
    /// back to the CPU), to print on stderr.
    pub notice: Option<String>,
}

/// The `--device` help text (what each value does).
pub const DEVICE_HELP: &str = "Where the computation runs: `cpu` (the default) uses the CPU \
    backend on every core. `cuda` or `cuda:N` uses GPU N (0 by default) for the whole training \
    step (data batches, parameters, optimiser state, prototypes, W and k-means on the device); it \
    needs a binary built with `--features cuda` and an NVIDIA driver (r580 or newer), and stops \
    with a one-line error naming what is missing before anything is written. `auto` uses the \
    first GPU when it can, otherwise the CPU, with a one-line notice on stderr.";

/// Opens GPU `ordinal` and loads its kernels, or says (as the detail of a
/// `cuda` backend error) why it cannot be used.
fn open_cuda(ordinal: usize) -> std::result::Result<Opened, String> {
    #[cfg(feature = "cuda")]
    {
        use crate::backend::cuda::CudaBackend;
        let opened = CudaBackend::open(ordinal).and_then(|gpu| gpu.load_kernels().map(|()| gpu));
        match opened {
            Ok(gpu) => Ok(Opened::Cuda(gpu)),
            Err(Error::Backend { detail, .. }) => Err(detail),
            Err(e) => Err(e.to_string()),
        }
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = ordinal;
        Err(
            "this binary was built without CUDA support: rebuild with `cargo build --release \
             --features cuda` (needs nvcc: a CUDA toolkit, or the pip toolkit named in the README)"
                .to_string(),
        )
    }
}

/// Resolves `device` for a command and opens it: the CPU as is; a GPU when
/// it opens (otherwise a one-line `cuda` backend error); `auto` to GPU 0
/// when it opens, else to the CPU with a notice.
pub fn resolve(device: Device) -> Result<Resolved> {
    match device {
        Device::Cpu => Ok(Resolved {
            device,
            backend: Opened::cpu(),
            notice: None,
        }),
        Device::Cuda(n) => match open_cuda(n) {
            Ok(backend) => Ok(Resolved {
                device,
                backend,
                notice: None,
            }),
            Err(detail) => Err(Error::Backend {
                backend: "cuda".to_string(),
                detail,
            }),
        },
        Device::Auto => match open_cuda(0) {
            Ok(backend) => Ok(Resolved {
                device: Device::Cuda(0),
                backend,
                notice: None,
            }),
            Err(detail) => Ok(Resolved {
                device: Device::Cpu,
                backend: Opened::cpu(),
                notice: Some(format!("note: --device auto: {detail}; running on the CPU")),
            }),
        },
    }
}

/// One line on CUDA support in this build (for `diccae-engine info`).
pub fn cuda_support() -> String {
    if cfg!(feature = "cuda") {
        "CUDA backend compiled in: every kernel family is wired; `--device cuda` runs training, \
         evaluation and ablation on the GPU"
            .to_string()
    } else {
        "CUDA backend not compiled in (rebuild with `--features cuda`)".to_string()
    }
}
