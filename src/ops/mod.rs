//! Differentiable ops on the [`Tape`](crate::autograd::Tape): each checks
//! shapes, runs its forward kernel on the backend, and records a backward.

pub mod cross_entropy;
pub mod infonce;
pub mod matmul;
