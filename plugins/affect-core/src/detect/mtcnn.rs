// SPDX-License-Identifier: MPL-2.0
//! MTCNN face detection (Zhang et al., "Joint Face Detection and Alignment using Multi-task
//! Cascaded Convolutional Networks", 2016): boxes and five landmarks from three small networks.
//!
//! The cascade follows facenet-pytorch's `detect_face`, whose weights the networks are
//! imported from (`affect-train import mtcnn`), so that the faces equal its `MTCNN.detect`:
//! - an image pyramid from `12 / min_face_size` down by `factor` while the shorter side stays
//!   at least 12 pixels, each level an area resample (`interpolate(mode="area")`, i.e. an
//!   adaptive average pool) of the frame to `(int(h * s + 1), int(w * s + 1))`;
//! - P-Net over each level; cells scoring at least `thresholds[0]` become 12x12 windows
//!   (stride 2) mapped back to the frame, suppressed per level at IoU 0.5 and over all levels
//!   at 0.7, moved by P-Net's regression and made square;
//! - the windows cut from the frame (clipped to it), resampled to 24x24, scored by R-Net in one
//!   batch: above `thresholds[1]` kept, suppressed at 0.7, regressed, made square;
//! - the same at 48x48 through O-Net (`thresholds[2]`), which also gives the landmarks;
//!   regressed, then suppressed at 0.7 by intersection over the smaller box.
//!
//! The networks are behind [`MtcnnNets`]: this module holds the cascade's logic and its
//! buffers (allocated once, at the largest pyramid level), and the caller runs the networks
//! (the element through ONNX Runtime). Network inputs are RGB, NCHW, `(x - 127.5) / 128`.
//!
//! Coordinates are facenet-pytorch's: its boxes are what it returns, unchanged.

use std::time::{Duration, Instant};

use super::{Detection, iou};

/// The stage names, as file names and metadata use them.
pub const PNET: &str = "pnet";
pub const RNET: &str = "rnet";
pub const ONET: &str = "onet";
/// The name of the networks' input.
pub const INPUT: &str = "image";
/// Outputs: box regression (`[N, 4, h, w]` for P-Net, `[N, 4]` for R-/O-Net), face
/// probability after softmax (`[N, 2, ...]`, channel 1 = face) and O-Net's landmarks
/// (`[N, 10]`: five x then five y, relative to the box).
pub const REGRESSION: &str = "regression";
pub const PROBABILITY: &str = "probability";
pub const LANDMARKS: &str = "landmarks";
/// `affect.detector` of the networks' files.
pub const DETECTOR_NAME: &str = "mtcnn";
/// How the networks' input is made.
pub const NORMALIZATION: &str = "RGB, NCHW, (x - 127.5) * 0.0078125";

/// `metadata_props` keys of the imported files.
pub mod keys {
    pub const DETECTOR: &str = "affect.detector";
    pub const STAGE: &str = "affect.mtcnn.stage";
    pub const NORMALIZATION: &str = "affect.mtcnn.normalization";
    pub const SOURCE: &str = "affect.provenance.source";
    pub const LICENSE: &str = "affect.provenance.license";
    pub const WEIGHTS_SHA256: &str = "affect.provenance.weights_sha256";
}

/// The file a stage is kept in: `mtcnn-pnet.onnx`.
pub fn file_name(stage: &str) -> String {
    format!("mtcnn-{stage}.onnx")
}

/// Side of P-Net's window, and its stride on a pyramid level.
const CELL: f32 = 12.0;
const STRIDE: f32 = 2.0;
/// The input side of R-Net and O-Net.
pub const RNET_SIZE: usize = 24;
pub const ONET_SIZE: usize = 48;

/// The cascade's settings (facenet-pytorch's defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MtcnnParams {
    /// Smallest face side searched for, in frame pixels (at least 12; on a downscaled copy,
    /// at least 12 pixels of the copy).
    pub min_face_size: f64,
    /// Scale between pyramid levels.
    pub factor: f64,
    /// Face probability thresholds of P-Net, R-Net and O-Net.
    pub thresholds: [f32; 3],
}

impl Default for MtcnnParams {
    fn default() -> Self {
        Self {
            min_face_size: 20.0,
            factor: 0.709,
            thresholds: [0.6, 0.7, 0.7],
        }
    }
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MtcnnError {
    #[error("MTCNN {0}")]
    Params(String),
    #[error(
        "frame buffer of {got} bytes is too small for {width}x{height} RGB with a stride of \
         {stride} bytes"
    )]
    FrameTooSmall {
        width: usize,
        height: usize,
        stride: usize,
        got: usize,
    },
    #[error("{stage} gave {got} values for '{output}', {expected} expected")]
    Output {
        stage: &'static str,
        output: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("{stage}: {why}")]
    Network { stage: &'static str, why: String },
}

/// What P-Net gives for one pyramid level of `h x w`: regression `[4, oh, ow]` and face
/// probability `[2, oh, ow]`. One is reused for every level, so implementations should
/// overwrite the vectors in place (`clear` + `extend_from_slice`).
#[derive(Default)]
pub struct PnetOutput {
    pub regression: Vec<f32>,
    pub probability: Vec<f32>,
    pub height: usize,
    pub width: usize,
}

/// What R-Net (`landmarks` empty) or O-Net gives for a batch of `n` crops: regression
/// `[n, 4]`, landmarks `[n, 10]`, probability `[n, 2]`.
pub struct RefineOutput {
    pub regression: Vec<f32>,
    pub landmarks: Vec<f32>,
    pub probability: Vec<f32>,
}

/// The three networks. Inputs are NCHW f32 in the networks' normalisation.
pub trait MtcnnNets {
    /// P-Net on one image `[1, 3, height, width]`, into `out`.
    fn pnet(
        &mut self,
        input: &[f32],
        height: usize,
        width: usize,
        out: &mut PnetOutput,
    ) -> Result<(), String>;
    /// R-Net on `n` crops `[n, 3, 24, 24]`.
    fn rnet(&mut self, input: &[f32], n: usize) -> Result<RefineOutput, String>;
    /// O-Net on `n` crops `[n, 3, 48, 48]`.
    fn onet(&mut self, input: &[f32], n: usize) -> Result<RefineOutput, String>;
}

/// An RGB frame, 8 bits per channel, rows `stride` bytes apart.
#[derive(Clone, Copy)]
pub struct RgbFrame<'a> {
    pub data: &'a [u8],
    pub width: usize,
    pub height: usize,
    pub stride: usize,
}

impl<'a> RgbFrame<'a> {
    pub fn new(
        data: &'a [u8],
        width: usize,
        height: usize,
        stride: usize,
    ) -> Result<Self, MtcnnError> {
        let needed = if height == 0 {
            0
        } else {
            (height - 1) * stride + width * 3
        };
        if stride < width * 3 || data.len() < needed {
            return Err(MtcnnError::FrameTooSmall {
                width,
                height,
                stride,
                got: data.len(),
            });
        }
        Ok(Self {
            data,
            width,
            height,
            stride,
        })
    }
}

/// A candidate face: box, score, regression, landmarks (when O-Net gave them).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Candidate {
    bbox: [f32; 4],
    score: f32,
    reg: [f32; 4],
    landmarks: Option<[[f32; 2]; 5]>,
}

/// The source ranges of an adaptive average pool (`interpolate(mode="area")`) from `input`
/// to `output` samples: output `i` averages `floor(i * in / out) .. ceil((i + 1) * in / out)`.
fn pool_ranges(input: usize, output: usize, ranges: &mut Vec<(usize, usize)>) {
    ranges.clear();
    ranges.extend((0..output).map(|i| {
        let start = (i * input) / output;
        let end = ((i + 1) * input).div_ceil(output);
        (start, end.max(start + 1).min(input))
    }));
}

/// Area resample of the `w x h` region at `(x0, y0)` of an interleaved 3-channel image
/// (`stride` elements per row) to `ow x oh`, written as normalised planes (CHW) into `out`,
/// or as interleaved values (HWC) when `normalise` is false. Separable: rows, then columns.
#[allow(clippy::too_many_arguments)]
fn area_resample<T: Copy + Into<f32>>(
    src: &[T],
    stride: usize,
    region: (usize, usize, usize, usize),
    ow: usize,
    oh: usize,
    scratch: &mut Scratch,
    out: &mut [f32],
    normalise: bool,
) {
    let (x0, y0, w, h) = region;
    pool_ranges(w, ow, &mut scratch.xr);
    pool_ranges(h, oh, &mut scratch.yr);
    // Horizontal pass over every source row of the region: [h][ow][3].
    scratch.rows.clear();
    scratch.rows.resize(h * ow * 3, 0.0);
    for y in 0..h {
        let row = &src[(y0 + y) * stride + x0 * 3..];
        let dst = &mut scratch.rows[y * ow * 3..(y + 1) * ow * 3];
        for (ox, &(a, b)) in scratch.xr.iter().enumerate() {
            let mut acc = [0f32; 3];
            for x in a..b {
                acc[0] += row[x * 3].into();
                acc[1] += row[x * 3 + 1].into();
                acc[2] += row[x * 3 + 2].into();
            }
            let n = (b - a) as f32;
            dst[ox * 3] = acc[0] / n;
            dst[ox * 3 + 1] = acc[1] / n;
            dst[ox * 3 + 2] = acc[2] / n;
        }
    }
    let plane = ow * oh;
    for (oy, &(a, b)) in scratch.yr.iter().enumerate() {
        let n = (b - a) as f32;
        for ox in 0..ow {
            let mut acc = [0f32; 3];
            for y in a..b {
                let p = &scratch.rows[(y * ow + ox) * 3..];
                acc[0] += p[0];
                acc[1] += p[1];
                acc[2] += p[2];
            }
            if normalise {
                for c in 0..3 {
                    out[c * plane + oy * ow + ox] = (acc[c] / n - 127.5) * 0.0078125;
                }
            } else {
                let o = &mut out[(oy * ow + ox) * 3..];
                for c in 0..3 {
                    o[c] = acc[c] / n;
                }
            }
        }
    }
}

/// Buffers reused across frames.
#[derive(Default)]
struct Scratch {
    xr: Vec<(usize, usize)>,
    yr: Vec<(usize, usize)>,
    rows: Vec<f32>,
}

/// Where the last [`Mtcnn::detect`] spent its time, and how many candidates each stage had.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MtcnnStats {
    /// Downscaled copy, pyramid levels and crops.
    pub resample: Duration,
    pub pnet: Duration,
    pub rnet: Duration,
    pub onet: Duration,
    /// P-Net windows left after suppression (R-Net's batch).
    pub proposals: usize,
    /// R-Net's survivors (O-Net's batch).
    pub refined: usize,
    pub faces: usize,
}

/// The MTCNN cascade with its buffers.
pub struct Mtcnn {
    stats: MtcnnStats,
    params: MtcnnParams,
    scratch: Scratch,
    /// The downscaled copy of the frame (interleaved f32) when detecting on one.
    small: Vec<f32>,
    /// Network input: one pyramid level, or a batch of crops.
    input: Vec<f32>,
    /// P-Net's output and one level's windows, reused across levels.
    pnet_out: PnetOutput,
    level: Vec<Candidate>,
}

impl Mtcnn {
    pub fn new(params: MtcnnParams) -> Result<Self, MtcnnError> {
        if !(params.min_face_size.is_finite() && params.min_face_size >= CELL as f64) {
            return Err(MtcnnError::Params(format!(
                "minimum face size must be at least {CELL} pixels, got {}",
                params.min_face_size
            )));
        }
        if !(params.factor > 0.1 && params.factor < 1.0) {
            return Err(MtcnnError::Params(format!(
                "pyramid factor must be in (0.1, 1), got {}",
                params.factor
            )));
        }
        if params
            .thresholds
            .iter()
            .any(|t| !(t.is_finite() && (0.0..=1.0).contains(t)))
        {
            return Err(MtcnnError::Params(format!(
                "thresholds must be in [0, 1], got {:?}",
                params.thresholds
            )));
        }
        Ok(Self {
            stats: MtcnnStats::default(),
            params,
            scratch: Scratch::default(),
            small: Vec::new(),
            input: Vec::new(),
            pnet_out: PnetOutput::default(),
            level: Vec::new(),
        })
    }

    pub fn params(&self) -> &MtcnnParams {
        &self.params
    }

    /// The figures of the last detection.
    pub fn stats(&self) -> &MtcnnStats {
        &self.stats
    }

    /// The pyramid scales for an `h x w` image, as facenet-pytorch computes them.
    pub fn scales(&self, height: usize, width: usize) -> Vec<f64> {
        scales(height, width, self.params.min_face_size, self.params.factor)
    }

    /// The faces of `frame`, sorted by descending score. With `detect_width` below the frame's
    /// width, the pyramid is built on a copy of the frame scaled to that width (so faces
    /// smaller than 12 pixels of the copy are not searched for), while R-Net and O-Net still
    /// read their crops from the full frame; boxes and landmarks are in frame pixels either
    /// way.
    pub fn detect(
        &mut self,
        nets: &mut impl MtcnnNets,
        frame: RgbFrame<'_>,
        detect_width: Option<usize>,
    ) -> Result<Vec<Detection>, MtcnnError> {
        self.stats = MtcnnStats::default();
        if frame.width == 0 || frame.height == 0 {
            return Ok(Vec::new());
        }
        let candidates = match detect_width.filter(|&dw| dw > 0 && dw < frame.width) {
            None => {
                let min_face = self.params.min_face_size;
                self.propose(
                    nets,
                    (frame.data, frame.stride),
                    frame.width,
                    frame.height,
                    min_face,
                )?
            }
            Some(dw) => {
                let k = dw as f64 / frame.width as f64;
                let (sw, sh) = (dw, ((frame.height as f64 * k).round() as usize).max(1));
                let mut small = std::mem::take(&mut self.small);
                small.resize(sw * sh * 3, 0.0);
                let started = Instant::now();
                area_resample(
                    frame.data,
                    frame.stride,
                    (0, 0, frame.width, frame.height),
                    sw,
                    sh,
                    &mut self.scratch,
                    &mut small,
                    false,
                );
                self.stats.resample += started.elapsed();
                let min_face = (self.params.min_face_size * k).max(CELL as f64);
                let found = self.propose(nets, (&small, sw * 3), sw, sh, min_face);
                self.small = small;
                // Back to frame pixels, through the copy's exact per-axis scale.
                let (fx, fy) = (
                    frame.width as f32 / sw as f32,
                    frame.height as f32 / sh as f32,
                );
                found?
                    .into_iter()
                    .map(|c| Candidate {
                        bbox: [
                            c.bbox[0] * fx,
                            c.bbox[1] * fy,
                            c.bbox[2] * fx,
                            c.bbox[3] * fy,
                        ],
                        ..c
                    })
                    .collect()
            }
        };
        self.stats.proposals = candidates.len();
        let refined = self.refine(nets, frame, candidates)?;
        self.stats.faces = refined.len();
        Ok(refined
            .into_iter()
            .map(|c| Detection {
                bbox: c.bbox,
                score: c.score,
                landmarks: c.landmarks,
            })
            .collect())
    }

    /// Stage 1: P-Net over the pyramid of a `w x h` interleaved RGB image; the windows, moved
    /// by their regression and made square, in the image's pixels.
    fn propose<T: Copy + Into<f32>>(
        &mut self,
        nets: &mut impl MtcnnNets,
        (src, stride): (&[T], usize),
        w: usize,
        h: usize,
        min_face: f64,
    ) -> Result<Vec<Candidate>, MtcnnError> {
        let scales = scales(h, w, min_face, self.params.factor);
        let mut all = Vec::new();
        // Sized for the first (largest) level once: later levels reuse the buffer.
        if let Some(&s) = scales.first() {
            let need = 3 * (h as f64 * s + 1.0) as usize * (w as f64 * s + 1.0) as usize;
            if self.input.len() < need {
                self.input.resize(need, 0.0);
            }
        }
        for scale in scales {
            let hs = (h as f64 * scale + 1.0) as usize;
            let ws = (w as f64 * scale + 1.0) as usize;
            let len = 3 * hs * ws;
            let started = Instant::now();
            area_resample(
                src,
                stride,
                (0, 0, w, h),
                ws,
                hs,
                &mut self.scratch,
                &mut self.input[..len],
                true,
            );
            self.stats.resample += started.elapsed();
            let started = Instant::now();
            let out = &mut self.pnet_out;
            nets.pnet(&self.input[..len], hs, ws, out)
                .map_err(|why| MtcnnError::Network { stage: PNET, why })?;
            self.stats.pnet += started.elapsed();
            let cells = out.height * out.width;
            check(PNET, REGRESSION, out.regression.len(), 4 * cells)?;
            check(PNET, PROBABILITY, out.probability.len(), 2 * cells)?;
            let face = &out.probability[cells..];
            let scale = scale as f32;
            let level = &mut self.level;
            level.clear();
            for y in 0..out.height {
                for x in 0..out.width {
                    let i = y * out.width + x;
                    let score = face[i];
                    if score >= self.params.thresholds[0] {
                        let (bx, by) = (x as f32, y as f32);
                        level.push(Candidate {
                            bbox: [
                                ((STRIDE * bx + 1.0) / scale).floor(),
                                ((STRIDE * by + 1.0) / scale).floor(),
                                ((STRIDE * bx + CELL) / scale).floor(),
                                ((STRIDE * by + CELL) / scale).floor(),
                            ],
                            score,
                            reg: std::array::from_fn(|c| out.regression[c * cells + i]),
                            landmarks: None,
                        });
                    }
                }
            }
            suppress(level, 0.5, Overlap::Union);
            all.extend_from_slice(level);
        }
        suppress(&mut all, 0.7, Overlap::Union);
        Ok(all
            .into_iter()
            .map(|c| {
                // P-Net's regression is relative to the window's size without the +1.
                let (bw, bh) = (c.bbox[2] - c.bbox[0], c.bbox[3] - c.bbox[1]);
                let bbox = [
                    c.bbox[0] + c.reg[0] * bw,
                    c.bbox[1] + c.reg[1] * bh,
                    c.bbox[2] + c.reg[2] * bw,
                    c.bbox[3] + c.reg[3] * bh,
                ];
                Candidate {
                    bbox: square(bbox),
                    ..c
                }
            })
            .collect())
    }

    /// Stages 2 and 3 on the full frame.
    fn refine(
        &mut self,
        nets: &mut impl MtcnnNets,
        frame: RgbFrame<'_>,
        candidates: Vec<Candidate>,
    ) -> Result<Vec<Candidate>, MtcnnError> {
        // R-Net.
        let candidates = self.crops(frame, candidates, RNET_SIZE);
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let n = candidates.len();
        let started = Instant::now();
        let out = nets
            .rnet(&self.input[..n * 3 * RNET_SIZE * RNET_SIZE], n)
            .map_err(|why| MtcnnError::Network { stage: RNET, why })?;
        self.stats.rnet = started.elapsed();
        check(RNET, REGRESSION, out.regression.len(), 4 * n)?;
        check(RNET, PROBABILITY, out.probability.len(), 2 * n)?;
        let mut passed: Vec<Candidate> = candidates
            .into_iter()
            .enumerate()
            .filter(|(i, _)| out.probability[2 * i + 1] > self.params.thresholds[1])
            .map(|(i, c)| Candidate {
                score: out.probability[2 * i + 1],
                reg: std::array::from_fn(|k| out.regression[4 * i + k]),
                ..c
            })
            .collect();
        suppress(&mut passed, 0.7, Overlap::Union);
        let candidates: Vec<Candidate> = passed
            .into_iter()
            .map(|c| Candidate {
                bbox: square(regress(c.bbox, c.reg)),
                ..c
            })
            .collect();

        // O-Net.
        let candidates = self.crops(frame, candidates, ONET_SIZE);
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let n = candidates.len();
        self.stats.refined = n;
        let started = Instant::now();
        let out = nets
            .onet(&self.input[..n * 3 * ONET_SIZE * ONET_SIZE], n)
            .map_err(|why| MtcnnError::Network { stage: ONET, why })?;
        self.stats.onet = started.elapsed();
        check(ONET, REGRESSION, out.regression.len(), 4 * n)?;
        check(ONET, LANDMARKS, out.landmarks.len(), 10 * n)?;
        check(ONET, PROBABILITY, out.probability.len(), 2 * n)?;
        let mut passed: Vec<Candidate> = candidates
            .into_iter()
            .enumerate()
            .filter(|(i, _)| out.probability[2 * i + 1] > self.params.thresholds[2])
            .map(|(i, c)| {
                let b = c.bbox;
                let (bw, bh) = (b[2] - b[0] + 1.0, b[3] - b[1] + 1.0);
                let l = &out.landmarks[10 * i..10 * i + 10];
                let landmarks =
                    std::array::from_fn(|k| [bw * l[k] + b[0] - 1.0, bh * l[5 + k] + b[1] - 1.0]);
                let reg = std::array::from_fn(|k| out.regression[4 * i + k]);
                Candidate {
                    bbox: regress(b, reg),
                    score: out.probability[2 * i + 1],
                    reg,
                    landmarks: Some(landmarks),
                }
            })
            .collect();
        suppress(&mut passed, 0.7, Overlap::Min);
        Ok(passed)
    }

    /// Cuts each candidate's box (clipped to the frame, as facenet-pytorch's `pad` does) and
    /// resamples it to `size x size` into the network input; candidates with nothing inside
    /// the frame are dropped. Returns the candidates whose crops were written, in order.
    fn crops(
        &mut self,
        frame: RgbFrame<'_>,
        candidates: Vec<Candidate>,
        size: usize,
    ) -> Vec<Candidate> {
        let started = Instant::now();
        let per = 3 * size * size;
        if self.input.len() < candidates.len() * per {
            self.input.resize(candidates.len() * per, 0.0);
        }
        let (fw, fh) = (frame.width as i64, frame.height as i64);
        let mut kept = Vec::with_capacity(candidates.len());
        for c in candidates {
            // Truncation toward zero, then 1-based clipping: columns x-1 .. ex.
            let t = c
                .bbox
                .map(|v| if v.is_finite() { v.trunc() as i64 } else { 0 });
            let (x, y) = (t[0].max(1), t[1].max(1));
            let (ex, ey) = (t[2].min(fw), t[3].min(fh));
            if ex < x || ey < y {
                continue;
            }
            let region = (
                (x - 1) as usize,
                (y - 1) as usize,
                (ex - x + 1) as usize,
                (ey - y + 1) as usize,
            );
            let at = kept.len() * per;
            area_resample(
                frame.data,
                frame.stride,
                region,
                size,
                size,
                &mut self.scratch,
                &mut self.input[at..at + per],
                true,
            );
            kept.push(c);
        }
        self.stats.resample += started.elapsed();
        kept
    }
}

/// Pyramid scales: `12 / min_face * factor^k` while the shorter side stays at least 12.
fn scales(height: usize, width: usize, min_face: f64, factor: f64) -> Vec<f64> {
    let m = CELL as f64 / min_face;
    let mut minl = height.min(width) as f64 * m;
    let mut scale = m;
    let mut scales = Vec::new();
    while minl >= CELL as f64 {
        scales.push(scale);
        scale *= factor;
        minl *= factor;
    }
    scales
}

fn check(
    stage: &'static str,
    output: &'static str,
    got: usize,
    expected: usize,
) -> Result<(), MtcnnError> {
    if got == expected {
        Ok(())
    } else {
        Err(MtcnnError::Output {
            stage,
            output,
            got,
            expected,
        })
    }
}

/// R-Net's and O-Net's box regression, relative to the box's size with the +1.
fn regress(b: [f32; 4], reg: [f32; 4]) -> [f32; 4] {
    let (w, h) = (b[2] - b[0] + 1.0, b[3] - b[1] + 1.0);
    [
        b[0] + reg[0] * w,
        b[1] + reg[1] * h,
        b[2] + reg[2] * w,
        b[3] + reg[3] * h,
    ]
}

/// The square of side `max(w, h)` with the same centre (facenet-pytorch's `rerec`).
fn square(b: [f32; 4]) -> [f32; 4] {
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    let l = w.max(h);
    let x1 = b[0] + w * 0.5 - l * 0.5;
    let y1 = b[1] + h * 0.5 - l * 0.5;
    [x1, y1, x1 + l, y1 + l]
}

#[derive(Clone, Copy, PartialEq)]
enum Overlap {
    /// Intersection over union of the boxes as they are (torchvision's `nms`).
    Union,
    /// Intersection over the smaller box, both counted with +1 (MTCNN's "Min").
    Min,
}

/// Greedy suppression in place, best score first: a candidate overlapping a kept one by more
/// than `threshold` is dropped. What is left is in descending score order.
fn suppress(c: &mut Vec<Candidate>, threshold: f32, overlap: Overlap) {
    c.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept = 0;
    for i in 0..c.len() {
        let d = c[i];
        let hit = c[..kept].iter().any(|k| {
            let o = match overlap {
                Overlap::Union => iou(&k.bbox, &d.bbox),
                Overlap::Min => overlap_min(&k.bbox, &d.bbox),
            };
            o > threshold
        });
        if !hit {
            c[kept] = d;
            kept += 1;
        }
    }
    c.truncate(kept);
}

fn overlap_min(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0]) + 1.0).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1]) + 1.0).max(0.0);
    let area = |r: &[f32; 4]| (r[2] - r[0] + 1.0) * (r[3] - r[1] + 1.0);
    let smaller = area(a).min(area(b));
    if smaller > 0.0 {
        iw * ih / smaller
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_ranges_are_adaptive_average_pooling() {
        // PyTorch's adaptive_avg_pool1d(5 -> 3): [0, 2), [1, 4), [3, 5).
        let mut r = Vec::new();
        pool_ranges(5, 3, &mut r);
        assert_eq!(r, vec![(0, 2), (1, 4), (3, 5)]);
        // Upsampling repeats samples: 2 -> 4 gives [0,1), [0,1), [1,2), [1,2).
        pool_ranges(2, 4, &mut r);
        assert_eq!(r, vec![(0, 1), (0, 1), (1, 2), (1, 2)]);
    }

    #[test]
    fn area_resample_averages_blocks() {
        // A 4x2 image of known values halved to 2x1: each output is a 2x2 block mean.
        let img: Vec<u8> = (0..4 * 2)
            .flat_map(|i| [i as u8 * 10, 100, 255 - i as u8])
            .collect();
        let mut out = vec![0.0; 2 * 3];
        area_resample(
            &img,
            12,
            (0, 0, 4, 2),
            2,
            1,
            &mut Scratch::default(),
            &mut out,
            false,
        );
        // Pixels 0, 1, 4, 5 → red (0 + 10 + 40 + 50) / 4 = 25.
        assert_eq!(out[0], 25.0);
        assert_eq!(out[1], 100.0);
        assert_eq!(out[3], 45.0);
        let mut norm = vec![0.0; 2 * 3];
        area_resample(
            &img,
            12,
            (0, 0, 4, 2),
            2,
            1,
            &mut Scratch::default(),
            &mut norm,
            true,
        );
        // Planar and normalised: red plane first.
        assert_eq!(norm[0], (25.0 - 127.5) / 128.0);
        assert_eq!(norm[1], (45.0 - 127.5) / 128.0);
        assert_eq!(norm[2], (100.0 - 127.5) / 128.0);
    }

    #[test]
    fn scales_follow_facenet_pytorch() {
        let m = Mtcnn::new(MtcnnParams::default()).unwrap();
        // 512x512, min face 20: 12/20 * 0.709^k while 512 * 0.6 * 0.709^k >= 12.
        let s = m.scales(512, 512);
        assert_eq!(s.len(), 10);
        assert!((s[0] - 0.6).abs() < 1e-12 && (s[1] - 0.6 * 0.709).abs() < 1e-12);
        assert!(512.0 * s[9] >= 12.0 && 512.0 * s[9] * 0.709 < 12.0);
    }

    #[test]
    fn min_overlap_counts_the_extra_pixel() {
        // Box inside another: intersection over the smaller is 1.
        assert_eq!(overlap_min(&[0., 0., 9., 9.], &[2., 2., 5., 5.]), 1.0);
        assert_eq!(overlap_min(&[0., 0., 9., 9.], &[20., 20., 25., 25.]), 0.0);
    }

    /// Networks made of closed forms: P-Net finds a face in every cell whose mean input is
    /// bright, R-Net and O-Net pass everything and place the landmarks at fixed fractions.
    struct BrightNets;

    impl MtcnnNets for BrightNets {
        fn pnet(
            &mut self,
            input: &[f32],
            h: usize,
            w: usize,
            out: &mut PnetOutput,
        ) -> Result<(), String> {
            // Output size of P-Net: conv3 -> pool2 (ceil) -> conv3 -> conv3.
            let (oh, ow) = ((h - 2).div_ceil(2) - 4, (w - 2).div_ceil(2) - 4);
            let mut probability = vec![0.0; 2 * oh * ow];
            for y in 0..oh {
                for x in 0..ow {
                    // A face where the window's corner pixels (red plane) are bright.
                    let red = |yy: usize, xx: usize| input[yy * w + xx] > 0.5;
                    let bright = red(2 * y + 1, 2 * x + 1) && red(2 * y + 10, 2 * x + 10);
                    let p = if bright { 0.99 } else { 0.01 };
                    probability[y * ow + x] = 1.0 - p;
                    probability[oh * ow + y * ow + x] = p;
                }
            }
            *out = PnetOutput {
                regression: vec![0.0; 4 * oh * ow],
                probability,
                height: oh,
                width: ow,
            };
            Ok(())
        }

        fn rnet(&mut self, _input: &[f32], n: usize) -> Result<RefineOutput, String> {
            Ok(RefineOutput {
                regression: vec![0.0; 4 * n],
                landmarks: Vec::new(),
                probability: (0..n).flat_map(|_| [0.1, 0.9]).collect(),
            })
        }

        fn onet(&mut self, _input: &[f32], n: usize) -> Result<RefineOutput, String> {
            let l = [0.3, 0.7, 0.5, 0.35, 0.65, 0.4, 0.4, 0.6, 0.8, 0.8];
            Ok(RefineOutput {
                regression: vec![0.0; 4 * n],
                landmarks: (0..n).flat_map(|_| l).collect(),
                probability: (0..n).flat_map(|_| [0.05, 0.95]).collect(),
            })
        }
    }

    fn frame_with_square(w: usize, h: usize, sq: [usize; 4]) -> Vec<u8> {
        let mut img = vec![0u8; w * h * 3];
        for y in sq[1]..sq[3] {
            for x in sq[0]..sq[2] {
                img[(y * w + x) * 3..(y * w + x) * 3 + 3].fill(255);
            }
        }
        img
    }

    #[test]
    fn cascade_finds_the_bright_square_with_landmarks_inside_it() {
        let (w, h) = (160, 120);
        let img = frame_with_square(w, h, [60, 40, 100, 80]);
        let mut m = Mtcnn::new(MtcnnParams::default()).unwrap();
        let faces = m
            .detect(
                &mut BrightNets,
                RgbFrame::new(&img, w, h, w * 3).unwrap(),
                None,
            )
            .unwrap();
        assert!(!faces.is_empty());
        let best = faces[0];
        // Every window inside the square scores alike: the best is one of them.
        // (A window reaches a level pixel, up to 4 frame pixels, beyond what it samples.)
        let inside = |b: [f32; 4]| b[0] >= 56.0 && b[1] >= 36.0 && b[2] <= 104.0 && b[3] <= 84.0;
        assert!(inside(best.bbox), "{best:?}");
        let l = best.landmarks.unwrap();
        for p in l {
            assert!(
                p[0] >= best.bbox[0] - 1.0 && p[0] <= best.bbox[2] + 1.0,
                "{l:?}"
            );
            assert!(
                p[1] >= best.bbox[1] - 1.0 && p[1] <= best.bbox[3] + 1.0,
                "{l:?}"
            );
        }
        // The landmark fractions come back exactly: x = w * 0.3 + x1 - 1 with the +1 width.
        let b = best.bbox;
        let expect = (b[2] - b[0] + 1.0) * 0.3 + b[0] - 1.0;
        // (The box was regressed by zero after the landmarks were placed.)
        assert!((l[0][0] - expect).abs() < 1e-4);
        // Detection on a half-size copy finds the same square in frame pixels.
        let half = m
            .detect(
                &mut BrightNets,
                RgbFrame::new(&img, w, h, w * 3).unwrap(),
                Some(80),
            )
            .unwrap();
        assert!(inside(half[0].bbox), "{half:?}");
    }

    #[test]
    fn empty_frames_and_bad_settings() {
        let mut m = Mtcnn::new(MtcnnParams::default()).unwrap();
        let img = vec![0u8; 30 * 20 * 3];
        let none = m
            .detect(
                &mut BrightNets,
                RgbFrame::new(&img, 30, 20, 90).unwrap(),
                None,
            )
            .unwrap();
        assert!(none.is_empty());
        assert!(RgbFrame::new(&img, 30, 21, 90).is_err());
        assert!(
            Mtcnn::new(MtcnnParams {
                min_face_size: 5.0,
                ..MtcnnParams::default()
            })
            .is_err()
        );
        assert!(
            Mtcnn::new(MtcnnParams {
                factor: 1.0,
                ..MtcnnParams::default()
            })
            .is_err()
        );
    }

    #[test]
    fn wrong_output_sizes_are_errors_naming_the_stage() {
        struct Short;
        impl MtcnnNets for Short {
            fn pnet(
                &mut self,
                _: &[f32],
                _: usize,
                _: usize,
                out: &mut PnetOutput,
            ) -> Result<(), String> {
                *out = PnetOutput {
                    regression: vec![0.0; 3],
                    probability: vec![0.0; 2],
                    height: 1,
                    width: 1,
                };
                Ok(())
            }
            fn rnet(&mut self, _: &[f32], _: usize) -> Result<RefineOutput, String> {
                unreachable!()
            }
            fn onet(&mut self, _: &[f32], _: usize) -> Result<RefineOutput, String> {
                unreachable!()
            }
        }
        let img = vec![0u8; 64 * 64 * 3];
        let err = Mtcnn::new(MtcnnParams::default())
            .unwrap()
            .detect(&mut Short, RgbFrame::new(&img, 64, 64, 192).unwrap(), None)
            .unwrap_err();
        assert!(err.to_string().contains("pnet"), "{err}");
    }
}
