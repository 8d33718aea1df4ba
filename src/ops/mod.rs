//! Differentiable ops on the [`Tape`](crate::autograd::Tape): each checks
//! shapes, runs its forward kernel on the backend, and records a backward.

pub mod elementwise;
pub mod matmul;
pub mod norm;
