//! Checkpoints round-trip, and damaged ones are refused with a clear message.

use std::collections::BTreeMap;
use std::path::PathBuf;

use diccae_engine::checkpoint::{Checkpoint, HostTensor, latest, load, save};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("diccae-ckpt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn sample(epoch: u64) -> Checkpoint {
    let mut tensors = BTreeMap::new();
    tensors.insert(
        "w".into(),
        HostTensor {
            shape: vec![2, 3],
            data: vec![1.0, -2.0, 3.5, 0.0, 1e-8, f32::MAX],
        },
    );
    tensors.insert(
        "b".into(),
        HostTensor {
            shape: vec![1],
            data: vec![epoch as f32],
        },
    );
    Checkpoint {
        tensors,
        state: serde_json::json!({ "epoch": epoch, "note": "x" }),
    }
}

#[test]
fn round_trip_and_latest() {
    let d = dir("rt");
    assert_eq!(latest(&d).unwrap(), None);
    save(&d, "epoch-0001", &sample(1)).unwrap();
    let p2 = save(&d, "epoch-0002", &sample(2)).unwrap();
    assert_eq!(latest(&d).unwrap(), Some(p2.clone()));
    assert_eq!(load(&p2).unwrap(), sample(2));
    // Loading the run's checkpoint directory follows `latest`.
    assert_eq!(load(&d).unwrap(), sample(2));
    assert_eq!(load(&d.join("epoch-0001")).unwrap(), sample(1));
    // A leftover temporary directory from a crashed write changes nothing.
    std::fs::create_dir_all(d.join(".tmp-epoch-0003-1")).unwrap();
    assert_eq!(load(&d).unwrap(), sample(2));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn truncated_or_damaged_checkpoints_are_refused() {
    let d = dir("bad");
    let p = save(&d, "epoch-0001", &sample(1)).unwrap();
    let tensors = p.join("tensors.safetensors");
    let bytes = std::fs::read(&tensors).unwrap();

    std::fs::write(&tensors, &bytes[..bytes.len() - 5]).unwrap();
    let err = load(&p).unwrap_err().to_string();
    assert!(
        err.contains("truncated") && err.contains("tensors.safetensors"),
        "{err}"
    );

    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    std::fs::write(&tensors, &flipped).unwrap();
    let err = load(&p).unwrap_err().to_string();
    assert!(err.contains("checksum"), "{err}");

    std::fs::write(&tensors, &bytes).unwrap();
    let state = p.join("state.json");
    let text = std::fs::read_to_string(&state).unwrap();
    std::fs::write(&state, &text[..text.len() / 2]).unwrap();
    let err = load(&p).unwrap_err().to_string();
    assert!(
        err.contains("state.json") && err.contains("refusing"),
        "{err}"
    );

    let err = load(&d.join("epoch-9999")).unwrap_err().to_string();
    assert!(err.contains("epoch-9999"), "{err}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn an_edited_state_is_refused() {
    let d = dir("edited");
    let p = save(&d, "epoch-0001", &sample(1)).unwrap();
    let state = p.join("state.json");
    let text = std::fs::read_to_string(&state).unwrap();
    // Each edit keeps the file valid JSON: a changed value, a deleted key,
    // an added key.
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["epoch"] = serde_json::json!(1_000_000);
    let changed = serde_json::to_string_pretty(&v).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_object_mut().unwrap().remove("note");
    let deleted = serde_json::to_string_pretty(&v).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["extra"] = serde_json::json!(true);
    let added = serde_json::to_string_pretty(&v).unwrap();
    for edited in [changed, deleted, added] {
        std::fs::write(&state, &edited).unwrap();
        let err = load(&p).unwrap_err().to_string();
        assert!(
            err.contains("state.json") && err.contains("edited"),
            "{err}"
        );
    }
    // Formatting alone (the same values, written compactly) is no edit.
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    std::fs::write(&state, serde_json::to_string(&v).unwrap()).unwrap();
    assert_eq!(load(&p).unwrap(), sample(1));
    let _ = std::fs::remove_dir_all(&d);
}
