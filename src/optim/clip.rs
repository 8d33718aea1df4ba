//! Global gradient-norm clipping.

use crate::autograd::{Grads, ParamStore};
use crate::error::Result;
use crate::ops::Backend;

/// Scales every parameter gradient so that their joint L2 norm is at most
/// `max_norm`, and returns the norm before clipping (the one scalar read back
/// to the host). A non-finite norm is returned untouched and nothing is
/// scaled: the caller must reject the step.
pub fn clip_grad_norm<B: Backend>(
    params: &ParamStore<B>,
    grads: &mut Grads<B>,
    max_norm: f64,
) -> Result<f64> {
    let backend = params.backend();
    let mut total = 0.0f64;
    for id in params.ids() {
        if let Some(g) = grads.param(id) {
            total += backend.sum_squares(g)?;
        }
    }
    let norm = total.sqrt();
    if norm.is_finite() && norm > max_norm && norm > 0.0 {
        let factor = (max_norm / norm) as f32;
        for id in params.ids() {
            if let Some(g) = grads.param_mut(id) {
                backend.scale(factor, g)?;
            }
        }
    }
    Ok(norm)
}
