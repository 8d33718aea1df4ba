//! What build.rs produced: the typed kernel ids name exactly the kernels the
//! sources define (the emulator, which compiles the same sources, agrees);
//! with the kernels built, a non-empty fatbin for every kernel file; without
//! them, nothing, and a hint that says how to build them.

use std::collections::BTreeSet;

use diccae_engine::backend::cuda_kernels::{
    KERNELS_BUILT, ids, kernel_fatbin, kernel_fatbins, missing_kernels_hint,
};

#[test]
fn kernel_ids_name_every_kernel_the_sources_define() {
    let from_ids: BTreeSet<String> = ids::KERNEL_FILES
        .iter()
        .flat_map(|(_, names)| names.iter().map(|n| n.to_string()))
        .collect();
    let test_only: BTreeSet<&str> = ["emu_"].into_iter().collect();
    let from_emulator: BTreeSet<String> = diccae_kernel_emu::kernel_names()
        .into_iter()
        .filter(|n| !test_only.iter().any(|p| n.starts_with(p)))
        .collect();
    assert_eq!(from_ids, from_emulator);
    assert!(from_ids.len() >= 40, "{} kernels", from_ids.len());
    assert_eq!(ids::infonce::INFONCE_LSE_F32.file, "infonce");
    assert_eq!(ids::infonce::INFONCE_LSE_F32.name, "infonce_lse_f32");
}

#[test]
fn embedded_kernels_match_the_build() {
    if KERNELS_BUILT {
        for (f, _) in ids::KERNEL_FILES {
            let image = kernel_fatbin(f).unwrap_or_else(|| panic!("no fatbin for {f}"));
            // A fatbin starts with its magic number 0xBA55ED50 (little-endian).
            assert_eq!(&image[..4], &[0x50, 0xed, 0x55, 0xba], "{f} is a fatbin");
        }
        assert_eq!(kernel_fatbins().len(), ids::KERNEL_FILES.len());
    } else {
        assert!(kernel_fatbins().is_empty());
        assert!(missing_kernels_hint().contains("nvcc"));
    }
}
