// SPDX-License-Identifier: MPL-2.0
//! `affect models [FILE|DIR]...`: what a model file is, as `gst-inspect-1.0` says what an
//! element is: for a model of the affect contract its version, heads and their labels, face
//! input (size, channels, normalisation, alignment), audio window, recurrent state, training
//! data, source and licence; for a detector network (MTCNN) its stage, source and licence;
//! and for a file that breaks the contract, the reason.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use affect_core::contract::{Alignment, keys};
use affect_core::detect::mtcnn;
use affect_onnx::{Model, Provider, SessionOptions};

/// Options of `affect models`.
#[derive(clap::Args)]
pub struct ModelsOptions {
    /// Model files, or folders of them (default: the folder of the default model).
    pub paths: Vec<PathBuf>,
}

fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("cannot list {}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|e| e == "onnx"))
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// The model file at `path` opened on the CPU with one thread of its own, to read what it is.
pub fn open_on_cpu(path: &Path) -> Result<Model, String> {
    let options = SessionOptions {
        provider: Provider::Cpu,
        intra_op_threads: 1,
        fallback_to_cpu: false,
    };
    Model::open(path, &options)
}

/// The description of one file (a contract model, a detector network or a broken file).
pub fn describe(path: &Path) -> Result<String, String> {
    let model = open_on_cpu(path)?;
    let meta = &model.metadata;
    let mut t = String::new();
    let _ = writeln!(t, "{}", path.display());
    let field = |t: &mut String, name: &str, value: &str| {
        let _ = writeln!(t, "  {name:<16}{value}");
    };
    let provenance = |t: &mut String| {
        for (key, name) in [
            (keys::PROVENANCE_TRAINING_DATA, "training data"),
            (keys::PROVENANCE_SOURCE, "source"),
            (keys::PROVENANCE_LICENSE, "licence"),
            (keys::PROVENANCE_WEIGHTS_SHA256, "weights sha256"),
            (keys::PROVENANCE_BACKBONE, "architecture"),
            (keys::PROVENANCE_DATE, "date"),
            (keys::PROVENANCE_COMMAND, "made by"),
        ] {
            if let Some(v) = meta.get(key) {
                field(t, name, v);
            }
        }
    };
    if meta.get(mtcnn::keys::DETECTOR).map(String::as_str) == Some(mtcnn::DETECTOR_NAME) {
        field(
            &mut t,
            "kind",
            "face detector network (affectfacecrop detector=mtcnn)",
        );
        if let Some(stage) = meta.get(mtcnn::keys::STAGE) {
            field(&mut t, "stage", stage);
        }
        if let Some(n) = meta.get(mtcnn::keys::NORMALIZATION) {
            field(&mut t, "input", n);
        }
        provenance(&mut t);
        return Ok(t);
    }
    let c = match model.contract() {
        Ok(c) => c,
        Err(e) => {
            field(&mut t, "kind", "not a model of the affect contract");
            field(&mut t, "problem", &e.to_string());
            return Ok(t);
        }
    };
    field(
        &mut t,
        "name",
        c.name
            .as_deref()
            .unwrap_or("(none: the file name stands for it)"),
    );
    field(&mut t, "contract", &format!("version {}", c.version));
    field(&mut t, "heads", &c.heads.list());
    if c.heads.expression {
        field(&mut t, "expressions", &c.expression_labels.join(", "));
    }
    if c.heads.au {
        field(&mut t, "action units", &c.au_labels.join(", "));
    }
    let f = &c.face;
    let norm = if f.channels == 1 {
        format!("mean {} std {}", f.mean[0], f.std[0])
    } else {
        format!(
            "mean {},{},{} std {},{},{}",
            f.mean[0], f.mean[1], f.mean[2], f.std[0], f.std[1], f.std[2]
        )
    };
    field(
        &mut t,
        "face",
        &format!(
            "{}x{} {}, (x/255 - mean) / std: {norm}, {}",
            f.width,
            f.height,
            if f.channels == 1 {
                "grey (BT.601 luma)"
            } else {
                "RGB"
            },
            match f.alignment {
                Alignment::ArcFace5Point => "aligned on 5 landmarks (ArcFace template)".to_string(),
                Alignment::Box => format!("box crop, margin {}", f.box_margin),
            }
        ),
    );
    match &c.audio {
        Some(a) => field(
            &mut t,
            "audio",
            &format!(
                "{} log-mel frames of {} mels at {} Hz (hop {})",
                a.frames, a.mel.n_mels, a.mel.sample_rate, a.mel.hop_length
            ),
        ),
        None => field(&mut t, "audio", "none (video only)"),
    }
    field(
        &mut t,
        "state",
        &c.state_size
            .map_or("none (frame by frame)".to_string(), |s| {
                format!("{s} values carried along each face track")
            }),
    );
    provenance(&mut t);
    Ok(t)
}

pub fn run(options: &ModelsOptions) -> Result<(), String> {
    let paths = if options.paths.is_empty() {
        let default = crate::pipeline::default_model()?;
        vec![default.parent().map(Path::to_path_buf).unwrap_or_default()]
    } else {
        options.paths.clone()
    };
    let files = files(&paths)?;
    if files.is_empty() {
        return Err("no .onnx files there".into());
    }
    let mut failed = 0;
    for (i, f) in files.iter().enumerate() {
        if i > 0 {
            println!();
        }
        match describe(f) {
            Ok(text) => print!("{text}"),
            Err(e) => {
                failed += 1;
                println!("{}\n  problem         {e}", f.display());
            }
        }
    }
    if failed > 0 {
        Err(format!("{failed} of {} files cannot be read", files.len()))
    } else {
        Ok(())
    }
}
