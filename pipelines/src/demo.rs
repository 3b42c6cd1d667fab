// SPDX-License-Identifier: MPL-2.0
//! `affect demo`: the whole analysis on a generated talking-face clip with known ground truth.
//!
//! 1. The synthetic affect world (`affect_synth`) writes one clip of one person
//!    talking (MJPEG + voice in Matroska) with its ground truth, laid out as Aff-Wild2 is.
//! 2. The clip goes through the real pipeline ([`crate::pipeline`]): Haar faces, the
//!    default model with the voice's spectrogram, `affectsink` CSV and JSONL, and
//!    `affectoverlay` into a VP8/WebM video.
//! 3. The results are plotted (`timeline.png`) and scored the ABAW way against the ground
//!    truth through `affect_synth::eval`, and compared with [`SCORE_MINIMA`].

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use affect_core::labels::N_AUS;
use affect_synth::data::AffWild2;
use affect_synth::eval::{self, EvalReport};
use affect_synth::{self as synth, FrameTruth, SynthConfig};
use serde::Serialize;

use crate::pipeline::{self, Detector, Format, FrameRecord, Job, Outcome};
use crate::plot::{self, Series};
use crate::progress;

/// The scores the demo must reach with the default model (`SCORE_MINIMA[k].1` is the
/// minimum of the score named `.0`). The default model scores P_VA 0.922, P_EXPR 0.595 and
/// P_AU 0.600 on the demo's 10-second clip through the pipeline (MTCNN faces and landmarks,
/// detected every third frame and tracked in between, the state carried along the track;
/// 0.899, 0.583 and 0.591 with Haar faces and estimated landmarks); the minima sit about 0.05
/// below the Haar figures, so a
/// change that breaks any stage of the analysis shows as a failed demo. Macro F1 over 8
/// expressions and 12 AUs is lower on one short clip than on the validation split (0.95 and
/// 0.94) because the classes and AUs that never occur in it count as 0.
pub const SCORE_MINIMA: [(&str, f64); 3] = [("P_VA", 0.85), ("P_EXPR", 0.53), ("P_AU", 0.54)];

/// Frames of the clip that must have a face with results.
pub const MIN_COVERAGE: f64 = 0.9;

/// Size and rate of the demo clip.
pub const WIDTH: u32 = 640;
pub const HEIGHT: u32 = 480;
pub const FPS: u32 = 30;

/// Options of `affect demo`.
#[derive(clap::Args)]
pub struct DemoOptions {
    /// Folder for the generated clip and the outputs.
    #[arg(short, long, default_value = "affect-demo")]
    pub out: PathBuf,
    /// Length of the clip in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Seed of the synthetic world (the person, their expressions and voice).
    #[arg(long, default_value_t = 2)]
    pub seed: u64,
    /// ONNX model of the affect contract (default: models/affect-default.onnx).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub elements: pipeline::ElementOptions,
}

/// What the demo measured; written to `scores.json` too.
#[derive(Debug, Serialize)]
pub struct DemoScores {
    pub frames: usize,
    pub face_rows: usize,
    pub coverage: f64,
    pub ccc_valence: f64,
    pub ccc_arousal: f64,
    pub p_va: f64,
    pub p_expr: f64,
    pub p_au: f64,
    pub generate_seconds: f64,
    pub pipeline_seconds: f64,
    pub passed: bool,
}

/// The output files of a demo run.
pub struct DemoFiles {
    pub video: PathBuf,
    pub csv: PathBuf,
    pub jsonl: PathBuf,
    pub annotated: PathBuf,
    pub timeline: PathBuf,
    pub predictions: PathBuf,
    pub scores: PathBuf,
}

impl DemoFiles {
    fn new(out: &Path) -> DemoFiles {
        DemoFiles {
            video: out.join("synth/videos/synth-000.mkv"),
            csv: out.join("affect.csv"),
            jsonl: out.join("affect.jsonl"),
            annotated: out.join(format!("annotated.{}", pipeline::ANNOTATED_EXTENSION)),
            timeline: out.join("timeline.png"),
            predictions: out.join("predictions.csv"),
            scores: out.join("scores.json"),
        }
    }
}

fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// The pipeline's face of each video frame that is the person of the ground truth (the
/// best box overlap, at least 0.3), `None` where the pipeline found none.
fn match_frames<'a>(
    outcome: &'a Outcome,
    truth: &[FrameTruth],
    fps: f64,
) -> Vec<Option<&'a pipeline::FaceRecord>> {
    let mut matched = vec![None; truth.len()];
    for frame in &outcome.frames {
        let index = (frame.time * fps).round();
        if !(index >= 0.0 && (index as usize) < truth.len()) {
            continue;
        }
        let index = index as usize;
        let Some(person) = truth[index].faces.first() else {
            continue;
        };
        let [x, y, w, h] = person.bbox;
        let true_box = [x, y, x + w, y + h];
        matched[index] = best_face(frame, true_box);
    }
    matched
}

fn best_face(frame: &FrameRecord, true_box: [f32; 4]) -> Option<&pipeline::FaceRecord> {
    frame
        .faces
        .iter()
        .map(|f| (iou(f.bbox, true_box), f))
        .filter(|(o, _)| *o >= 0.3)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, f)| f)
}

/// Writes the ABAW prediction file (`training/README.md`, "Evaluation"): one row per
/// frame; a frame without a face holds the last prediction, as ABAW entries fill frames
/// their detector missed (neutral before the first one).
fn write_predictions(
    path: &Path,
    name: &str,
    matched: &[Option<&pipeline::FaceRecord>],
) -> Result<(), String> {
    let mut text = eval::prediction_header();
    text.push('\n');
    let mut last: Option<&pipeline::FaceRecord> = None;
    for (i, m) in matched.iter().enumerate() {
        last = m.or(last);
        let (va, expression, au) = match last {
            Some(f) => ([f.valence, f.arousal], f.expression, f.au_probs),
            None => ([0.0, 0.0], 0, [0.0; N_AUS]),
        };
        text += &format!("{name},{},{:.6},{:.6},{expression}", i + 1, va[0], va[1]);
        for p in au {
            text += &format!(",{p:.6}");
        }
        text.push('\n');
    }
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn series_of(matched: &[Option<&pipeline::FaceRecord>], fps: f64) -> Series {
    let mut s = Series::default();
    for (i, m) in matched.iter().enumerate() {
        if let Some(f) = m {
            s.push(
                i as f64 / fps,
                [f.valence, f.arousal],
                f.expression,
                f.au_probs,
            );
        }
    }
    s
}

fn truth_series(truth: &[FrameTruth]) -> Series {
    let mut s = Series::default();
    for frame in truth {
        if let Some(p) = frame.faces.first() {
            s.push(
                frame.time,
                [p.valence, p.arousal],
                p.expression,
                p.au.map(|a| a as f32),
            );
        }
    }
    s
}

/// Whether `report` meets every minimum of [`SCORE_MINIMA`], with one line per score.
pub fn check_minima(p_va: f64, p_expr: f64, p_au: f64) -> (bool, Vec<String>) {
    let mut ok = true;
    let lines = SCORE_MINIMA
        .iter()
        .map(|&(name, minimum)| {
            let value = match name {
                "P_VA" => p_va,
                "P_EXPR" => p_expr,
                _ => p_au,
            };
            let pass = value >= minimum;
            ok &= pass;
            format!(
                "{name:<7} {value:.4}   minimum {minimum:.2}   {}",
                if pass { "ok" } else { "BELOW" }
            )
        })
        .collect();
    (ok, lines)
}

pub fn run(options: &DemoOptions) -> Result<DemoScores, String> {
    let seconds = options.seconds;
    if !(seconds.is_finite() && (1.0..=600.0).contains(&seconds)) {
        return Err(format!(
            "--seconds must be between 1 and 600, got {seconds}"
        ));
    }
    let model = match &options.model {
        Some(m) => m.clone(),
        None => pipeline::default_model()?,
    };
    if !model.is_file() {
        return Err(format!("model {} does not exist", model.display()));
    }
    let out = &options.out;
    let files = DemoFiles::new(out);
    let synth_root = out.join("synth");
    if synth_root.exists() {
        // A clip of another length or seed must not leave frames or labels behind.
        fs::remove_dir_all(&synth_root)
            .map_err(|e| format!("cannot clear {}: {e}", synth_root.display()))?;
    }
    fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;

    // 1. The clip.
    let n_frames = (seconds * FPS as f64).round() as u64;
    let started = Instant::now();
    let spinner = progress::spinner(&format!(
        "generating a {seconds} s talking-face clip ({WIDTH}x{HEIGHT}, {FPS} fps, {n_frames} frames, voice at 16 kHz)"
    ));
    let world = SynthConfig {
        out: synth_root.clone(),
        videos: 1,
        seconds: seconds as f32,
        seed: options.seed,
        faces_per_frame: 1,
        fps: FPS,
        width: WIDTH,
        height: HEIGHT,
        ..SynthConfig::default()
    };
    synth::generate(&world).map_err(|e| format!("cannot generate the clip: {e}"))?;
    let generate_seconds = started.elapsed().as_secs_f64();
    spinner.finish_and_clear();
    println!(
        "clip      {} ({n_frames} frames, generated in {generate_seconds:.1} s)",
        files.video.display()
    );
    let truth = synth::read_ground_truth(&synth_root.join("ground_truth/synth-000.jsonl"))
        .map_err(|e| format!("cannot read the ground truth: {e}"))?;

    // 2. The pipeline.
    let job = Job {
        elements: options.elements.clone(),
        input: files.video.clone().into(),
        models: vec![pipeline::ModelStage::all(&model)],
        detector: Detector::Auto,
        tables: vec![
            (Format::Csv, files.csv.clone()),
            (Format::Jsonl, files.jsonl.clone()),
        ],
        annotated: Some(files.annotated.clone()),
    };
    println!("model     {}", model.display());
    println!("pipeline  {}", job.description().trim());
    let bar = progress::file_bar("analysing", Duration::from_secs_f64(seconds));
    let outcome = job.run(|position, duration| progress::update(&bar, position, duration))?;
    bar.finish_and_clear();
    let pipeline_seconds = outcome.elapsed.as_secs_f64();
    println!(
        "analysed  {} frames in {pipeline_seconds:.1} s ({:.1} frames/s, {:.2}x real time)",
        outcome.frames.len(),
        outcome.frames.len() as f64 / pipeline_seconds,
        seconds / pipeline_seconds
    );

    // 3. Scores and plot.
    let fps = if outcome.fps > 0.0 {
        outcome.fps
    } else {
        FPS as f64
    };
    let matched = match_frames(&outcome, &truth, fps);
    let covered = matched.iter().filter(|m| m.is_some()).count();
    let coverage = covered as f64 / truth.len().max(1) as f64;
    write_predictions(&files.predictions, "synth-000", &matched)?;
    let data = AffWild2::open(&synth_root).map_err(|e| e.to_string())?;
    let report: EvalReport =
        eval::evaluate(&data, world.split(0), &files.predictions).map_err(|e| e.to_string())?;
    let (va, expr, au) = match (&report.va, &report.expr, &report.au) {
        (Some(va), Some(expr), Some(au)) => (va, expr, au),
        _ => return Err("the clip's ground truth lacks a task's annotations".into()),
    };

    let predicted = series_of(&matched, fps);
    let truth_s = truth_series(&truth);
    let subtitle = format!(
        "synthetic clip, seed {}, {} frames at {fps:.0} fps; model {}; faces with results in {:.0} % of frames; \
         P_VA {:.3}  P_EXPR {:.3}  P_AU {:.3}",
        options.seed,
        truth.len(),
        model
            .file_name()
            .map_or("?".into(), |n| n.to_string_lossy()),
        100.0 * coverage,
        va.p_va,
        expr.macro_f1,
        au.mean_f1
    );
    plot::write(
        &files.timeline,
        &plot::Timeline {
            title: "affect demo: model (solid) and ground truth (dashed)",
            subtitle: &subtitle,
            duration: seconds,
            frame_seconds: 1.0 / fps,
            predicted: &predicted,
            truth: Some(&truth_s),
        },
    )?;

    let (passed_scores, lines) = check_minima(va.p_va, expr.macro_f1, au.mean_f1);
    let passed = passed_scores && coverage >= MIN_COVERAGE;
    let scores = DemoScores {
        frames: outcome.frames.len(),
        face_rows: outcome.face_rows(),
        coverage,
        ccc_valence: va.ccc_valence,
        ccc_arousal: va.ccc_arousal,
        p_va: va.p_va,
        p_expr: expr.macro_f1,
        p_au: au.mean_f1,
        generate_seconds,
        pipeline_seconds,
        passed,
    };
    let json = serde_json::to_string_pretty(&scores).map_err(|e| e.to_string())?;
    fs::File::create(&files.scores)
        .and_then(|mut f| writeln!(f, "{json}"))
        .map_err(|e| format!("cannot write {}: {e}", files.scores.display()))?;

    println!();
    println!("outputs");
    for (what, path) in [
        ("annotated video", &files.annotated),
        ("results (CSV)", &files.csv),
        ("results (JSONL)", &files.jsonl),
        ("timeline plot", &files.timeline),
        ("ABAW predictions", &files.predictions),
        ("scores", &files.scores),
    ] {
        println!("  {what:<17} {}", path.display());
    }
    println!();
    println!(
        "ABAW scores against the clip's ground truth ({} frames, faces with results in {covered}, {:.1} %):",
        truth.len(),
        100.0 * coverage
    );
    println!("{report}");
    println!();
    println!("thresholds:");
    for line in &lines {
        println!("  {line}");
    }
    println!(
        "  coverage {:.4}   minimum {MIN_COVERAGE:.2}   {}",
        coverage,
        if coverage >= MIN_COVERAGE {
            "ok"
        } else {
            "BELOW"
        }
    );
    println!(
        "time: {:.1} s generating, {pipeline_seconds:.1} s analysing, {:.1} s in all",
        generate_seconds,
        started.elapsed().as_secs_f64()
    );
    if !passed {
        return Err("the demo's scores are below the thresholds (see above)".into());
    }
    Ok(scores)
}
