//! AVCL (METHOD.md §4): two augmented views of every clip through the model,
//! SelfCL between the views' fused embeddings, the cross-modal L_ins within
//! each view and CGRA on the encoders' tokens, with a ramped weight.

use crate::autograd::{ParamStore, Tape, Var};
use crate::config::{AvclConfig, Config};
use crate::error::Result;
use crate::model::Embeddings;
use crate::ops::Backend;
use crate::ops::cgra::cgra_loss;
use crate::ops::elementwise::{add, scale};
use crate::ops::infonce::infonce;
use crate::ops::tokens::{reshape, split_tokens};
use crate::optim::ramp;
use crate::report::record::{TermSums, Terms};
use crate::train::logged::{download_together, first};
use crate::train::objective::{Backward, Objective, RunContext, RunLog, StepLoss, Views};

/// The AVCL objective and this epoch's CGRA weight.
pub struct Avcl {
    cfg: AvclConfig,
    lambda_cgra: f32,
}

impl Avcl {
    /// AVCL as `cfg.avcl` configures it.
    pub fn new(cfg: &Config) -> Self {
        Avcl {
            cfg: cfg.avcl.clone(),
            lambda_cgra: 0.0,
        }
    }
}

impl<B: Backend> Objective<B> for Avcl {
    fn views(&self) -> Views {
        Views::Augmented(self.cfg.augment.clone())
    }

    fn begin_epoch(
        &mut self,
        _run: &RunContext<'_, B>,
        epoch: usize,
        _log: &mut RunLog<'_>,
    ) -> Result<()> {
        self.lambda_cgra = ramp(
            epoch + 1,
            0,
            self.cfg.cgra_ramp_epochs,
            self.cfg.lambda_cgra,
        );
        Ok(())
    }

    fn step_loss(
        &mut self,
        _store: &ParamStore<B>,
        tape: &mut Tape<'_, B>,
        e: &Embeddings,
        idx: &[usize],
    ) -> Result<StepLoss<B>> {
        let terms = avcl_losses(tape, e, idx.len(), &self.cfg, self.lambda_cgra)?;
        // Every logged value (the gate's α per clip included) in one download.
        let mut vars = vec![terms.total, terms.ins, terms.selfcl];
        vars.extend(terms.cgra);
        vars.extend(e.gate);
        let values = download_together(tape, &vars)?;
        let mut logged = vec![
            ("l_ins", first(&values[1])),
            ("l_selfcl", first(&values[2])),
        ];
        if terms.cgra.is_some() {
            logged.push(("l_cgra", first(&values[3])));
        }
        let gate = match e.gate {
            Some(_) => {
                let alpha = values.last().map_or(&[][..], Vec::as_slice);
                alpha.iter().map(|&x| f64::from(x)).sum::<f64>() / alpha.len().max(1) as f64
            }
            None => 0.0,
        };
        logged.push(("gate_mean", gate));
        Ok(StepLoss {
            loss: first(&values[0]),
            logged,
            backward: Backward::Of(terms.total),
        })
    }

    fn end_epoch(&mut self, _backend: &B, sums: &TermSums) -> Result<Terms> {
        let mut t = Terms::default();
        t.set("l_ins", sums.mean_over_steps("l_ins"));
        t.set("l_selfcl", sums.mean_over_steps("l_selfcl"));
        if self.lambda_cgra > 0.0 {
            t.set("l_cgra", sums.mean_over_steps("l_cgra"));
        }
        t.set_weight("lambda_cgra", self.lambda_cgra);
        t.set("gate_mean", sums.mean_over_steps("gate_mean"));
        Ok(t)
    }
}

/// The terms of one AVCL step.
struct AvclTerms {
    /// `L_selfcl + lambda_cross·L_ins + λ_cgra·L_cgra`.
    total: Var,
    /// SelfCL InfoNCE between the views' fused embeddings.
    selfcl: Var,
    /// Cross-modal InfoNCE, the mean over both views.
    ins: Var,
    /// CGRA over both views' tokens (absent when its weight is 0).
    cgra: Option<Var>,
}

/// Splits `z [2n, p]` (view 1 of `n` clips, then view 2) into the two views.
fn split_views<B: Backend>(tape: &mut Tape<'_, B>, z: Var, n: usize) -> Result<(Var, Var)> {
    let p = tape.shape(z)[1];
    let z = reshape(tape, z, &[1, 2 * n, p])?;
    let (first, second) = split_tokens(tape, z, n)?;
    Ok((
        reshape(tape, first, &[n, p])?,
        reshape(tape, second, &[n, p])?,
    ))
}

/// The AVCL objective (METHOD.md §4) of a batch of `n` clips whose model
/// outputs `e` hold both views (`2n` rows, view 1 first): SelfCL is the
/// symmetric InfoNCE between `z_f` of view 1 and view 2 (positives: the same
/// clip); `L_ins` the cross-modal InfoNCE of `z_a` and `z_v` within each
/// view, averaged over the views (a clip's audio is never contrasted with
/// its own other view's video); CGRA is the mean over all `2n` clips' tokens.
fn avcl_losses<B: Backend>(
    tape: &mut Tape<'_, B>,
    e: &Embeddings,
    n: usize,
    cfg: &AvclConfig,
    lambda_cgra: f32,
) -> Result<AvclTerms> {
    let (zf1, zf2) = split_views(tape, e.z_f, n)?;
    let selfcl = infonce(tape, zf1, zf2, cfg.selfcl_tau)?;
    let (za1, za2) = split_views(tape, e.z_a, n)?;
    let (zv1, zv2) = split_views(tape, e.z_v, n)?;
    let ins1 = infonce(tape, za1, zv1, cfg.cross_tau)?;
    let ins2 = infonce(tape, za2, zv2, cfg.cross_tau)?;
    let both = add(tape, ins1, ins2)?;
    let ins = scale(tape, both, 0.5)?;
    let mut total = selfcl;
    if cfg.lambda_cross > 0.0 {
        let weighted = scale(tape, ins, cfg.lambda_cross)?;
        total = add(tape, total, weighted)?;
    }
    let cgra = if lambda_cgra > 0.0 {
        let l = cgra_loss(tape, e.tokens_a, e.tokens_v, cfg.cgra_tau)?;
        let weighted = scale(tape, l, lambda_cgra)?;
        total = add(tape, total, weighted)?;
        Some(l)
    } else {
        None
    };
    Ok(AvclTerms {
        total,
        selfcl,
        ins,
        cgra,
    })
}
