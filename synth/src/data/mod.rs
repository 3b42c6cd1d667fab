// SPDX-License-Identifier: MPL-2.0
//! Reading data laid out as Aff-Wild2 (ABAW) is: annotation files per task and split,
//! `cropped_aligned` crops, the videos for audio. Also a plain CSV manifest for other sets.
//!
//! The challenge folders (`VA_Estimation_Challenge`, `EXPR_Recognition_Challenge`,
//! `AU_Detection_Challenge`) are found in the data root or in one folder below it (the
//! official archive nests them, e.g. `6th_ABAW_Annotations/`). Crops are read from
//! `cropped_aligned/<name>/NNNNN.jpg`, videos from `videos/<video>.{mkv,mp4,avi}` (also
//! `videos/batch1`, `videos/batch2`), where `<video>` is `<name>` without a `_left`/`_right`
//! suffix.

pub mod audio;
pub mod manifest;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use affect_core::labels::{AU_LABELS, EXPRESSION_LABELS, N_AUS, N_EXPRESSIONS};
use thiserror::Error;

/// Failures while reading data; each names the file (and line) at fault.
#[derive(Debug, Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Media { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Image { path: PathBuf, message: String },
    #[error(
        "{0}: no VA_Estimation_Challenge, EXPR_Recognition_Challenge or AU_Detection_Challenge folder here or one level below"
    )]
    NoAnnotations(PathBuf),
    #[error("no video file for {name} under {dir}")]
    NoVideo { name: String, dir: PathBuf },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The three ABAW tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Task {
    Va,
    Expr,
    Au,
}

impl Task {
    pub const ALL: [Task; 3] = [Task::Va, Task::Expr, Task::Au];

    /// The challenge folder holding this task's annotations.
    pub fn folder(self) -> &'static str {
        match self {
            Task::Va => "VA_Estimation_Challenge",
            Task::Expr => "EXPR_Recognition_Challenge",
            Task::Au => "AU_Detection_Challenge",
        }
    }

    /// The header line of an annotation file.
    pub fn header(self) -> String {
        match self {
            Task::Va => "valence,arousal".into(),
            Task::Expr => EXPRESSION_LABELS.join(","),
            Task::Au => AU_LABELS.join(","),
        }
    }
}

/// The annotated splits (the test set's labels are not published).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Validation,
}

impl Split {
    pub fn folder(self) -> &'static str {
        match self {
            Split::Train => "Train_Set",
            Split::Validation => "Validation_Set",
        }
    }
}

impl std::str::FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "train" | "train_set" => Ok(Split::Train),
            "validation" | "val" | "validation_set" => Ok(Split::Validation),
            _ => Err(format!("unknown split {s:?} (train, validation)")),
        }
    }
}

/// The labels of one frame; `None` where the task's file marks it unannotated (or has no
/// file for this face).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Labels {
    pub va: Option<[f32; 2]>,
    pub expression: Option<usize>,
    pub au: Option<[u8; N_AUS]>,
}

impl Labels {
    pub fn is_empty(&self) -> bool {
        self.va.is_none() && self.expression.is_none() && self.au.is_none()
    }
}

/// One annotated frame with a crop.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Annotation name (with `_left`/`_right` where the video has two people).
    pub name: String,
    /// Video file stem.
    pub video: String,
    /// 1-based frame number.
    pub frame: u32,
    pub crop: PathBuf,
    pub labels: Labels,
}

/// Counts of what the reader left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadStats {
    /// Frames with at least one label.
    pub annotated_frames: usize,
    /// Annotated frames without a crop (skipped).
    pub missing_crops: usize,
    /// Frames no task labels (skipped).
    pub unannotated_frames: usize,
}

/// The video name of an annotation name: Aff-Wild2 annotates the two people of a video as
/// `<video>_left` and `<video>_right`.
pub fn video_name(name: &str) -> &str {
    name.strip_suffix("_left")
        .or_else(|| name.strip_suffix("_right"))
        .unwrap_or(name)
}

fn read_lines(path: &Path) -> Result<Vec<String>, DataError> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    Ok(text.lines().map(|l| l.trim().to_string()).collect())
}

fn parse_error(path: &Path, line: usize, message: impl Into<String>) -> DataError {
    DataError::Parse {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

fn check_header(path: &Path, lines: &[String], task: Task) -> Result<(), DataError> {
    let expected = task.header();
    let got = lines.first().map(String::as_str).unwrap_or("");
    let normalise = |s: &str| s.replace(' ', "").to_ascii_lowercase();
    if normalise(got) != normalise(&expected) {
        return Err(parse_error(
            path,
            1,
            format!("header {got:?}, expected {expected:?}"),
        ));
    }
    Ok(())
}

/// Body lines with their 1-based line numbers; a trailing empty line is not a frame.
fn body(lines: &[String]) -> impl Iterator<Item = (usize, &str)> {
    let mut end = lines.len();
    while end > 1 && lines[end - 1].is_empty() {
        end -= 1;
    }
    lines[1.min(end)..end]
        .iter()
        .enumerate()
        .map(|(i, l)| (i + 2, l.as_str()))
}

/// Reads a `VA_Estimation_Challenge` file: one `(valence, arousal)` per frame, `None` where
/// -5 marks the frame unannotated.
pub fn read_va(path: &Path) -> Result<Vec<Option<[f32; 2]>>, DataError> {
    let lines = read_lines(path)?;
    check_header(path, &lines, Task::Va)?;
    body(&lines)
        .map(|(n, l)| {
            let fields: Vec<&str> = l.split(',').map(str::trim).collect();
            if fields.len() != 2 {
                return Err(parse_error(
                    path,
                    n,
                    format!("{} fields, expected 2 (valence,arousal)", fields.len()),
                ));
            }
            let mut va = [0.0f32; 2];
            for (v, f) in va.iter_mut().zip(&fields) {
                *v = f
                    .parse::<f32>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| parse_error(path, n, format!("{f:?} is not a number")))?;
            }
            if va.contains(&affect_core::labels::VA_UNANNOTATED) {
                return Ok(None);
            }
            if va.iter().any(|x| x.abs() > 1.0) {
                return Err(parse_error(
                    path,
                    n,
                    format!("valence/arousal {va:?} outside [-1, 1] (and not -5)"),
                ));
            }
            Ok(Some(va))
        })
        .collect()
}

/// Reads an `EXPR_Recognition_Challenge` file: one class index per frame, `None` for -1.
pub fn read_expr(path: &Path) -> Result<Vec<Option<usize>>, DataError> {
    let lines = read_lines(path)?;
    check_header(path, &lines, Task::Expr)?;
    body(&lines)
        .map(|(n, l)| {
            let v: i64 = l
                .parse()
                .map_err(|_| parse_error(path, n, format!("{l:?} is not a class index")))?;
            match v {
                -1 => Ok(None),
                0..=7 if (v as usize) < N_EXPRESSIONS => Ok(Some(v as usize)),
                _ => Err(parse_error(
                    path,
                    n,
                    format!("class {v} outside 0..{N_EXPRESSIONS} (and not -1)"),
                )),
            }
        })
        .collect()
}

/// Reads an `AU_Detection_Challenge` file: 12 occurrences (0/1) per frame, `None` where -1
/// marks the frame unannotated.
pub fn read_au(path: &Path) -> Result<Vec<Option<[u8; N_AUS]>>, DataError> {
    let lines = read_lines(path)?;
    check_header(path, &lines, Task::Au)?;
    body(&lines)
        .map(|(n, l)| {
            let fields: Vec<&str> = l.split(',').map(str::trim).collect();
            if fields.len() != N_AUS {
                return Err(parse_error(
                    path,
                    n,
                    format!("{} fields, expected {N_AUS}", fields.len()),
                ));
            }
            let mut au = [0u8; N_AUS];
            let mut unannotated = false;
            for (a, f) in au.iter_mut().zip(&fields) {
                match f.parse::<i64>() {
                    Ok(-1) => unannotated = true,
                    Ok(v @ 0..=1) => *a = v as u8,
                    _ => {
                        return Err(parse_error(
                            path,
                            n,
                            format!("AU value {f:?} is not 0, 1 or -1"),
                        ));
                    }
                }
            }
            Ok(if unannotated { None } else { Some(au) })
        })
        .collect()
}

/// A data root laid out as Aff-Wild2.
#[derive(Clone, Debug)]
pub struct AffWild2 {
    pub root: PathBuf,
    /// Folder holding the three challenge folders.
    pub annotations: PathBuf,
}

impl AffWild2 {
    pub fn open(root: &Path) -> Result<AffWild2, DataError> {
        let has_tasks = |dir: &Path| Task::ALL.iter().any(|t| dir.join(t.folder()).is_dir());
        if has_tasks(root) {
            return Ok(AffWild2 {
                root: root.to_path_buf(),
                annotations: root.to_path_buf(),
            });
        }
        let entries = std::fs::read_dir(root).map_err(io_error(root))?;
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        match dirs.into_iter().find(|d| has_tasks(d)) {
            Some(annotations) => Ok(AffWild2 {
                root: root.to_path_buf(),
                annotations,
            }),
            None => Err(DataError::NoAnnotations(root.to_path_buf())),
        }
    }

    /// The annotation file of `name` for a task and split (it may not exist).
    pub fn annotation_path(&self, task: Task, split: Split, name: &str) -> PathBuf {
        self.annotations
            .join(task.folder())
            .join(split.folder())
            .join(format!("{name}.txt"))
    }

    /// Annotation names of a split over all tasks, sorted.
    pub fn names(&self, split: Split) -> Result<Vec<String>, DataError> {
        let mut names = BTreeSet::new();
        for task in Task::ALL {
            let dir = self.annotations.join(task.folder()).join(split.folder());
            if !dir.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(&dir).map_err(io_error(&dir))? {
                let path = entry.map_err(io_error(&dir))?.path();
                if path.extension().is_some_and(|e| e == "txt")
                    && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
                {
                    names.insert(stem.to_string());
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Labels of every frame of `name` in a split (index 0 = frame 1).
    pub fn labels(&self, split: Split, name: &str) -> Result<Vec<Labels>, DataError> {
        let existing = |task| Some(self.annotation_path(task, split, name)).filter(|p| p.is_file());
        let va = existing(Task::Va)
            .map(|p| read_va(&p))
            .transpose()?
            .unwrap_or_default();
        let expr = existing(Task::Expr)
            .map(|p| read_expr(&p))
            .transpose()?
            .unwrap_or_default();
        let au = existing(Task::Au)
            .map(|p| read_au(&p))
            .transpose()?
            .unwrap_or_default();
        let n = va.len().max(expr.len()).max(au.len());
        Ok((0..n)
            .map(|i| Labels {
                va: va.get(i).copied().flatten(),
                expression: expr.get(i).copied().flatten(),
                au: au.get(i).copied().flatten(),
            })
            .collect())
    }

    /// Frame numbers of the crops present for `name`.
    pub fn crop_frames(&self, name: &str) -> Result<HashSet<u32>, DataError> {
        let dir = self.root.join("cropped_aligned").join(name);
        if !dir.is_dir() {
            return Ok(HashSet::new());
        }
        let mut frames = HashSet::new();
        for entry in std::fs::read_dir(&dir).map_err(io_error(&dir))? {
            let path = entry.map_err(io_error(&dir))?.path();
            if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("jpg"))
                && let Some(n) = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse().ok())
            {
                frames.insert(n);
            }
        }
        Ok(frames)
    }

    /// Every annotated frame of a split that has a crop, with its labels masked per task.
    pub fn samples(&self, split: Split) -> Result<(Vec<Sample>, ReadStats), DataError> {
        let mut samples = Vec::new();
        let mut stats = ReadStats::default();
        for name in self.names(split)? {
            let labels = self.labels(split, &name)?;
            let crops = self.crop_frames(&name)?;
            let video = video_name(&name).to_string();
            for (i, l) in labels.into_iter().enumerate() {
                let frame = i as u32 + 1;
                if l.is_empty() {
                    stats.unannotated_frames += 1;
                    continue;
                }
                stats.annotated_frames += 1;
                if !crops.contains(&frame) {
                    stats.missing_crops += 1;
                    continue;
                }
                samples.push(Sample {
                    crop: self
                        .root
                        .join("cropped_aligned")
                        .join(&name)
                        .join(format!("{frame:05}.jpg")),
                    name: name.clone(),
                    video: video.clone(),
                    frame,
                    labels: l,
                });
            }
        }
        Ok((samples, stats))
    }

    /// The video file of an annotation name (suffix stripped).
    pub fn video_path(&self, name: &str) -> Result<PathBuf, DataError> {
        let video = video_name(name);
        let videos = self.root.join("videos");
        for dir in [videos.clone(), videos.join("batch1"), videos.join("batch2")] {
            for ext in ["mkv", "mp4", "avi", "MP4", "AVI"] {
                let p = dir.join(format!("{video}.{ext}"));
                if p.is_file() {
                    return Ok(p);
                }
            }
        }
        Err(DataError::NoVideo {
            name: name.to_string(),
            dir: videos,
        })
    }
}

impl AffWild2 {
    /// The log-mel spectrogram of the audio of `name`'s video (default model-contract
    /// features) and the video's frame rate, for [`audio::AudioFeatures::window`] at
    /// [`frame_time`].
    pub fn audio(&self, name: &str) -> Result<(audio::AudioFeatures, Option<f64>), DataError> {
        let path = self.video_path(name)?;
        audio::AudioFeatures::from_file(&path, affect_core::melspec::MelConfig::default())
    }
}

/// Timestamp in seconds of a 1-based frame number at `fps`.
pub fn frame_time(frame: u32, fps: f64) -> f64 {
    frame.saturating_sub(1) as f64 / fps
}

/// Decodes a crop into packed RGB8 with its size.
pub fn load_crop(path: &Path) -> Result<(Vec<u8>, u32, u32), DataError> {
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    let img =
        image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg).map_err(|e| {
            DataError::Image {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })?;
    let rgb = img.into_rgb8();
    let (w, h) = rgb.dimensions();
    Ok((rgb.into_raw(), w, h))
}

/// The RGB value (0..=255 per channel) of a crop decoded by [`load_crop`] (`w`x`h`, RGB8) at
/// the source position (`sx`, `sy`), pixel centres at whole numbers: bilinear, edges
/// clamped. The training loader and the ONNX reference predictor resample crops with it.
pub fn bilinear_rgb(rgb: &[u8], w: u32, h: u32, sx: f32, sy: f32) -> [f32; 3] {
    let clamp = |v: i64, n: u32| v.clamp(0, n as i64 - 1) as usize;
    let (x0, y0) = (sx.floor(), sy.floor());
    let (fx, fy) = (sx - x0, sy - y0);
    let (xa, xb) = (clamp(x0 as i64, w), clamp(x0 as i64 + 1, w));
    let (ya, yb) = (clamp(y0 as i64, h), clamp(y0 as i64 + 1, h));
    let mut out = [0.0; 3];
    for (c, value) in out.iter_mut().enumerate() {
        let p = |yy: usize, xx: usize| rgb[(yy * w as usize + xx) * 3 + c] as f32;
        let top = p(ya, xa) * (1.0 - fx) + p(ya, xb) * fx;
        let bottom = p(yb, xa) * (1.0 - fx) + p(yb, xb) * fx;
        *value = top * (1.0 - fy) + bottom * fy;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn masks_and_errors_name_file_and_line() {
        let dir = affect_core::testutil::scratch_dir("annotation-parse");
        let va = write(&dir, "va.txt", "valence,arousal\n0.5,-0.25\n-5,-5\n");
        assert_eq!(read_va(&va).unwrap(), vec![Some([0.5, -0.25]), None]);
        let ex = write(&dir, "ex.txt", &format!("{}\n3\n-1\n", Task::Expr.header()));
        assert_eq!(read_expr(&ex).unwrap(), vec![Some(3), None]);
        let au = write(
            &dir,
            "au.txt",
            &format!(
                "{}\n0,1,0,0,0,0,1,0,0,0,0,1\n{}\n",
                Task::Au.header(),
                ["-1"; 12].join(",")
            ),
        );
        let got = read_au(&au).unwrap();
        assert_eq!(got[0].unwrap()[1], 1);
        assert_eq!(got[1], None);

        let bad = write(&dir, "bad.txt", "valence,arousal\n0.1,0.2\n0.3;0.4\n");
        let e = read_va(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.txt:3:"), "{e}");
        let bad = write(&dir, "bad2.txt", &format!("{}\n9\n", Task::Expr.header()));
        let e = read_expr(&bad).unwrap_err().to_string();
        assert!(e.contains("bad2.txt:2:") && e.contains("class 9"), "{e}");
        let bad = write(&dir, "bad3.txt", "arousal,valence\n0,0\n");
        let e = read_va(&bad).unwrap_err().to_string();
        assert!(e.contains("bad3.txt:1:") && e.contains("header"), "{e}");
        let bad = write(
            &dir,
            "bad4.txt",
            &format!("{}\n0,1,2,0,0,0,1,0,0,0,0,1\n", Task::Au.header()),
        );
        assert!(
            read_au(&bad)
                .unwrap_err()
                .to_string()
                .contains("bad4.txt:2:")
        );
    }

    #[test]
    fn bilinear_rgb_hits_pixels_blends_between_them_and_clamps_at_the_edges() {
        // 2x2 image: (0,0) red, (1,0) green, (0,1) blue, (1,1) white.
        let rgb = [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255];
        assert_eq!(bilinear_rgb(&rgb, 2, 2, 1.0, 0.0), [0.0, 255.0, 0.0]);
        assert_eq!(bilinear_rgb(&rgb, 2, 2, 0.0, 1.0), [0.0, 0.0, 255.0]);
        // Half way along the top row: the mean of red and green.
        assert_eq!(bilinear_rgb(&rgb, 2, 2, 0.5, 0.0), [127.5, 127.5, 0.0]);
        // The centre: the mean of all four.
        assert_eq!(bilinear_rgb(&rgb, 2, 2, 0.5, 0.5), [127.5, 127.5, 127.5]);
        // Outside the image: the nearest edge pixel.
        assert_eq!(bilinear_rgb(&rgb, 2, 2, -3.0, -0.5), [255.0, 0.0, 0.0]);
        assert_eq!(bilinear_rgb(&rgb, 2, 2, 5.0, 7.25), [255.0, 255.0, 255.0]);
    }

    #[test]
    fn suffixes() {
        assert_eq!(video_name("10-60-1280x720_left"), "10-60-1280x720");
        assert_eq!(video_name("video5_right"), "video5");
        assert_eq!(video_name("118-30-640x480"), "118-30-640x480");
    }
}
