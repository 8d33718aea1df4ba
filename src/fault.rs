//! Fault injection for the reliability tests: every write of a run's files
//! passes a named point here, and the environment variable `DICCAE_FAULT`
//! can make one point kill the process or fail like a full disk.
//!
//! `DICCAE_FAULT=<point>[@<n>]:<kill|enospc>`: at the `n`-th time (default
//! the first) the process passes `<point>`, `kill` aborts it on the spot (no
//! destructor runs, like `kill -9`) and `enospc` returns "No space left on
//! device". A write point (`write:<file name>`) first writes half its bytes,
//! so the file is torn as a real crash or full disk would leave it. Without
//! the variable every point is a no-op.
//!
//! The points, in the order a checkpoint is written: `write:tensors.safetensors`,
//! `write:state.json`, `checkpoint:rename`, `write:latest`,
//! `checkpoint:latest-rename`, `checkpoint:prune`; elsewhere
//! `write:metrics.jsonl` (each appended line) and `write:<name>` for every
//! file written through [`crate::atomic_file::write_atomic`] (`summary.json`,
//! `report.md`, the plots, ...).

use std::io::{self, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What an armed point does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Kill,
    NoSpace,
}

/// The one armed point, parsed from `DICCAE_FAULT`.
#[derive(Debug)]
struct Armed {
    point: String,
    nth: usize,
    action: Action,
    hits: AtomicUsize,
}

fn parse(spec: &str) -> Option<Armed> {
    let (target, action) = spec.rsplit_once(':')?;
    let action = match action {
        "kill" => Action::Kill,
        "enospc" => Action::NoSpace,
        _ => return None,
    };
    let (point, nth) = match target.rsplit_once('@') {
        Some((p, n)) => (p, n.parse().ok().filter(|&n: &usize| n >= 1)?),
        None => (target, 1),
    };
    Some(Armed {
        point: point.to_string(),
        nth,
        action,
        hits: AtomicUsize::new(0),
    })
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("DICCAE_FAULT").ok()?;
            let parsed = parse(&spec);
            if parsed.is_none() {
                eprintln!(
                    "warning: DICCAE_FAULT={spec:?} is not <point>[@<n>]:<kill|enospc>; no fault armed"
                );
            }
            parsed
        })
        .as_ref()
}

/// The action due at this pass of `point`, if it is the armed one's turn.
fn due(point: &str) -> Option<Action> {
    let a = armed()?;
    if a.point != point {
        return None;
    }
    let hit = a.hits.fetch_add(1, Ordering::SeqCst) + 1;
    (hit == a.nth).then_some(a.action)
}

fn no_space() -> io::Error {
    io::Error::new(
        io::ErrorKind::StorageFull,
        "No space left on device (injected by DICCAE_FAULT)",
    )
}

/// A stage between writes: a no-op unless `point` is armed.
pub fn point(point: &str) -> io::Result<()> {
    match due(point) {
        None => Ok(()),
        Some(Action::Kill) => std::process::abort(),
        Some(Action::NoSpace) => Err(no_space()),
    }
}

/// `out.write_all(bytes)` at the write point `write:<file>`; an armed fault
/// writes half of `bytes` first, then kills or fails.
pub fn write_all(file: &str, out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    // Unarmed (every normal run) nothing is formatted or counted.
    let Some(action) = armed().and_then(|_| due(&format!("write:{file}"))) else {
        return out.write_all(bytes);
    };
    out.write_all(&bytes[..bytes.len() / 2])?;
    out.flush()?;
    match action {
        Action::Kill => std::process::abort(),
        Action::NoSpace => Err(no_space()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_or_are_refused() {
        let a = parse("checkpoint:rename@3:kill").unwrap();
        assert_eq!(
            (a.point.as_str(), a.nth, a.action),
            ("checkpoint:rename", 3, Action::Kill)
        );
        let a = parse("write:report.md:enospc").unwrap();
        assert_eq!(
            (a.point.as_str(), a.nth, a.action),
            ("write:report.md", 1, Action::NoSpace)
        );
        assert!(parse("write:report.md").is_none());
        assert!(parse("write:x@0:kill").is_none());
        assert!(parse("write:x:explode").is_none());
    }
}
