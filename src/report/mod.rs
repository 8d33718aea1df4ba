//! What a run leaves for people to read: plots and (with the trainer) the
//! Markdown report.

pub mod plot;
