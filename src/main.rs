//! The `diccae-engine` command line.

use clap::{Parser, Subcommand};

use diccae_engine::backend::BackendCore;
use diccae_engine::backend::cpu::CpuBackend;

/// Self-supervised audio-visual representation learning (DICCAE, AVCL).
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the backends this build can use and how many threads the CPU backend runs.
    Info,
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Info => {
            let cpu = CpuBackend::new();
            println!("diccae-engine {}", env!("CARGO_PKG_VERSION"));
            println!("backend {}: {} threads", cpu.name(), cpu.threads());
        }
    }
}
