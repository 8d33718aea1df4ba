//! Compiles every `../kernels/*.cu` (and this crate's `test_kernels/*.cu`)
//! as C++17 with `include/cuda_emu.h` force-included, plus one generated
//! launcher translation unit per file that registers each `KERNEL` entry
//! point by name, and the runtime. Needs a C++17 compiler (g++ or clang++),
//! never nvcc.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// The `.cu` files of a directory, sorted.
fn cu_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "cu"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

// `kernel_names`: the entry points of a kernel source (shared with the
// engine's build.rs).
include!("../kernels/entry_points.rs");

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let kernels = manifest.join("../kernels");
    let include = manifest.join("include");
    let header = include.join("cuda_emu.h");

    let mut sources = cu_files(&kernels);
    sources.extend(cu_files(&manifest.join("test_kernels")));

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .include(&include)
        .include(&kernels)
        .flag("-include")
        .flag(header.to_str().expect("UTF-8 path"))
        .flag_if_supported("-fno-strict-aliasing")
        .file(manifest.join("src/runtime.cpp"));

    let mut all = String::from("#include \"emu_launch.h\"\n");
    let mut calls = String::new();
    for (i, src) in sources.iter().enumerate() {
        let text = fs::read_to_string(src).expect("readable kernel source");
        let stem = src
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("kernels");
        let func = format!(
            "emu_register_{i}_{}",
            stem.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        let mut tu = format!(
            "#include \"{}\"\n#include \"emu_launch.h\"\n",
            src.display()
        );
        let _ = writeln!(tu, "void {func}(emu::Registry& reg) {{");
        for name in kernel_names(&text) {
            let _ = writeln!(tu, "    EMU_REGISTER(reg, {name});");
        }
        tu.push_str("}\n");
        let tu_path = out.join(format!("{func}.cpp"));
        fs::write(&tu_path, tu).expect("writable OUT_DIR");
        build.file(&tu_path);
        let _ = writeln!(all, "void {func}(emu::Registry& reg);");
        let _ = writeln!(calls, "    {func}(reg);");
    }
    let _ = write!(
        all,
        "void emu_register_all(emu::Registry& reg) {{\n{calls}}}\n"
    );
    let reg_path = out.join("emu_register_all.cpp");
    fs::write(&reg_path, all).expect("writable OUT_DIR");
    build.file(&reg_path);

    // Every file (kernels, shared .cuh headers, emulation headers) and the
    // directories themselves, so added or removed files rebuild too.
    for dir in ["../kernels", "test_kernels", "include"] {
        let dir = manifest.join(dir);
        println!("cargo:rerun-if-changed={}", dir.display());
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                println!("cargo:rerun-if-changed={}", e.path().display());
            }
        }
    }
    println!(
        "cargo:rerun-if-changed={}",
        manifest.join("src/runtime.cpp").display()
    );
    build.compile("diccae_kernel_emu");
}
