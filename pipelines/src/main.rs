//! `affect`: run the affect elements without writing a pipeline.
//!
//! - `affect demo`: a generated talking-face clip through the whole analysis, with an
//!   annotated video, the results as CSV/JSONL, a timeline plot and ABAW scores against the
//!   clip's ground truth.
//! - `affect analyze`: files and folders of videos through the analysis, N at a time, into
//!   tables, timeline plots and a summary table; resumable.
//! - `affect bench`: the elements' benchmarks against baselines measured in the same run.
//! - `affect models`: what model files are: contract, heads, labels, input, provenance.

use std::process::ExitCode;

use affect_cli::{analyze, bench, demo, models};
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
    Demo(demo::DemoOptions),
    /// Analyse video files and folders of videos: one table and timeline plot per video.
    Analyze(analyze::AnalyzeOptions),
    /// Benchmark the elements, each against a baseline measured in the same run.
    Bench(bench::BenchOptions),
    /// Describe model files: contract version, heads and labels, face and audio input, state,
    /// training data, source and licence.
    Models(models::ModelsOptions),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = affect_cli::init() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Demo(options) => demo::run(&options).map(|_| ()),
        Command::Analyze(options) => analyze::run(&options).and_then(|results| {
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
        Command::Bench(options) => bench::run(&options),
        Command::Models(options) => models::run(&options),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
