// SPDX-License-Identifier: MPL-2.0
//! The analysis pipeline of one input, shared by `affect demo`, `affect analyze` and the
//! scripts: the analysis is `affectanalysisbin` (the same graph a `gst-launch-1.0` user gets),
//! with the outputs after it:
//!
//! ```text
//! filesrc ! affectanalysisbin name=analysis model=A ...
//!   ! affectinfer name=infer1 model=B ...                         (more models, optional)
//!   ! tee name=results
//!     results. ! queue ! affectsink name=table0 format=csv|jsonl  (one per table)
//!     results. ! queue ! affectoverlay ! videoconvert ! vp8enc ! webmmux ! filesink   (optional)
//! ```
//!
//! A probe on the tee keeps every frame's results for the plot and scores; the bin's element
//! messages tell which streams the input has and how long each one ran.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use affect_core::labels::{AU_LABELS, EXPRESSION_LABELS, N_AUS};
use gst::prelude::*;
use gstaffect::meta;

use crate::archive::Source;

/// Where the faces come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Detector {
    /// BlazeFace on videos and MTCNN on photographs, as their files are found, else Haar.
    Auto,
    /// MediaPipe's BlazeFace, tiled for small faces (`models/blazeface-back.onnx`).
    Blazeface,
    /// The MTCNN face detector with five landmarks (`models/mtcnn-*.onnx`).
    Mtcnn,
    /// `affectfacecrop`'s built-in Haar cascade (no model file needed).
    Haar,
    /// An ONNX face detector of the YuNet, SCRFD or UltraFace layout.
    Onnx(PathBuf),
    /// The whole frame is the face (videos of cropped faces).
    FullFrame,
}

impl FromStr for Detector {
    type Err = String;

    fn from_str(s: &str) -> Result<Detector, String> {
        match s {
            "auto" => Ok(Detector::Auto),
            "blazeface" => Ok(Detector::Blazeface),
            "mtcnn" => Ok(Detector::Mtcnn),
            "haar" => Ok(Detector::Haar),
            "full-frame" => Ok(Detector::FullFrame),
            _ => match s.strip_prefix("onnx:") {
                Some(file) if !file.is_empty() => Ok(Detector::Onnx(PathBuf::from(file))),
                _ => Err(format!(
                    "unknown detector {s:?}: use auto, blazeface, mtcnn, haar, full-frame or \
                     onnx:FILE"
                )),
            },
        }
    }
}

impl fmt::Display for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Detector::Auto => write!(f, "auto"),
            Detector::Blazeface => write!(f, "blazeface"),
            Detector::Mtcnn => write!(f, "mtcnn"),
            Detector::Haar => write!(f, "haar"),
            Detector::FullFrame => write!(f, "full-frame"),
            Detector::Onnx(p) => write!(f, "onnx:{}", p.display()),
        }
    }
}

/// The table formats of `affectsink`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    /// The `affectsink` `format` value, which is also the file extension.
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
}

/// Encoder and muxer of the annotated video: VP8 in WebM plays in every browser and in
/// VLC, and VP8's real-time mode keeps up with 640x480 at 30 fps on two cores.
pub const ANNOTATED_ENCODER: &str = "vp8enc deadline=1 cpu-used=8 threads=2 \
     target-bitrate=1500000 keyframe-max-dist=60 ! webmmux";
/// Extension of the annotated video.
pub const ANNOTATED_EXTENSION: &str = "webm";

/// One `affectinfer` of the analysis: its model and the heads it writes (`None`: all).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelStage {
    pub path: PathBuf,
    pub heads: Option<String>,
}

impl ModelStage {
    /// A model writing every head it has.
    pub fn all(path: &Path) -> ModelStage {
        ModelStage {
            path: path.to_path_buf(),
            heads: None,
        }
    }
}

/// The contract of the model file at `path`, read and checked.
fn model_contract(path: &Path) -> Result<affect_core::contract::ModelContract, String> {
    crate::models::open_on_cpu(path)?
        .contract()
        .map_err(|e| format!("model {}: {e}", path.display()))
}

/// The heads of the model file at `path`, as its contract says.
pub fn model_heads(path: &Path) -> Result<affect_core::contract::Heads, String> {
    model_contract(path).map(|c| c.heads)
}

/// What a table's rows were made with: the model's name (as its results name it), its file
/// and the SHA-256 of the file.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub file: PathBuf,
    pub sha256: String,
}

/// The [`ModelInfo`] of the model file at `path`.
pub fn model_info(path: &Path) -> Result<ModelInfo, String> {
    use sha2::{Digest, Sha256};
    let contract = model_contract(path)?;
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read model {}: {e}", path.display()))?;
    Ok(ModelInfo {
        // As affectinfer names the model in its results.
        name: contract
            .name
            .clone()
            .unwrap_or_else(|| path.display().to_string()),
        file: path.to_path_buf(),
        sha256: Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    })
}

/// The chain of models for `--model A --model B ...`: each head comes from the last model
/// that has it, so every `affectinfer` but the last is told which of its heads to write (a
/// model left with none is an error, as it would add nothing).
pub fn model_chain(paths: &[PathBuf]) -> Result<Vec<ModelStage>, String> {
    if paths.len() <= 1 {
        return Ok(paths.iter().map(|p| ModelStage::all(p)).collect());
    }
    let heads: Vec<_> = paths
        .iter()
        .map(|p| model_heads(p))
        .collect::<Result<_, _>>()?;
    let mut stages = Vec::new();
    for (i, (path, own)) in paths.iter().zip(&heads).enumerate() {
        let kept: Vec<_> = own
            .iter()
            .filter(|h| !heads[i + 1..].iter().any(|later| later.has(*h)))
            .collect();
        if kept.is_empty() {
            return Err(format!(
                "model {} adds nothing: each of its heads ({}) comes from a later --model",
                path.display(),
                own.list()
            ));
        }
        let list = kept.iter().map(|h| h.name()).collect::<Vec<_>>().join(",");
        stages.push(ModelStage {
            path: path.clone(),
            heads: (kept.len() < own.iter().count()).then_some(list),
        });
    }
    Ok(stages)
}

/// Where the networks run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ProviderChoice {
    #[default]
    Cpu,
    Cuda,
}

/// The element settings `affect analyze`, `affect demo` and `affect bench` pass on: each is
/// the `affectanalysisbin` property of the same name, with the same default.
#[derive(Clone, Debug, Default, PartialEq, clap::Args)]
pub struct ElementOptions {
    /// Where the models and the face detector run (execution-provider); cuda needs
    /// ./setup.sh --gpu.
    #[arg(long = "execution-provider", alias = "provider", value_enum,
          default_value_t = ProviderChoice::Cpu)]
    pub provider: ProviderChoice,
    /// GPU to run on with --execution-provider cuda (device-id).
    #[arg(long = "device-id", alias = "device", default_value_t = 0)]
    pub device: u32,
    /// Run the face detector every N frames and track in between (detect-interval;
    /// default: the element's automatic choice).
    #[arg(long)]
    pub detect_interval: Option<u32>,
    /// Most faces in one model run (batch-size; default: the element's).
    #[arg(long)]
    pub batch_size: Option<u32>,
    /// Analyse frames as stored, ignoring the input's orientation tag (apply-orientation).
    #[arg(long)]
    pub ignore_orientation: bool,
}

impl ElementOptions {
    /// Properties every model's `affectinfer` takes (the bin's and those chained after it).
    pub fn infer(&self) -> String {
        let mut p = String::new();
        if self.provider == ProviderChoice::Cuda {
            p += &format!(" execution-provider=cuda device-id={}", self.device);
        }
        if let Some(n) = self.batch_size {
            p += &format!(" batch-size={n}");
        }
        p
    }

    /// `affectanalysisbin` properties.
    pub fn analysis(&self) -> String {
        let mut p = self.infer();
        if let Some(n) = self.detect_interval {
            p += &format!(" detect-interval={n}");
        }
        if self.ignore_orientation {
            p += " apply-orientation=false";
        }
        p
    }
}

/// One run of the pipeline over one file.
#[derive(Clone, Debug)]
pub struct Job {
    /// Provider, device, detector interval and batch size of the elements.
    pub elements: ElementOptions,
    pub input: Source,
    /// The models, run one after the other on the same faces.
    pub models: Vec<ModelStage>,
    pub detector: Detector,
    /// `affectsink` outputs.
    pub tables: Vec<(Format, PathBuf)>,
    /// The overlay's annotated video, when wanted.
    pub annotated: Option<PathBuf>,
}

/// [`FaceRecord::expression`] of a face no model gave a known expression for.
pub const NO_EXPRESSION: usize = usize::MAX;

/// One face of one frame, as the models saw it. Heads no model gave are NaN (and
/// [`NO_EXPRESSION`]), never a made-up value.
#[derive(Clone, Debug, PartialEq)]
pub struct FaceRecord {
    pub track_id: u64,
    /// `[x1, y1, x2, y2]` in frame pixels.
    pub bbox: [f32; 4],
    pub valence: f32,
    pub arousal: f32,
    /// Index into [`EXPRESSION_LABELS`], or [`NO_EXPRESSION`].
    pub expression: usize,
    /// In [`EXPRESSION_LABELS`] order; NaN for labels the model does not have.
    pub expression_probs: Vec<f32>,
    /// Occurrence probabilities in [`AU_LABELS`] order; NaN for AUs the model does not have.
    pub au_probs: [f32; N_AUS],
}

/// The results of one video frame.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FrameRecord {
    /// Presentation time in seconds.
    pub time: f64,
    /// Faces with results (faces the model skipped are counted in `faces_without_result`).
    pub faces: Vec<FaceRecord>,
    pub faces_without_result: usize,
}

/// What a run produced.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub frames: Vec<FrameRecord>,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub elapsed: Duration,
    /// End of the last video frame delivered (its time stamp plus its duration).
    pub decoded: Duration,
    /// The error that ended the stream after frames had been delivered (a truncated or
    /// damaged file): the frames before it are in `frames`.
    pub error: Option<String>,
    /// The input had an audio stream (and it was analysed).
    pub has_audio: bool,
    /// What of each stream came out of the decoder, as `affectanalysisbin` reports it at
    /// the stream's end (absent for a stream that did not end).
    pub video_span: Option<Span>,
    pub audio_span: Option<Span>,
    /// The video's orientation tag, and whether the analysis turned the frames upright.
    pub orientation: Option<String>,
    pub orientation_applied: bool,
    /// The duration the container gives (the longest stream's), when it gives one.
    pub container: Option<Duration>,
    /// Warnings of the elements, one line each, the first of each element.
    pub warnings: Vec<String>,
}

/// The time a stream covered: its first time stamp to the end of its last buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Span {
    pub start: f64,
    pub end: f64,
}

impl Span {
    fn from_message(s: &gst::StructureRef) -> Option<Span> {
        let seconds = |field| s.get::<u64>(field).ok().map(|ns| ns as f64 * 1e-9);
        Some(Span {
            start: seconds("start")?,
            end: seconds("end")?,
        })
    }
}

/// Why a run could not finish.
#[derive(Clone, Debug, PartialEq)]
pub enum RunError {
    /// The input, the models or the analysis: the cause is in the data.
    Input(String),
    /// An output could not be written (a full disk, a lost folder): not the input's fault.
    Output(String),
    /// Stopped by [`Job::run_until`]'s `stop`.
    Interrupted,
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Input(e) | RunError::Output(e) => f.write_str(e),
            RunError::Interrupted => f.write_str(INTERRUPTED),
        }
    }
}

impl From<RunError> for String {
    fn from(e: RunError) -> String {
        e.to_string()
    }
}

impl From<String> for RunError {
    fn from(e: String) -> RunError {
        RunError::Input(e)
    }
}

impl From<&str> for RunError {
    fn from(e: &str) -> RunError {
        RunError::Input(e.to_string())
    }
}

/// Names of the pipeline's output elements: their errors are output-side errors.
const TABLE_SINK: &str = "table";
const ANNOTATED_SINK: &str = "annotated";

impl Outcome {
    /// Faces with results over all frames (the tables' row count).
    pub fn face_rows(&self) -> usize {
        self.frames.iter().map(|f| f.faces.len()).sum()
    }
}

/// Turns the meta of one face into a record in the label order of affect-core (the models'
/// labels may come in another order, or be a subset); `None` when no model left a result.
fn record(face: &meta::AnalysedFace) -> Option<FaceRecord> {
    let affect = face.affect.as_ref()?;
    let mut au_probs = [f32::NAN; N_AUS];
    for (k, label) in AU_LABELS.iter().enumerate() {
        if let Some(p) = affect.au_prob(label) {
            au_probs[k] = p as f32;
        }
    }
    let expression_probs: Vec<f32> = EXPRESSION_LABELS
        .iter()
        .map(|l| affect.expression_prob(l).map_or(f32::NAN, |p| p as f32))
        .collect();
    let expression = affect
        .expression
        .as_deref()
        .and_then(|e| EXPRESSION_LABELS.iter().position(|l| *l == e))
        .unwrap_or(NO_EXPRESSION);
    Some(FaceRecord {
        track_id: face.face.track_id,
        bbox: face.face.bbox,
        valence: affect.valence.map_or(f32::NAN, |v| v as f32),
        arousal: affect.arousal.map_or(f32::NAN, |v| v as f32),
        expression,
        expression_probs,
        au_probs,
    })
}

pub(crate) fn quote(path: &Path) -> String {
    // parse-launch strings take double-quoted values with backslash escapes.
    let s = path.to_string_lossy();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Job {
    /// The `gst-launch-1.0` description of the job.
    pub fn description(&self) -> String {
        let detector = match &self.detector {
            Detector::Auto => "detector=auto".to_string(),
            Detector::Blazeface => "detector=blazeface".to_string(),
            Detector::Mtcnn => "detector=mtcnn".to_string(),
            Detector::Haar => "detector=haar".to_string(),
            Detector::FullFrame => "detector=full-frame".to_string(),
            Detector::Onnx(p) => format!("detector=onnx detector-model={}", quote(p)),
        };
        let source = match &self.input {
            Source::File(path) => format!("filesrc location={}", quote(path)),
            Source::Uri(uri) => format!("urisourcebin uri={}", quote(Path::new(uri))),
        };
        let mut d = format!("{source} ! ");
        // The first model is the bin's own affectinfer (`infer`); the others follow it on the
        // same faces, and the results are read after the last one.
        for (i, stage) in self.models.iter().enumerate() {
            let heads = |prefix: &str| {
                stage
                    .heads
                    .as_ref()
                    .map_or(String::new(), |h| format!(" {prefix}heads={h}"))
            };
            if i == 0 {
                d += &format!(
                    "affectanalysisbin name=analysis model={} {detector}{}{} ! ",
                    quote(&stage.path),
                    heads("infer::"),
                    self.elements.analysis()
                );
            } else {
                d += &format!(
                    "affectinfer name=infer{i} model={}{}{} ! ",
                    quote(&stage.path),
                    heads(""),
                    self.elements.infer()
                );
            }
        }
        d += "tee name=results ";
        for (i, (format, path)) in self.tables.iter().enumerate() {
            d += &format!(
                "results. ! queue ! affectsink name={TABLE_SINK}{i} format={} overwrite=true \
                 location={} ",
                format.name(),
                quote(path)
            );
        }
        if let Some(path) = &self.annotated {
            d += &format!(
                "results. ! queue ! affectoverlay ! videoconvert ! {ANNOTATED_ENCODER} \
                 ! filesink name={ANNOTATED_SINK} location={} ",
                quote(path)
            );
        }
        d
    }

    /// Runs the pipeline to the end of the file. `progress(position, duration)` is called
    /// a few times a second. An error is an error, wherever in the stream it comes.
    pub fn run(
        &self,
        progress: impl FnMut(Duration, Option<Duration>),
    ) -> Result<Outcome, RunError> {
        let outcome = self.run_until(progress, None)?;
        match outcome.error {
            Some(e) => Err(RunError::Input(e)),
            None => Ok(outcome),
        }
    }

    /// Runs the pipeline to the end of the file, or until `stop` holds a nonzero value (a
    /// signal number), checked five times a second: then the pipeline is torn down and the
    /// result is [`RunError::Interrupted`]. An error of the input after the first frame comes
    /// back in [`Outcome::error`] with the frames before it; one before any frame is the
    /// result, and so is any error of an output.
    pub fn run_until(
        &self,
        mut progress: impl FnMut(Duration, Option<Duration>),
        stop: Option<&AtomicUsize>,
    ) -> Result<Outcome, RunError> {
        let started = Instant::now();
        let pipeline = gst::parse::launch(&self.description())
            .map_err(|e| format!("cannot build the pipeline: {e}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "the description is not a pipeline".to_string())?;
        // A file is analysed as fast as the machine goes, not in real time.
        for sink in pipeline.iterate_sinks().into_iter().flatten() {
            if sink.find_property("sync").is_some() {
                sink.set_property("sync", false);
            }
        }
        // The results of every model are on what enters the tee.
        let src = pipeline
            .by_name("results")
            .and_then(|tee| tee.static_pad("sink"))
            .ok_or("the pipeline has no results tee")?;
        let frames = Arc::new(Mutex::new(Vec::<FrameRecord>::new()));
        let collected = frames.clone();
        let decoded = Arc::new(Mutex::new(Duration::ZERO));
        let decoded_end = decoded.clone();
        src.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer() {
                if let Some(pts) = buffer.pts()
                    && let Ok(mut end) = decoded_end.lock()
                {
                    let pts_end = pts + buffer.duration().unwrap_or(gst::ClockTime::ZERO);
                    *end = (*end).max(Duration::from_nanos(pts_end.nseconds()));
                }
                let analysed = meta::analysed_faces(buffer);
                let faces: Vec<FaceRecord> = analysed.iter().filter_map(record).collect();
                let frame = FrameRecord {
                    time: buffer
                        .pts()
                        .map_or(f64::NAN, |t| t.nseconds() as f64 * 1e-9),
                    faces_without_result: analysed.len() - faces.len(),
                    faces,
                };
                if let Ok(mut all) = collected.lock() {
                    all.push(frame);
                }
            }
            gst::PadProbeReturn::Ok
        });

        let mut outcome = Outcome::default();
        let bus = pipeline.bus().ok_or("pipeline without bus")?;
        let result = (|| {
            pipeline.set_state(gst::State::Playing).map_err(|_| {
                first_error(&bus).unwrap_or(RunError::Input("the pipeline does not start".into()))
            })?;
            loop {
                let msg = bus.timed_pop_filtered(
                    gst::ClockTime::from_mseconds(200),
                    &[
                        gst::MessageType::Eos,
                        gst::MessageType::Error,
                        gst::MessageType::Warning,
                        gst::MessageType::Element,
                    ],
                );
                match msg.as_ref().map(|m| m.view()) {
                    Some(gst::MessageView::Eos(_)) => return Ok(()),
                    Some(gst::MessageView::Error(e)) => return Err(classify(e)),
                    Some(gst::MessageView::Warning(w)) => {
                        let line = format!(
                            "{}: {}",
                            w.src().map(|s| s.name().to_string()).unwrap_or_default(),
                            one_line(&w.error().to_string())
                        );
                        if !outcome.warnings.contains(&line) {
                            outcome.warnings.push(line);
                        }
                    }
                    Some(gst::MessageView::Element(e)) => {
                        if let Some(s) = e.structure() {
                            outcome.note_analysis_message(s);
                        }
                    }
                    _ => {}
                }
                if stop.is_some_and(|s| s.load(Ordering::SeqCst) != 0) {
                    return Err(RunError::Interrupted);
                }
                let position = pipeline.query_position::<gst::ClockTime>();
                let duration = pipeline.query_duration::<gst::ClockTime>();
                if let Some(d) = duration.filter(|d| *d > gst::ClockTime::ZERO) {
                    outcome.container = Some(Duration::from_nanos(d.nseconds()));
                }
                progress(
                    Duration::from_nanos(position.map_or(0, |p| p.nseconds())),
                    outcome.container,
                );
            }
        })();
        // Messages posted just before the end (the streams' ends) are still on the bus.
        while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Element]) {
            if let gst::MessageView::Element(e) = msg.view()
                && let Some(s) = e.structure()
            {
                outcome.note_analysis_message(s);
            }
        }
        // Reading the caps before NULL: the negotiated size and rate of the analysed video.
        let caps = src.current_caps();
        let _ = pipeline.set_state(gst::State::Null);
        outcome.frames = std::mem::take(&mut *frames.lock().map_err(|_| "results lost")?);
        outcome.error = match result {
            Ok(()) => None,
            // What was analysed before a mid-stream error of the input is kept for the
            // caller to judge.
            Err(RunError::Input(e)) if !outcome.frames.is_empty() => Some(e),
            Err(e) => return Err(e),
        };
        outcome.elapsed = started.elapsed();
        outcome.decoded = *decoded.lock().map_err(|_| "results lost")?;
        if let Some(info) = caps.and_then(|c| gst_video::VideoInfo::from_caps(&c).ok()) {
            outcome.width = info.width();
            outcome.height = info.height();
            let fps = info.fps();
            if fps.numer() > 0 && fps.denom() > 0 {
                outcome.fps = fps.numer() as f64 / fps.denom() as f64;
            }
        }
        Ok(outcome)
    }
}

impl Outcome {
    /// Takes in what `affectanalysisbin` tells of the input.
    fn note_analysis_message(&mut self, s: &gst::StructureRef) {
        match s.name().as_str() {
            gstaffect::INPUT_MESSAGE => {
                self.has_audio = s.get::<bool>("audio").unwrap_or(false);
            }
            gstaffect::STREAM_END_MESSAGE => {
                let span = Span::from_message(s);
                match s.get::<&str>("stream") {
                    Ok("video") => {
                        self.video_span = span;
                        self.orientation = s.get::<String>("orientation").ok();
                        self.orientation_applied =
                            s.get::<bool>("orientation-applied").unwrap_or(false);
                    }
                    Ok("audio") => self.audio_span = span,
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// The end of the stream that ran longest, as far as it was decoded: what the
    /// container's duration (the longest stream's) is to be compared with.
    pub fn longest_stream_end(&self) -> Duration {
        let spans = [self.video_span, self.audio_span];
        let end = spans.iter().flatten().map(|s| s.end).fold(0.0, f64::max);
        Duration::from_secs_f64(end).max(self.decoded)
    }
}

/// An error message of the pipeline as a [`RunError`]: a resource error of an output element
/// (the tables, the annotated video) is the output's, anything else the input's.
fn classify(e: &gst::message::Error) -> RunError {
    let text = error_text(e);
    let output = e.src().is_some_and(|s| {
        let name = s.name();
        name.starts_with(TABLE_SINK) || name == ANNOTATED_SINK
    });
    if output && e.error().is::<gst::ResourceError>() {
        RunError::Output(text)
    } else {
        RunError::Input(text)
    }
}

/// The error [`Job::run_until`] returns when it was stopped.
pub const INTERRUPTED: &str = "interrupted";

/// An error message on one line, the reason first: the detail of GStreamer's debug text
/// (without the source location and object path GStreamer puts in front of it), then the
/// element that posted the error and GStreamer's general message.
fn error_text(e: &gst::message::Error) -> String {
    let source = e
        .src()
        .map(|s| s.name().to_string())
        .unwrap_or_else(|| "pipeline".into());
    let message = one_line(&e.error().to_string());
    let message = message.trim_end_matches('.');
    let detail = e.debug().map(|d| debug_detail(&d)).unwrap_or_default();
    if detail.is_empty() || message.contains(&detail) {
        format!("{message} (in {source})")
    } else {
        format!("{detail} ({source}: {message})")
    }
}

/// The part of a GStreamer debug string after its `file.c(123): function (): /Object/path:`
/// header, when it has one.
fn debug_detail(debug: &str) -> String {
    let header_end = debug.find("):").filter(|&i| {
        let head = &debug[..i];
        head.rfind('(')
            .is_some_and(|open| head[open + 1..].chars().all(|c| c.is_ascii_digit()))
    });
    let rest = match header_end {
        // GStreamer writes `header:\ndetail`, or the header alone when there is no detail.
        Some(_) => debug.split_once(":\n").map_or("", |(_, rest)| rest),
        None => debug,
    };
    one_line(rest.trim())
}

/// Line breaks and runs of spaces made single spaces, so a reason stays on one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn first_error(bus: &gst::Bus) -> Option<RunError> {
    let msg = bus.pop_filtered(&[gst::MessageType::Error])?;
    match msg.view() {
        gst::MessageView::Error(e) => Some(classify(e)),
        _ => None,
    }
}

/// The default model: next to the executable's checkout (`target/release/affect` →
/// `models/`), else where the source tree was at build time.
pub fn default_model() -> Result<PathBuf, String> {
    const FILE: &str = "affect-default.onnx";
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(4) {
            candidates.push(dir.join("models").join(FILE));
        }
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models")
            .join(FILE),
    );
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            format!(
                "the default model {FILE} is in none of {}; pass --model",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detector_names_parse_and_print_back() {
        for name in [
            "auto",
            "blazeface",
            "mtcnn",
            "haar",
            "full-frame",
            "onnx:/m/yunet.onnx",
        ] {
            let d: Detector = name.parse().unwrap();
            assert_eq!(d.to_string(), name);
        }
        assert_eq!("blazeface".parse::<Detector>(), Ok(Detector::Blazeface));
        let err = "yolo".parse::<Detector>().unwrap_err();
        assert!(err.contains("blazeface"), "{err}");
    }

    #[test]
    fn error_details_lose_the_source_location_and_stay_on_one_line() {
        let debug = "../plugins/affect/src/infer/imp.rs(512): gstaffect::infer::imp::start (): \
                     /GstPipeline:pipeline0/GstAffectInfer:infer:\ncannot load model 'm.onnx':\n  \
                     Protobuf parsing failed.";
        assert_eq!(
            debug_detail(debug),
            "cannot load model 'm.onnx': Protobuf parsing failed."
        );
        // A location with no detail leaves nothing; text without a location is kept whole.
        assert_eq!(
            debug_detail("gstdecodebin2.c(4719): expose (): /GstPipeline:p/GstDecodeBin:d"),
            ""
        );
        assert_eq!(
            debug_detail("no (header) here:\nat all"),
            "no (header) here: at all"
        );
    }

    #[test]
    fn element_options_become_analysis_properties() {
        let job = Job {
            elements: ElementOptions {
                provider: ProviderChoice::Cuda,
                device: 1,
                detect_interval: Some(3),
                batch_size: Some(8),
                ignore_orientation: true,
            },
            input: Source::File("in.mkv".into()),
            models: vec![
                ModelStage::all(Path::new("a.onnx")),
                ModelStage {
                    path: "b.onnx".into(),
                    heads: Some("expression".into()),
                },
            ],
            detector: Detector::Onnx("d.onnx".into()),
            tables: vec![(Format::Csv, "t.csv".into())],
            annotated: None,
        };
        let d = job.description();
        assert!(
            d.contains(
                "affectanalysisbin name=analysis model=\"a.onnx\" detector=onnx \
                 detector-model=\"d.onnx\" execution-provider=cuda device-id=1 batch-size=8 \
                 detect-interval=3 apply-orientation=false ! "
            ),
            "{d}"
        );
        assert!(
            d.contains(
                "affectinfer name=infer1 model=\"b.onnx\" heads=expression \
                 execution-provider=cuda device-id=1 batch-size=8 ! tee name=results"
            ),
            "{d}"
        );
        assert!(d.contains("affectsink name=table0 format=csv"), "{d}");
        // Defaults leave the elements' own defaults alone.
        let plain = Job {
            elements: ElementOptions::default(),
            ..job
        };
        let d = plain.description();
        assert!(
            !d.contains("execution-provider")
                && !d.contains("batch-size")
                && !d.contains("apply-orientation"),
            "{d}"
        );
    }
}
