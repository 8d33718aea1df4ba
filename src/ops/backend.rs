//! [`Backend`]: every op family's kernel trait together, what the model
//! and the training loop need of a device.

use crate::backend::BackendCore;
use crate::ops::adamw::kernels::OptimKernels;
use crate::ops::attention::kernels::AttentionKernels;
use crate::ops::cgra::kernels::CgraKernels;
use crate::ops::class_align::kernels::ClassAlignKernels;
use crate::ops::cross_entropy::kernels::CrossEntropyKernels;
use crate::ops::elementwise::kernels::ElementwiseKernels;
use crate::ops::infonce::kernels::InfoNceKernels;
use crate::ops::kmeans::kernels::KMeansKernels;
use crate::ops::matmul::kernels::MatmulKernels;
use crate::ops::norm::kernels::NormKernels;
use crate::ops::softmax::kernels::SoftmaxKernels;
use crate::ops::tokens::kernels::TokenKernels;

/// A complete backend: memory plus every kernel family the engine uses.
pub trait Backend:
    BackendCore
    + MatmulKernels
    + OptimKernels
    + AttentionKernels
    + SoftmaxKernels
    + ClassAlignKernels
    + KMeansKernels
    + TokenKernels
    + ElementwiseKernels
    + NormKernels
    + InfoNceKernels
    + CrossEntropyKernels
    + CgraKernels
{
}

impl<T> Backend for T where
    T: BackendCore
        + MatmulKernels
        + OptimKernels
        + AttentionKernels
        + SoftmaxKernels
        + ClassAlignKernels
        + KMeansKernels
        + TokenKernels
        + ElementwiseKernels
        + NormKernels
        + InfoNceKernels
        + CrossEntropyKernels
        + CgraKernels
{
}
