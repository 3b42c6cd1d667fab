// SPDX-License-Identifier: MPL-2.0
use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, MutexGuard};

use affect_core::labels::{AU_LABELS, EXPRESSION_LABELS, au_column};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use serde::Serialize;

use crate::meta::{AffectResult, AnalysedFace, analysed_faces};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "affectsink",
        gst::DebugColorFlags::empty(),
        Some("Affect results file sink"),
    )
});

const DEFAULT_FORMAT: OutputFormat = OutputFormat::Auto;
const DEFAULT_OVERWRITE: bool = false;
const DEFAULT_AU_THRESHOLD: f64 = 0.5;
const DEFAULT_EMPTY_FRAMES: bool = false;
const DEFAULT_FLUSH_EVERY: u32 = 0;
/// Writing a file does not need the clock: like `filesink`, the element does not wait for
/// each buffer's running time, so batch analysis runs as fast as inference does. A live
/// pipeline still gets its rows as the frames arrive.
const DEFAULT_SYNC: bool = false;

/// Rows held back (faces without results, empty frames) before the first result fixes the
/// CSV's label columns. Past this many the label sets of the model contract are used, so a
/// long video in which no face is ever analysed does not grow memory without bound.
const MAX_PENDING_ROWS: usize = 10_000;

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstAffectSinkFormat")]
pub enum OutputFormat {
    #[enum_value(
        name = "From the location's extension: .jsonl, .ndjson and .json are JSON lines, anything else CSV",
        nick = "auto"
    )]
    Auto = 0,
    #[enum_value(name = "CSV with OpenFace-style columns", nick = "csv")]
    Csv = 1,
    #[enum_value(name = "JSON lines, one object per face per frame", nick = "jsonl")]
    Jsonl = 2,
}

/// The format a file is written in, once `auto` is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileFormat {
    Csv,
    Jsonl,
}

impl OutputFormat {
    fn resolve(self, path: &Path) -> FileFormat {
        match self {
            OutputFormat::Csv => FileFormat::Csv,
            OutputFormat::Jsonl => FileFormat::Jsonl,
            OutputFormat::Auto => {
                let ext = path
                    .extension()
                    .and_then(|e| e.to_str())
                    .map(str::to_ascii_lowercase);
                match ext.as_deref() {
                    Some("jsonl" | "ndjson" | "json") => FileFormat::Jsonl,
                    _ => FileFormat::Csv,
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Settings {
    location: Option<String>,
    format: OutputFormat,
    overwrite: bool,
    au_threshold: f64,
    empty_frames: bool,
    flush_every: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            location: None,
            format: DEFAULT_FORMAT,
            overwrite: DEFAULT_OVERWRITE,
            au_threshold: DEFAULT_AU_THRESHOLD,
            empty_frames: DEFAULT_EMPTY_FRAMES,
            flush_every: DEFAULT_FLUSH_EVERY,
        }
    }
}

/// One output row: a face of a frame, or (with `empty-frames`) a frame without faces.
#[derive(Debug)]
struct Row {
    frame: u64,
    /// Stream time of the buffer's PTS, in seconds.
    timestamp: Option<f64>,
    face: Option<AnalysedFace>,
}

impl Row {
    fn result(&self) -> Option<&AffectResult> {
        self.face.as_ref().and_then(|f| f.affect.as_ref())
    }

    /// Where the row is, for error messages.
    fn describe(&self) -> String {
        match &self.face {
            Some(f) => format!("frame {}, face {}", self.frame, f.face.track_id),
            None => format!("frame {}", self.frame),
        }
    }
}

/// Why a row could not be written.
#[derive(Debug)]
enum RowError {
    /// The file refused the bytes.
    Io(io::Error),
    /// The result cannot be written as it is (malformed, or labels that do not fit the CSV).
    Data(String),
}

impl From<io::Error> for RowError {
    fn from(e: io::Error) -> Self {
        RowError::Io(e)
    }
}

/// Checks that a result's arrays line up with its labels.
fn validate(row: &Row, result: &AffectResult) -> Result<(), RowError> {
    let check = |what: &str, probs: usize, labels: usize| {
        if probs == labels {
            Ok(())
        } else {
            Err(RowError::Data(format!(
                "Malformed affect result at {}: {probs} {what} probabilities for {labels} {what} labels",
                row.describe()
            )))
        }
    };
    check(
        "expression",
        result.expression_probs.len(),
        result.expression_labels.len(),
    )?;
    check("AU", result.au_probs.len(), result.au_labels.len())
}

/// A number as CSV writes it: Rust's shortest round-trip decimal form; empty when not finite.
fn number(v: f64) -> String {
    if v.is_finite() {
        v.to_string()
    } else {
        String::new()
    }
}

/// An `f32` in its own shortest form (`0.9`, not the `0.899999976` of its `f64` widening).
fn number32(v: f32) -> String {
    if v.is_finite() {
        v.to_string()
    } else {
        String::new()
    }
}

/// A CSV field, quoted as RFC 4180 says when it holds a separator, a quote or a line break.
fn csv_field(s: &str) -> Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(s)
    }
}

/// What differs between the labels a file's columns were made for and a result's.
fn label_difference(header: &[String], got: &[String]) -> String {
    let missing: Vec<&str> = header
        .iter()
        .filter(|l| !got.contains(l))
        .map(String::as_str)
        .collect();
    let added: Vec<&str> = got
        .iter()
        .filter(|l| !header.contains(l))
        .map(String::as_str)
        .collect();
    if missing.is_empty() && added.is_empty() {
        format!(
            "the same labels in another order: [{}] instead of [{}]",
            got.join(", "),
            header.join(", ")
        )
    } else {
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("lacks {}", missing.join(", ")));
        }
        if !added.is_empty() {
            parts.push(format!("adds {}", added.join(", ")));
        }
        parts.join(" and ")
    }
}

/// The label columns of a CSV file.
#[derive(Debug)]
struct CsvColumns {
    expression_labels: Vec<String>,
    au_labels: Vec<String>,
}

impl CsvColumns {
    fn of(result: &AffectResult) -> CsvColumns {
        CsvColumns {
            expression_labels: result.expression_labels.clone(),
            au_labels: result.au_labels.clone(),
        }
    }

    /// The label sets of the model contract, for a file that never sees a result.
    fn contract() -> CsvColumns {
        CsvColumns {
            expression_labels: EXPRESSION_LABELS.iter().map(|s| s.to_string()).collect(),
            au_labels: AU_LABELS.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn header(&self) -> String {
        let mut cols: Vec<String> = [
            "frame",
            "face_id",
            "timestamp",
            "confidence",
            "success",
            "x",
            "y",
            "width",
            "height",
            "valence",
            "arousal",
            "expression",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        cols.extend(self.expression_labels.iter().map(|l| format!("expr_{l}")));
        cols.extend(self.au_labels.iter().map(|l| format!("{}_p", au_column(l))));
        cols.extend(self.au_labels.iter().map(|l| format!("{}_c", au_column(l))));
        cols.extend((0..5).map(|i| format!("lmk_x_{i}")));
        cols.extend((0..5).map(|i| format!("lmk_y_{i}")));
        let mut line = cols
            .iter()
            .map(|c| csv_field(c))
            .collect::<Vec<_>>()
            .join(",");
        line.push('\n');
        line
    }

    fn check_labels(&self, row: &Row, result: &AffectResult) -> Result<(), RowError> {
        // A head the result lacks leaves its columns empty; one it has must match them.
        let check = |what: &str, header: &[String], got: &[String]| {
            if got.is_empty() || header == got {
                Ok(())
            } else {
                Err(RowError::Data(format!(
                    "The {what} labels of the result at {} differ from the CSV columns the first \
                     result fixed: it {} (write JSON lines, format=jsonl, to keep results of \
                     different label sets in one file)",
                    row.describe(),
                    label_difference(header, got)
                )))
            }
        };
        check(
            "expression",
            &self.expression_labels,
            &result.expression_labels,
        )?;
        check("AU", &self.au_labels, &result.au_labels)
    }

    fn row(&self, row: &Row, au_threshold: f64) -> Result<String, RowError> {
        let n_cols = 12 + self.expression_labels.len() + 2 * self.au_labels.len() + 10;
        let mut cells: Vec<String> = Vec::with_capacity(n_cols);
        cells.push(row.frame.to_string());
        cells.push(
            row.face
                .as_ref()
                .map_or(String::new(), |f| f.face.track_id.to_string()),
        );
        cells.push(row.timestamp.map_or(String::new(), number));
        match &row.face {
            Some(f) => {
                let b = f.face.bbox;
                cells.push(number32(f.face.score));
                cells.push(u8::from(f.affect.is_some()).to_string());
                cells.extend([b[0], b[1], b[2] - b[0], b[3] - b[1]].map(number32));
            }
            None => {
                cells.push(String::new());
                cells.push("0".into());
                cells.extend(std::iter::repeat_n(String::new(), 4));
            }
        }
        match row.result() {
            Some(r) => {
                validate(row, r)?;
                self.check_labels(row, r)?;
                // Heads the models did not give stay empty (not zero).
                cells.push(r.valence.map_or(String::new(), number));
                cells.push(r.arousal.map_or(String::new(), number));
                cells.push(
                    r.expression
                        .as_deref()
                        .filter(|_| r.has_expression())
                        .map_or(String::new(), |e| csv_field(e).into_owned()),
                );
                if r.has_expression() {
                    cells.extend(r.expression_probs.iter().map(|&p| number(p)));
                } else {
                    cells.extend(std::iter::repeat_n(
                        String::new(),
                        self.expression_labels.len(),
                    ));
                }
                if r.has_au() {
                    cells.extend(r.au_probs.iter().map(|&p| number(p)));
                    cells.extend(r.au_probs.iter().map(|&p| {
                        if p.is_finite() {
                            u8::from(p >= au_threshold).to_string()
                        } else {
                            String::new()
                        }
                    }));
                } else {
                    cells.extend(std::iter::repeat_n(String::new(), 2 * self.au_labels.len()));
                }
            }
            None => {
                let n = 3 + self.expression_labels.len() + 2 * self.au_labels.len();
                cells.extend(std::iter::repeat_n(String::new(), n));
            }
        }
        match row.face.as_ref().and_then(|f| f.face.landmarks) {
            Some(l) => {
                cells.extend(l.iter().map(|p| number32(p[0])));
                cells.extend(l.iter().map(|p| number32(p[1])));
            }
            None => cells.extend(std::iter::repeat_n(String::new(), 10)),
        }
        debug_assert_eq!(cells.len(), n_cols);
        let mut line = cells.join(",");
        line.push('\n');
        Ok(line)
    }
}

/// One JSON line; the keys are those of the CSV columns, with the per-label columns as arrays
/// next to their labels. Values of a face without results are `null`; the keys of a head no
/// model gave are absent.
#[derive(Serialize)]
struct JsonRow<'a> {
    frame: u64,
    face_id: Option<u64>,
    timestamp: Option<f64>,
    confidence: Option<f32>,
    success: u8,
    x: Option<f32>,
    y: Option<f32>,
    width: Option<f32>,
    height: Option<f32>,
    #[serde(skip_serializing_if = "Absent::is_absent")]
    valence: Absent<f64>,
    #[serde(skip_serializing_if = "Absent::is_absent")]
    arousal: Absent<f64>,
    #[serde(skip_serializing_if = "Absent::is_absent")]
    expression: Absent<&'a str>,
    #[serde(skip_serializing_if = "Absent::is_absent")]
    expression_labels: Absent<&'a [String]>,
    #[serde(skip_serializing_if = "Absent::is_absent")]
    expression_probs: Absent<&'a [f64]>,
    #[serde(skip_serializing_if = "Absent::is_absent")]
    au_labels: Absent<&'a [String]>,
    #[serde(skip_serializing_if = "Absent::is_absent")]
    au_probs: Absent<&'a [f64]>,
    #[serde(skip_serializing_if = "Absent::is_absent")]
    au_occurrence: Absent<Vec<Option<u8>>>,
    model: Option<&'a str>,
    landmarks: Option<[[f32; 2]; 5]>,
}

/// A JSON value of a head: `null` for a face without results, absent (the key left out) when
/// the face has results but no model gave this head.
enum Absent<T> {
    Null,
    Missing,
    Value(T),
}

impl<T> Absent<T> {
    fn is_absent(&self) -> bool {
        matches!(self, Absent::Missing)
    }

    /// For a face with `result` (or none), the head's value when `has` says it is there.
    fn of<'r>(
        result: Option<&'r AffectResult>,
        has: impl Fn(&AffectResult) -> bool,
        value: impl Fn(&'r AffectResult) -> T,
    ) -> Absent<T> {
        match result {
            None => Absent::Null,
            Some(r) if has(r) => Absent::Value(value(r)),
            Some(_) => Absent::Missing,
        }
    }
}

impl<T: Serialize> Serialize for Absent<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Absent::Value(v) => v.serialize(s),
            Absent::Null | Absent::Missing => s.serialize_none(),
        }
    }
}

fn json_line(row: &Row, au_threshold: f64) -> Result<String, RowError> {
    let face = row.face.as_ref().map(|f| &f.face);
    let result = row.result();
    if let Some(r) = result {
        validate(row, r)?;
    }
    let json = JsonRow {
        frame: row.frame,
        face_id: face.map(|f| f.track_id),
        timestamp: row.timestamp,
        confidence: face.map(|f| f.score),
        success: u8::from(result.is_some()),
        x: face.map(|f| f.bbox[0]),
        y: face.map(|f| f.bbox[1]),
        width: face.map(|f| f.bbox[2] - f.bbox[0]),
        height: face.map(|f| f.bbox[3] - f.bbox[1]),
        valence: Absent::of(result, AffectResult::has_valence_arousal, |r| {
            r.valence.unwrap_or(f64::NAN)
        }),
        arousal: Absent::of(result, AffectResult::has_valence_arousal, |r| {
            r.arousal.unwrap_or(f64::NAN)
        }),
        expression: Absent::of(result, AffectResult::has_expression, |r| {
            r.expression.as_deref().unwrap_or("")
        }),
        expression_labels: Absent::of(result, AffectResult::has_expression, |r| {
            r.expression_labels.as_slice()
        }),
        expression_probs: Absent::of(result, AffectResult::has_expression, |r| {
            r.expression_probs.as_slice()
        }),
        au_labels: Absent::of(result, AffectResult::has_au, |r| r.au_labels.as_slice()),
        au_probs: Absent::of(result, AffectResult::has_au, |r| r.au_probs.as_slice()),
        au_occurrence: Absent::of(result, AffectResult::has_au, |r| {
            r.au_probs
                .iter()
                .map(|&p| p.is_finite().then(|| u8::from(p >= au_threshold)))
                .collect()
        }),
        model: result.map(|r| r.model.as_str()),
        landmarks: face.and_then(|f| f.landmarks),
    };
    let mut line = serde_json::to_string(&json)
        .map_err(|e| RowError::Data(format!("Cannot write {} as JSON: {e}", row.describe())))?;
    line.push('\n');
    Ok(line)
}

struct State {
    path: PathBuf,
    out: BufWriter<File>,
    format: FileFormat,
    au_threshold: f64,
    empty_frames: bool,
    flush_every: u32,
    /// Frames received since start; the `frame` of the last one.
    frames: u64,
    frames_since_flush: u32,
    /// The CSV's label columns, once the header is written.
    columns: Option<CsvColumns>,
    /// CSV rows received before the header could be written.
    pending: Vec<Row>,
    /// An error was reported; nothing more is written.
    failed: bool,
}

impl State {
    fn write_frame(
        &mut self,
        timestamp: Option<f64>,
        faces: Vec<AnalysedFace>,
    ) -> Result<(), RowError> {
        self.frames += 1;
        let frame = self.frames;
        if faces.is_empty() && self.empty_frames {
            self.write_row(Row {
                frame,
                timestamp,
                face: None,
            })?;
        }
        for face in faces {
            self.write_row(Row {
                frame,
                timestamp,
                face: Some(face),
            })?;
        }
        self.frames_since_flush += 1;
        if self.flush_every > 0 && self.frames_since_flush >= self.flush_every {
            self.out.flush()?;
            self.frames_since_flush = 0;
        }
        Ok(())
    }

    fn write_row(&mut self, row: Row) -> Result<(), RowError> {
        let line = match self.format {
            FileFormat::Jsonl => json_line(&row, self.au_threshold)?,
            FileFormat::Csv => {
                if self.columns.is_none() {
                    match row.result() {
                        Some(r) => {
                            validate(&row, r)?;
                            self.write_header(CsvColumns::of(r))?;
                        }
                        None if self.pending.len() < MAX_PENDING_ROWS => {
                            self.pending.push(row);
                            return Ok(());
                        }
                        None => self.write_header(CsvColumns::contract())?,
                    }
                }
                match &self.columns {
                    Some(c) => c.row(&row, self.au_threshold)?,
                    None => unreachable!("the header was written above"),
                }
            }
        };
        self.out.write_all(line.as_bytes())?;
        Ok(())
    }

    /// Writes the CSV header for `columns`, then the rows held back until now.
    fn write_header(&mut self, columns: CsvColumns) -> Result<(), RowError> {
        self.out.write_all(columns.header().as_bytes())?;
        for row in std::mem::take(&mut self.pending) {
            let line = columns.row(&row, self.au_threshold)?;
            self.out.write_all(line.as_bytes())?;
        }
        self.columns = Some(columns);
        Ok(())
    }

    /// Writes what is held back and flushes; with `sync`, also waits until the file is on
    /// disk (a regular file: pipes and devices have nothing to sync).
    fn finish(&mut self, sync: bool) -> Result<(), RowError> {
        if self.format == FileFormat::Csv && self.columns.is_none() {
            self.write_header(CsvColumns::contract())?;
        }
        self.out.flush()?;
        self.frames_since_flush = 0;
        if sync {
            let file = self.out.get_ref();
            if file.metadata()?.is_file() {
                file.sync_all()?;
            }
        }
        Ok(())
    }
}

#[derive(Default)]
pub struct AffectSink {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

impl AffectSink {
    fn lock_state(&self) -> MutexGuard<'_, Option<State>> {
        self.state.lock().unwrap()
    }

    /// Posts the element error for `err`; the state writes nothing more.
    fn report(&self, state: &mut State, err: RowError) {
        state.failed = true;
        match err {
            RowError::Io(e) => {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Write,
                    ("Could not write to {}: {}", state.path.display(), e)
                );
            }
            RowError::Data(msg) => {
                // The rows before the bad one are good: put them on disk.
                if let Err(e) = state.finish(false) {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "Could not flush {}: {:?}",
                        state.path.display(),
                        e
                    );
                }
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Format,
                    ("{} (writing {})", msg, state.path.display())
                );
            }
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for AffectSink {
    const NAME: &'static str = "GstAffectSink";
    type Type = super::AffectSink;
    type ParentType = gst_base::BaseSink;
}

impl ObjectImpl for AffectSink {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("location")
                    .nick("File location")
                    .blurb("File to write the rows to (required)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("format", DEFAULT_FORMAT)
                    .nick("Format")
                    .blurb("CSV with OpenFace-style columns, JSON lines, or chosen from the location's extension")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("overwrite")
                    .nick("Overwrite")
                    .blurb("Replace an existing file (otherwise an existing file is an error and is left as it is)")
                    .default_value(DEFAULT_OVERWRITE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("au-threshold")
                    .nick("AU threshold")
                    .blurb("Probability from which an action unit counts as present (the AUxx_c columns)")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_AU_THRESHOLD)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("empty-frames")
                    .nick("Empty frames")
                    .blurb("Write a row with success 0 and no face_id for each frame without faces")
                    .default_value(DEFAULT_EMPTY_FRAMES)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("flush-every")
                    .nick("Flush every")
                    .blurb("Hand the rows to the OS every this many frames, for readers following the file (0 = when the buffer fills, at EOS and on stop)")
                    .default_value(DEFAULT_FLUSH_EVERY)
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "location" => {
                s.location = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|l| !l.is_empty())
            }
            "format" => s.format = value.get().expect("type checked upstream"),
            "overwrite" => s.overwrite = value.get().expect("type checked upstream"),
            "au-threshold" => s.au_threshold = value.get().expect("type checked upstream"),
            "empty-frames" => s.empty_frames = value.get().expect("type checked upstream"),
            "flush-every" => s.flush_every = value.get().expect("type checked upstream"),
            other => unreachable!("unknown property {other}"),
        }
        gst::debug!(CAT, imp = self, "{} set to {:?}", pspec.name(), value);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "location" => s.location.to_value(),
            "format" => s.format.to_value(),
            "overwrite" => s.overwrite.to_value(),
            "au-threshold" => s.au_threshold.to_value(),
            "empty-frames" => s.empty_frames.to_value(),
            "flush-every" => s.flush_every.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        self.obj().set_sync(DEFAULT_SYNC);
    }
}

impl GstObjectImpl for AffectSink {}

impl ElementImpl for AffectSink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Affect results file sink",
                "Sink/File",
                "Writes the faces and affect results of every frame to a file, as CSV in \
                 OpenFace's column style or as JSON lines",
                "affect developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            // Only the metadata is read: any stream that carries face meta will do.
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &gst::Caps::new_any(),
                )
                .unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseSinkImpl for AffectSink {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let location = settings.location.ok_or_else(|| {
            gst::error_msg!(
                gst::ResourceError::NotFound,
                ("No file to write to: set the location property")
            )
        })?;
        let path = PathBuf::from(location);
        let mut options = OpenOptions::new();
        options.write(true);
        if settings.overwrite {
            options.create(true).truncate(true);
        } else {
            options.create_new(true);
        }
        let file = options.open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                gst::error_msg!(
                    gst::ResourceError::OpenWrite,
                    (
                        "{} already exists and is left as it is; overwrite=true replaces it",
                        path.display()
                    )
                )
            } else {
                gst::error_msg!(
                    gst::ResourceError::OpenWrite,
                    ("Could not open {} for writing: {}", path.display(), e)
                )
            }
        })?;
        let format = settings.format.resolve(&path);
        gst::debug!(CAT, imp = self, "Writing {format:?} to {}", path.display());
        *self.lock_state() = Some(State {
            path,
            out: BufWriter::new(file),
            format,
            au_threshold: settings.au_threshold,
            empty_frames: settings.empty_frames,
            flush_every: settings.flush_every,
            frames: 0,
            frames_since_flush: 0,
            columns: None,
            pending: Vec::new(),
            failed: false,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let Some(mut state) = self.lock_state().take() else {
            return Ok(());
        };
        if state.failed {
            // The error was reported; what is still buffered could not be written.
            drop(state.out.into_parts());
            return Ok(());
        }
        state.finish(false).map_err(|e| {
            let reason = match e {
                RowError::Io(e) => e.to_string(),
                RowError::Data(msg) => msg,
            };
            gst::error_msg!(
                gst::ResourceError::Write,
                ("Could not write to {}: {}", state.path.display(), reason)
            )
        })
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let timestamp = buffer.pts().and_then(|pts| {
            let segment = self.obj().segment();
            let stream_time = segment
                .downcast_ref::<gst::ClockTime>()?
                .to_stream_time(pts)?;
            Some(stream_time.nseconds() as f64 / 1e9)
        });
        let faces = analysed_faces(buffer);
        let mut guard = self.lock_state();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        if state.failed {
            return Err(gst::FlowError::Error);
        }
        gst::trace!(
            CAT,
            imp = self,
            "Frame {} with {} faces",
            state.frames + 1,
            faces.len()
        );
        match state.write_frame(timestamp, faces) {
            Ok(()) => Ok(gst::FlowSuccess::Ok),
            Err(e) => {
                self.report(state, e);
                Err(gst::FlowError::Error)
            }
        }
    }

    fn event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Eos(_) = event.view() {
            let mut guard = self.lock_state();
            if let Some(state) = guard.as_mut() {
                if state.failed {
                    return false;
                }
                // EOS means every row is in the file and on disk.
                if let Err(e) = state.finish(true) {
                    self.report(state, e);
                    return false;
                }
                gst::debug!(
                    CAT,
                    imp = self,
                    "{} frames written to {}",
                    state.frames,
                    state.path.display()
                );
            }
        }
        self.parent_event(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_as_rfc_4180_says() {
        assert_eq!(csv_field("Anger"), "Anger");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn action_units_take_openface_names() {
        assert_eq!(au_column("AU1"), "AU01");
        assert_eq!(au_column("AU12"), "AU12");
        assert_eq!(au_column("AU01"), "AU01");
        assert_eq!(au_column("smile"), "smile");
    }

    #[test]
    fn label_differences_are_named() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            label_difference(&v(&["AU1", "AU2", "AU4"]), &v(&["AU1", "AU4", "AU5"])),
            "lacks AU2 and adds AU5"
        );
        assert_eq!(
            label_difference(&v(&["AU1", "AU2"]), &v(&["AU2", "AU1"])),
            "the same labels in another order: [AU2, AU1] instead of [AU1, AU2]"
        );
    }

    #[test]
    fn auto_format_follows_the_extension() {
        let f = |p: &str| OutputFormat::Auto.resolve(Path::new(p));
        assert_eq!(f("a.jsonl"), FileFormat::Jsonl);
        assert_eq!(f("a.NDJSON"), FileFormat::Jsonl);
        assert_eq!(f("a.json"), FileFormat::Jsonl);
        assert_eq!(f("a.csv"), FileFormat::Csv);
        assert_eq!(f("a"), FileFormat::Csv);
        assert_eq!(
            OutputFormat::Csv.resolve(Path::new("a.jsonl")),
            FileFormat::Csv
        );
    }
}
