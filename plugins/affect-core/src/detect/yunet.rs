// SPDX-License-Identifier: MPL-2.0
//! YuNet (OpenCV zoo `face_detection_yunet_2023mar`), as OpenCV's `FaceDetectorYN` decodes it.
//!
//! Twelve outputs named `cls_{s}`, `obj_{s}`, `bbox_{s}`, `kps_{s}` for strides `s` = 8, 16,
//! 32, each `[1, rows * cols, C]` with `C` = 1, 1, 4, 10, one prior per cell of the
//! `rows = H / s`, `cols = W / s` grid (row-major). For the cell at `(row, col)`:
//! score `sqrt(clamp01(cls) * clamp01(obj))`, centre `((col + bbox0) * s, (row + bbox1) * s)`,
//! size `(exp(bbox2) * s, exp(bbox3) * s)`, landmark `n` at
//! `((kps[2n] + col) * s, (kps[2n + 1] + row) * s)`. The five landmarks come in the ArcFace
//! order already (image-left eye first).
//!
//! Input: BGR pixel values 0..=255 without normalisation, the frame at the top-left of the
//! input with the right and bottom padded (OpenCV pads to a multiple of 32 there).

use super::{
    ChannelOrder, DetectError, Detection, OutputInfo, Preprocess, ResizeMode, TensorView,
    find_output,
};

const LAYOUT: &str = "YuNet";
const STRIDES: [usize; 3] = [8, 16, 32];
/// Input size used when the model's input is dynamic (the zoo model's size).
pub const DEFAULT_INPUT: (usize, usize) = (640, 640);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YuNetLayout {
    pub input_width: usize,
    pub input_height: usize,
}

impl YuNetLayout {
    /// Input sizes must be multiples of the largest stride, as OpenCV pads them.
    pub fn new(input_width: usize, input_height: usize) -> Result<Self, DetectError> {
        if input_width == 0
            || input_height == 0
            || !input_width.is_multiple_of(32)
            || !input_height.is_multiple_of(32)
        {
            return Err(DetectError::InvalidSize {
                what: "YuNet input size",
                requirement: "a positive multiple of 32 in both directions",
                got: format!("{input_width}x{input_height}"),
            });
        }
        Ok(Self {
            input_width,
            input_height,
        })
    }

    pub(crate) fn recognize(input: Option<(usize, usize)>, outputs: &[OutputInfo]) -> Option<Self> {
        if outputs.len() != 12 {
            return None;
        }
        for s in STRIDES {
            for (prefix, channels) in [("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10)] {
                let name = format!("{prefix}_{s}");
                let o = outputs.iter().find(|o| o.name == name)?;
                match o.shape.last() {
                    Some(&c) if c < 0 || c == channels => {}
                    _ => return None,
                }
            }
        }
        let (w, h) = input.unwrap_or(DEFAULT_INPUT);
        Self::new(w, h).ok()
    }

    pub fn preprocess(&self) -> Preprocess {
        Preprocess {
            input_width: self.input_width,
            input_height: self.input_height,
            resize: ResizeMode::LetterboxTopLeft,
            channels: ChannelOrder::Bgr,
            mean: [0.0; 3],
            scale: [1.0; 3],
        }
    }

    /// Grid `(rows, cols)` at `stride`.
    pub fn grid(&self, stride: usize) -> (usize, usize) {
        (self.input_height / stride, self.input_width / stride)
    }

    /// Candidates scoring at least `score_threshold`, in model-input pixels.
    pub fn decode(
        &self,
        outputs: &[TensorView<'_>],
        score_threshold: f32,
    ) -> Result<Vec<Detection>, DetectError> {
        let mut found = Vec::new();
        for s in STRIDES {
            let (rows, cols) = self.grid(s);
            let cells = rows * cols;
            let tensor = |prefix: &str, channels: usize| -> Result<&[f32], DetectError> {
                let t = find_output(outputs, LAYOUT, &format!("{prefix}_{s}"))?;
                let (n, c) = t.rows_cols(LAYOUT)?;
                if n != cells || c != channels {
                    return Err(DetectError::OutputShape {
                        layout: LAYOUT,
                        name: t.name.to_string(),
                        shape: t.shape.to_vec(),
                        expected: format!(
                            "[1, {cells}, {channels}] for a {}x{} input",
                            self.input_width, self.input_height
                        ),
                    });
                }
                t.values()
            };
            let cls = tensor("cls", 1)?;
            let obj = tensor("obj", 1)?;
            let bbox = tensor("bbox", 4)?;
            let kps = tensor("kps", 10)?;
            let sf = s as f32;
            for idx in 0..cells {
                let score = (cls[idx].clamp(0.0, 1.0) * obj[idx].clamp(0.0, 1.0)).sqrt();
                if score.is_nan() || score < score_threshold {
                    continue;
                }
                let (r, c) = ((idx / cols) as f32, (idx % cols) as f32);
                let b = &bbox[idx * 4..idx * 4 + 4];
                let cx = (c + b[0]) * sf;
                let cy = (r + b[1]) * sf;
                let w = b[2].exp() * sf;
                let h = b[3].exp() * sf;
                let k = &kps[idx * 10..idx * 10 + 10];
                let landmarks =
                    std::array::from_fn(|n| [(k[2 * n] + c) * sf, (k[2 * n + 1] + r) * sf]);
                found.push(Detection {
                    bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
                    score,
                    landmarks: Some(landmarks),
                });
            }
        }
        Ok(found)
    }
}
