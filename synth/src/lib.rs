// SPDX-License-Identifier: MPL-2.0
//! The synthetic affect world, the reader of data laid out as Aff-Wild2 ([`data`]) and ABAW
//! evaluation ([`eval`]): what the tests, the `affect` command's demo and training measure
//! themselves against, without the training crate.
//!
//! Real affect data (Aff-Wild2) is licensed per user, so the project makes its own ground
//! truth: a world of procedurally drawn faces and voices with known valence/arousal, action
//! units and expressions, written out exactly as Aff-Wild2 (ABAW) is laid out:
//!
//! ```text
//! DIR/videos/<video>.mkv                      MJPEG + 16 kHz mono S16LE PCM, Matroska
//! DIR/cropped_aligned/<name>/00001.jpg        112x112 ArcFace-aligned crops, 1-based
//! DIR/VA_Estimation_Challenge/{Train,Validation}_Set/<name>.txt
//! DIR/EXPR_Recognition_Challenge/{Train,Validation}_Set/<name>.txt
//! DIR/AU_Detection_Challenge/{Train,Validation}_Set/<name>.txt
//! DIR/ground_truth/<video>.jsonl              per frame: boxes, 5 landmarks, AU intensities
//! ```
//!
//! `<name>` is the video name, or `<video>_left` / `<video>_right` in two-person videos.
//! Each annotation file has a header line and one line per video frame; frames left
//! unannotated hold -5 (VA) or -1 (EXPR, AU) as Aff-Wild2 marks them. Some annotated frames
//! have no crop (as when a face detector misses). Everything is a function of the seed.

pub mod audio;
pub mod data;
pub mod eval;
pub mod face;
pub mod mkv;
pub mod preview;
pub mod raster;
pub mod rng;
pub mod testutil;
pub mod world;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use affect_core::align::{AlignError, RgbImage, crop_aligned};
use affect_core::labels::N_AUS;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::data::{Split, Task};
use crate::rng::Rng;
use raster::Canvas;
use world::VideoPlan;

/// Failures while generating the world.
#[derive(Debug, Error)]
pub enum SynthError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Media { path: PathBuf, message: String },
    #[error("{path}: cannot encode: {source}")]
    Image {
        path: PathBuf,
        source: image::ImageError,
    },
    #[error("cannot align a face crop: {0}")]
    Align(#[from] AlignError),
    #[error("invalid configuration: {0}")]
    Config(String),
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct SynthConfig {
    pub out: PathBuf,
    pub videos: usize,
    pub seconds: f32,
    pub seed: u64,
    /// Videos hold 1..=this many people (Aff-Wild2 names at most two: `_left`, `_right`).
    pub faces_per_frame: usize,
    pub fps: u32,
    pub width: u32,
    pub height: u32,
    pub crop_size: u32,
    pub jpeg_quality: u8,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            out: PathBuf::from("synth"),
            videos: 4,
            seconds: 10.0,
            seed: 0,
            faces_per_frame: 2,
            fps: 30,
            width: 640,
            height: 480,
            crop_size: 112,
            jpeg_quality: 90,
        }
    }
}

impl SynthConfig {
    fn validate(&self) -> Result<(), SynthError> {
        let bad = |m: String| Err(SynthError::Config(m));
        if !(1..=2).contains(&self.faces_per_frame) {
            return bad(format!(
                "faces per frame must be 1 or 2 (Aff-Wild2 names two people _left/_right), got {}",
                self.faces_per_frame
            ));
        }
        if self.videos == 0 || self.fps == 0 || self.crop_size == 0 {
            return bad("videos, fps and crop size must be positive".into());
        }
        if !(self.seconds > 0.0 && self.seconds.is_finite()) {
            return bad(format!("seconds must be positive, got {}", self.seconds));
        }
        if self.width < 64
            || self.height < 64
            || !self.width.is_multiple_of(2)
            || !self.height.is_multiple_of(2)
        {
            return bad(format!(
                "frame size must be even and at least 64x64, got {}x{}",
                self.width, self.height
            ));
        }
        Ok(())
    }

    /// The plan of video `index`.
    pub fn plan(&self, index: usize) -> VideoPlan {
        let people = 1 + index % self.faces_per_frame;
        VideoPlan::new(
            self.seed,
            index,
            people,
            self.seconds,
            self.fps,
            self.width,
            self.height,
        )
    }

    /// Which split video `index` belongs to: the last video and every fifth are validation.
    pub fn split(&self, index: usize) -> Split {
        if (self.videos > 1 && index == self.videos - 1) || index % 5 == 4 {
            Split::Validation
        } else {
            Split::Train
        }
    }
}

/// Ground truth of one face in one frame (a line of the side file holds all faces).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FaceTruth {
    /// Annotation name (`<video>`, `<video>_left`, `<video>_right`).
    pub name: String,
    /// `[x, y, w, h]` in frame pixels.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// Left eye, right eye, nose tip, left and right mouth corner, frame pixels.
    pub landmarks: [[f32; 2]; 5],
    pub au_intensity: [f32; N_AUS],
    pub au: [u8; N_AUS],
    pub expression: usize,
    pub valence: f32,
    pub arousal: f32,
    /// Whether each task's annotation file labels this frame (`[va, expr, au]`).
    pub annotated: [bool; 3],
    /// Whether `cropped_aligned` holds this frame's crop.
    pub crop: bool,
    pub occluded: bool,
}

/// One line of `ground_truth/<video>.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FrameTruth {
    /// 1-based, as the crop and annotation files count.
    pub frame: u32,
    pub time: f64,
    pub faces: Vec<FaceTruth>,
}

/// What a generation run produced.
#[derive(Clone, Debug, Default)]
pub struct SynthSummary {
    pub videos: usize,
    pub frames: usize,
    pub crops: usize,
    pub render_seconds: f64,
    pub total_seconds: f64,
}

/// Which frames of a person are unannotated per task and which lack a crop.
struct Gaps {
    unannotated: [Vec<bool>; 3],
    no_crop: Vec<bool>,
}

impl Gaps {
    /// At least one unannotated run per task and at least one missing crop per person, so
    /// every generated set exercises the masks.
    fn random(rng: &mut Rng, n: usize) -> Gaps {
        let run = |rng: &mut Rng| {
            let mut v = vec![false; n];
            let len = ((n as f32 * rng.range(0.03, 0.1)) as usize).clamp(1, n);
            let start = rng.below(n + 1 - len);
            v[start..start + len].fill(true);
            v
        };
        let unannotated = [run(rng), run(rng), run(rng)];
        let mut no_crop: Vec<bool> = (0..n).map(|_| rng.chance(0.03)).collect();
        no_crop[rng.below(n)] = true;
        Gaps {
            unannotated,
            no_crop,
        }
    }
}

/// Annotation file path of `name` for a task and split.
pub fn annotation_path(root: &Path, task: Task, split: Split, name: &str) -> PathBuf {
    root.join(task.folder())
        .join(split.folder())
        .join(format!("{name}.txt"))
}

/// Crop path of frame `frame` (1-based) of `name`.
pub fn crop_path(root: &Path, name: &str, frame: u32) -> PathBuf {
    root.join("cropped_aligned")
        .join(name)
        .join(format!("{frame:05}.jpg"))
}

fn create(path: &Path) -> Result<BufWriter<std::fs::File>, SynthError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    Ok(BufWriter::new(
        std::fs::File::create(path).map_err(io_error(path))?,
    ))
}

/// Encodes packed RGB8 as JPEG into `path`.
pub fn write_jpeg(
    path: &Path,
    rgb: &[u8],
    width: u32,
    height: u32,
    quality: u8,
) -> Result<(), SynthError> {
    let mut bytes = Vec::with_capacity(rgb.len() / 4);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode(rgb, width, height, image::ExtendedColorType::Rgb8)
        .map_err(|source| SynthError::Image {
            path: path.to_path_buf(),
            source,
        })?;
    std::fs::write(path, bytes).map_err(io_error(path))
}

/// Generates the whole world into `cfg.out`.
pub fn generate(cfg: &SynthConfig) -> Result<SynthSummary, SynthError> {
    cfg.validate()?;
    let start = std::time::Instant::now();
    let mut summary = SynthSummary::default();
    for index in 0..cfg.videos {
        write_video(cfg, index, &mut summary)?;
    }
    summary.total_seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

fn write_video(
    cfg: &SynthConfig,
    index: usize,
    summary: &mut SynthSummary,
) -> Result<(), SynthError> {
    let plan = cfg.plan(index);
    let split = cfg.split(index);
    let root = &cfg.out;
    let n = plan.n_frames as usize;
    let video_path = root.join("videos").join(format!("{}.mkv", plan.name));
    std::fs::create_dir_all(video_path.parent().unwrap_or(root)).map_err(io_error(root))?;
    let mut mkv = mkv::MkvWriter::create(
        &video_path,
        cfg.width,
        cfg.height,
        cfg.fps,
        audio::SAMPLE_RATE,
        cfg.jpeg_quality,
    )?;
    let pcm = audio::to_s16(&audio::synthesize(&plan));
    let gaps_rng = crate::rng::Rng::new(cfg.seed).fork(index as u64).fork(3);
    let gaps: Vec<Gaps> = (0..plan.people.len())
        .map(|p| Gaps::random(&mut gaps_rng.fork(p as u64), n))
        .collect();

    // Annotation writers: [person][task].
    let mut files = Vec::new();
    for person in &plan.people {
        let mut per_task = Vec::new();
        for task in Task::ALL {
            let path = annotation_path(root, task, split, &person.name);
            let mut w = create(&path)?;
            writeln!(w, "{}", task.header()).map_err(io_error(&path))?;
            per_task.push((path, w));
        }
        files.push(per_task);
        let dir = root.join("cropped_aligned").join(&person.name);
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    }
    let truth_path = root
        .join("ground_truth")
        .join(format!("{}.jsonl", plan.name));
    let mut truth = create(&truth_path)?;

    let mut canvas = Canvas::new(cfg.width, cfg.height);
    let crop_len = (cfg.crop_size * cfg.crop_size * 3) as usize;
    let mut crop = vec![0u8; crop_len];
    let samples_per_frame = |f: usize| f * pcm.len() / n;
    for f in 0..n {
        mkv.push_audio(&pcm[samples_per_frame(f)..samples_per_frame(f + 1)])?;
        let t0 = std::time::Instant::now();
        let faces = plan.render(f as u32, &mut canvas);
        summary.render_seconds += t0.elapsed().as_secs_f64();
        let frame_no = f as u32 + 1;
        let mut line = FrameTruth {
            frame: frame_no,
            time: f as f64 / cfg.fps as f64,
            faces: Vec::with_capacity(faces.len()),
        };
        let image = RgbImage::new(&canvas.data, cfg.width, cfg.height, cfg.width as usize * 3)?;
        for (p, face) in faces.iter().enumerate() {
            let person = &plan.people[p];
            let gap = &gaps[p];
            let annotated = [0, 1, 2].map(|k| !gap.unannotated[k][f]);
            let has_crop = !gap.no_crop[f];
            if has_crop {
                crop_aligned(&image, &face.geometry.landmarks, cfg.crop_size, &mut crop)?;
                let path = crop_path(root, &person.name, frame_no);
                write_jpeg(&path, &crop, cfg.crop_size, cfg.crop_size, cfg.jpeg_quality)?;
                summary.crops += 1;
            }
            let s = &face.state;
            for (k, (path, w)) in files[p].iter_mut().enumerate() {
                let result = match (k, annotated[k]) {
                    (0, true) => writeln!(w, "{:.6},{:.6}", s.valence, s.arousal),
                    (0, false) => writeln!(w, "-5,-5"),
                    (1, true) => writeln!(w, "{}", s.expression),
                    (1, false) => writeln!(w, "-1"),
                    (_, true) => writeln!(
                        w,
                        "{}",
                        s.au.iter()
                            .map(|a| a.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                    (_, false) => writeln!(w, "{}", ["-1"; N_AUS].join(",")),
                };
                result.map_err(io_error(path))?;
            }
            line.faces.push(FaceTruth {
                name: person.name.clone(),
                bbox: face.geometry.bbox,
                landmarks: face.geometry.landmarks,
                au_intensity: s.intensity,
                au: s.au,
                expression: s.expression,
                valence: s.valence,
                arousal: s.arousal,
                annotated,
                crop: has_crop,
                occluded: s.occlusion.is_some(),
            });
        }
        let json = serde_json::to_string(&line).map_err(|e| SynthError::Io {
            path: truth_path.clone(),
            source: e.into(),
        })?;
        writeln!(truth, "{json}").map_err(io_error(&truth_path))?;
        mkv.push_frame(&canvas.data)?;
        summary.frames += 1;
    }
    for per_task in &mut files {
        for (path, w) in per_task {
            w.flush().map_err(io_error(path))?;
        }
    }
    truth.flush().map_err(io_error(&truth_path))?;
    mkv.finish()?;
    summary.videos += 1;
    Ok(())
}

/// Reads `ground_truth/<video>.jsonl`.
pub fn read_ground_truth(path: &Path) -> Result<Vec<FrameTruth>, SynthError> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| SynthError::Media {
                path: path.to_path_buf(),
                message: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}
