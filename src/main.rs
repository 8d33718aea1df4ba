//! The `diccae-engine` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use diccae_engine::backend::BackendCore;
use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::config::Config;
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
    #[command(long_about = "Pretrain an encoder with DICCAE, then evaluate it.\n\n\
        Without --data the built-in synthetic dataset is used (no files needed). With --data DIR_OR_MANIFEST \
        the clips of a JSON-lines manifest are decoded (see the README for the format).\n\n\
        The run directory (--out) receives config.toml, metrics.jsonl, checkpoints/ (one per epoch), \
        summary.json, report.md and plots/*.png.\n\n\
        Examples:\n  diccae-engine train\n  diccae-engine train --set train.epochs=5 --set diccae.lambda_conf=0\n  \
        diccae-engine train --data my_clips/manifest.jsonl --out runs/mine\n  diccae-engine train --out runs/mine --resume")]
    Train(TrainArgs),
    /// Print the backend this build uses and its thread count.
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
    /// A TOML configuration (any subset of keys; see `diccae-engine train --print-config`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Preset the configuration starts from: tiny (CPU, minutes) or base (ViT-B-like, GPU).
    #[arg(long, value_name = "NAME")]
    preset: Option<String>,
    /// Override one key, e.g. --set train.epochs=5 (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    overrides: Vec<String>,
    /// Continue the run in --out from its latest checkpoint (with the run's own config.toml).
    #[arg(long, requires = "out")]
    resume: bool,
    /// Print the resolved configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
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
    let config_file = match (&args.config, args.resume, &args.out) {
        (None, true, Some(out)) => Some(out.join("config.toml")),
        _ => args.config.clone(),
    };
    let cfg = Config::resolve(
        args.preset.as_deref(),
        config_file.as_deref(),
        &args.overrides,
    )?;
    if args.print_config {
        print!("{}", cfg.to_toml()?);
        return Ok(());
    }
    let out = args.out.unwrap_or_else(|| default_run_dir(&cfg.preset));
    println!("run directory: {}", out.display());
    let outcome = train(
        &cfg,
        &TrainOptions {
            out,
            data: args.data,
            resume: args.resume,
            quiet: false,
        },
    )?;
    println!("\n{}", outcome.summary.table());
    println!(
        "wrote {0}/summary.json, {0}/report.md and {0}/plots/",
        outcome.run_dir.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => run_train(args),
        Command::Info => {
            let cpu = CpuBackend::new();
            println!("diccae-engine {}", env!("CARGO_PKG_VERSION"));
            println!("backend {}: {} threads", cpu.name(), cpu.threads());
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
