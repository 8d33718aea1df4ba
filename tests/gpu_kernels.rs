//! The GPU tier on a real GPU: the bodies of `tests/cuda_tier/` (every
//! kernel family of the CUDA backend against the CPU backend, and training
//! steps on both) at every shape. Each test prints `<test>: skipped:
//! <reason>` and returns on a machine without a GPU; where `nvidia-smi -L`
//! lists a GPU, or with `DICCAE_REQUIRE_GPU=1`, a GPU that cannot be opened
//! fails the test (scripts/gpu-check.sh runs this file, the binary and
//! compute-sanitizer). `tests/emulated_cuda_backend.rs` runs the same bodies
//! on the emulated device in every `cargo test`.
#![cfg(feature = "cuda")]

mod cuda_tier;

use diccae_engine::backend::cuda::CudaBackend;
use diccae_engine::backend::cuda_kernels::EMULATED_DEVICE;

/// Whether this machine must run the GPU tier: `DICCAE_REQUIRE_GPU=1`, or
/// `nvidia-smi -L` lists a GPU.
fn gpu_required() -> bool {
    std::env::var("DICCAE_REQUIRE_GPU").is_ok_and(|v| v == "1")
        || std::process::Command::new("nvidia-smi")
            .arg("-L")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).starts_with("GPU "))
}

/// The GPU, or `None` after printing why the test is skipped; where a GPU
/// is required ([`gpu_required`]) one that cannot be opened fails the test.
fn gpu(test: &str) -> Option<CudaBackend> {
    match CudaBackend::open(0) {
        Ok(g) if g.describe().contains(EMULATED_DEVICE) => panic!(
            "{test}: opened the emulated device ({}): a stand-in libcuda.so is on the library \
             path, so this would not test a GPU",
            g.describe()
        ),
        Ok(g) => {
            eprintln!("{test}: on {}", g.describe());
            Some(g)
        }
        Err(e) if gpu_required() => {
            panic!("{test}: a GPU is present (or DICCAE_REQUIRE_GPU=1) but cannot be opened: {e}")
        }
        Err(e) => {
            println!("{test}: skipped: {e}");
            None
        }
    }
}

#[test]
fn core_buffers_and_vector_primitives_match_the_cpu() {
    if let Some(g) = gpu("core") {
        cuda_tier::core_buffers_and_vector_primitives_match_the_cpu(&g);
    }
}

#[test]
fn gemm_matches_the_cpu_for_every_layout() {
    if let Some(g) = gpu("gemm") {
        cuda_tier::gemm_matches_the_cpu_for_every_layout(&g);
    }
}

#[test]
fn infonce_forward_and_backward_match_the_cpu() {
    if let Some(g) = gpu("infonce") {
        cuda_tier::infonce_forward_and_backward_match_the_cpu(&g);
    }
}

#[test]
fn class_align_forward_backward_and_confusion_match_the_cpu() {
    if let Some(g) = gpu("class_align") {
        cuda_tier::class_align_forward_backward_and_confusion_match_the_cpu(&g);
    }
}

#[test]
fn kmeans_assign_and_update_match_the_cpu() {
    if let Some(g) = gpu("kmeans") {
        cuda_tier::kmeans_assign_and_update_match_the_cpu(&g);
    }
}

#[test]
fn kmeans_update_rejects_a_bad_label() {
    if let Some(g) = gpu("kmeans_bad") {
        cuda_tier::kmeans_update_rejects_a_bad_label(&g);
    }
}

#[test]
fn attention_forward_and_backward_match_the_cpu() {
    if let Some(g) = gpu("attention") {
        cuda_tier::attention_forward_and_backward_match_the_cpu(&g);
    }
}

#[test]
fn elementwise_matches_the_cpu() {
    if let Some(g) = gpu("elementwise") {
        cuda_tier::elementwise_matches_the_cpu(&g);
    }
}

#[test]
fn layer_norm_and_l2_normalize_match_the_cpu() {
    if let Some(g) = gpu("norm") {
        cuda_tier::layer_norm_and_l2_normalize_match_the_cpu(&g);
    }
}

#[test]
fn token_layout_kernels_match_the_cpu() {
    if let Some(g) = gpu("tokens") {
        cuda_tier::token_layout_kernels_match_the_cpu(&g);
    }
}

#[test]
fn softmax_matches_the_cpu() {
    if let Some(g) = gpu("softmax") {
        cuda_tier::softmax_matches_the_cpu(&g);
    }
}

#[test]
fn adamw_update_matches_the_cpu() {
    if let Some(g) = gpu("adamw") {
        cuda_tier::adamw_update_matches_the_cpu(&g);
    }
}

#[test]
fn cgra_forward_and_backward_match_the_cpu() {
    if let Some(g) = gpu("cgra") {
        cuda_tier::cgra_forward_and_backward_match_the_cpu(&g);
    }
}

#[test]
fn training_steps_match_the_cpu() {
    if let Some(g) = gpu("train") {
        cuda_tier::training_steps_match_the_cpu(&g, 20);
    }
}

#[test]
fn class_align_rejects_a_bad_label_naming_its_row() {
    if let Some(g) = gpu("class_align_bad") {
        cuda_tier::class_align_rejects_a_bad_label_naming_its_row(&g);
    }
}

#[test]
fn cross_entropy_matches_the_cpu_and_names_a_bad_target() {
    if let Some(g) = gpu("cross_entropy") {
        cuda_tier::cross_entropy_matches_the_cpu_and_names_a_bad_target(&g);
    }
}
