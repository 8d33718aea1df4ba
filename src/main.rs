//! The `diccae-engine` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::backend::{BackendCore, cuda_kernels};
use diccae_engine::config::Config;
use diccae_engine::device::{self, DEVICE_HELP, Device, Opened};
use diccae_engine::train::ablate::{AblationPlan, ablate};
use diccae_engine::train::eval_checkpoint::evaluate_checkpoint;
use diccae_engine::train::export::export_features;
use diccae_engine::train::features;
use diccae_engine::train::trainer::{TrainOptions, train};

/// Self-supervised audio-visual representation learning (DICCAE).
///
/// `diccae-engine train` with no arguments pretrains the `tiny` model on the
/// built-in synthetic dataset, evaluates it against the same architecture at
/// random initialisation, and writes everything to a run directory.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pretrain an encoder, then evaluate it (linear probes, kNN, retrieval, clustering).
    #[command(
        long_about = "Pretrain an encoder with DICCAE (or AVCL with --method avcl), then evaluate it.\n\n\
        Without --data the built-in synthetic dataset is used (no files needed). With --data DIR_OR_MANIFEST \
        the clips of a JSON-lines manifest are decoded (see the README for the format).\n\n\
        The run directory (--out) receives config.toml, metrics.jsonl, checkpoints/ (one per epoch, the newest train.keep_checkpoints kept), \
        summary.json, report.md and plots/*.png.\n\n\
        Examples:\n  diccae-engine train\n  diccae-engine train --set train.epochs=5 --set diccae.lambda_conf=0\n  \
        diccae-engine train --method avcl --set train.epochs=5\n  \
        diccae-engine train --data my_clips/manifest.jsonl --out runs/mine\n  diccae-engine train --out runs/mine --resume"
    )]
    Train(TrainArgs),
    /// Evaluate a saved checkpoint (a run directory, its checkpoints/, or one epoch's directory).
    #[command(
        long_about = "Evaluate a saved checkpoint: linear probes, kNN, retrieval and confusion diagnostics, \
        next to the same architecture at random initialisation.\n\n\
        The configuration stored in the checkpoint is used. Without --data the built-in dataset of that \
        configuration is evaluated; --set changes only what leaves the trained model as it is (eval.*, \
        data.synthetic_test_per_class).\n\nExamples:\n  diccae-engine eval --checkpoint runs/tiny-20261122-064000\n  \
        diccae-engine eval --checkpoint runs/tiny-20261122-064000 --set data.synthetic_test_per_class=400 --out runs/eval400"
    )]
    Eval(EvalArgs),
    /// Pretrain with terms of the objective removed, and AVCL, over several seeds, and tabulate the results.
    #[command(
        long_about = "Run the ablations of METHOD.md §5 — full DICCAE, without L_conf, static W, \
        without L_cls, InfoNCE only — and AVCL (--method avcl), with the random initialisation, each for \
        --seeds seeds, and write one table (ablation.md, ablation.json) into --out. Every run also keeps its \
        own run directory there.\n\n\
        Options after the subcommand are shared by every run (e.g. --set train.epochs=20).\n\nExamples:\n  \
        diccae-engine ablate --seeds 3 --out runs/ablation\n  \
        diccae-engine ablate --seeds 3 --variants full,avcl,infonce_only --out runs/methods"
    )]
    Ablate(AblateArgs),
    /// Write a dataset's model inputs (normalised log-mel, frames, labels) to a safetensors file.
    #[command(
        long_about = "Decode a dataset exactly as `train` does (the same configuration layers: --preset, \
        --config, --set) and write its inputs to one safetensors file: train.audio / test.audio \
        [N, n_mels, audio_frames] (normalised log-mel), train.video / test.video [N, T, 3, S, S] \
        (ImageNet-normalised frames), train.labels / test.labels [N] (i64), and as metadata the class \
        names, the clip ids, the log-mel statistics and the resolved configuration. Another tool (the \
        PyTorch reference in bench/realdata/, a notebook) can then train on the very same inputs.\n\n\
        Examples:\n  diccae-engine features --data runs/realdata/manifest-george.jsonl --out runs/george.safetensors\n  \
        diccae-engine features --out runs/synthetic.safetensors"
    )]
    Features(FeaturesArgs),
    /// Turn CAV-MAE data lists (JSON) and its label CSV into a manifest, reusing its extracted WAVs and frames.
    #[command(
        name = "import-cavmae",
        long_about = "Import CAV-MAE's data lists without re-extracting anything: each --train / --test JSON file         ({\"data\": [{\"video_id\", \"wav\", \"video_path\", \"labels\"}]}) becomes clips of that split, with         frames video_path/frame_{i}/{video_id}.jpg for i < --frames, and --labels (CAV-MAE's class_labels_indices.csv,         index,mid,display_name) turns each clip's first label mid into its class name. Writes OUT/manifest.jsonl         (train it with --data OUT) and OUT/rejects.txt (video_id and reason for every entry left out: no WAV,         no frame, an unknown label, a repeated video_id). The engine's probes are single-label: a clip with several         labels keeps its first, and the count is printed.\n\nExample:\n  diccae-engine import-cavmae --train         vgg_train.json --test vgg_test.json --labels class_labels_indices_vgg.csv --out data/vggsound\n          diccae-engine train --data data/vggsound"
    )]
    ImportCavmae(ImportCavmaeArgs),
    /// Print the backend this build uses, its thread count, and whether the CUDA kernels are built in.
    Info,
}

#[derive(Args)]
struct TrainArgs {
    /// A manifest file (or a directory holding manifest.jsonl); default: the built-in synthetic data.
    #[arg(long, value_name = "DIR_OR_MANIFEST")]
    data: Option<PathBuf>,
    /// Run directory [default: runs/<preset>-<UTC time>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    config: ConfigArgs,
    /// The objective: diccae (default) or avcl (the same as --set method=...).
    #[arg(long, value_parser = ["diccae", "avcl"])]
    method: Option<String>,
    /// Continue the run in --out from its latest checkpoint (with the run's own config.toml).
    #[arg(long, requires = "out")]
    resume: bool,
    /// Replace the run already in --out (its checkpoints, logs and reports); without it, train refuses to write over a run.
    #[arg(long, requires = "out", conflicts_with = "resume")]
    overwrite: bool,
    /// Print the resolved configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Device: cpu, cuda, cuda:N or auto (see --help).
    #[arg(long, value_name = "DEVICE", default_value = "cpu", long_help = DEVICE_HELP)]
    device: Device,
}

#[derive(Args)]
struct ImportCavmaeArgs {
    /// A CAV-MAE data list whose clips go to the train split (repeatable).
    #[arg(long, value_name = "JSON", required = true)]
    train: Vec<PathBuf>,
    /// A CAV-MAE data list whose clips go to the test split (repeatable).
    #[arg(long, value_name = "JSON")]
    test: Vec<PathBuf>,
    /// CAV-MAE's label CSV (index,mid,display_name); without it the label mids are the class names.
    #[arg(long, value_name = "CSV")]
    labels: Option<PathBuf>,
    /// Frames per clip to look for (frame_0 .. frame_{N-1}; CAV-MAE extracts 10).
    #[arg(long, default_value_t = 10)]
    frames: usize,
    /// Output directory for manifest.jsonl and rejects.txt.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(Args)]
struct EvalArgs {
    /// A run directory, its checkpoints/ directory, or one checkpoint's directory.
    #[arg(long, value_name = "PATH")]
    checkpoint: PathBuf,
    /// A manifest file or directory; default: the built-in data of the stored configuration.
    #[arg(long, value_name = "DIR_OR_MANIFEST")]
    data: Option<PathBuf>,
    /// Where summary.json, report.md and plots/ go [default: <checkpoint>/eval].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Evaluation-side override of the stored configuration (repeatable): eval.* or
    /// data.synthetic_test_per_class, e.g. --set data.synthetic_test_per_class=400.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Device: cpu, cuda, cuda:N or auto (see --help).
    #[arg(long, value_name = "DEVICE", default_value = "cpu", long_help = DEVICE_HELP)]
    device: Device,
}

#[derive(Args)]
struct AblateArgs {
    /// Seeds per variant (train.seed = first, first + 1, ...).
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// The first seed (to extend an earlier table with more seeds).
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Directory for the runs and the table.
    #[arg(long, value_name = "DIR", default_value = "runs/ablation")]
    out: PathBuf,
    /// A manifest file or directory; default: the built-in synthetic data.
    #[arg(long, value_name = "DIR_OR_MANIFEST")]
    data: Option<PathBuf>,
    /// The configuration shared by every run.
    #[command(flatten)]
    config: ConfigArgs,
    /// Run only these variants, comma-separated (full, no_conf, static_w, no_cls,
    /// infonce_only, avcl); default: all.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    variants: Vec<String>,
    /// Device: cpu, cuda, cuda:N or auto (see --help).
    #[arg(long, value_name = "DEVICE", default_value = "cpu", long_help = DEVICE_HELP)]
    device: Device,
}

#[derive(Args)]
struct FeaturesArgs {
    /// A manifest file (or a directory holding manifest.jsonl); default: the built-in synthetic data.
    #[arg(long, value_name = "DIR_OR_MANIFEST")]
    data: Option<PathBuf>,
    /// The safetensors file to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The configuration (its data section sets the feature shapes; it is stored in the file).
    #[command(flatten)]
    config: ConfigArgs,
}

/// Where a command's configuration comes from: a preset, then a TOML file,
/// then `--set` overrides (`Config::resolve`).
#[derive(Args)]
struct ConfigArgs {
    /// A TOML configuration (any subset of keys; see `diccae-engine train --print-config`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Preset the configuration starts from: tiny (CPU, minutes) or base (ViT-B-like, GPU).
    #[arg(long, value_name = "NAME")]
    preset: Option<String>,
    /// Override one key, e.g. --set train.epochs=5 (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    overrides: Vec<String>,
}

fn run_features(args: FeaturesArgs) -> diccae_engine::Result<()> {
    let c = &args.config;
    let cfg = Config::resolve(c.preset.as_deref(), c.config.as_deref(), &c.overrides)?;
    let dataset = features::load(&cfg, args.data.as_deref())?;
    for s in &dataset.skipped {
        eprintln!("skipped {s}");
    }
    let bytes = export_features(&dataset, &cfg, &args.out)?;
    println!(
        "wrote {} ({} train + {} test clips, {} skipped, {:.1} MiB)",
        args.out.display(),
        dataset.train.len(),
        dataset.test.len(),
        dataset.skipped.len(),
        bytes as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

/// Resolves and opens `--device` and prints its notice, if any.
fn select_device(device: Device) -> diccae_engine::Result<Opened> {
    let resolved = device::resolve(device)?;
    if let Some(notice) = resolved.notice {
        eprintln!("{notice}");
    }
    Ok(resolved.backend)
}

fn run_ablate(args: AblateArgs) -> diccae_engine::Result<()> {
    let backend = select_device(args.device)?;
    let table = ablate(
        &AblationPlan {
            preset: args.config.preset.as_deref(),
            config_file: args.config.config.as_deref(),
            overrides: &args.config.overrides,
            seeds: args.seeds,
            first_seed: args.first_seed,
            out: args.out.clone(),
            data: args.data,
            variants: &args.variants,
        },
        &backend,
    )?;
    println!("\n{table}");
    println!(
        "wrote {0}/ablation.md and {0}/ablation.json",
        args.out.display()
    );
    Ok(())
}

fn run_eval(args: EvalArgs) -> diccae_engine::Result<()> {
    let backend = select_device(args.device)?;
    let out = args.out.unwrap_or_else(|| args.checkpoint.join("eval"));
    let summary = evaluate_checkpoint(
        &args.checkpoint,
        args.data.as_deref(),
        &args.overrides,
        &out,
        false,
        &backend,
    )?;
    println!("\n{}", summary.table());
    println!(
        "wrote {0}/summary.json, {0}/report.md and {0}/plots/",
        out.display()
    );
    Ok(())
}

/// `runs/<preset>-<YYYYMMDD-HHMMSS>` in UTC.
fn default_run_dir(preset: &str) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    PathBuf::from(format!(
        "runs/{preset}-{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    ))
}

fn run_train(args: TrainArgs) -> diccae_engine::Result<()> {
    let config_file = match (&args.config.config, args.resume, &args.out) {
        (None, true, Some(out)) => Some(out.join("config.toml")),
        (file, _, _) => file.clone(),
    };
    let mut overrides = args.config.overrides.clone();
    if let Some(m) = &args.method {
        overrides.push(format!("method={m}"));
    }
    let cfg = Config::resolve(
        args.config.preset.as_deref(),
        config_file.as_deref(),
        &overrides,
    )?;
    if args.print_config {
        print!("{}", cfg.to_toml()?);
        return Ok(());
    }
    let backend = select_device(args.device)?;
    let out = args.out.unwrap_or_else(|| default_run_dir(&cfg.preset));
    println!("run directory: {}", out.display());
    let outcome = train(
        &cfg,
        &TrainOptions {
            out,
            data: args.data,
            resume: args.resume,
            quiet: false,
            overwrite: args.overwrite,
        },
        &backend,
    )?;
    println!("\n{}", outcome.summary.table());
    println!(
        "wrote {0}/summary.json, {0}/report.md and {0}/plots/",
        outcome.run_dir.display()
    );
    Ok(())
}

fn run_import_cavmae(args: ImportCavmaeArgs) -> diccae_engine::Result<()> {
    use diccae_engine::data::manifest::Split;
    let mut lists: Vec<(PathBuf, Split)> =
        args.train.into_iter().map(|p| (p, Split::Train)).collect();
    lists.extend(args.test.into_iter().map(|p| (p, Split::Test)));
    let r = diccae_engine::data::cavmae::import(
        &lists,
        args.labels.as_deref(),
        args.frames,
        &args.out,
    )?;
    println!(
        "imported {} clips into {} ({} with several labels kept their first, {} with fewer than {} frames); {} rejected, listed in {}",
        r.clips,
        args.out.join("manifest.jsonl").display(),
        r.multi_label,
        r.missing_frames,
        args.frames,
        r.rejects.len(),
        args.out.join("rejects.txt").display()
    );
    for (id, why) in r.rejects.iter().take(5) {
        eprintln!("  rejected {id}: {why}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => run_train(args),
        Command::Eval(args) => run_eval(args),
        Command::Ablate(args) => run_ablate(args),
        Command::Features(args) => run_features(args),
        Command::ImportCavmae(args) => run_import_cavmae(args),
        Command::Info => {
            let cpu = CpuBackend::new();
            println!("diccae-engine {}", env!("CARGO_PKG_VERSION"));
            println!("backend {}: {} threads", cpu.name(), cpu.threads());
            if cuda_kernels::KERNELS_BUILT {
                let stems: Vec<&str> = cuda_kernels::kernel_fatbins()
                    .iter()
                    .map(|(s, _)| *s)
                    .collect();
                println!("CUDA kernels built into this binary: {}", stems.join(", "));
            } else {
                println!("{}", cuda_kernels::missing_kernels_hint());
            }
            println!("{}", device::cuda_support());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
