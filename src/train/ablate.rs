//! `ablate`: the same pretraining with terms of the objective removed, and
//! AVCL next to DICCAE, over several seeds, collected into one table
//! (METHOD.md §5).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::device::Opened;
use crate::error::{Error, Result};
use crate::report::summary::Summary;
use crate::train::trainer::{TrainOptions, train};

/// One ablation: a name and the overrides that make it.
#[derive(Clone, Copy, Debug)]
pub struct Variant {
    /// Row name.
    pub name: &'static str,
    /// What it changes, for the table.
    pub description: &'static str,
    /// `section.key=value` overrides applied on top of the base configuration.
    pub overrides: &'static [&'static str],
}

/// The ablations of METHOD.md §5 and the AVCL method, in table order.
pub const VARIANTS: [Variant; 6] = [
    Variant {
        name: "full",
        description: "L_ins + L_cls + L_conf, dynamic W",
        overrides: &[],
    },
    Variant {
        name: "no_conf",
        description: "without L_conf",
        overrides: &["diccae.lambda_conf=0"],
    },
    Variant {
        name: "static_w",
        description: "L_conf with W fixed at 1 (β = 0)",
        overrides: &["diccae.beta_max=0"],
    },
    Variant {
        name: "no_cls",
        description: "without L_cls",
        overrides: &["diccae.lambda_cls=0"],
    },
    Variant {
        name: "infonce_only",
        description: "L_ins alone",
        overrides: &["diccae.lambda_cls=0", "diccae.lambda_conf=0"],
    },
    Variant {
        name: "avcl",
        description: "AVCL: SelfCL + L_ins + CGRA, AMFM gate",
        overrides: &["method=avcl"],
    },
];

/// The figures of one run that the table reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AblationRun {
    /// Variant name (or `random_init`).
    pub variant: String,
    /// `train.seed`.
    pub seed: u64,
    /// Fused linear-probe top-1.
    pub fused_top1: f64,
    /// Audio linear-probe top-1.
    pub audio_top1: f64,
    /// Video linear-probe top-1.
    pub video_top1: f64,
    /// kNN top-1 on fused features.
    pub knn_top1: f64,
    /// Mean pair accuracy over the known confusable pairs.
    pub pairs: f64,
    /// Pseudo-label NMI at the last clustering round (when any ran).
    pub last_nmi: Option<f64>,
    /// NMI of k-means on the test split's fused features.
    pub kmeans_nmi: f64,
    /// Wall time of the run.
    pub seconds: f64,
}

impl AblationRun {
    fn from_summary(variant: &str, seed: u64, s: &Summary, random: bool) -> Result<Self> {
        let ev = if random { &s.random_init } else { &s.eval };
        let probe = ev.linear_probe.ok_or_else(|| {
            Error::Training("ablate needs labelled data (probes could not run)".into())
        })?;
        Ok(AblationRun {
            variant: variant.into(),
            seed,
            fused_top1: probe.fused.top1,
            audio_top1: probe.audio.top1,
            video_top1: probe.video.top1,
            knn_top1: ev.knn.map_or(f64::NAN, |k| k.fused.top1),
            pairs: ev.known_pairs_accuracy.unwrap_or(f64::NAN),
            last_nmi: if random {
                None
            } else {
                s.clustering.nmi.last().copied()
            },
            kmeans_nmi: ev.kmeans_nmi.unwrap_or(f64::NAN),
            seconds: if random { 0.0 } else { s.seconds },
        })
    }
}

/// How to build each run's configuration.
pub struct AblationPlan<'a> {
    /// Preset name, if given.
    pub preset: Option<&'a str>,
    /// TOML file, if given.
    pub config_file: Option<&'a Path>,
    /// Overrides shared by every run.
    pub overrides: &'a [String],
    /// Seeds `first_seed..first_seed + seeds`.
    pub seeds: u64,
    /// The first seed.
    pub first_seed: u64,
    /// Where each run's directory and the table go.
    pub out: PathBuf,
    /// A manifest, or the built-in data.
    pub data: Option<PathBuf>,
    /// Names of the [`VARIANTS`] to run, in table order; empty = all.
    pub variants: &'a [String],
}

/// The variants `names` selects (all when empty); an unknown name is an error
/// listing the known ones.
pub fn select_variants(names: &[String]) -> Result<Vec<Variant>> {
    if names.is_empty() {
        return Ok(VARIANTS.to_vec());
    }
    if let Some(bad) = names
        .iter()
        .find(|n| !VARIANTS.iter().any(|v| v.name == n.as_str()))
    {
        let known: Vec<&str> = VARIANTS.iter().map(|v| v.name).collect();
        return Err(Error::invalid(
            "ablate",
            format!("unknown variant {bad:?}; choose from {known:?}"),
        ));
    }
    Ok(VARIANTS
        .iter()
        .filter(|v| names.iter().any(|n| n == v.name))
        .copied()
        .collect())
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, var.sqrt())
}

/// Runs every variant for every seed and writes `ablation.md` and
/// `ablation.json` into `plan.out`, every run on `backend`. Returns the
/// Markdown table.
pub fn ablate(plan: &AblationPlan<'_>, backend: &Opened) -> Result<String> {
    let variants = select_variants(plan.variants)?;
    let mut runs: Vec<AblationRun> = Vec::new();
    let total = variants.len() as u64 * plan.seeds;
    let mut done = 0;
    for seed in plan.first_seed..plan.first_seed + plan.seeds {
        for (i, v) in variants.iter().enumerate() {
            let mut sets: Vec<String> = plan.overrides.to_vec();
            sets.extend(v.overrides.iter().map(|s| s.to_string()));
            sets.push(format!("train.seed={seed}"));
            let cfg = Config::resolve(plan.preset, plan.config_file, &sets)?;
            let dir = plan.out.join(format!("{}-seed{seed}", v.name));
            let outcome = train(
                &cfg,
                &TrainOptions {
                    out: dir,
                    data: plan.data.clone(),
                    resume: false,
                    quiet: true,
                    overwrite: false,
                },
                backend,
            )?;
            done += 1;
            let run = AblationRun::from_summary(v.name, seed, &outcome.summary, false)?;
            println!(
                "[{done}/{total}] {:<13} seed {seed}: fused top-1 {:.1}%, confusable pairs {:.1}% ({:.0} s)",
                v.name,
                100.0 * run.fused_top1,
                100.0 * run.pairs,
                run.seconds
            );
            // The untrained encoder is evaluated at the start of every run;
            // its row comes from the seed's first run.
            if i == 0 {
                runs.push(AblationRun::from_summary(
                    "random_init",
                    seed,
                    &outcome.summary,
                    true,
                )?);
            }
            runs.push(run);
        }
    }
    let table = render(&runs, plan);
    let write = |name: &str, text: &str| {
        let p = plan.out.join(name);
        crate::atomic_file::write_atomic(&p, text.as_bytes())
    };
    write("ablation.md", &table)?;
    write(
        "ablation.json",
        &serde_json::to_string_pretty(&runs)
            .map_err(|e| Error::Training(format!("cannot encode the table: {e}")))?,
    )?;
    Ok(table)
}

fn render(runs: &[AblationRun], plan: &AblationPlan<'_>) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Mean ± standard deviation over {} seeds; accuracies in %, on the test split.\n",
        plan.seeds
    );
    let _ = writeln!(
        t,
        "| variant | objective | fused probe | audio probe | video probe | kNN | confusable pairs | test k-means NMI | last pseudo-label NMI |\n|---|---|---|---|---|---|---|---|---|"
    );
    let names = std::iter::once(("random_init", "untrained encoder"))
        .chain(VARIANTS.iter().map(|v| (v.name, v.description)));
    for (name, desc) in names {
        let rows: Vec<&AblationRun> = runs.iter().filter(|r| r.variant == name).collect();
        if rows.is_empty() {
            continue;
        }
        let cell = |f: &dyn Fn(&AblationRun) -> f64| {
            let (m, s) = mean_std(&rows.iter().map(|r| f(r)).collect::<Vec<_>>());
            format!("{:.1} ± {:.1}", 100.0 * m, 100.0 * s)
        };
        let nmi: Vec<f64> = rows.iter().filter_map(|r| r.last_nmi).collect();
        let nmi = if nmi.is_empty() {
            "-".to_string()
        } else {
            let (m, s) = mean_std(&nmi);
            format!("{m:.3} ± {s:.3}")
        };
        let _ = writeln!(
            t,
            "| {name} | {desc} | {} | {} | {} | {} | {} | {} | {nmi} |",
            cell(&|r| r.fused_top1),
            cell(&|r| r.audio_top1),
            cell(&|r| r.video_top1),
            cell(&|r| r.knn_top1),
            cell(&|r| r.pairs),
            {
                let (m, s) = mean_std(&rows.iter().map(|r| r.kmeans_nmi).collect::<Vec<_>>());
                format!("{m:.3} ± {s:.3}")
            }
        );
    }
    t
}
