//! Where a command reports its progress to a person: lines on stdout and
//! progress bars, both silenced by `--quiet`. Warnings and errors go to
//! stderr whatever this says.

use indicatif::ProgressBar;

/// The console of one command: prints progress unless quiet.
#[derive(Clone, Copy, Debug)]
pub struct Console {
    quiet: bool,
}

impl Console {
    /// A console that prints, or (with `quiet`) stays silent.
    pub fn new(quiet: bool) -> Self {
        Console { quiet }
    }

    /// Prints one progress line (unless quiet).
    pub fn say(self, line: impl AsRef<str>) {
        if !self.quiet {
            println!("{}", line.as_ref());
        }
    }

    /// A progress bar of `len` steps, hidden when quiet.
    pub fn progress_bar(self, len: usize) -> ProgressBar {
        if self.quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(len as u64)
        }
    }
}
