//! `affect analyze`: files and folders of videos through the analysis pipeline, several at
//! a time, each into a table (CSV or JSONL, from `affectsink`), a timeline plot and a
//! summary; resumable and tolerant of broken files.
//!
//! Outputs of `<name>` (the file stem, made unique within the batch) in the output folder:
//! `<name>.csv` / `<name>.jsonl`, `<name>.png` and `<name>.summary.json`. They are written
//! under `.<name>.partial.*` names and renamed when the video is complete, the table last,
//! so a video counts as done exactly when its table exists; an interrupted batch run again
//! skips the finished videos and redoes the rest.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use affect_core::labels::EXPRESSION_LABELS;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::pipeline::{self, Detector, Format, Job, Outcome};
use crate::plot::{self, Series};
use crate::progress;

/// Extensions of the files taken from folders (files named on the command line are taken
/// whatever their name).
pub const VIDEO_EXTENSIONS: &[&str] = &[
    "mkv", "mp4", "m4v", "mov", "webm", "avi", "mpg", "mpeg", "ts", "mts", "flv", "wmv", "ogv",
    "3gp",
];

/// Photographs taken from folders: each is analysed as a one-frame video, one row per face.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png"];

/// Options of `affect analyze`.
#[derive(clap::Args)]
pub struct AnalyzeOptions {
    /// Video files and photographs (JPEG, PNG), or folders searched for them (recursively).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
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
    /// Face detector: auto (MTCNN when its files are installed, else Haar), mtcnn, haar,
    /// onnx:FILE (YuNet/SCRFD/UltraFace) or full-frame.
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

/// One video's summary (also `<name>.summary.json`, so skipped videos keep their line in
/// the table).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct VideoSummary {
    pub input: PathBuf,
    /// A photograph (one frame, no timeline) rather than a video.
    #[serde(default)]
    pub image: bool,
    pub frames: usize,
    pub face_rows: usize,
    pub tracks: usize,
    pub mean_valence: Option<f64>,
    pub mean_arousal: Option<f64>,
    pub dominant_expression: Option<String>,
    pub seconds: f64,
}

#[derive(Clone, Debug)]
pub enum Status {
    Done(VideoSummary),
    Skipped(VideoSummary),
    Failed(String),
}

/// A video of the batch and the name of its outputs.
#[derive(Clone, Debug)]
pub struct Task {
    pub input: PathBuf,
    pub name: String,
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.contains(&e.to_ascii_lowercase().as_str()))
}

fn is_video(path: &Path) -> bool {
    has_extension(path, VIDEO_EXTENSIONS)
}

/// Whether `path` names a photograph (by its extension).
pub fn is_image(path: &Path) -> bool {
    has_extension(path, IMAGE_EXTENSIONS)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            walk(&path, found)?;
        } else if is_video(&path) || is_image(&path) {
            found.push(path);
        }
    }
    Ok(())
}

/// The videos of the inputs in a stable order, each with an output name unique in the
/// batch (`talk`, `talk-2`, ... for files of the same stem in different folders).
pub fn collect(inputs: &[PathBuf]) -> Result<Vec<Task>, String> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            walk(input, &mut files)?;
        } else {
            // A missing or unreadable file is reported by its own task, not here, so the
            // rest of the batch still runs.
            files.push(input.clone());
        }
    }
    let mut seen = HashSet::new();
    let mut used: HashMap<String, usize> = HashMap::new();
    let mut tasks = Vec::new();
    for input in files {
        let key = fs::canonicalize(&input).unwrap_or_else(|_| input.clone());
        if !seen.insert(key) {
            continue;
        }
        let stem = input
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "video".into());
        let count = used.entry(stem.clone()).or_default();
        *count += 1;
        let name = if *count == 1 {
            stem
        } else {
            format!("{stem}-{count}")
        };
        tasks.push(Task { input, name });
    }
    Ok(tasks)
}

/// Output paths of a task.
pub struct Outputs {
    pub table: PathBuf,
    pub plot: PathBuf,
    pub summary: PathBuf,
    partial_table: PathBuf,
    partial_plot: PathBuf,
    partial_summary: PathBuf,
}

impl Outputs {
    pub fn new(out: &Path, name: &str, format: Format) -> Outputs {
        let ext = format.name();
        Outputs {
            table: out.join(format!("{name}.{ext}")),
            plot: out.join(format!("{name}.png")),
            summary: out.join(format!("{name}.summary.json")),
            partial_table: out.join(format!(".{name}.partial.{ext}")),
            partial_plot: out.join(format!(".{name}.partial.png")),
            partial_summary: out.join(format!(".{name}.partial.summary.json")),
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

/// The summary and timeline of one analysed video.
fn summarise(input: &Path, outcome: &Outcome) -> (VideoSummary, Series) {
    let mut counts: HashMap<u64, usize> = HashMap::new();
    let mut expressions = [0usize; EXPRESSION_LABELS.len()];
    let (mut v, mut a, mut n, mut n_va, mut n_expr) = (0.0, 0.0, 0usize, 0usize, 0usize);
    for face in outcome.frames.iter().flat_map(|f| &f.faces) {
        *counts.entry(face.track_id).or_default() += 1;
        // Only the heads the models gave count.
        if let Some(count) = expressions.get_mut(face.expression) {
            *count += 1;
            n_expr += 1;
        }
        if face.valence.is_finite() && face.arousal.is_finite() {
            v += face.valence as f64;
            a += face.arousal as f64;
            n_va += 1;
        }
        n += 1;
    }
    // The plot follows the track seen longest (the main person of the video).
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
    let dominant = (n_expr > 0).then(|| {
        let k = (0..expressions.len())
            .max_by_key(|&k| expressions[k])
            .unwrap_or(0);
        EXPRESSION_LABELS[k].to_string()
    });
    let summary = VideoSummary {
        input: input.to_path_buf(),
        image: is_image(input),
        frames: outcome.frames.len(),
        face_rows: n,
        tracks: counts.len(),
        mean_valence: (n_va > 0).then(|| v / n_va as f64),
        mean_arousal: (n_va > 0).then(|| a / n_va as f64),
        dominant_expression: dominant,
        seconds: outcome.elapsed.as_secs_f64(),
    };
    (summary, series)
}

/// Analyses one video into its outputs.
fn analyse(
    task: &Task,
    options: &AnalyzeOptions,
    models: &[pipeline::ModelStage],
    bar: &ProgressBar,
) -> Result<VideoSummary, String> {
    let outputs = Outputs::new(&options.out, &task.name, options.format);
    outputs.remove_partial();
    let media = pipeline::discover(&task.input)?;
    if let Some(d) = media.duration {
        bar.set_length(d.as_millis().max(1) as u64);
    }
    let job = Job {
        elements: options.elements.clone(),
        input: task.input.clone(),
        models: models.to_vec(),
        detector: options.detector.clone(),
        audio: media.has_audio,
        tables: vec![(options.format, outputs.partial_table.clone())],
        annotated: None,
    };
    let result = (|| {
        let outcome = job.run(|position, duration| progress::update(bar, position, duration))?;
        if outcome.frames.is_empty() {
            return Err("the pipeline delivered no video frames".to_string());
        }
        let (summary, series) = summarise(&task.input, &outcome);
        if summary.image {
            let json = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
            fs::write(&outputs.partial_summary, json + "\n")
                .map_err(|e| format!("cannot write {}: {e}", outputs.partial_summary.display()))?;
            outputs.commit()?;
            return Ok(summary);
        }
        let duration = media
            .duration
            .map(|d| d.as_secs_f64())
            .or_else(|| outcome.frames.last().map(|f| f.time))
            .unwrap_or(0.0);
        let fps = if outcome.fps > 0.0 { outcome.fps } else { 30.0 };
        let subtitle = format!(
            "{}: {} frames, {} face rows, {} tracks (plotted: the longest); model {}",
            task.input.display(),
            summary.frames,
            summary.face_rows,
            summary.tracks,
            models
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
                title: &format!("affect analyze: {}", task.name),
                subtitle: &subtitle,
                duration,
                frame_seconds: 1.0 / fps,
                predicted: &series,
                truth: None,
            },
        )?;
        let json = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
        fs::write(&outputs.partial_summary, json + "\n")
            .map_err(|e| format!("cannot write {}: {e}", outputs.partial_summary.display()))?;
        outputs.commit()?;
        Ok(summary)
    })();
    if result.is_err() {
        outputs.remove_partial();
    }
    result
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
                input: task.input.clone(),
                ..VideoSummary::default()
            })
        })
}

/// Runs the batch; returns every task with its status, in input order.
pub fn run(options: &AnalyzeOptions) -> Result<Vec<(Task, Status)>, String> {
    if options.inputs.is_empty() {
        return Err("no input: name video files or folders".into());
    }
    if options.jobs == 0 {
        return Err("--jobs must be at least 1".into());
    }
    let paths = if options.model.is_empty() {
        vec![pipeline::default_model()?]
    } else {
        options.model.clone()
    };
    if let Some(m) = paths.iter().find(|m| !m.is_file()) {
        return Err(format!("model {} does not exist", m.display()));
    }
    let model = pipeline::model_chain(&paths)?;
    if let Detector::Onnx(p) = &options.detector
        && !p.is_file()
    {
        return Err(format!("detector model {} does not exist", p.display()));
    }
    fs::create_dir_all(&options.out)
        .map_err(|e| format!("cannot create {}: {e}", options.out.display()))?;
    let tasks = collect(&options.inputs)?;
    if tasks.is_empty() {
        return Err("the inputs hold no video or image files".into());
    }

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
        let outputs = Outputs::new(&options.out, &task.name, options.format);
        match done_summary(task, &outputs) {
            Some(summary) => {
                say(
                    &multi,
                    format!(
                        "skipped {} (done: {})",
                        task.input.display(),
                        outputs.table.display()
                    ),
                );
                overall.inc(1);
                statuses.lock().map_err(|_| "status lost")?[i] = Some(Status::Skipped(summary));
            }
            None => queue.push_back(i),
        }
    }
    let queue = Mutex::new(queue);
    std::thread::scope(|scope| {
        for _ in 0..options.jobs.min(tasks.len()) {
            scope.spawn(|| {
                // The guard is consumed inside `and_then`: the queue is not held while a
                // video is analysed.
                while let Some(i) = queue.lock().ok().and_then(|mut q| q.pop_front()) {
                    let task = &tasks[i];
                    let bar = multi.insert_before(
                        &overall,
                        progress::file_bar(&task.name, Duration::from_secs(1)),
                    );
                    let started = Instant::now();
                    let status = match analyse(task, options, &model, &bar) {
                        Ok(summary) => {
                            say(
                                &multi,
                                format!(
                                    "done    {} ({} frames, {} face rows, {:.1} s)",
                                    task.input.display(),
                                    summary.frames,
                                    summary.face_rows,
                                    started.elapsed().as_secs_f64()
                                ),
                            );
                            Status::Done(summary)
                        }
                        Err(e) => {
                            say(&multi, format!("FAILED  {}: {e}", task.input.display()));
                            Status::Failed(e)
                        }
                    };
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
    let statuses = statuses.into_inner().map_err(|_| "status lost")?;
    Ok(tasks
        .into_iter()
        .zip(statuses)
        .map(|(t, s)| (t, s.unwrap_or(Status::Failed("not run".into()))))
        .collect())
}

/// The summary table of a batch.
pub fn table(results: &[(Task, Status)]) -> String {
    let mut lines = vec![format!(
        "{:<28} {:>7} {:>7} {:>7} {:>7} {:<10} {:<8} {:>7}",
        "file", "frames", "faces", "mean V", "mean A", "dominant", "status", "time"
    )];
    let value = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:+.3}"));
    for (task, status) in results {
        let mut file = task.input.file_name().map_or_else(
            || task.input.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        if file.chars().count() > 28 {
            file = format!("{}~", file.chars().take(27).collect::<String>());
        }
        match status {
            Status::Done(s) | Status::Skipped(s) => lines.push(format!(
                "{file:<28} {:>7} {:>7} {:>7} {:>7} {:<10} {:<8} {:>6.1}s",
                s.frames,
                s.face_rows,
                value(s.mean_valence),
                value(s.mean_arousal),
                s.dominant_expression.as_deref().unwrap_or("-"),
                if matches!(status, Status::Done(_)) {
                    "done"
                } else {
                    "skipped"
                },
                s.seconds
            )),
            Status::Failed(e) => lines.push(format!(
                "{file:<28} {:>7} {:>7} {:>7} {:>7} {:<10} {:<8} {:>7}  {e}",
                "-", "-", "-", "-", "-", "FAILED", "-"
            )),
        }
    }
    let summaries: Vec<&VideoSummary> = results
        .iter()
        .filter_map(|(_, s)| match s {
            Status::Done(s) | Status::Skipped(s) => Some(s),
            Status::Failed(_) => None,
        })
        .collect();
    let images = summaries.iter().filter(|s| s.image).count();
    let failed = results.len() - summaries.len();
    lines.push(format!(
        "{} videos, {images} images, {} face rows{}",
        summaries.len() - images,
        summaries.iter().map(|s| s.face_rows).sum::<usize>(),
        if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        }
    ));
    lines.join("\n")
}
