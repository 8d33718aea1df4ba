//! One trait per kernel family: the signatures a backend must implement.
//!
//! Buffers are contiguous row-major f32. Every method validates nothing the
//! caller (an op in [`crate::ops`]) has already validated; ops check shapes.

pub mod cross_entropy;
pub mod infonce;
pub mod matmul;
