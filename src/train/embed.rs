//! Embedding a whole split with the model in evaluation mode.

use crate::autograd::{ParamStore, Tape};
use crate::error::Result;
use crate::model::AvModel;
use crate::ops::Backend;
use crate::tensor::Tensor;
use crate::train::features::FeatureSet;

/// Every embedding of a split, on the host, row-major `[N, width]`.
#[derive(Clone, Debug, Default)]
pub struct SplitEmbeddings {
    /// Pooled audio tokens.
    pub h_a: Vec<f32>,
    /// Pooled video tokens.
    pub h_v: Vec<f32>,
    /// Pooled fused tokens.
    pub h_f: Vec<f32>,
    /// Normalised audio projections.
    pub z_a: Vec<f32>,
    /// Normalised video projections.
    pub z_v: Vec<f32>,
    /// Normalised fused projections.
    pub z_f: Vec<f32>,
}

/// Runs the model without recording gradients over `set` in batches of
/// `batch` (no augmentation).
pub fn embed_split<B: Backend>(
    model: &AvModel,
    params: &ParamStore<B>,
    set: &FeatureSet,
    batch: usize,
    shapes: (&[usize], &[usize]),
) -> Result<SplitEmbeddings> {
    let be = params.backend().clone();
    let mut out = SplitEmbeddings::default();
    let frame_size = shapes.1[shapes.1.len() - 1];
    let idx: Vec<usize> = (0..set.len()).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let (audio, video) = set.gather(chunk, frame_size, None);
        let mut a_shape = vec![chunk.len()];
        a_shape.extend_from_slice(shapes.0);
        let mut v_shape = vec![chunk.len()];
        v_shape.extend_from_slice(shapes.1);
        let mut tape = Tape::no_grad(params);
        let a = tape.constant(Tensor::from_host(&be, &a_shape, &audio)?);
        let v = tape.constant(Tensor::from_host(&be, &v_shape, &video)?);
        let e = model.forward(&mut tape, a, v)?;
        for (dst, var) in [
            (&mut out.h_a, e.h_a),
            (&mut out.h_v, e.h_v),
            (&mut out.h_f, e.h_f),
            (&mut out.z_a, e.z_a),
            (&mut out.z_v, e.z_v),
            (&mut out.z_f, e.z_f),
        ] {
            dst.extend(tape.value(var).to_host(&be)?);
        }
    }
    Ok(out)
}
