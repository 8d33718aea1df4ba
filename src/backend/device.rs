//! Device selection: which backend a command runs on (`--device`).
//!
//! Always compiled. In a build without the `cuda` feature every CUDA choice
//! resolves to a one-line error saying how to rebuild; in a `cuda` build the
//! GPU is opened first, so a missing driver or GPU is named exactly.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

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

/// A device choice resolved to the device a command runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The device the command uses (never [`Device::Auto`]).
    pub device: Device,
    /// One line for the user when the choice was changed (`auto` falling
    /// back to the CPU), to print on stderr.
    pub notice: Option<String>,
}

/// The `--device` help text (what each value does).
pub const DEVICE_HELP: &str = "Where the computation runs: `cpu` (the default) uses the CPU \
    backend on every core. `cuda` or `cuda:N` uses GPU N (0 by default); it needs a binary built \
    with `--features cuda` and an NVIDIA driver, and stops with a one-line error naming what is \
    missing (the CUDA backend does not run training yet, so today it always stops and says which \
    kernel families are not wired). `auto` uses the first GPU when it can, otherwise the CPU, \
    with a one-line notice on stderr.";

/// Why CUDA cannot be used for GPU `ordinal`, as the detail of a `cuda`
/// backend error.
fn cuda_unavailable(ordinal: usize) -> String {
    #[cfg(feature = "cuda")]
    {
        use crate::backend::cuda::{CudaBackend, UNWIRED_FAMILIES};
        match CudaBackend::open(ordinal) {
            Err(Error::Backend { detail, .. }) => detail,
            Err(e) => e.to_string(),
            Ok(gpu) => format!(
                "{} opened, but the CUDA backend cannot train yet: the {} kernel families are \
                 not wired to CUDA",
                gpu.describe(),
                UNWIRED_FAMILIES.join(", ")
            ),
        }
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = ordinal;
        "this binary was built without CUDA support: rebuild with `cargo build --release \
         --features cuda` (needs nvcc: a CUDA toolkit, or the pip toolkit named in the README)"
            .to_string()
    }
}

/// Resolves `device` for a command: the CPU as is; a GPU only when the CUDA
/// backend can run the command (otherwise a one-line `cuda` backend error);
/// `auto` to the GPU in that case, else to the CPU with a notice.
pub fn resolve(device: Device) -> Result<Resolved> {
    match device {
        Device::Cpu => Ok(Resolved {
            device,
            notice: None,
        }),
        Device::Cuda(n) => Err(Error::Backend {
            backend: "cuda".to_string(),
            detail: cuda_unavailable(n),
        }),
        Device::Auto => Ok(Resolved {
            device: Device::Cpu,
            notice: Some(format!(
                "note: --device auto: {}; running on the CPU",
                cuda_unavailable(0)
            )),
        }),
    }
}

/// One line on CUDA support in this build (for `diccae-engine info`).
pub fn cuda_support() -> String {
    #[cfg(feature = "cuda")]
    {
        format!(
            "CUDA backend compiled in: BackendCore, matmul (cuBLAS), infonce, class_align, \
             kmeans and attention are wired; {} are not yet, so training runs on the CPU",
            crate::backend::cuda::UNWIRED_FAMILIES.join(", ")
        )
    }
    #[cfg(not(feature = "cuda"))]
    {
        "CUDA backend not compiled in (rebuild with `--features cuda`)".to_string()
    }
}
