// SPDX-License-Identifier: MPL-2.0
//! `affect`: run the affect elements without writing a pipeline.
//!
//! - `affect demo`: a generated talking-face clip through the whole analysis, with an
//!   annotated video, the results as CSV/JSONL, a timeline plot and ABAW scores against the
//!   clip's ground truth.
//! - `affect analyze`: files and folders of videos through the analysis, N at a time, into
//!   tables, timeline plots and a summary table; resumable.
//! - `affect merge`: the per-video tables of `affect analyze` output folders into one
//!   Apache Parquet dataset.
//! - `affect bench`: the elements' benchmarks against baselines measured in the same run.
//! - `affect models`: what model files are: contract, heads, labels, input, provenance.

use std::process::ExitCode;

use affect_cli::{analyze, bench, demo, merge, models};
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
    /// Gather the per-video tables of analyze output folders into one Parquet dataset.
    Merge(merge::MergeOptions),
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
        Command::Analyze(options) => {
            return match analyze::run(&options) {
                Ok(batch) => analyze_report(&batch),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Merge(options) => merge::run(&options),
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

/// The table of a batch, what is left, and its exit status.
fn analyze_report(batch: &analyze::BatchResult) -> ExitCode {
    println!();
    println!("{}", analyze::table(&batch.results));
    let total = batch.results.len();
    let not_done = |s: &analyze::Status| {
        matches!(
            s,
            analyze::Status::Failed(_) | analyze::Status::Incomplete { .. } | analyze::Status::Left
        )
    };
    let done =
        total - batch.count(not_done) - batch.count(|s| matches!(s, analyze::Status::Elsewhere));
    let left = batch.count(|s| matches!(s, analyze::Status::Left));
    let elsewhere = batch.count(|s| matches!(s, analyze::Status::Elsewhere));
    if let Some(reason) = &batch.output_error {
        eprintln!(
            "error: the outputs cannot be written ({reason}): stopped with {done} of {total} \
             inputs done, {left} left and none blamed; free the output folder and run the same \
             command again (exit status {})",
            analyze::EXIT_REQUEUE
        );
    } else if let Some(signal) = batch.signal.filter(|_| left > 0) {
        eprintln!(
            "stopped by {}: {done} of {total} inputs done, {left} left; run the same command \
             again to continue (exit status {})",
            analyze::signal_name(signal),
            analyze::EXIT_REQUEUE
        );
    } else if done + elsewhere < total {
        eprintln!(
            "error: {} of {total} inputs failed or are incomplete",
            total - done - elsewhere
        );
    } else if elsewhere > 0 {
        eprintln!(
            "{elsewhere} of {total} inputs are being analysed by another process; run the same \
             command again once it has ended (exit status {})",
            analyze::EXIT_REQUEUE
        );
    }
    ExitCode::from(batch.exit_status())
}
