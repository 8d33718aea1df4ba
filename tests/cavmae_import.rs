//! A CAV-MAE-format dataset (JSON data lists with `video_id`, `wav`,
//! `video_path`, `labels`; frames at `video_path/frame_{i}/{video_id}.jpg`;
//! the `index,mid,display_name` label CSV), built here at test time, is
//! imported without re-extraction, every bad entry named in rejects.txt, and
//! trains and evaluates.

mod e2e_common;

use std::path::Path;

use diccae_engine::data::cavmae::import;
use diccae_engine::data::manifest::{Manifest, Split};
use diccae_engine::device::Opened;
use diccae_engine::train::trainer::train;
use e2e_common::{fresh_dir, opts, small, summary, write_frame, write_wav};

/// Writes clip `id`'s WAV and `frames` JPEG frames in CAV-MAE's layout under
/// `root`; class 0 or 1 sets the tone and the bar's shade.
fn cavmae_clip(root: &Path, id: &str, class: usize, frames: usize) {
    write_wav(
        &root.join(format!("audio/{id}.wav")),
        16_000,
        1,
        0.3,
        300.0 + 600.0 * class as f32,
    );
    for i in 0..frames {
        let dir = root.join(format!("frames/frame_{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        write_frame(
            &dir.join(format!("{id}.jpg")),
            90 + 120 * class as u8,
            2 + 3 * i as u32,
        );
    }
}

#[test]
fn a_cavmae_list_imports_with_named_rejects_and_trains() {
    let root = fresh_dir("cavmae");
    std::fs::create_dir_all(root.join("audio")).unwrap();
    // Two classes whose display names hold a comma (quoted in the CSV).
    std::fs::write(
        root.join("class_labels_indices.csv"),
        "index,mid,display_name\n0,/m/dog,\"Dog, barking\"\n1,/m/bell,Bell\n",
    )
    .unwrap();
    let mids = ["/m/dog", "/m/bell"];
    let entry = |id: &str, labels: &str| serde_json::json!({"video_id": id, "wav": format!("audio/{id}.wav"), "video_path": "frames", "labels": labels});
    let mut train_entries = Vec::new();
    for i in 0..24 {
        let id = format!("v{i:02}");
        let class = i % 2;
        // v05 has only 2 of the 4 frames; v07 lists both labels.
        cavmae_clip(&root, &id, class, if i == 5 { 2 } else { 4 });
        let labels = if i == 7 {
            format!("{},{}", mids[class], mids[1 - class])
        } else {
            mids[class].to_string()
        };
        train_entries.push(entry(&id, &labels));
    }
    // The bad entries: no WAV, no frames, an unknown label, a repeated id.
    train_entries.push(entry("nowav", mids[0]));
    write_wav(&root.join("audio/noframes.wav"), 16_000, 1, 0.3, 300.0);
    train_entries.push(entry("noframes", mids[0]));
    cavmae_clip(&root, "oddlabel", 0, 4);
    train_entries.push(entry("oddlabel", "/m/unknown"));
    train_entries.push(entry("v00", mids[0]));
    let mut test_entries = Vec::new();
    for i in 0..8 {
        let id = format!("t{i}");
        cavmae_clip(&root, &id, i % 2, 4);
        test_entries.push(entry(&id, mids[i % 2]));
    }
    let write_list = |name: &str, entries: &[serde_json::Value]| {
        let p = root.join(name);
        std::fs::write(&p, serde_json::json!({ "data": entries }).to_string()).unwrap();
        p
    };
    let lists = [
        (write_list("train.json", &train_entries), Split::Train),
        (write_list("test.json", &test_entries), Split::Test),
    ];
    let out = root.join("imported");
    let report = import(
        &lists,
        Some(&root.join("class_labels_indices.csv")),
        4,
        &out,
    )
    .unwrap();
    assert_eq!(report.clips, 32, "{report:?}");
    assert_eq!(
        (report.multi_label, report.missing_frames),
        (1, 1),
        "{report:?}"
    );
    let rejects = std::fs::read_to_string(out.join("rejects.txt")).unwrap();
    for (id, why) in [
        ("nowav", "no WAV file"),
        ("noframes", "no frame file"),
        ("oddlabel", "/m/unknown is not in the label CSV"),
        ("v00", "video_id repeated"),
    ] {
        assert!(
            rejects
                .lines()
                .any(|l| l.starts_with(&format!("{id}\t")) && l.contains(why)),
            "{id}: {why} missing from rejects.txt:\n{rejects}"
        );
    }
    assert_eq!(rejects.lines().count(), 4, "{rejects}");

    let manifest = Manifest::load(&out).unwrap();
    assert_eq!(manifest.classes, ["Bell", "Dog, barking"]);
    let v05 = manifest.clips.iter().find(|c| c.id == "v05").unwrap();
    assert_eq!(v05.frame_paths().unwrap().len(), 2);
    let tests = manifest
        .clips
        .iter()
        .filter(|c| c.split == Split::Test)
        .count();
    assert_eq!(tests, 8);

    let run = root.join("run");
    let cfg = small(&["train.epochs=2", "data.frames=2"]);
    train(&cfg, &opts(&run, Some(out.clone())), &Opened::cpu()).unwrap();
    let s = summary(&run);
    assert_eq!(
        (s["train_clips"].as_u64(), s["test_clips"].as_u64()),
        (Some(24), Some(8))
    );
    assert!(s["linear_probe"]["fused"]["top1"].is_number(), "{s}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_bad_label_csv_or_list_is_a_clear_error() {
    let root = fresh_dir("cavmae-bad");
    std::fs::create_dir_all(&root).unwrap();
    let csv = root.join("labels.csv");
    std::fs::write(&csv, "index,name\n0,dog\n").unwrap();
    let list = root.join("train.json");
    std::fs::write(&list, "{\"data\": []}").unwrap();
    let err = import(
        &[(list.clone(), Split::Train)],
        Some(&csv),
        10,
        &root.join("o"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("no `mid` column") && err.contains("labels.csv"),
        "{err}"
    );
    std::fs::write(&list, "[1, 2]").unwrap();
    let err = import(&[(list.clone(), Split::Train)], None, 10, &root.join("o"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not a CAV-MAE data list") && err.contains("train.json"),
        "{err}"
    );
    std::fs::write(&list, "{\"data\": []}").unwrap();
    let err = import(&[(list, Split::Train)], None, 10, &root.join("o"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no entry of the lists could be imported"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&root);
}
