//! Generates the typed kernel ids (`kernel_ids.rs`: one constant per
//! `KERNEL` entry point of `kernels/*.cu`, so a misspelt kernel is a compile
//! error), and, with the `cuda` feature, compiles the kernels when an nvcc
//! is available.
//!
//! nvcc is looked for in `$NVCC`, `$CUDA_HOME/bin/nvcc`, `PATH`, and the pip
//! toolkit (`nvidia-cuda-nvcc`) under `$VIRTUAL_ENV`, `./.venv` or the
//! site-packages of `python3`. Each `.cu` becomes one fatbin with SASS for
//! sm_80, sm_86, sm_89 and sm_90 plus compute_80 PTX (loadable by a CUDA 13.0
//! driver), written to `OUT_DIR` and embedded by `src/backend/cuda_kernels.rs`
//! behind `cfg(diccae_kernels_built)`.
//!
//! Without nvcc (or with `DICCAE_SKIP_KERNELS=1`) the build prints one
//! warning and goes on: the binary works on the CPU and says how to build
//! the kernels when asked for a GPU. A kernel that nvcc rejects fails the
//! build, with nvcc's message.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Architectures that get SASS.
const SASS_ARCHS: [&str; 4] = ["80", "86", "89", "90"];
/// The virtual architecture shipped as PTX (for newer GPUs, JIT-compiled).
const PTX_ARCH: &str = "80";

fn runs(nvcc: &Path) -> bool {
    Command::new(nvcc)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `nvidia/cu13/bin/nvcc` (13.x wheels) or `nvidia/cuda_nvcc/bin/nvcc` under a site-packages.
fn in_site_packages(site: &Path) -> Option<PathBuf> {
    ["nvidia/cu13/bin/nvcc", "nvidia/cuda_nvcc/bin/nvcc"]
        .iter()
        .map(|p| site.join(p))
        .find(|p| p.is_file())
}

/// site-packages directories of a virtual environment.
fn venv_sites(venv: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(venv.join("lib"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path().join("site-packages"))
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

fn find_nvcc(manifest: &Path) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("NVCC") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(home) = std::env::var_os("CUDA_HOME") {
        candidates.push(PathBuf::from(home).join("bin/nvcc"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("nvcc")));
    }
    let mut sites: Vec<PathBuf> = Vec::new();
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        sites.extend(venv_sites(Path::new(&venv)));
    }
    sites.extend(venv_sites(&manifest.join(".venv")));
    if let Ok(out) = Command::new("python3")
        .args([
            "-c",
            "import site, sys; print('\\n'.join(site.getsitepackages() + [site.getusersitepackages()]))",
        ])
        .output()
    {
        sites.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(PathBuf::from),
        );
    }
    candidates.extend(sites.iter().filter_map(|s| in_site_packages(s)));
    candidates.into_iter().find(|p| p.is_file() && runs(p))
}

// `kernel_names`: the entry points of a kernel source (shared with emu/build.rs).
include!("kernels/entry_points.rs");

/// `kernel_ids.rs`: a module per kernel file with a `KernelId` constant per
/// entry point, and the table of every file and its entry points.
fn write_kernel_ids(sources: &[PathBuf], out: &Path) {
    let mut modules = String::new();
    let mut table = String::from(
        "/// Every kernel file (stem) and its entry points, from kernels/*.cu.\npub const KERNEL_FILES: &[(&str, &[&str])] = &[\n",
    );
    for src in sources {
        let stem = src.file_stem().and_then(|s| s.to_str()).unwrap_or("kernel");
        let text = std::fs::read_to_string(src).expect("readable kernel source");
        let names = kernel_names(&text);
        if names.is_empty() {
            continue;
        }
        let _ = writeln!(
            modules,
            "/// The entry points of `kernels/{stem}.cu`.\npub mod {stem} {{\n    use super::KernelId;"
        );
        for n in &names {
            let _ = writeln!(
                modules,
                "    /// `{n}` in `kernels/{stem}.cu`.\n    pub const {}: KernelId = KernelId {{ file: {stem:?}, name: {n:?} }};",
                n.to_uppercase()
            );
        }
        modules.push_str("}\n");
        let list: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
        let _ = writeln!(table, "    ({stem:?}, &[{}]),", list.join(", "));
    }
    table.push_str("];\n");
    std::fs::write(out.join("kernel_ids.rs"), table + &modules).expect("writable OUT_DIR");
}

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let kernels = manifest.join("kernels");
    println!("cargo::rustc-check-cfg=cfg(diccae_kernels_built)");
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    println!("cargo:rerun-if-env-changed=VIRTUAL_ENV");
    println!("cargo:rerun-if-env-changed=DICCAE_SKIP_KERNELS");
    println!("cargo:rerun-if-changed={}", kernels.display());
    let mut sources: Vec<PathBuf> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&kernels) {
        for e in rd.flatten() {
            let p = e.path();
            println!("cargo:rerun-if-changed={}", p.display());
            if p.extension().is_some_and(|x| x == "cu") {
                sources.push(p);
            }
        }
    }
    sources.sort();
    write_kernel_ids(&sources, &out);

    // The kernels are compiled only for a build that can launch them.
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    if std::env::var_os("DICCAE_SKIP_KERNELS").is_some_and(|v| v == "1") {
        println!("cargo:warning=DICCAE_SKIP_KERNELS=1: CUDA kernels not built");
        return;
    }
    let Some(nvcc) = find_nvcc(&manifest) else {
        println!(
            "cargo:warning=nvcc not found (NVCC, CUDA_HOME, PATH, pip nvidia-cuda-nvcc): CUDA kernels not built; the CPU backend is unaffected"
        );
        return;
    };

    let mut gencode: Vec<String> = SASS_ARCHS
        .iter()
        .flat_map(|a| {
            [
                "-gencode".to_string(),
                format!("arch=compute_{a},code=sm_{a}"),
            ]
        })
        .collect();
    gencode.push("-gencode".into());
    gencode.push(format!("arch=compute_{PTX_ARCH},code=compute_{PTX_ARCH}"));

    // One nvcc per file, in parallel.
    let jobs: Vec<_> = sources
        .iter()
        .map(|src| {
            let stem = src
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("kernel")
                .to_string();
            let fatbin = out.join(format!("{stem}.fatbin"));
            let child = Command::new(&nvcc)
                .args(["-std=c++17", "-O3", "-fatbin", "-I"])
                .arg(&kernels)
                .args(&gencode)
                .arg(src)
                .arg("-o")
                .arg(&fatbin)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn();
            (stem, fatbin, src.clone(), child)
        })
        .collect();
    let mut table = String::from(
        "/// Fatbins of every kernel file, by file stem.\npub const KERNEL_FATBINS: &[(&str, &[u8])] = &[\n",
    );
    for (stem, fatbin, src, child) in jobs {
        match child.and_then(|c| c.wait_with_output()) {
            Ok(o) if o.status.success() => {
                let _ = writeln!(
                    table,
                    "    ({stem:?}, include_bytes!({:?})),",
                    fatbin.display().to_string()
                );
            }
            Ok(o) => panic!(
                "nvcc ({}) failed on {}:\n{}",
                nvcc.display(),
                src.display(),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("cannot run nvcc ({}): {e}", nvcc.display()),
        }
    }
    table.push_str("];\n");
    std::fs::write(out.join("kernels.rs"), table).expect("writable OUT_DIR");
    println!("cargo:rustc-cfg=diccae_kernels_built");
}
