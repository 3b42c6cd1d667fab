// SPDX-License-Identifier: MPL-2.0
//! SCRFD (insightface), decoded as insightface's `scrfd.py` does.
//!
//! Per stride `s` (8, 16, 32 with two anchors per cell, or 8..128 with one) three outputs:
//! scores `[K * A, 1]`, box distances `[K * A, 4]` and, in the `_kps` models, landmark offsets
//! `[K * A, 10]`, optionally with a leading batch axis of 1. `K = (H / s) * (W / s)` cells in
//! row-major order, the `A` anchors of a cell adjacent. The anchor centre of cell `(row, col)`
//! is `(col * s, row * s)`; the box is `centre - (l, t) * s .. centre + (r, b) * s` and
//! landmark `n` is `centre + (kps[2n], kps[2n + 1]) * s`.
//!
//! Exported models often have numeric output names, so outputs are taken by position as
//! `scrfd.py` takes them: all score outputs by stride, then all box outputs, then all landmark
//! outputs; names of the form `score_8`/`bbox_8`/`kps_8` are used instead when every output
//! has one.
//!
//! Input: RGB, `(pixel - 127.5) / 128`, the frame at the top-left of the input, the rest zero.

use super::{ChannelOrder, DetectError, Detection, OutputInfo, Preprocess, ResizeMode, TensorView};

const LAYOUT: &str = "SCRFD";
/// Input size used when the model's input is dynamic (insightface's `det_size`).
pub const DEFAULT_INPUT: (usize, usize) = (640, 640);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrfdLayout {
    pub input_width: usize,
    pub input_height: usize,
    pub strides: Vec<usize>,
    pub anchors_per_cell: usize,
    pub has_landmarks: bool,
    /// Output positions (in the model's output order) of the score, box and landmark tensors,
    /// one per stride.
    pub score_outputs: Vec<usize>,
    pub bbox_outputs: Vec<usize>,
    pub kps_outputs: Vec<usize>,
}

impl ScrfdLayout {
    pub(crate) fn recognize(input: Option<(usize, usize)>, outputs: &[OutputInfo]) -> Option<Self> {
        let (strides, anchors_per_cell, has_landmarks): (Vec<usize>, usize, bool) =
            match outputs.len() {
                6 => (vec![8, 16, 32], 2, false),
                9 => (vec![8, 16, 32], 2, true),
                10 => (vec![8, 16, 32, 64, 128], 1, false),
                15 => (vec![8, 16, 32, 64, 128], 1, true),
                _ => return None,
            };
        let n = strides.len();
        let by_name = |prefix: &str| -> Option<Vec<usize>> {
            strides
                .iter()
                .map(|s| {
                    let name = format!("{prefix}_{s}");
                    outputs.iter().position(|o| o.name == name)
                })
                .collect()
        };
        let (score_outputs, bbox_outputs, kps_outputs) =
            match (by_name("score"), by_name("bbox"), by_name("kps")) {
                (Some(sc), Some(bb), kp) if kp.is_some() == has_landmarks => {
                    (sc, bb, kp.unwrap_or_default())
                }
                _ => (
                    (0..n).collect(),
                    (n..2 * n).collect(),
                    if has_landmarks {
                        (2 * n..3 * n).collect()
                    } else {
                        Vec::new()
                    },
                ),
            };
        let (w, h) = input.unwrap_or(DEFAULT_INPUT);
        let layout = Self {
            input_width: w,
            input_height: h,
            strides,
            anchors_per_cell,
            has_landmarks,
            score_outputs,
            bbox_outputs,
            kps_outputs,
        };
        // Every output must be [N, C] or [1, N, C] with the layout's C and, where the shape is
        // known, the N of its stride.
        let groups = [
            (&layout.score_outputs, 1),
            (&layout.bbox_outputs, 4),
            (&layout.kps_outputs, 10),
        ];
        for (positions, channels) in groups {
            for (&pos, &s) in positions.iter().zip(&layout.strides) {
                let shape = &outputs[pos].shape;
                let (rows, c) = match shape.as_slice() {
                    [r, c] => (*r, *c),
                    [b, r, c] if *b <= 1 => (*r, *c),
                    _ => return None,
                };
                if c >= 0 && c != channels {
                    return None;
                }
                if rows >= 0 && rows as usize != layout.anchors(s) {
                    return None;
                }
            }
        }
        Some(layout)
    }

    /// Number of anchors (rows of each output) at `stride`.
    pub fn anchors(&self, stride: usize) -> usize {
        (self.input_height / stride) * (self.input_width / stride) * self.anchors_per_cell
    }

    pub fn preprocess(&self) -> Preprocess {
        Preprocess {
            input_width: self.input_width,
            input_height: self.input_height,
            resize: ResizeMode::LetterboxTopLeft,
            channels: ChannelOrder::Rgb,
            mean: [127.5; 3],
            scale: [1.0 / 128.0; 3],
        }
    }

    fn tensor<'a>(
        &self,
        outputs: &[TensorView<'a>],
        pos: usize,
        stride: usize,
        channels: usize,
    ) -> Result<&'a [f32], DetectError> {
        let t = outputs.get(pos).ok_or(DetectError::OutputCount {
            layout: LAYOUT,
            expected: self.strides.len() * if self.has_landmarks { 3 } else { 2 },
            got: outputs.len(),
        })?;
        let (n, c) = t.rows_cols(LAYOUT)?;
        let anchors = self.anchors(stride);
        if n != anchors || c != channels {
            return Err(DetectError::OutputShape {
                layout: LAYOUT,
                name: t.name.to_string(),
                shape: t.shape.to_vec(),
                expected: format!(
                    "[{anchors}, {channels}] (stride {stride} of a {}x{} input)",
                    self.input_width, self.input_height
                ),
            });
        }
        t.values()
    }

    /// Candidates scoring at least `score_threshold`, in model-input pixels.
    pub fn decode(
        &self,
        outputs: &[TensorView<'_>],
        score_threshold: f32,
    ) -> Result<Vec<Detection>, DetectError> {
        let mut found = Vec::new();
        for (i, &s) in self.strides.iter().enumerate() {
            let scores = self.tensor(outputs, self.score_outputs[i], s, 1)?;
            let boxes = self.tensor(outputs, self.bbox_outputs[i], s, 4)?;
            let kps = if self.has_landmarks {
                Some(self.tensor(outputs, self.kps_outputs[i], s, 10)?)
            } else {
                None
            };
            let cols = self.input_width / s;
            let sf = s as f32;
            for (a, &score) in scores.iter().enumerate() {
                if score.is_nan() || score < score_threshold {
                    continue;
                }
                let cell = a / self.anchors_per_cell;
                let cx = (cell % cols) as f32 * sf;
                let cy = (cell / cols) as f32 * sf;
                let d = &boxes[a * 4..a * 4 + 4];
                let landmarks = kps.map(|k| {
                    let k = &k[a * 10..a * 10 + 10];
                    std::array::from_fn(|n| [cx + k[2 * n] * sf, cy + k[2 * n + 1] * sf])
                });
                found.push(Detection {
                    bbox: [
                        cx - d[0] * sf,
                        cy - d[1] * sf,
                        cx + d[2] * sf,
                        cy + d[3] * sf,
                    ],
                    score,
                    landmarks,
                });
            }
        }
        Ok(found)
    }
}
