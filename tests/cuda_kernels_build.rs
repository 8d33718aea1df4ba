//! What build.rs embedded: with nvcc, a non-empty fatbin for every kernel
//! file; without it, nothing, and a hint that says how to build them.

use diccae_engine::backend::cuda_kernels::{
    KERNELS_BUILT, kernel_fatbin, kernel_fatbins, missing_kernels_hint,
};

#[test]
fn embedded_kernels_match_the_build() {
    let files = [
        "adamw",
        "attention",
        "cgra",
        "class_align",
        "core",
        "cross_entropy",
        "elementwise",
        "infonce",
        "kmeans",
        "l2norm",
        "layernorm",
        "reduce",
        "softmax",
        "tokens",
    ];
    if KERNELS_BUILT {
        for f in files {
            let image = kernel_fatbin(f).unwrap_or_else(|| panic!("no fatbin for {f}"));
            // A fatbin starts with its magic number 0xBA55ED50 (little-endian).
            assert_eq!(&image[..4], &[0x50, 0xed, 0x55, 0xba], "{f} is a fatbin");
        }
        assert_eq!(kernel_fatbins().len(), files.len());
    } else {
        assert!(kernel_fatbins().is_empty());
        assert!(missing_kernels_hint().contains("nvcc"));
    }
}
