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

/// The text of kernel `name`'s body in `src`: from its `KERNEL` line to the
/// next `KERNEL` line, without `//` comments.
fn kernel_body(src: &str, name: &str) -> String {
    let mut body = String::new();
    let mut inside = false;
    for line in src.lines() {
        let is_kernel = line.trim_start().starts_with("KERNEL ");
        if is_kernel {
            inside = kernel_names(line).first().is_some_and(|n| n == name);
        }
        if inside {
            body.push_str(line.split("//").next().unwrap_or(""));
            body.push('\n');
        }
    }
    body
}

/// A C++ expression for the static shared memory of a kernel body: the sum
/// of `sizeof(T) * (n)` over its `SHARED_ARRAY(T, name, n)`s (the emulator
/// checks it against what a launch declares).
fn static_shared_expr(body: &str) -> String {
    let mut terms = Vec::new();
    let mut rest = body;
    while let Some(at) = rest.find("SHARED_ARRAY(") {
        let args = &rest[at + "SHARED_ARRAY(".len()..];
        let (mut depth, mut end) = (1usize, args.len());
        for (i, c) in args.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let inner = &args[..end];
        let parts: Vec<&str> = inner.splitn(3, ',').map(str::trim).collect();
        if let [ty, _, n] = parts[..] {
            terms.push(format!("sizeof({ty}) * ({n})"));
        }
        rest = &args[end..];
    }
    if terms.is_empty() {
        "0".to_string()
    } else {
        terms.join(" + ")
    }
}

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
            let bytes = static_shared_expr(&kernel_body(&text, &name));
            let _ = writeln!(tu, "    EMU_REGISTER(reg, {stem:?}, {name}, {bytes});");
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
    build_libraries(&build, &manifest, &out);
}

/// Compiles the kernels and the runtime once (position-independent), then
/// archives them as this crate's static library (the `launch` API) and links
/// them with the driver API into `libcuda.so`, and the BLAS into
/// `libcublas.so`: the stand-ins that `driver::install` loads so cudarc, and
/// with it the engine's shipped CUDA backend, runs on the emulator.
fn build_libraries(build: &cc::Build, manifest: &Path, out: &Path) {
    let objects = build.compile_intermediates();
    let mut archive = cc::Build::new();
    archive.cpp(true).objects(&objects);
    archive.compile("diccae_kernel_emu");

    let driver_obj = cc::Build::new()
        .cpp(true)
        .std("c++17")
        .include(manifest.join("include"))
        .file(manifest.join("src/driver_api.cpp"))
        .file(manifest.join("src/blas_api.cpp"))
        .compile_intermediates();
    let find = |stem: &str| {
        driver_obj
            .iter()
            .find(|o| o.to_string_lossy().contains(stem))
            .cloned()
            .expect("compiled stand-in API object")
    };
    let (driver, blas) = (find("driver_api"), find("blas_api"));

    // In a directory of their own: cargo puts OUT_DIR (the static library's
    // link-search path) on the library path of `cargo test`, where a
    // `libcuda.so` would shadow the real driver in every test process.
    let dir = out.join("stand-in");
    fs::create_dir_all(&dir).expect("writable OUT_DIR");
    let exports = out.join("exports.map");
    fs::write(
        &exports,
        "{ global: cu*; cublas*; diccae_emu_*; local: *; };\n",
    )
    .expect("writable OUT_DIR");
    let compiler = build.get_compiler();
    let link = |name: &str, inputs: &[PathBuf]| {
        let target = dir.join(name);
        let status = compiler
            .to_command()
            .arg("-shared")
            .arg(format!("-Wl,-soname,{name}"))
            .arg(format!("-Wl,--version-script={}", exports.display()))
            .arg("-o")
            .arg(&target)
            .args(inputs)
            .arg("-lpthread")
            .status()
            .expect("runs the C++ compiler to link");
        assert!(status.success(), "linking {name} failed");
        target
    };
    let mut driver_inputs = objects.clone();
    driver_inputs.push(driver);
    let libcuda = link("libcuda.so", &driver_inputs);
    let libcublas = link("libcublas.so", &[blas, libcuda.clone()]);
    println!("cargo:rustc-env=DICCAE_EMU_LIBCUDA={}", libcuda.display());
    println!(
        "cargo:rustc-env=DICCAE_EMU_LIBCUBLAS={}",
        libcublas.display()
    );
    for f in ["src/driver_api.cpp", "src/blas_api.cpp"] {
        println!("cargo:rerun-if-changed={}", manifest.join(f).display());
    }
}
