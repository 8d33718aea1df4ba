//! What a run leaves for people and programs to read: the epoch record, the
//! summary (`summary.json` and the printed table), the Markdown report and
//! the plots. Nothing here trains; `train` fills these and writes them.

pub mod markdown;
pub mod outputs;
pub mod plot;
pub mod record;
pub mod summary;
