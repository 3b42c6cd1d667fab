//! `affect`: run the affect elements without writing a pipeline.
//!
//! - `affect demo`: makes a short speech-like recording, runs it through the audio stream of
//!   the analysis (`decodebin ! audioconvert ! audioresample ! affectspectro`) and prints what
//!   came out, with the spectrogram drawn in the terminal.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;

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
    /// Run the analysis on a generated recording and summarise the result.
    Demo {
        /// Folder for the generated input and the outputs.
        #[arg(short, long, default_value = "affect-demo")]
        out: PathBuf,
        /// Length of the generated recording in seconds.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = gst::init() {
        eprintln!("error: cannot initialise GStreamer: {e}");
        return ExitCode::FAILURE;
    }
    // The elements are linked into this binary: no GST_PLUGIN_PATH needed.
    if let Err(e) = gstaffect::plugin_register_static() {
        eprintln!("error: cannot register the affect elements: {e}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Demo { out, seconds } => demo::run(&out, seconds),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
