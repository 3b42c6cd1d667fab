// SPDX-License-Identifier: MPL-2.0
//! The data loader: clips of consecutive annotated frames per face track, decoded, augmented
//! and normalised on worker threads while the network trains on the previous batch.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};

use affect_core::labels::{N_AUS, VA_UNANNOTATED};
use affect_core::melspec::MelConfig;

use super::config::AugmentConfig;
use crate::data::audio::AudioFeatures;
use crate::data::{AffWild2, DataError, Sample, Split, bilinear_rgb, load_crop};
use crate::rng::Rng;

/// A decoded crop: packed RGB8, width, height.
type Crop = Arc<(Vec<u8>, u32, u32)>;

/// The frames of one split, grouped into clips, with their audio.
pub struct ClipSet {
    pub samples: Vec<Sample>,
    /// Indices into `samples`, `clip_len` consecutive annotated frames of one track each.
    pub clips: Vec<Vec<usize>>,
    /// Per sample: index into `audio`.
    audio_of: Vec<usize>,
    /// Per video: spectrogram and frame rate.
    audio: Vec<(Arc<AudioFeatures>, f64)>,
    /// Decoded crops, filled on first use (the world is small enough to keep in memory).
    crops: Vec<OnceLock<Crop>>,
}

impl ClipSet {
    /// Reads a split; with `with_audio`, decodes every video's audio once.
    pub fn open(
        data: &AffWild2,
        split: Split,
        clip_len: usize,
        with_audio: bool,
        max_clips: Option<usize>,
    ) -> Result<ClipSet, DataError> {
        let (samples, _) = data.samples(split)?;
        let mut by_track: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, s) in samples.iter().enumerate() {
            by_track.entry(s.name.as_str()).or_default().push(i);
        }
        let mut clips = Vec::new();
        for (_, mut idx) in by_track {
            idx.sort_by_key(|&i| samples[i].frame);
            // Clips tile the track; the tail shorter than a clip is dropped in training, and
            // covered by a last clip that overlaps its predecessor.
            let mut start = 0;
            while start + clip_len <= idx.len() {
                clips.push(idx[start..start + clip_len].to_vec());
                start += clip_len;
            }
            if start < idx.len() && idx.len() >= clip_len {
                clips.push(idx[idx.len() - clip_len..].to_vec());
            }
        }
        if let Some(m) = max_clips
            && clips.len() > m
        {
            // An even spread over the tracks rather than the first few.
            let n = clips.len();
            clips = (0..m).map(|k| clips[k * n / m].clone()).collect();
        }
        let mut audio = Vec::new();
        let mut audio_of = vec![0; samples.len()];
        if with_audio {
            let mut by_video: BTreeMap<String, usize> = BTreeMap::new();
            for (i, s) in samples.iter().enumerate() {
                let k = match by_video.get(&s.video) {
                    Some(&k) => k,
                    None => {
                        let path = data.video_path(&s.name)?;
                        let (f, fps) = AudioFeatures::from_file(&path, MelConfig::default())?;
                        let fps = fps.ok_or_else(|| DataError::Media {
                            path: path.clone(),
                            message: "no video frame rate".into(),
                        })?;
                        audio.push((Arc::new(f), fps));
                        by_video.insert(s.video.clone(), audio.len() - 1);
                        audio.len() - 1
                    }
                };
                audio_of[i] = k;
            }
        }
        let crops = (0..samples.len()).map(|_| OnceLock::new()).collect();
        Ok(ClipSet {
            samples,
            clips,
            audio_of,
            audio,
            crops,
        })
    }

    fn crop(&self, i: usize) -> Result<Crop, DataError> {
        if let Some(c) = self.crops[i].get() {
            return Ok(c.clone());
        }
        let c = Arc::new(load_crop(&self.samples[i].crop)?);
        Ok(self.crops[i].get_or_init(|| c).clone())
    }
}

/// What the network needs of the input.
#[derive(Clone, Debug)]
pub struct InputSpec {
    pub size: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Spectrogram frames per window, when the network has audio.
    pub audio_frames: Option<usize>,
}

/// One batch, clip-major (`clip * len + t`).
pub struct Batch {
    pub clips: usize,
    pub len: usize,
    /// `[clips*len, 3, size, size]`.
    pub face: Vec<f32>,
    /// `[clips*len, 1, T, 64]`.
    pub audio: Option<Vec<f32>>,
    pub va: Vec<f32>,
    pub expression: Vec<i64>,
    pub au: Vec<f32>,
    /// Sample index of every row.
    pub rows: Vec<usize>,
}

/// Per-clip random augmentation.
#[derive(Clone, Copy, Debug)]
struct Augment {
    flip: bool,
    dx: f32,
    dy: f32,
    scale: f32,
    brightness: f32,
    contrast: f32,
    gain: [f32; 3],
}

impl Augment {
    const NONE: Augment = Augment {
        flip: false,
        dx: 0.0,
        dy: 0.0,
        scale: 1.0,
        brightness: 0.0,
        contrast: 1.0,
        gain: [1.0; 3],
    };

    fn draw(cfg: &AugmentConfig, rng: &mut Rng) -> Augment {
        let j = cfg.crop_jitter;
        let c = cfg.colour;
        Augment {
            flip: cfg.flip && rng.chance(0.5),
            dx: rng.range(-j, j),
            dy: rng.range(-j, j),
            scale: 1.0 + rng.range(-j, j),
            brightness: rng.range(-c, c) * 0.5,
            contrast: 1.0 + rng.range(-c, c),
            gain: [
                1.0 + rng.range(-c, c) * 0.5,
                1.0 + rng.range(-c, c) * 0.5,
                1.0 + rng.range(-c, c) * 0.5,
            ],
        }
    }
}

/// Resamples an RGB8 crop (bilinear, edges clamped) to `size`x`size` with the augmentation
/// and writes normalised CHW floats into `out`.
fn render(rgb: &[u8], w: u32, h: u32, spec: &InputSpec, a: &Augment, out: &mut [f32]) {
    let s = spec.size;
    let (wf, hf) = (w as f32, h as f32);
    let plane = s * s;
    for y in 0..s {
        let v = (y as f32 + 0.5) / s as f32;
        let sy = ((v - 0.5) * a.scale + 0.5 + a.dy) * hf - 0.5;
        for x in 0..s {
            let mut u = (x as f32 + 0.5) / s as f32;
            if a.flip {
                u = 1.0 - u;
            }
            let sx = ((u - 0.5) * a.scale + 0.5 + a.dx) * wf - 0.5;
            let pixel = bilinear_rgb(rgb, w, h, sx, sy);
            for (c, level) in pixel.iter().enumerate() {
                let value = level / 255.0;
                let value =
                    (((value - 0.5) * a.contrast + 0.5 + a.brightness) * a.gain[c]).clamp(0.0, 1.0);
                out[c * plane + y * s + x] = (value - spec.mean[c]) / spec.std[c];
            }
        }
    }
}

fn make_batch(
    set: &ClipSet,
    clip_ids: &[usize],
    spec: &InputSpec,
    augment: Option<(&AugmentConfig, u64)>,
) -> Result<Batch, DataError> {
    let len = set.clips[clip_ids[0]].len();
    let rows = clip_ids.len() * len;
    let face_n = 3 * spec.size * spec.size;
    let mut b = Batch {
        clips: clip_ids.len(),
        len,
        face: vec![0.0; rows * face_n],
        audio: spec.audio_frames.map(|t| Vec::with_capacity(rows * t * 64)),
        va: Vec::with_capacity(rows * 2),
        expression: Vec::with_capacity(rows),
        au: Vec::with_capacity(rows * N_AUS),
        rows: Vec::with_capacity(rows),
    };
    let mut window = Vec::new();
    for (k, &c) in clip_ids.iter().enumerate() {
        let a = match augment {
            Some((cfg, seed)) => Augment::draw(
                cfg,
                &mut Rng::new(seed ^ (c as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            ),
            None => Augment::NONE,
        };
        for (t, &i) in set.clips[c].iter().enumerate() {
            let row = k * len + t;
            let crop = set.crop(i)?;
            render(
                &crop.0,
                crop.1,
                crop.2,
                spec,
                &a,
                &mut b.face[row * face_n..(row + 1) * face_n],
            );
            let s = &set.samples[i];
            if let (Some(frames), Some(audio)) = (spec.audio_frames, b.audio.as_mut()) {
                let (feat, fps) = &set.audio[set.audio_of[i]];
                // The window ends at the frame's presentation time, as in a pipeline.
                feat.window((s.frame - 1) as f64 / fps, frames, &mut window);
                audio.extend_from_slice(&window);
            }
            let va = s.labels.va.unwrap_or([VA_UNANNOTATED; 2]);
            b.va.extend_from_slice(&va);
            b.expression
                .push(s.labels.expression.map_or(-1, |e| e as i64));
            match s.labels.au {
                Some(au) => b.au.extend(au.iter().map(|&x| x as f32)),
                None => b.au.extend([-1.0; N_AUS]),
            }
            b.rows.push(i);
        }
    }
    Ok(b)
}

/// Runs `consume` on every batch of `order` (chunks of `batch_size` clip indices), made by
/// `workers` threads; batches may arrive out of order. Stops at the first error.
pub fn for_each_batch<E: From<DataError>>(
    set: &ClipSet,
    order: &[usize],
    batch_size: usize,
    spec: &InputSpec,
    augment: Option<(&AugmentConfig, u64)>,
    workers: usize,
    mut consume: impl FnMut(Batch) -> Result<(), E>,
) -> Result<(), E> {
    let jobs: Vec<&[usize]> = order.chunks(batch_size).collect();
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<DataError>> = Mutex::new(None);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Two batches ready per worker keep the consumer busy without holding much memory.
        let (tx, rx) = mpsc::sync_channel::<Batch>(2 * workers);
        for w in 0..workers {
            let tx = tx.clone();
            let (jobs, next, failed, stop) = (&jobs, &next, &failed, &stop);
            std::thread::Builder::new()
                .name(format!("affect-loader-{w}"))
                .spawn_scoped(scope, move || {
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let j = next.fetch_add(1, Ordering::Relaxed);
                        let Some(ids) = jobs.get(j) else { break };
                        let aug = augment.map(|(cfg, seed)| (cfg, seed.wrapping_add(j as u64)));
                        match make_batch(set, ids, spec, aug) {
                            Ok(b) => {
                                if tx.send(b).is_err() {
                                    break;
                                }
                            }
                            Err(e) => {
                                *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                                break;
                            }
                        }
                    }
                })
                .map_err(|e| DataError::Media {
                    path: "affect-loader".into(),
                    message: format!("cannot start a loader thread: {e}"),
                })?;
        }
        drop(tx);
        let mut result = Ok(());
        for b in rx.iter() {
            if let Err(e) = consume(b) {
                result = Err(e);
                stop.store(true, Ordering::Relaxed);
                break;
            }
        }
        // Let workers blocked on a full channel finish.
        drop(rx);
        result
    })?;
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
