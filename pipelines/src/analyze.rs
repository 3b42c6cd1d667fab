// SPDX-License-Identifier: MPL-2.0
//! `affect analyze`: files, folders and manifests of videos through the analysis pipeline,
//! several at a time, each into a table (CSV or JSONL, from `affectsink`), a timeline plot
//! and a summary; resumable, tolerant of broken files, and made to run as one shard of a job
//! array (Slurm, Kubernetes) that may be preempted at any moment.
//!
//! Outputs of an input with the id `<id>` (see [`archive`]) in the output folder:
//! `<id>.csv` / `<id>.jsonl`, `<id>.png` and `<id>.summary.json`. They are written under
//! `.<id>.partial.*` names and renamed when the video is complete, the table last, so a video
//! counts as done exactly when its table exists; a batch run again skips the finished videos
//! and redoes the rest.
//!
//! Each input runs through `affectanalysisbin` (the analysis a `gst-launch-1.0` user gets),
//! which reports the streams the input has and how far each one was decoded. A video is done
//! when its video stream was decoded to its end: the demuxer delivered the file to the end the
//! container gives (the longest stream's) without an error. Streams of different lengths (an
//! audio track running past the video, a video starting late) are reported, not judged; a
//! file whose decoding stops short, or ends in an error, is `incomplete`, keeps no outputs and
//! is tried again by the next run.
//!
//! Several processes may share an output folder: each input is claimed with an advisory lock
//! (`.<id>.lock`, `flock`) for as long as it is analysed, so the kernel releases it when a
//! process dies, and another process skips it as being analysed elsewhere. SIGINT and SIGTERM
//! stop the batch: no new video is started, the videos being analysed are discarded (no
//! partial file is left), and the process exits with [`EXIT_REQUEUE`]. So does an output that
//! cannot be written (a full disk, a lost folder): it is no input's fault.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::archive::{self, ShardSpec};
pub use crate::archive::{IMAGE_EXTENSIONS, Source, Task, VIDEO_EXTENSIONS, is_image};
use crate::pipeline::{self, Detector, Format, Job, ModelInfo, Outcome, RunError, Span};
use crate::plot::{self, Series};
use crate::progress;
use crate::table::Table;

/// Exit status of a batch stopped by SIGINT or SIGTERM: `EX_TEMPFAIL` of `sysexits.h`,
/// "try again later". The Slurm script requeues its task on it and the Kubernetes Job's
/// pod failure policy retries the pod without counting it as a failure; running the same
/// command again continues where the batch stopped.
pub const EXIT_REQUEUE: u8 = 75;

/// How much shorter than its container's duration the longest stream of a video may decode
/// and still be complete: the container's duration may round up a little.
pub const COMPLETE_TOLERANCE: Duration = Duration::from_millis(500);

/// Options of `affect analyze`.
#[derive(clap::Args)]
pub struct AnalyzeOptions {
    /// Video files and photographs (JPEG, PNG), folders searched for them (recursively), or
    /// URIs GStreamer can read (file://, http://, rtsp://, ...).
    #[arg(required_unless_present = "manifest")]
    pub inputs: Vec<String>,
    /// A file of inputs, one path or URI per line (blank lines and lines starting with # are
    /// skipped; relative paths are taken from the manifest's folder). May be given more than
    /// once; the inputs on the command line come first.
    #[arg(long, value_name = "FILE")]
    pub manifest: Vec<PathBuf>,
    /// Analyse only shard K of N (0-based) of the inputs: those at positions K, K+N, K+2N, ...
    /// of the batch, so every input is in exactly one shard. With N alone, K is read from
    /// SLURM_ARRAY_TASK_ID (Slurm job arrays) or JOB_COMPLETION_INDEX (Kubernetes Indexed
    /// Jobs).
    #[arg(long, value_name = "K/N")]
    pub shard: Option<ShardSpec>,
    /// Folder for the outputs.
    #[arg(short, long, default_value = "affect-results")]
    pub out: PathBuf,
    /// ONNX model of the affect contract (default: models/affect-default.onnx). Given more
    /// than once, the models run one after the other on the same faces and each head comes
    /// from the last model that has it (`--model models/affect-default.onnx --model
    /// models/fer2013-mini-xception.onnx`: valence/arousal and AUs of the first, expressions
    /// of the second).
    #[arg(long)]
    pub model: Vec<PathBuf>,
    /// Face detector: auto (BlazeFace on videos, MTCNN on photographs, as their files are
    /// found, else Haar), blazeface, mtcnn, haar, onnx:FILE (BlazeFace/YuNet/SCRFD/UltraFace)
    /// or full-frame.
    #[arg(long, default_value = "auto")]
    pub detector: Detector,
    #[command(flatten)]
    pub elements: pipeline::ElementOptions,
    /// Videos analysed at the same time.
    #[arg(short, long, default_value_t = 1)]
    pub jobs: usize,
    /// Format of the per-video table.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,
}

/// One video's summary (also `<id>.summary.json`, so skipped videos keep their line in the
/// table, and `affect merge` knows what made each table). The counts and means are those of
/// the rows written to the table.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct VideoSummary {
    /// The stable id of the input, which names its outputs.
    #[serde(default)]
    pub id: String,
    /// The input as the batch named it (a path or a URI).
    pub input: String,
    /// A photograph (one frame, no timeline) rather than a video.
    #[serde(default)]
    pub image: bool,
    /// File name of the table in the output folder.
    #[serde(default)]
    pub table: String,
    pub frames: usize,
    /// Table rows of faces with results.
    pub face_rows: usize,
    pub tracks: usize,
    pub mean_valence: Option<f64>,
    pub mean_arousal: Option<f64>,
    /// The expression written most often, in the model's own label.
    pub dominant_expression: Option<String>,
    /// The same per track (person): first and last time, rows, means, dominant expression.
    #[serde(default)]
    pub people: Vec<crate::table::TrackStats>,
    /// Seconds of the video decoded and analysed.
    #[serde(default)]
    pub decoded_seconds: f64,
    /// Duration the container gives, when it gives one.
    #[serde(default)]
    pub container_seconds: Option<f64>,
    /// What the video and audio streams covered, each on its own (seconds of media time).
    #[serde(default)]
    pub video: Option<Span>,
    #[serde(default)]
    pub audio: Option<Span>,
    /// The input's orientation tag, and whether frames were turned upright by it before
    /// faces were found (boxes are then in displayed pixels).
    #[serde(default)]
    pub orientation: Option<String>,
    #[serde(default)]
    pub orientation_applied: bool,
    /// Faces found that no model gave a result for, and the elements' warnings that say why.
    #[serde(default)]
    pub faces_without_result: usize,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The models, in the order they ran.
    #[serde(default)]
    pub models: Vec<ModelInfo>,
    /// Version of the affect software that wrote the table.
    #[serde(default)]
    pub software_version: String,
    /// Seconds the analysis took.
    pub seconds: f64,
}

impl VideoSummary {
    /// What a reader of the batch's log should know of a done video: streams of different
    /// lengths, an applied orientation, faces without results.
    pub fn notes(&self) -> String {
        let mut notes = Vec::new();
        if let (Some(v), Some(a)) = (self.video, self.audio)
            && ((v.end - v.start) - (a.end - a.start)).abs() > COMPLETE_TOLERANCE.as_secs_f64()
        {
            notes.push(format!(
                "video {:.2}-{:.2} s, audio {:.2}-{:.2} s",
                v.start, v.end, a.start, a.end
            ));
        }
        if let Some(o) = self.orientation.as_deref().filter(|o| *o != "rotate-0") {
            notes.push(if self.orientation_applied {
                format!("{o} applied")
            } else {
                format!("{o} not applied")
            });
        }
        if self.faces_without_result > 0 {
            notes.push(format!(
                "{} faces without results: {}",
                self.faces_without_result,
                self.warnings.join("; ")
            ));
        }
        if notes.is_empty() {
            String::new()
        } else {
            format!("; {}", notes.join("; "))
        }
    }
}

#[derive(Clone, Debug)]
pub enum Status {
    Done(VideoSummary),
    Skipped(VideoSummary),
    /// Decoding stopped before the end the container gives, or ended in an error.
    Incomplete {
        decoded: Duration,
        container: Option<Duration>,
        error: Option<String>,
    },
    Failed(String),
    /// Not analysed here: another process holds its claim.
    Elsewhere,
    /// Not analysed: the batch was stopped by a signal first (or while it ran), or by an
    /// output that cannot be written.
    Left,
}

impl Status {
    /// The reason of an incomplete video, in one line.
    fn incomplete_reason(
        decoded: Duration,
        container: Option<Duration>,
        error: &Option<String>,
    ) -> String {
        let mut reason = match container {
            Some(c) => format!(
                "decoded {:.2} s of the {:.2} s the container gives",
                decoded.as_secs_f64(),
                c.as_secs_f64()
            ),
            None => format!("decoded {:.2} s", decoded.as_secs_f64()),
        };
        if let Some(e) = error {
            reason = format!("{reason}, then: {e}");
        }
        reason
    }

    /// Why the video is not done, when it is not.
    pub fn reason(&self) -> Option<String> {
        match self {
            Status::Done(_) | Status::Skipped(_) => None,
            Status::Incomplete {
                decoded,
                container,
                error,
            } => Some(Self::incomplete_reason(*decoded, *container, error)),
            Status::Failed(e) => Some(e.clone()),
            Status::Elsewhere => Some("being analysed by another process".into()),
            Status::Left => Some("stopped before it was done: left for the next run".into()),
        }
    }
}

/// Output paths of a task.
pub struct Outputs {
    pub table: PathBuf,
    pub plot: PathBuf,
    pub summary: PathBuf,
    /// The advisory lock a process holds while it analyses the input.
    lock: PathBuf,
    partial_table: PathBuf,
    partial_plot: PathBuf,
    partial_summary: PathBuf,
}

impl Outputs {
    pub fn new(out: &Path, id: &str, format: Format) -> Outputs {
        let ext = format.name();
        Outputs {
            table: out.join(format!("{id}.{ext}")),
            plot: out.join(format!("{id}.png")),
            summary: out.join(format!("{id}.summary.json")),
            lock: out.join(format!(".{id}.lock")),
            partial_table: out.join(format!(".{id}.partial.{ext}")),
            partial_plot: out.join(format!(".{id}.partial.png")),
            partial_summary: out.join(format!(".{id}.partial.summary.json")),
        }
    }

    fn remove_partial(&self) {
        for p in [
            &self.partial_table,
            &self.partial_plot,
            &self.partial_summary,
        ] {
            let _ = fs::remove_file(p);
        }
    }

    /// Claims the input for this process: `Ok(None)` when another process holds it. The
    /// claim is an `flock` on the lock file, released when the returned file is dropped or the
    /// process dies.
    fn claim(&self) -> Result<Option<fs::File>, String> {
        use std::os::unix::fs::MetadataExt;
        loop {
            let file = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&self.lock)
                .map_err(|e| format!("cannot create {}: {e}", self.lock.display()))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => return Ok(None),
                Err(fs::TryLockError::Error(e)) => {
                    return Err(format!("cannot lock {}: {e}", self.lock.display()));
                }
            }
            // The holder before us removes the file when it is done: a lock on a file no
            // longer at that path claims nothing, so take the one there now.
            let held = file.metadata().map(|m| m.ino()).ok();
            let there = fs::metadata(&self.lock).map(|m| m.ino()).ok();
            if held.is_some() && held == there {
                return Ok(Some(file));
            }
        }
    }

    /// Ends this process's claim (the lock file goes while it is still held).
    fn release(&self, claim: fs::File) {
        let _ = fs::remove_file(&self.lock);
        drop(claim);
    }

    /// Makes the finished outputs visible, the table (the mark of a done video) last.
    fn commit(&self) -> Result<(), String> {
        for (from, to) in [
            (&self.partial_plot, &self.plot),
            (&self.partial_summary, &self.summary),
            (&self.partial_table, &self.table),
        ] {
            // A photograph has no timeline plot.
            if from == &self.partial_plot && !from.exists() {
                continue;
            }
            fs::rename(from, to).map_err(|e| {
                format!("cannot rename {} to {}: {e}", from.display(), to.display())
            })?;
        }
        Ok(())
    }
}

/// The timeline of the track seen longest (the main person of the video).
fn main_track_series(outcome: &Outcome) -> Series {
    let mut counts: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    for face in outcome.frames.iter().flat_map(|f| &f.faces) {
        *counts.entry(face.track_id).or_default() += 1;
    }
    let main = counts
        .iter()
        .max_by_key(|(id, c)| (**c, std::cmp::Reverse(**id)))
        .map(|(id, _)| *id);
    let mut series = Series::default();
    for frame in &outcome.frames {
        if let Some(f) = frame.faces.iter().find(|f| Some(f.track_id) == main) {
            series.push(frame.time, [f.valence, f.arousal], f.expression, f.au_probs);
        }
    }
    series
}

/// What every video of the batch shares.
struct Batch<'a> {
    options: &'a AnalyzeOptions,
    models: Vec<pipeline::ModelStage>,
    model_infos: Vec<ModelInfo>,
    stop: Arc<AtomicUsize>,
    /// The first output that could not be written: it stops the batch.
    output_error: Mutex<Option<String>>,
}

impl Batch<'_> {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst) != 0 || self.output_failed()
    }

    fn output_failed(&self) -> bool {
        self.output_error.lock().is_ok_and(|e| e.is_some())
    }
}

fn write_summary(path: &Path, summary: &VideoSummary) -> Result<(), RunError> {
    let json = serde_json::to_string_pretty(summary).map_err(|e| e.to_string())?;
    fs::write(path, json + "\n")
        .map_err(|e| RunError::Output(format!("cannot write {}: {e}", path.display())))
}

/// Analyses one video into its outputs, if no other process is analysing it.
fn analyse(task: &Task, batch: &Batch, bar: &ProgressBar) -> Status {
    let options = batch.options;
    let outputs = Outputs::new(&options.out, &task.id, options.format);
    let claim = match outputs.claim() {
        Ok(Some(claim)) => claim,
        Ok(None) => return Status::Elsewhere,
        Err(e) => return output_failure(batch, e),
    };
    // Another process may have finished it since the batch looked.
    if let Some(summary) = done_summary(task, &outputs) {
        outputs.release(claim);
        return Status::Skipped(summary);
    }
    outputs.remove_partial();
    let status = match analyse_into(task, batch, &outputs, bar) {
        Ok(status) => status,
        Err(RunError::Output(e)) => output_failure(batch, e),
        Err(RunError::Interrupted) => Status::Left,
        Err(RunError::Input(e)) => Status::Failed(e),
    };
    if !matches!(status, Status::Done(_)) {
        outputs.remove_partial();
    }
    outputs.release(claim);
    if batch.stopped() && !matches!(status, Status::Done(_)) {
        // Whatever went wrong after the signal is the signal's doing (a pipeline torn down).
        return Status::Left;
    }
    status
}

/// Records an output that cannot be written, which stops the batch: the input is left for
/// the next run, not blamed.
fn output_failure(batch: &Batch, reason: String) -> Status {
    if let Ok(mut first) = batch.output_error.lock()
        && first.is_none()
    {
        *first = Some(reason);
    }
    Status::Left
}

fn analyse_into(
    task: &Task,
    batch: &Batch,
    outputs: &Outputs,
    bar: &ProgressBar,
) -> Result<Status, RunError> {
    let options = batch.options;
    let job = Job {
        elements: options.elements.clone(),
        input: task.input.clone(),
        models: batch.models.clone(),
        detector: options.detector.clone(),
        tables: vec![(options.format, outputs.partial_table.clone())],
        annotated: None,
    };
    let outcome = job.run_until(
        |position, duration| progress::update(bar, position, duration),
        Some(&batch.stop),
    )?;
    if outcome.frames.is_empty() {
        return Err(RunError::Input(
            "the pipeline delivered no video frames".to_string(),
        ));
    }
    let image = task.input.is_image();
    // Complete when the demuxer delivered the file to its end (the container's duration is
    // the longest stream's), whichever stream that is.
    let short = outcome
        .container
        .is_some_and(|c| outcome.longest_stream_end() + COMPLETE_TOLERANCE < c);
    if outcome.error.is_some() || (short && !image) {
        return Ok(Status::Incomplete {
            decoded: outcome.longest_stream_end(),
            container: outcome.container,
            error: outcome.error,
        });
    }
    let faces_without_result: usize = outcome.frames.iter().map(|f| f.faces_without_result).sum();
    if outcome.face_rows() == 0 && faces_without_result > 0 {
        let why = outcome.warnings.join("; ");
        return Err(RunError::Input(format!(
            "no model result for any of the {faces_without_result} faces found{}",
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            }
        )));
    }
    let stats = Table::read(&outputs.partial_table, options.format)?.stats();
    let summary = VideoSummary {
        id: task.id.clone(),
        input: task.input.to_string(),
        image,
        table: outputs
            .table
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        frames: outcome.frames.len(),
        face_rows: stats.face_rows,
        tracks: stats.tracks,
        mean_valence: stats.mean_valence,
        mean_arousal: stats.mean_arousal,
        dominant_expression: stats.dominant_expression,
        people: stats.per_track,
        decoded_seconds: outcome.decoded.as_secs_f64(),
        container_seconds: outcome.container.map(|d| d.as_secs_f64()),
        video: outcome.video_span,
        audio: outcome.audio_span,
        orientation: outcome.orientation.clone(),
        orientation_applied: outcome.orientation_applied,
        faces_without_result,
        warnings: if faces_without_result > 0 {
            outcome.warnings.clone()
        } else {
            Vec::new()
        },
        models: batch.model_infos.clone(),
        software_version: env!("CARGO_PKG_VERSION").to_string(),
        seconds: outcome.elapsed.as_secs_f64(),
    };
    if !image {
        let duration = outcome
            .container
            .map(|d| d.as_secs_f64())
            .or_else(|| outcome.frames.last().map(|f| f.time))
            .unwrap_or(0.0);
        let fps = if outcome.fps > 0.0 { outcome.fps } else { 30.0 };
        let subtitle = format!(
            "{}: {} frames, {} face rows, {} tracks (plotted: the longest); model {}",
            task.input,
            summary.frames,
            summary.face_rows,
            summary.tracks,
            batch
                .models
                .iter()
                .map(|m| m
                    .path
                    .file_name()
                    .map_or("?".into(), |n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(" + ")
        );
        plot::write(
            &outputs.partial_plot,
            &plot::Timeline {
                title: &format!("affect analyze: {}", task.input.file_name()),
                subtitle: &subtitle,
                duration,
                frame_seconds: 1.0 / fps,
                predicted: &main_track_series(&outcome),
                truth: None,
            },
        )
        .map_err(RunError::Output)?;
    }
    write_summary(&outputs.partial_summary, &summary)?;
    // A video finished when the signal comes is kept: committing it takes a rename.
    outputs.commit().map_err(RunError::Output)?;
    Ok(Status::Done(summary))
}

/// Prints a line above the bars (or plainly when they are hidden, as in logs).
fn say(multi: &MultiProgress, line: String) {
    if multi.is_hidden() {
        println!("{line}");
    } else {
        let _ = multi.println(line);
    }
}

fn done_summary(task: &Task, outputs: &Outputs) -> Option<VideoSummary> {
    if !outputs.table.is_file() {
        return None;
    }
    fs::read_to_string(&outputs.summary)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .or_else(|| {
            Some(VideoSummary {
                id: task.id.clone(),
                input: task.input.to_string(),
                ..VideoSummary::default()
            })
        })
}

/// The signals that stop a batch: SIGINT (Ctrl-C) and SIGTERM (what Slurm and Kubernetes
/// send before they preempt a task). The first of them is recorded in `stop`; a second
/// SIGINT ends the process at once, while further SIGTERMs are absorbed, as schedulers may
/// deliver one to every process of a task and the job script forwards its own.
fn catch_signals(stop: &Arc<AtomicUsize>) -> Result<Vec<signal_hook::SigId>, String> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let error = |e: std::io::Error| format!("cannot catch signals: {e}");
    let second_interrupt = Arc::new(std::sync::atomic::AtomicBool::new(false));
    Ok(vec![
        // Registered first so that it sees the flag as it was before this signal.
        signal_hook::flag::register_conditional_default(SIGINT, second_interrupt.clone())
            .map_err(error)?,
        signal_hook::flag::register(SIGINT, second_interrupt).map_err(error)?,
        signal_hook::flag::register_usize(SIGINT, stop.clone(), SIGINT as usize).map_err(error)?,
        signal_hook::flag::register_usize(SIGTERM, stop.clone(), SIGTERM as usize)
            .map_err(error)?,
    ])
}

/// The name of a signal number [`run`] may report.
pub fn signal_name(signal: usize) -> &'static str {
    match signal as i32 {
        signal_hook::consts::SIGINT => "SIGINT",
        signal_hook::consts::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// The end of a batch: every task of this shard with its status, in the batch's order, and
/// the signal that stopped it, if one did.
pub struct BatchResult {
    pub results: Vec<(Task, Status)>,
    pub signal: Option<usize>,
    /// The output that could not be written, which stopped the batch.
    pub output_error: Option<String>,
}

impl BatchResult {
    /// Tasks not done (failed, incomplete or left), as [`Status::reason`] would name them.
    pub fn count(&self, what: fn(&Status) -> bool) -> usize {
        self.results.iter().filter(|(_, s)| what(s)).count()
    }

    /// The exit status: [`EXIT_REQUEUE`] when an output could not be written or a signal
    /// stopped the batch with inputs left, 1 when an input failed or is incomplete,
    /// [`EXIT_REQUEUE`] again when inputs are still being analysed by another process (the
    /// next run finds them done, or does them if that process died), else 0.
    pub fn exit_status(&self) -> u8 {
        let left = self.count(|s| matches!(s, Status::Left)) > 0;
        if self.output_error.is_some() || (self.signal.is_some() && left) {
            EXIT_REQUEUE
        } else if self.count(|s| matches!(s, Status::Failed(_) | Status::Incomplete { .. })) > 0 {
            1
        } else if self.count(|s| matches!(s, Status::Elsewhere)) > 0 {
            EXIT_REQUEUE
        } else {
            0
        }
    }
}

/// The inputs of the batch, before sharding.
fn inputs(options: &AnalyzeOptions) -> Result<Vec<Source>, String> {
    let mut sources = options
        .inputs
        .iter()
        .map(|i| Source::parse(i))
        .collect::<Result<Vec<_>, _>>()?;
    for manifest in &options.manifest {
        sources.extend(archive::read_manifest(manifest)?);
    }
    Ok(sources)
}

/// Runs the batch (this shard of it, with `--shard`).
pub fn run(options: &AnalyzeOptions) -> Result<BatchResult, String> {
    if options.jobs == 0 {
        return Err("--jobs must be at least 1".into());
    }
    let sources = inputs(options)?;
    if sources.is_empty() {
        return Err("no input: name video files, folders or a --manifest with entries".into());
    }
    let shard = options
        .shard
        .map(|s| s.resolve(|v| std::env::var(v).ok()))
        .transpose()?;
    let paths = if options.model.is_empty() {
        vec![pipeline::default_model()?]
    } else {
        options.model.clone()
    };
    if let Some(m) = paths.iter().find(|m| !m.is_file()) {
        return Err(format!("model {} does not exist", m.display()));
    }
    let models = pipeline::model_chain(&paths)?;
    let model_infos = paths
        .iter()
        .map(|p| pipeline::model_info(p))
        .collect::<Result<Vec<_>, _>>()?;
    if let Detector::Onnx(p) = &options.detector
        && !p.is_file()
    {
        return Err(format!("detector model {} does not exist", p.display()));
    }
    let all = archive::collect(&sources)?;
    if all.is_empty() {
        return Err("the inputs hold no video or image files".into());
    }
    let total = all.len();
    let tasks = match shard {
        Some(shard) => {
            let tasks = shard.select(all);
            println!(
                "shard {}/{}: {} of the batch's {total} inputs",
                shard.index,
                shard.count,
                tasks.len()
            );
            tasks
        }
        None => all,
    };

    let stop = Arc::new(AtomicUsize::new(0));
    let handlers = catch_signals(&stop)?;
    let batch = Batch {
        options,
        models,
        model_infos,
        stop,
        output_error: Mutex::new(None),
    };
    let results = match fs::create_dir_all(&options.out) {
        Ok(()) => run_tasks(&batch, tasks),
        Err(e) => {
            output_failure(
                &batch,
                format!("cannot create {}: {e}", options.out.display()),
            );
            tasks.into_iter().map(|t| (t, Status::Left)).collect()
        }
    };
    for id in handlers {
        signal_hook::low_level::unregister(id);
    }
    let signal = match batch.stop.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    };
    let output_error = batch
        .output_error
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Ok(BatchResult {
        results,
        signal,
        output_error,
    })
}

fn run_tasks(batch: &Batch, tasks: Vec<Task>) -> Vec<(Task, Status)> {
    let options = batch.options;
    let multi = MultiProgress::new();
    let overall = multi.add(ProgressBar::new(tasks.len() as u64));
    overall.set_style(
        ProgressStyle::with_template("{msg:30!} [{bar:32}] {pos}/{len} videos [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    overall.set_message("all videos");
    let statuses: Mutex<Vec<Option<Status>>> = Mutex::new(vec![None; tasks.len()]);
    let mut queue = VecDeque::new();
    for (i, task) in tasks.iter().enumerate() {
        let outputs = Outputs::new(&options.out, &task.id, options.format);
        match done_summary(task, &outputs) {
            Some(summary) => {
                say(
                    &multi,
                    format!("skipped {} (done: {})", task.input, outputs.table.display()),
                );
                overall.inc(1);
                if let Ok(mut s) = statuses.lock() {
                    s[i] = Some(Status::Skipped(summary));
                }
            }
            None => queue.push_back(i),
        }
    }
    let queue = Mutex::new(queue);
    std::thread::scope(|scope| {
        for _ in 0..options.jobs.min(tasks.len()) {
            scope.spawn(|| {
                loop {
                    if batch.stopped() {
                        break;
                    }
                    // The guard is consumed inside `and_then`: the queue is not held while a
                    // video is analysed.
                    let Some(i) = queue.lock().ok().and_then(|mut q| q.pop_front()) else {
                        break;
                    };
                    let task = &tasks[i];
                    let bar = multi.insert_before(
                        &overall,
                        progress::file_bar(&task.id, Duration::from_secs(1)),
                    );
                    let started = Instant::now();
                    let status = analyse(task, batch, &bar);
                    match &status {
                        Status::Done(summary) => say(
                            &multi,
                            format!(
                                "done       {} ({} frames, {} face rows, {:.1} s){}",
                                task.input,
                                summary.frames,
                                summary.face_rows,
                                started.elapsed().as_secs_f64(),
                                summary.notes()
                            ),
                        ),
                        Status::Left => say(
                            &multi,
                            format!(
                                "stopped    {} (discarded, left for the next run)",
                                task.input
                            ),
                        ),
                        Status::Elsewhere => say(
                            &multi,
                            format!(
                                "elsewhere  {} (being analysed by another process: not \
                                 analysed here)",
                                task.input
                            ),
                        ),
                        Status::Skipped(_) => say(
                            &multi,
                            format!(
                                "skipped    {} (done by another process meanwhile)",
                                task.input
                            ),
                        ),
                        other => say(
                            &multi,
                            format!(
                                "{:<10} {}: {}",
                                if matches!(other, Status::Incomplete { .. }) {
                                    "INCOMPLETE"
                                } else {
                                    "FAILED"
                                },
                                task.input,
                                other.reason().unwrap_or_default()
                            ),
                        ),
                    }
                    bar.finish_and_clear();
                    multi.remove(&bar);
                    overall.inc(1);
                    if let Ok(mut s) = statuses.lock() {
                        s[i] = Some(status);
                    }
                }
            });
        }
    });
    overall.finish_and_clear();
    let statuses = statuses
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    tasks
        .into_iter()
        .zip(statuses)
        .map(|(task, status)| {
            let status = match status {
                // The other process may have finished it by now.
                Some(Status::Elsewhere) => {
                    let outputs = Outputs::new(&options.out, &task.id, options.format);
                    done_summary(&task, &outputs).map_or(Status::Elsewhere, Status::Skipped)
                }
                other => other.unwrap_or(Status::Left),
            };
            (task, status)
        })
        .collect()
}

/// The summary table of a batch: one line per input, the reason of each that is not done on
/// its line, and a last line of counts.
pub fn table(results: &[(Task, Status)]) -> String {
    let mut lines = vec![format!(
        "{:<28} {:>7} {:>7} {:>7} {:>7} {:<10} {:<10} {:>7}",
        "file", "frames", "faces", "mean V", "mean A", "dominant", "status", "time"
    )];
    let value = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:+.3}"));
    for (task, status) in results {
        let mut file = task.input.file_name();
        if file.chars().count() > 28 {
            file = format!("{}~", file.chars().take(27).collect::<String>());
        }
        match status {
            Status::Done(s) | Status::Skipped(s) => {
                let mut dominant = s.dominant_expression.clone().unwrap_or("-".into());
                if dominant.chars().count() > 10 {
                    dominant = format!("{}~", dominant.chars().take(9).collect::<String>());
                }
                lines.push(format!(
                    "{file:<28} {:>7} {:>7} {:>7} {:>7} {dominant:<10} {:<10} {:>6.1}s",
                    s.frames,
                    s.face_rows,
                    value(s.mean_valence),
                    value(s.mean_arousal),
                    if matches!(status, Status::Done(_)) {
                        "done"
                    } else {
                        "skipped"
                    },
                    s.seconds
                ));
                // One line per person when there are several.
                if s.people.len() > 1 {
                    for p in &s.people {
                        let span = match (p.first, p.last) {
                            (Some(a), Some(b)) => format!("{a:.1}-{b:.1}s"),
                            _ => String::new(),
                        };
                        let mut dominant = p.dominant_expression.clone().unwrap_or("-".into());
                        if dominant.chars().count() > 10 {
                            dominant = format!("{}~", dominant.chars().take(9).collect::<String>());
                        }
                        lines.push(format!(
                            "{:<28} {:>7} {:>7} {:>7} {:>7} {dominant}",
                            format!("  person {} {span}", p.track),
                            p.frames,
                            "",
                            value(p.mean_valence),
                            value(p.mean_arousal),
                        ));
                    }
                }
            }
            other => lines.push(format!(
                "{file:<28} {:>7} {:>7} {:>7} {:>7} {:<10} {:<10} {:>7}  {}",
                "-",
                "-",
                "-",
                "-",
                "-",
                match other {
                    Status::Incomplete { .. } => "INCOMPLETE",
                    Status::Left => "left",
                    Status::Elsewhere => "elsewhere",
                    _ => "FAILED",
                },
                "-",
                other.reason().unwrap_or_default()
            )),
        }
    }
    let summaries: Vec<&VideoSummary> = results
        .iter()
        .filter_map(|(_, s)| match s {
            Status::Done(s) | Status::Skipped(s) => Some(s),
            _ => None,
        })
        .collect();
    let images = summaries.iter().filter(|s| s.image).count();
    let count = |what: fn(&Status) -> bool| results.iter().filter(|(_, s)| what(s)).count();
    let mut footer = format!(
        "{} videos, {images} images, {} face rows",
        summaries.len() - images,
        summaries.iter().map(|s| s.face_rows).sum::<usize>(),
    );
    for (n, what) in [
        (count(|s| matches!(s, Status::Failed(_))), "failed"),
        (
            count(|s| matches!(s, Status::Incomplete { .. })),
            "incomplete",
        ),
        (count(|s| matches!(s, Status::Left)), "left"),
        (
            count(|s| matches!(s, Status::Elsewhere)),
            "being analysed elsewhere",
        ),
    ] {
        if n > 0 {
            footer += &format!(", {n} {what}");
        }
    }
    lines.push(footer);
    lines.join("\n")
}
