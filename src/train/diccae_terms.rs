//! One DICCAE step's objective (METHOD.md §3) on the model's embeddings.
//!
//! The terms are computed on a tape of their own whose leaves are copies of
//! `z_a`, `z_v` and `z_f`; what goes back to the encoders is the objective's
//! gradient at those three embeddings ([`Tape::backward_from`] on the model's
//! tape). The terms' ops are tiny (`[B, p]` rows), so computing them apart
//! costs next to nothing, and it lets each group's gradient be seen before it
//! is applied: with `diccae.cluster_grad_ratio` = ρ > 0 the cluster terms'
//! gradient is scaled by `s = min(1, ρ·‖g_ins‖ / ‖g_clu‖)` (norms over the
//! three embeddings together) before it is added to the instance terms'.
//! With ρ = 0 the gradient is the plain sum, as one tape would give it.

use crate::autograd::{ParamStore, Tape, Var};
use crate::error::Result;
use crate::ops::Backend;
use crate::ops::class_align::class_align;
use crate::ops::elementwise::{add, scale};
use crate::ops::infonce::infonce;
use crate::ops::tokens::{narrow_tokens, reshape};
use crate::tensor::Tensor;
use crate::train::clusters::ClusterState;
use crate::train::logged::{download_together, first};

/// The weights and temperatures of one step's terms.
#[derive(Clone, Copy, Debug)]
pub struct TermWeights {
    /// InfoNCE temperature τ (L_ins and L_fus).
    pub tau: f32,
    /// Prototype temperature τ_c (L_cls and L_conf).
    pub tau_c: f32,
    /// Weight of L_fus this step (0 = not computed).
    pub lambda_fused: f32,
    /// Weight of L_cls this step (0 = not computed).
    pub lambda_cls: f32,
    /// Weight of L_conf this step (0 = not computed).
    pub lambda_conf: f32,
    /// ρ of the cap on the cluster terms' gradient (0 = no cap).
    pub cluster_grad_ratio: f32,
}

/// The clips the cluster terms train on: the batch's first `idx.len()`
/// rows, whose pseudo-labels and prototypes `state` holds.
pub struct ClusterBatch<'a, B: Backend> {
    /// Pseudo-labels, prototypes, W and the confusion accumulator.
    pub state: &'a mut ClusterState<B>,
    /// Training-set indices of the batch's confident rows (rows `0..len`).
    pub idx: &'a [usize],
}

/// One step's losses and the gradient they send to the encoders.
pub struct StepTerms<B: Backend> {
    /// The total loss, every term at its weight (the cap scales gradients,
    /// not the logged loss).
    pub loss: f64,
    /// L_ins.
    pub ins: f64,
    /// L_fus, when computed.
    pub fused: Option<f64>,
    /// L_cls, when computed.
    pub cls: Option<f64>,
    /// L_conf, when computed.
    pub conf: Option<f64>,
    /// The factor the cap applied to the cluster terms' gradient (1 when
    /// uncapped), when the cluster terms trained this step.
    pub cluster_scale: Option<f64>,
    /// The objective's gradient at `z_a`, `z_v`, `z_f`; `None` for an
    /// embedding no term reads (z_f before L_conf or L_fus start).
    pub grads: [Option<B::Buf>; 3],
}

/// The DICCAE terms of a batch whose embeddings are `z = [z_a, z_v, z_f]`
/// (`[B, p]` each), and their gradient at those embeddings.
pub fn diccae_terms<B: Backend>(
    store: &ParamStore<B>,
    z: [&Tensor<B>; 3],
    w: &TermWeights,
    clusters: Option<ClusterBatch<'_, B>>,
) -> Result<StepTerms<B>> {
    let backend = store.backend();
    let mut tape = Tape::new(store);
    let [za, zv, zf] = z.map(|t| t.duplicate(backend));
    let leaves = [tape.leaf(za?), tape.leaf(zv?), tape.leaf(zf?)];
    let [za, zv, zf] = leaves;
    let l_ins = infonce(&mut tape, za, zv, w.tau)?;
    let mut instance = l_ins;
    let mut fused_var = None;
    if w.lambda_fused > 0.0 {
        // z_a and z_v are targets here (no gradient): the cross-modal
        // geometry stays L_ins's alone.
        let target_a = tape.constant(z[0].duplicate(backend)?);
        let target_v = tape.constant(z[1].duplicate(backend)?);
        let with_audio = infonce(&mut tape, zf, target_a, w.tau)?;
        let with_video = infonce(&mut tape, zf, target_v, w.tau)?;
        let both = add(&mut tape, with_audio, with_video)?;
        let l_fused = scale(&mut tape, both, 0.5)?;
        let weighted = scale(&mut tape, l_fused, w.lambda_fused)?;
        instance = add(&mut tape, instance, weighted)?;
        fused_var = Some(l_fused);
    }
    let (mut cls_var, mut conf_var, mut cluster) = (None, None, None::<Var>);
    if let Some(ClusterBatch { state, idx }) = clusters.filter(|c| !c.idx.is_empty()) {
        let n_conf = idx.len();
        let labels = state.batch_labels(backend, idx)?;
        let [za, zv, zf] = [za, zv, zf].map(|v| first_rows(&mut tape, v, n_conf));
        let (za, zv, zf) = (za?, zv?, zf?);
        if w.lambda_cls > 0.0 {
            let la = class_align(
                &mut tape,
                za,
                state.prototypes(1),
                &labels,
                None,
                w.tau_c,
                None,
            )?;
            let lv = class_align(
                &mut tape,
                zv,
                state.prototypes(0),
                &labels,
                None,
                w.tau_c,
                None,
            )?;
            let both = add(&mut tape, la, lv)?;
            let l_cls = scale(&mut tape, both, 0.5)?;
            let weighted = scale(&mut tape, l_cls, w.lambda_cls)?;
            cluster = Some(weighted);
            cls_var = Some(l_cls);
        }
        if w.lambda_conf > 0.0 {
            let (protos, weights, confusion) = state.confusion_inputs();
            let l_conf = class_align(
                &mut tape,
                zf,
                protos,
                &labels,
                Some(weights),
                w.tau_c,
                Some(confusion),
            )?;
            let weighted = scale(&mut tape, l_conf, w.lambda_conf)?;
            cluster = Some(match cluster {
                Some(c) => add(&mut tape, c, weighted)?,
                None => weighted,
            });
            conf_var = Some(l_conf);
        }
    }
    let total = match cluster {
        Some(c) => add(&mut tape, instance, c)?,
        None => instance,
    };
    // Every logged scalar in one download; absent terms read as None.
    let optional = [fused_var, cls_var, conf_var];
    let mut vars = vec![total, l_ins];
    vars.extend(optional.iter().flatten());
    let values = download_together(&mut tape, &vars)?;
    let (loss, ins) = (first(&values[0]), first(&values[1]));
    let mut rest = values[2..].iter();
    let [fused, cls, conf] = optional.map(|v| v.and_then(|_| rest.next()).map(|x| first(x)));
    let (grads, cluster_scale) = match cluster {
        Some(c) if w.cluster_grad_ratio > 0.0 && loss.is_finite() => {
            let g_ins = tape.backward(instance)?;
            let g_clu = tape.backward(c)?;
            let norm = |g: &crate::autograd::Grads<B>| -> Result<f64> {
                let mut s = 0.0;
                for v in leaves {
                    if let Some(b) = g.var(v) {
                        s += backend.sum_squares(b)?;
                    }
                }
                Ok(s.sqrt())
            };
            let (n_ins, n_clu) = (norm(&g_ins)?, norm(&g_clu)?);
            let cap = f64::from(w.cluster_grad_ratio) * n_ins;
            let s = if n_clu > cap && n_clu > 0.0 {
                cap / n_clu
            } else {
                1.0
            };
            let mut out: [Option<B::Buf>; 3] = [None, None, None];
            for (slot, v) in out.iter_mut().zip(leaves) {
                *slot = match (g_ins.var(v), g_clu.var(v)) {
                    (None, None) => None,
                    (Some(a), None) => Some(backend.duplicate(a)?),
                    (a, Some(b)) => {
                        let mut acc = match a {
                            Some(a) => backend.duplicate(a)?,
                            None => backend.zeros(backend.len(b))?,
                        };
                        backend.axpy(s as f32, b, &mut acc)?;
                        Some(acc)
                    }
                };
            }
            (out, Some(s))
        }
        _ => {
            let g = tape.backward(total)?;
            let out = leaves.map(|v| g.var(v).map(|b| backend.duplicate(b)));
            let [a, b, c2] = out;
            (
                [a.transpose()?, b.transpose()?, c2.transpose()?],
                cluster.map(|_| 1.0),
            )
        }
    };
    Ok(StepTerms {
        loss,
        ins,
        fused,
        cls,
        conf,
        cluster_scale,
        grads,
    })
}

/// Rows `0..m` of a `[B, d]` variable (the whole variable when `m = B`).
fn first_rows<B: Backend>(tape: &mut Tape<'_, B>, z: Var, m: usize) -> Result<Var> {
    let shape = tape.shape(z).to_vec();
    if shape.first() == Some(&m) {
        return Ok(z);
    }
    let d = shape.get(1).copied().unwrap_or(1);
    let t = reshape(tape, z, &[1, shape[0], d])?;
    let t = narrow_tokens(tape, t, 0, m)?;
    reshape(tape, t, &[m, d])
}
