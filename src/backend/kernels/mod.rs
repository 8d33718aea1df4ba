//! One trait per kernel family: the signatures a backend must implement.
//!
//! Buffers are contiguous row-major f32. Every method validates nothing the
//! caller (an op in [`crate::ops`]) has already validated; ops check shapes.

pub mod attention;
pub mod cgra;
pub mod class_align;
pub mod cross_entropy;
pub mod elementwise;
pub mod infonce;
pub mod kmeans;
pub mod matmul;
pub mod norm;
pub mod optim;
pub mod softmax;
pub mod tokens;
