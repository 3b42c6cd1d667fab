//! `affect`: run the affect elements without writing a pipeline.
//!
//! - `affect demo`: a generated talking-face clip through the whole analysis, with an
//!   annotated video, the results as CSV/JSONL, a timeline plot and ABAW scores against the
//!   clip's ground truth.
//! - `affect analyze`: files and folders of videos through the analysis, N at a time, into
//!   tables, timeline plots and a summary table; resumable.
//! - `affect bench`: the elements' benchmarks against baselines measured in the same run.

use std::path::PathBuf;
use std::process::ExitCode;

use affect_cli::pipeline::{Detector, Format};
use affect_cli::{analyze, bench, demo};
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
    /// Analyse video files and folders of videos: one table and timeline plot per video.
    Analyze {
        /// Video files, or folders searched for videos (recursively).
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Folder for the outputs.
        #[arg(short, long, default_value = "affect-results")]
        out: PathBuf,
        /// ONNX model of the affect contract (default: models/affect-default.onnx).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Face detector: haar, onnx:FILE (YuNet/SCRFD/UltraFace) or full-frame.
        #[arg(long, default_value = "haar")]
        detector: Detector,
        /// Videos analysed at the same time.
        #[arg(short, long, default_value_t = 1)]
        jobs: usize,
        /// Format of the per-video table.
        #[arg(long, value_enum, default_value_t = Format::Csv)]
        format: Format,
    },
    /// Benchmark the elements, each against a baseline measured in the same run.
    Bench {
        /// Longer runs (steadier figures, a few minutes).
        #[arg(long)]
        long: bool,
        /// Model for the inference benchmark (default: models/affect-default.onnx).
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
        Command::Analyze {
            inputs,
            out,
            model,
            detector,
            jobs,
            format,
        } => analyze::run(&analyze::AnalyzeOptions {
            inputs,
            out,
            model,
            detector,
            jobs,
            format,
        })
        .and_then(|results| {
            println!();
            println!("{}", analyze::table(&results));
            let failed = results
                .iter()
                .filter(|(_, s)| matches!(s, analyze::Status::Failed(_)))
                .count();
            if failed > 0 {
                Err(format!("{failed} of {} videos failed", results.len()))
            } else {
                Ok(())
            }
        }),
        Command::Bench { long, model } => bench::run(&bench::BenchOptions { long, model }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
