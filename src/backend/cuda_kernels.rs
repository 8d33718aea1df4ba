//! The compiled CUDA kernels, embedded by build.rs when it found nvcc.
//!
//! `kernels/*.cu` are compiled at build time into one fatbin per file (SASS
//! for sm_80/86/89/90 and compute_80 PTX). A build without nvcc has none;
//! [`kernel_fatbins`] is then empty and [`missing_kernels_hint`] says how to
//! get them.

#[cfg(diccae_kernels_built)]
include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

/// Whether this build embeds the CUDA kernels.
pub const KERNELS_BUILT: bool = cfg!(diccae_kernels_built);

/// The embedded fatbins as (file stem, image) pairs, e.g. `("infonce", ..)`;
/// empty when the kernels were not built.
pub fn kernel_fatbins() -> &'static [(&'static str, &'static [u8])] {
    #[cfg(diccae_kernels_built)]
    {
        KERNEL_FATBINS
    }
    #[cfg(not(diccae_kernels_built))]
    {
        &[]
    }
}

/// The fatbin of one kernel file, if built.
pub fn kernel_fatbin(stem: &str) -> Option<&'static [u8]> {
    kernel_fatbins()
        .iter()
        .find(|(s, _)| *s == stem)
        .map(|(_, image)| *image)
}

/// One line telling a user how to build the kernels into the binary.
pub fn missing_kernels_hint() -> &'static str {
    "the CUDA kernels were not built into this binary: install nvcc (e.g. `python3 -m pip install \
     nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-runtime==13.0.96 \
     nvidia-nvvm==13.0.88` in a virtual environment, or a CUDA toolkit), make it findable \
     (NVCC, CUDA_HOME, PATH or VIRTUAL_ENV) and rebuild"
}
