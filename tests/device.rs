//! `--device`: parsing, and the command line's behaviour when CUDA cannot be
//! used (one line on stderr, a non-zero exit, nothing written).

use std::process::Command;
use std::str::FromStr;

use diccae_engine::device::{Device, resolve};

#[test]
fn devices_parse_and_print() {
    for (text, want) in [
        ("cpu", Device::Cpu),
        ("CPU", Device::Cpu),
        ("cuda", Device::Cuda(0)),
        ("cuda:0", Device::Cuda(0)),
        (" cuda:3 ", Device::Cuda(3)),
        ("auto", Device::Auto),
    ] {
        assert_eq!(Device::from_str(text).unwrap(), want, "{text:?}");
    }
    for d in [Device::Cpu, Device::Cuda(0), Device::Cuda(12), Device::Auto] {
        assert_eq!(Device::from_str(&d.to_string()).unwrap(), d);
    }
}

#[test]
fn bad_devices_are_rejected_with_the_choices() {
    for text in ["", "gpu", "cuda:", "cuda:x", "cuda:-1", "cuda0", "cpu:0"] {
        let e = Device::from_str(text).unwrap_err().to_string();
        assert!(
            e.contains("cpu, cuda, cuda:N or auto"),
            "{text:?} gave {e:?}"
        );
    }
}

#[test]
fn cpu_resolves_to_itself_and_auto_falls_back_with_a_notice() {
    let cpu = resolve(Device::Cpu).unwrap();
    assert_eq!(cpu.device, Device::Cpu);
    assert_eq!(cpu.notice, None);
    let auto = resolve(Device::Auto).unwrap();
    if auto.device == Device::Cuda(0) {
        // A `cuda` build on a machine whose GPU opened: no notice.
        assert_eq!(auto.notice, None);
        println!("auto opened {}", auto.backend.name());
        return;
    }
    assert_eq!(auto.device, Device::Cpu);
    let notice = auto.notice.expect("auto says why it fell back");
    assert!(
        notice.contains("--device auto") && notice.ends_with("running on the CPU"),
        "{notice}"
    );
    assert_eq!(notice.lines().count(), 1, "{notice}");
}

/// True (after saying so) when GPU 0 opens, so the no-GPU behaviour cannot
/// be observed here.
fn gpu_opens() -> bool {
    match resolve(Device::Cuda(0)) {
        Ok(r) => {
            println!(
                "skipped: {} opened, so CUDA does not fail here",
                r.backend.name()
            );
            true
        }
        Err(_) => false,
    }
}

#[test]
fn train_on_cuda_stops_with_one_line_and_writes_nothing() {
    if gpu_opens() {
        return;
    }
    let tmp = std::env::temp_dir().join(format!("diccae-device-test-{}", std::process::id()));
    let run = tmp.join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_diccae-engine"))
        .args(["train", "--device", "cuda", "--out"])
        .arg(&run)
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit status {:?}", out.status);
    assert_eq!(stderr.trim_end().lines().count(), 1, "stderr: {stderr}");
    assert!(stderr.starts_with("error: backend cuda: "), "{stderr}");
    if !cfg!(feature = "cuda") {
        assert!(
            stderr.contains("built without CUDA support")
                && stderr.contains("cargo build --release --features cuda"),
            "{stderr}"
        );
    }
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!run.exists(), "{} was created", run.display());
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn eval_with_auto_prints_the_notice_then_goes_on_on_the_cpu() {
    if gpu_opens() {
        return;
    }
    let missing =
        std::env::temp_dir().join(format!("diccae-device-test-missing-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_diccae-engine"))
        .args(["eval", "--device", "auto", "--checkpoint"])
        .arg(&missing)
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(!out.status.success(), "no checkpoint there");
    assert_eq!(
        lines.len(),
        2,
        "notice, then the checkpoint error: {stderr}"
    );
    assert!(lines[0].starts_with("note: --device auto: "), "{stderr}");
    assert!(lines[1].starts_with("error: "), "{stderr}");
    assert!(
        !lines[1].contains("cuda"),
        "the error is the CPU run's: {stderr}"
    );
}
