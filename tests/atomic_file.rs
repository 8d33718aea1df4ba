//! `write_atomic` leaves the old file or the new one, never a partial one,
//! and no temporary sibling after a failure.

use diccae_engine::atomic_file::write_atomic;

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_write_replaces_whole_or_not_at_all() {
    let dir = std::env::temp_dir().join(format!("diccae-atomic-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("report.md");
    write_atomic(&f, b"old").unwrap();
    write_atomic(&f, b"new text").unwrap();
    assert_eq!(std::fs::read(&f).unwrap(), b"new text");
    assert_eq!(entries(&dir), ["report.md"], "no temporary left behind");

    // The target is a directory: the rename fails, the directory and its
    // contents stay, and the temporary file is removed.
    let blocked = dir.join("plots");
    std::fs::create_dir_all(&blocked).unwrap();
    std::fs::write(blocked.join("keep.png"), b"png").unwrap();
    let err = write_atomic(&blocked, b"x").unwrap_err().to_string();
    assert!(err.contains("plots"), "{err}");
    assert_eq!(entries(&dir), ["plots", "report.md"]);
    assert_eq!(std::fs::read(blocked.join("keep.png")).unwrap(), b"png");

    // A missing parent directory: a clear error naming the path.
    let err = write_atomic(&dir.join("nope/summary.json"), b"{}")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nope") && err.contains("cannot write"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
