//! Evaluation of learned representations (METHOD.md §5).

pub mod assignment;
pub mod knn;
pub mod metrics;
pub mod probe;
pub mod scores;
