//! `affect`: run the affect elements without writing a pipeline.
//!
//! - `affect demo`: a generated talking-face clip through the whole analysis, with an
//!   annotated video, the results as CSV/JSONL, a timeline plot and ABAW scores against the
//!   clip's ground truth.

use std::path::PathBuf;
use std::process::ExitCode;

use affect_cli::demo;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "affect",
    version,
    about = "Audio-visual affect analysis with GStreamer"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Analyse a generated talking-face clip with the default model and score the results
    /// against its ground truth.
    Demo {
        /// Folder for the generated clip and the outputs.
        #[arg(short, long, default_value = "affect-demo")]
        out: PathBuf,
        /// Length of the clip in seconds.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Seed of the synthetic world (the person, their expressions and voice).
        #[arg(long, default_value_t = 2)]
        seed: u64,
        /// ONNX model of the affect contract (default: models/affect-default.onnx).
        #[arg(long)]
        model: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = affect_cli::init() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Demo {
            out,
            seconds,
            seed,
            model,
        } => demo::run(&demo::DemoOptions {
            out,
            seconds,
            seed,
            model,
        })
        .map(|_| ()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
