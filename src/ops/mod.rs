//! Differentiable ops on the [`Tape`](crate::autograd::Tape): each checks
//! shapes, runs its forward kernel on the backend, and records a backward.

pub mod attention;
pub mod cgra;
pub mod class_align;
pub mod cross_entropy;
pub mod elementwise;
pub mod infonce;
pub mod matmul;
pub mod norm;
pub mod softmax;
pub mod tokens;
