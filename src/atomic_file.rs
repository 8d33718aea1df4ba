//! Files written so that a crash or a full disk never leaves a partial one:
//! the bytes go to a hidden sibling, are flushed, and the sibling is renamed
//! over the target. A reader sees the old file or the new one, never a mix.

use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically (see the module doc). On failure the
/// temporary sibling is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let io = |what: &str, e: std::io::Error| Error::Io {
        path: path.display().to_string(),
        detail: format!("{what}: {e}"),
    };
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        crate::fault::write_all(&name, &mut f, bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("cannot write", e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("cannot move into place", e)
    })
}
