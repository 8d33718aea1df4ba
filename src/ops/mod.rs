//! The op families, one folder each: `<op>/mod.rs` the differentiable op on
//! the [`Tape`](crate::autograd::Tape) (shape checks, forward through the
//! kernel trait, the backward record), `<op>/kernels.rs` the kernel trait a
//! backend implements, `<op>/cpu.rs` and `<op>/cuda.rs` its implementations
//! (the CUDA one launches `kernels/<op>.cu` by typed id). `kmeans` and
//! `adamw` are kernel families without a tape op. [`Backend`] is the sum of
//! every family's trait.

pub mod adamw;
pub mod attention;
mod backend;
pub mod cgra;
pub mod class_align;
pub mod cross_entropy;
pub mod elementwise;
pub mod infonce;
pub mod kmeans;
pub mod matmul;
pub mod norm;
pub mod softmax;
pub mod tokens;

pub use adamw::kernels::{AdamWStep, OptimKernels};
pub use attention::kernels::{AttentionKernels, AttentionSpec};
pub use backend::Backend;
pub use cgra::kernels::{CgraKernels, CgraSpec};
pub use class_align::kernels::{ClassAlignKernels, ClassAlignSpec};
pub use cross_entropy::kernels::{CrossEntropyKernels, CrossEntropySpec};
pub use elementwise::kernels::ElementwiseKernels;
pub use infonce::kernels::{InfoNceGrads, InfoNceKernels, InfoNceLse, InfoNceSpec};
pub use kmeans::kernels::{KMeansKernels, KMeansSpec};
pub use matmul::kernels::{GemmSpec, MatmulKernels};
pub use norm::kernels::{LayerNormGrads, LayerNormNeeds, LayerNormStats, NormKernels, NormSpec};
pub use softmax::kernels::SoftmaxKernels;
pub use tokens::kernels::{PatchSpec, TokenBlock, TokenKernels};
