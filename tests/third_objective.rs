//! A third training method, written entirely in this file, trains through
//! the shared loop (`train_with`): what ARCHITECTURE.md promises about
//! adding a method. The objective is a plain cross-modal InfoNCE on the
//! model's tape with its own state (a count of the steps it saw), which it
//! saves in the checkpoint and restores on `--resume`.

mod e2e_common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use diccae_engine::autograd::{ParamStore, Tape};
use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::checkpoint::{Checkpoint, HostTensor};
use diccae_engine::config::Config;
use diccae_engine::model::Embeddings;
use diccae_engine::ops::infonce::infonce;
use diccae_engine::report::record::{EpochRecord, TermSums, Terms};
use diccae_engine::train::features::Dataset;
use diccae_engine::train::objective::{
    Backward, Objective, Plan, RunContext, RunLog, StepLoss, Views,
};
use diccae_engine::train::trainer::train_with;
use e2e_common::{epoch_records, fresh_dir, opts, small};

/// Cross-modal InfoNCE at a fixed temperature; fails on purpose at the
/// start of epoch `fail_at` (to leave a run to resume).
struct PlainContrast {
    steps_seen: usize,
    fail_at: Option<usize>,
    restored_from: &'static AtomicUsize,
}

impl Objective<CpuBackend> for PlainContrast {
    fn views(&self) -> Views {
        Views::Flipped
    }

    fn begin_epoch(
        &mut self,
        _run: &RunContext<'_, CpuBackend>,
        epoch: usize,
        log: &mut RunLog<'_>,
    ) -> diccae_engine::Result<()> {
        if self.fail_at == Some(epoch) {
            return Err(diccae_engine::Error::Training("stopped on purpose".into()));
        }
        log.metrics
            .write(&serde_json::json!({ "kind": "plain", "epoch": epoch }))?;
        Ok(())
    }

    fn step_loss(
        &mut self,
        store: &ParamStore<CpuBackend>,
        tape: &mut Tape<'_, CpuBackend>,
        e: &Embeddings,
        _idx: &[usize],
    ) -> diccae_engine::Result<StepLoss<CpuBackend>> {
        let l = infonce(tape, e.z_a, e.z_v, 0.2)?;
        let value = f64::from(tape.value(l).to_host(store.backend())?[0]);
        Ok(StepLoss {
            loss: value,
            logged: vec![("l_plain", value)],
            backward: Backward::Of(l),
        })
    }

    fn after_step(&mut self, _backend: &CpuBackend) -> diccae_engine::Result<()> {
        self.steps_seen += 1;
        Ok(())
    }

    fn end_epoch(
        &mut self,
        _backend: &CpuBackend,
        sums: &TermSums,
    ) -> diccae_engine::Result<Terms> {
        let mut t = Terms::default();
        t.set("l_plain", sums.mean_over_steps("l_plain"));
        t.set("steps_seen", self.steps_seen as f64);
        Ok(t)
    }

    fn epoch_logged(
        &mut self,
        record: &EpochRecord,
        _log: &mut RunLog<'_>,
    ) -> diccae_engine::Result<()> {
        assert_eq!(record.term("steps_seen"), Some(self.steps_seen as f64));
        Ok(())
    }

    fn save(
        &self,
        tensors: &mut BTreeMap<String, HostTensor>,
        state: &mut serde_json::Map<String, serde_json::Value>,
    ) -> diccae_engine::Result<()> {
        state.insert("plain_steps".into(), self.steps_seen.into());
        tensors.insert(
            "plain.marker".into(),
            HostTensor {
                shape: vec![1],
                data: vec![self.steps_seen as f32],
            },
        );
        Ok(())
    }

    fn restore(&mut self, _backend: &CpuBackend, ckpt: &Checkpoint) -> diccae_engine::Result<()> {
        self.steps_seen = ckpt.state["plain_steps"].as_u64().unwrap() as usize;
        assert_eq!(
            ckpt.tensors["plain.marker"].data,
            vec![self.steps_seen as f32]
        );
        self.restored_from.store(self.steps_seen, Ordering::SeqCst);
        Ok(())
    }
}

static RESTORED: AtomicUsize = AtomicUsize::new(usize::MAX);

fn make(
    fail_at: Option<usize>,
) -> impl Fn(&Config, &Plan, &Dataset) -> diccae_engine::Result<Box<dyn Objective<CpuBackend>>> {
    move |_cfg, _plan, _data| {
        Ok(Box::new(PlainContrast {
            steps_seen: 0,
            fail_at,
            restored_from: &RESTORED,
        }))
    }
}

#[test]
fn a_third_objective_trains_checkpoints_and_resumes_through_the_shared_loop() {
    let cfg = small(&["train.epochs=3"]);
    let out = fresh_dir("third-objective");
    let err = train_with(CpuBackend, &cfg, &opts(&out, None), &make(Some(2))).unwrap_err();
    assert!(err.to_string().contains("stopped on purpose"), "{err}");
    let records = epoch_records(&out);
    assert_eq!(records.len(), 2, "two epochs before the stop");
    let steps_per_epoch = 32 / 8;
    for (i, r) in records.iter().enumerate() {
        assert!(r["l_plain"].as_f64().unwrap().is_finite(), "{r}");
        assert_eq!(r["steps_seen"], ((i + 1) * steps_per_epoch) as f64, "{r}");
        assert!(r.get("l_ins").is_none(), "no DICCAE term leaks in: {r}");
    }

    let mut resume = opts(&out, None);
    resume.resume = true;
    let done = train_with(CpuBackend, &cfg, &resume, &make(None)).unwrap();
    assert_eq!(RESTORED.load(Ordering::SeqCst), 2 * steps_per_epoch);
    let records = epoch_records(&out);
    assert_eq!(records.len(), 3);
    assert_eq!(records[2]["steps_seen"], (3 * steps_per_epoch) as f64);
    assert_eq!(done.summary.epochs, 3);
    let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(log.matches("\"kind\":\"plain\"").count(), 3, "{log}");
    let _ = std::fs::remove_dir_all(&out);
}
