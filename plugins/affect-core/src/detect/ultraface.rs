// SPDX-License-Identifier: MPL-2.0
//! UltraFace (Ultra-Light-Fast-Generic-Face-Detector-1MB, `version-RFB-320` and `-640`).
//!
//! Two outputs: `scores` `[1, N, 2]` (softmax, column 1 is "face") and `boxes` `[1, N, 4]`.
//! The published ONNX export decodes the boxes inside the graph, so they arrive as corners
//! `x1, y1, x2, y2` normalised to the input size ([`UltraFaceBoxes::Corners`]). An export of
//! the bare network leaves them as SSD offsets against the priors
//! ([`UltraFaceBoxes::CenterVariance`]): centre `prior_c + loc_c * 0.1 * prior_wh`, size
//! `prior_wh * exp(loc_wh * 0.2)`.
//!
//! Priors: for the feature maps of strides 8, 16, 32, 64 (`ceil(W / s)` x `ceil(H / s)`),
//! row-major, with minimum box sizes {10, 16, 24}, {32, 48}, {64, 96}, {128, 192, 256} per
//! cell; centre `((i + 0.5) * s / W, (j + 0.5) * s / H)`, size `(m / W, m / H)`, clamped to
//! `[0, 1]`. A 320x240 input has 4420 priors, 640x480 has 17640.
//!
//! Input: RGB, `(pixel - 127) / 128`, the frame stretched to the input size. No landmarks.

use super::{ChannelOrder, DetectError, Detection, OutputInfo, Preprocess, ResizeMode, TensorView};

const LAYOUT: &str = "UltraFace";
const STRIDES: [usize; 4] = [8, 16, 32, 64];
const MIN_BOXES: [&[f32]; 4] = [
    &[10.0, 16.0, 24.0],
    &[32.0, 48.0],
    &[64.0, 96.0],
    &[128.0, 192.0, 256.0],
];
const CENTER_VARIANCE: f32 = 0.1;
const SIZE_VARIANCE: f32 = 0.2;

/// How the `boxes` output encodes a box.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UltraFaceBoxes {
    /// Normalised corners, decoded in the graph (the published ONNX files).
    Corners,
    /// SSD centre/size offsets against the priors, with variances 0.1 and 0.2.
    CenterVariance,
}

#[derive(Clone, Debug, PartialEq)]
pub struct UltraFaceLayout {
    pub input_width: usize,
    pub input_height: usize,
    pub boxes: UltraFaceBoxes,
    /// Positions of the `scores` and `boxes` outputs in the model's output order.
    pub scores_output: usize,
    pub boxes_output: usize,
    priors: Vec<[f32; 4]>,
}

/// The prior boxes `[cx, cy, w, h]` (normalised) of an input of this size.
pub fn priors(input_width: usize, input_height: usize) -> Vec<[f32; 4]> {
    let (w, h) = (input_width as f32, input_height as f32);
    let mut out = Vec::new();
    for (&s, sizes) in STRIDES.iter().zip(MIN_BOXES) {
        let cols = input_width.div_ceil(s);
        let rows = input_height.div_ceil(s);
        let sf = s as f32;
        for j in 0..rows {
            for i in 0..cols {
                let cx = (i as f32 + 0.5) * sf / w;
                let cy = (j as f32 + 0.5) * sf / h;
                for &m in sizes {
                    out.push([cx, cy, m / w, m / h].map(|v| v.clamp(0.0, 1.0)));
                }
            }
        }
    }
    out
}

impl UltraFaceLayout {
    pub fn new(
        input_width: usize,
        input_height: usize,
        boxes: UltraFaceBoxes,
    ) -> Result<Self, DetectError> {
        if input_width == 0 || input_height == 0 {
            return Err(DetectError::InvalidSize {
                what: "UltraFace input size",
                requirement: "at least 1x1",
                got: format!("{input_width}x{input_height}"),
            });
        }
        Ok(Self {
            input_width,
            input_height,
            boxes,
            scores_output: 0,
            boxes_output: 1,
            priors: priors(input_width, input_height),
        })
    }

    /// The same model with the other box encoding.
    pub fn with_boxes(mut self, boxes: UltraFaceBoxes) -> Self {
        self.boxes = boxes;
        self
    }

    pub(crate) fn recognize(input: Option<(usize, usize)>, outputs: &[OutputInfo]) -> Option<Self> {
        if outputs.len() != 2 {
            return None;
        }
        let anchors_and_channels = |o: &OutputInfo| match o.shape.as_slice() {
            [b, n, c] if *b <= 1 => Some((*n, *c)),
            _ => None,
        };
        let (n0, c0) = anchors_and_channels(&outputs[0])?;
        let (n1, c1) = anchors_and_channels(&outputs[1])?;
        let (scores_output, boxes_output, n) = match (c0, c1) {
            (2, 4) => (0, 1, n0),
            (4, 2) => (1, 0, n1),
            _ => return None,
        };
        if n0 >= 0 && n1 >= 0 && n0 != n1 {
            return None;
        }
        // Without a fixed input size, the anchor count tells the two published variants apart.
        let (w, h) = match (input, n) {
            (Some(size), _) => size,
            (None, 17640) => (640, 480),
            _ => (320, 240),
        };
        let mut layout = Self::new(w, h, UltraFaceBoxes::Corners).ok()?;
        if n >= 0 && n as usize != layout.priors.len() {
            return None;
        }
        layout.scores_output = scores_output;
        layout.boxes_output = boxes_output;
        Some(layout)
    }

    pub fn preprocess(&self) -> Preprocess {
        Preprocess {
            input_width: self.input_width,
            input_height: self.input_height,
            resize: ResizeMode::Stretch,
            channels: ChannelOrder::Rgb,
            mean: [127.0; 3],
            scale: [1.0 / 128.0; 3],
        }
    }

    pub fn priors(&self) -> &[[f32; 4]] {
        &self.priors
    }

    /// Candidates scoring at least `score_threshold`, in model-input pixels.
    pub fn decode(
        &self,
        outputs: &[TensorView<'_>],
        score_threshold: f32,
    ) -> Result<Vec<Detection>, DetectError> {
        let n = self.priors.len();
        let get = |pos: usize, channels: usize| -> Result<&[f32], DetectError> {
            let t = outputs.get(pos).ok_or(DetectError::OutputCount {
                layout: LAYOUT,
                expected: 2,
                got: outputs.len(),
            })?;
            let (rows, c) = t.rows_cols(LAYOUT)?;
            if rows != n || c != channels {
                return Err(DetectError::OutputShape {
                    layout: LAYOUT,
                    name: t.name.to_string(),
                    shape: t.shape.to_vec(),
                    expected: format!(
                        "[1, {n}, {channels}] for a {}x{} input",
                        self.input_width, self.input_height
                    ),
                });
            }
            t.values()
        };
        let scores = get(self.scores_output, 2)?;
        let boxes = get(self.boxes_output, 4)?;
        let (w, h) = (self.input_width as f32, self.input_height as f32);
        let mut found = Vec::new();
        for (i, prior) in self.priors.iter().enumerate() {
            let score = scores[i * 2 + 1];
            if score.is_nan() || score < score_threshold {
                continue;
            }
            let b = &boxes[i * 4..i * 4 + 4];
            let corners = match self.boxes {
                UltraFaceBoxes::Corners => [b[0], b[1], b[2], b[3]],
                UltraFaceBoxes::CenterVariance => {
                    let cx = prior[0] + b[0] * CENTER_VARIANCE * prior[2];
                    let cy = prior[1] + b[1] * CENTER_VARIANCE * prior[3];
                    let bw = prior[2] * (b[2] * SIZE_VARIANCE).exp();
                    let bh = prior[3] * (b[3] * SIZE_VARIANCE).exp();
                    [cx - bw / 2.0, cy - bh / 2.0, cx + bw / 2.0, cy + bh / 2.0]
                }
            };
            found.push(Detection {
                bbox: [
                    corners[0] * w,
                    corners[1] * h,
                    corners[2] * w,
                    corners[3] * h,
                ],
                score,
                landmarks: None,
            });
        }
        Ok(found)
    }
}
