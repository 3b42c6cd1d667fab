// SPDX-License-Identifier: MPL-2.0
//! MediaPipe's BlazeFace (Bazarevsky et al., "BlazeFace: Sub-millisecond Neural Face Detection
//! on Mobile GPUs", 2019), as MediaPipe's `TensorsToDetectionsCalculator` decodes it.
//!
//! The network is a single-shot detector on a square RGB input of `S` = 128 (the short-range
//! "front" model) or 256 (the "back" model for faces further away) pixels, channels last, values
//! scaled to `[-1, 1]`. Its 896 anchors sit on two grids: 16x16 cells with 2 anchors each, then
//! 8x8 cells with 6 anchors each, row-major, anchor centres at `(col + 0.5) / cells` of the
//! input. Four outputs, matched here by shape because converters rename them:
//! scores `[1, 512, 1]` and `[1, 384, 1]` (logits), regressors `[1, 512, 16]` and
//! `[1, 384, 16]`. Per anchor the regressor holds the box centre offset and size
//! `(dx, dy, w, h)` in input pixels, then six keypoints as offsets from the anchor centre:
//! the eye on the image's left (the subject's right eye), the other eye, the nose tip, the
//! mouth centre and the two ear tragions.
//!
//! Overlapping candidates are blended, not dropped (MediaPipe's weighted non-maximum
//! suppression at IoU 0.3): box and keypoints are the score-weighted mean of a cluster, the
//! score its best. Landmarks come out in this crate's five-point ArcFace order: the eyes and
//! nose as detected, the mouth corners around the detected mouth centre as the ArcFace template
//! places them (see [`five_points`]).

use super::{
    ChannelOrder, DetectError, Detection, OutputInfo, Preprocess, ResizeMode, TensorView, iou,
};
use crate::align::{ARCFACE_112, Similarity};

const LAYOUT: &str = "BlazeFace";
/// Anchors of the fine grid (16x16 cells, 2 each) and of the coarse one (8x8 cells, 6 each).
const FINE: (usize, usize) = (16, 2);
const COARSE: (usize, usize) = (8, 6);
const FINE_ANCHORS: usize = FINE.0 * FINE.0 * FINE.1;
const COARSE_ANCHORS: usize = COARSE.0 * COARSE.0 * COARSE.1;
/// Values per anchor in the regressors: box (4) and six keypoints (12).
const REGRESSORS: usize = 16;
/// MediaPipe clips the logits to this before the sigmoid.
const SCORE_CLIP: f32 = 100.0;
/// MediaPipe's overlap threshold for blending candidates.
pub const BLEND_IOU: f32 = 0.3;
/// The smallest face (box width, in input pixels) the back model finds reliably: on the
/// project's group photograph faces of 13 input pixels were found and of 12 missed (tilted
/// 25 degrees); the tiling rule keeps a margin above that.
pub const MIN_FACE_INPUT_PX: f32 = 16.0;

/// The BlazeFace layout of a model with a square input of `input` pixels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlazeFaceLayout {
    pub input: usize,
    /// Output names in the order: fine scores, coarse scores, fine regressors, coarse
    /// regressors.
    pub outputs: [String; 4],
}

impl BlazeFaceLayout {
    /// Recognises BlazeFace from an NHWC `[1, S, S, 3]` input and its four outputs.
    pub(crate) fn recognize(input_shape: &[i64], outputs: &[OutputInfo]) -> Option<Self> {
        let input = match input_shape {
            [_, h, w, 3] if h == w && *h > 0 && (*h as usize).is_multiple_of(16) => *h as usize,
            _ => return None,
        };
        if outputs.len() != 4 {
            return None;
        }
        let find = |rows: usize, cols: usize| -> Option<String> {
            outputs
                .iter()
                .find(|o| matches!(o.shape.as_slice(), [_, r, c] if *r == rows as i64 && *c == cols as i64))
                .map(|o| o.name.clone())
        };
        Some(Self {
            input,
            outputs: [
                find(FINE_ANCHORS, 1)?,
                find(COARSE_ANCHORS, 1)?,
                find(FINE_ANCHORS, REGRESSORS)?,
                find(COARSE_ANCHORS, REGRESSORS)?,
            ],
        })
    }

    /// RGB scaled to `[-1, 1]`, the frame centred in the square input (MediaPipe's
    /// `ImageToTensorCalculator` with `keep_aspect_ratio`).
    pub fn preprocess(&self) -> Preprocess {
        Preprocess {
            input_width: self.input,
            input_height: self.input,
            resize: ResizeMode::LetterboxCentered,
            channels: ChannelOrder::Rgb,
            mean: [127.5; 3],
            scale: [1.0 / 127.5; 3],
        }
    }

    /// Anchor centres in input pixels, in the order of the concatenated outputs.
    pub fn anchors(&self) -> Vec<[f32; 2]> {
        let mut out = Vec::with_capacity(FINE_ANCHORS + COARSE_ANCHORS);
        for (cells, per_cell) in [FINE, COARSE] {
            let step = self.input as f32 / cells as f32;
            for row in 0..cells {
                for col in 0..cells {
                    let centre = [(col as f32 + 0.5) * step, (row as f32 + 0.5) * step];
                    out.extend(std::iter::repeat_n(centre, per_cell));
                }
            }
        }
        out
    }

    /// Candidates scoring at least `score_threshold`, blended, in input pixels.
    pub fn decode(
        &self,
        outputs: &[TensorView<'_>],
        score_threshold: f32,
    ) -> Result<Vec<Detection>, DetectError> {
        let tensor = |i: usize, rows: usize, cols: usize| -> Result<&[f32], DetectError> {
            let name = &self.outputs[i];
            let t = outputs.iter().find(|t| t.name == name).ok_or_else(|| {
                DetectError::MissingOutput {
                    layout: LAYOUT,
                    name: name.clone(),
                }
            })?;
            let (r, c) = t.rows_cols(LAYOUT)?;
            if (r, c) != (rows, cols) {
                return Err(DetectError::OutputShape {
                    layout: LAYOUT,
                    name: name.clone(),
                    shape: t.shape.to_vec(),
                    expected: format!("[1, {rows}, {cols}]"),
                });
            }
            t.values()
        };
        let scores = [tensor(0, FINE_ANCHORS, 1)?, tensor(1, COARSE_ANCHORS, 1)?];
        let boxes = [
            tensor(2, FINE_ANCHORS, REGRESSORS)?,
            tensor(3, COARSE_ANCHORS, REGRESSORS)?,
        ];
        let anchors = self.anchors();
        let mut candidates = Vec::new();
        let mut index = 0;
        for (grid_scores, grid_boxes) in scores.iter().zip(boxes) {
            for (&logit, r) in grid_scores.iter().zip(grid_boxes.chunks_exact(REGRESSORS)) {
                let anchor = anchors[index];
                index += 1;
                let score = 1.0 / (1.0 + (-logit.clamp(-SCORE_CLIP, SCORE_CLIP)).exp());
                if score.is_nan() || score < score_threshold {
                    continue;
                }
                let (cx, cy) = (anchor[0] + r[0], anchor[1] + r[1]);
                let (w, h) = (r[2], r[3]);
                if w.is_nan() || h.is_nan() || w <= 0.0 || h <= 0.0 {
                    continue;
                }
                let keypoints: [[f32; 2]; 6] =
                    std::array::from_fn(|k| [anchor[0] + r[4 + 2 * k], anchor[1] + r[5 + 2 * k]]);
                candidates.push(Candidate {
                    bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
                    score,
                    keypoints,
                });
            }
        }
        Ok(blend(candidates, BLEND_IOU)
            .into_iter()
            .map(|c| Detection {
                bbox: c.bbox,
                score: c.score,
                landmarks: Some(five_points(&c.keypoints)),
            })
            .collect())
    }
}

/// A decoded anchor before blending: box, score and the six keypoints.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub bbox: [f32; 4],
    pub score: f32,
    pub keypoints: [[f32; 2]; 6],
}

/// MediaPipe's weighted non-maximum suppression: the best remaining candidate and every other
/// overlapping it by more than `iou_threshold` become one, their boxes and keypoints averaged
/// with the scores as weights, the best score kept.
pub fn blend(mut candidates: Vec<Candidate>, iou_threshold: f32) -> Vec<Candidate> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out = Vec::new();
    while !candidates.is_empty() {
        let best = candidates[0];
        let (cluster, rest): (Vec<Candidate>, Vec<Candidate>) = candidates
            .into_iter()
            .partition(|c| iou(&c.bbox, &best.bbox) > iou_threshold || c.bbox == best.bbox);
        candidates = rest;
        let total: f32 = cluster.iter().map(|c| c.score).sum();
        let mut merged = Candidate {
            bbox: [0.0; 4],
            score: best.score,
            keypoints: [[0.0; 2]; 6],
        };
        for c in &cluster {
            let w = c.score / total;
            for (m, v) in merged.bbox.iter_mut().zip(c.bbox) {
                *m += v * w;
            }
            for (m, v) in merged.keypoints.iter_mut().zip(c.keypoints) {
                m[0] += v[0] * w;
                m[1] += v[1] * w;
            }
        }
        out.push(merged);
    }
    out
}

/// The five ArcFace-order landmarks from BlazeFace's keypoints: eyes and nose as detected, the
/// mouth corners on either side of the detected mouth centre, as far apart and in the direction
/// the ArcFace template's corners take under the similarity that maps the template's eyes, nose
/// and mouth centre onto the detected four points. A similarity has four
/// degrees of freedom, so four points fix it as well as five do; what is lost is the mouth's
/// own width and tilt, which the aligned crop does not follow anyway beyond the least-squares fit.
pub fn five_points(keypoints: &[[f32; 2]; 6]) -> [[f32; 2]; 5] {
    let t = ARCFACE_112;
    let template_mouth = [(t[3][0] + t[4][0]) / 2.0, (t[3][1] + t[4][1]) / 2.0];
    let detected = [keypoints[0], keypoints[1], keypoints[2], keypoints[3]];
    let corners = match Similarity::estimate(&[t[0], t[1], t[2], template_mouth], &detected) {
        // The corners keep the detected mouth centre as their midpoint; the fit gives the
        // mouth's width and direction.
        Ok(s) => {
            let (a, b) = (s.apply(t[3]), s.apply(t[4]));
            let fitted = [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0];
            let shift = [keypoints[3][0] - fitted[0], keypoints[3][1] - fitted[1]];
            [
                [a[0] + shift[0], a[1] + shift[1]],
                [b[0] + shift[0], b[1] + shift[1]],
            ]
        }
        // Coinciding keypoints (a degenerate output): the mouth centre stands for both.
        Err(_) => [keypoints[3], keypoints[3]],
    };
    [
        keypoints[0],
        keypoints[1],
        keypoints[2],
        corners[0],
        corners[1],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(input: usize) -> BlazeFaceLayout {
        let outputs = vec![
            OutputInfo::new("Identity:0", &[1, 512, 1]),
            OutputInfo::new("Identity_1:0", &[1, 384, 1]),
            OutputInfo::new("Identity_2:0", &[1, 512, 16]),
            OutputInfo::new("Identity_3:0", &[1, 384, 16]),
        ];
        BlazeFaceLayout::recognize(&[1, input as i64, input as i64, 3], &outputs).unwrap()
    }

    #[test]
    fn recognised_by_shapes_whatever_the_names_or_order() {
        let outputs = vec![
            OutputInfo::new("regressors_coarse", &[1, 384, 16]),
            OutputInfo::new("classificators_fine", &[1, 512, 1]),
            OutputInfo::new("regressors_fine", &[1, 512, 16]),
            OutputInfo::new("classificators_coarse", &[1, 384, 1]),
        ];
        let l = BlazeFaceLayout::recognize(&[1, 128, 128, 3], &outputs).unwrap();
        assert_eq!(
            l.outputs,
            [
                "classificators_fine",
                "classificators_coarse",
                "regressors_fine",
                "regressors_coarse"
            ]
            .map(String::from)
        );
        // NCHW input or a missing output is not BlazeFace.
        assert!(BlazeFaceLayout::recognize(&[1, 3, 128, 128], &outputs).is_none());
        assert!(BlazeFaceLayout::recognize(&[1, 128, 128, 3], &outputs[..3]).is_none());
    }

    #[test]
    fn anchors_are_the_two_grids_in_output_order() {
        let a = layout(256).anchors();
        assert_eq!(a.len(), 896);
        // Fine grid: 16 px cells of the 256 input, two anchors per cell.
        assert_eq!(a[0], [8.0, 8.0]);
        assert_eq!(a[1], [8.0, 8.0]);
        assert_eq!(a[2], [24.0, 8.0]);
        assert_eq!(a[511], [248.0, 248.0]);
        // Coarse grid: 32 px cells, six anchors per cell.
        assert_eq!(a[512], [16.0, 16.0]);
        assert_eq!(a[517], [16.0, 16.0]);
        assert_eq!(a[518], [48.0, 16.0]);
        assert_eq!(layout(128).anchors()[2], [12.0, 4.0]);
    }

    #[test]
    fn decode_places_boxes_and_keypoints_from_the_anchor() {
        let l = layout(128);
        let mut scores_fine = vec![-10.0f32; 512];
        let scores_coarse = vec![-10.0f32; 384];
        let mut boxes_fine = vec![0.0f32; 512 * 16];
        let boxes_coarse = vec![0.0f32; 384 * 16];
        // Anchor 2 * (16 * 3 + 5) sits at cell (row 3, col 5): centre (44, 28).
        let i = 2 * (16 * 3 + 5);
        scores_fine[i] = 2.0;
        let kp = [
            -6.0, -4.0, 6.0, -4.0, 0.0, 2.0, 0.0, 8.0, -12.0, 0.0, 12.0, 0.0,
        ];
        boxes_fine[i * 16..i * 16 + 4].copy_from_slice(&[1.0, -2.0, 20.0, 24.0]);
        boxes_fine[i * 16 + 4..i * 16 + 16].copy_from_slice(&kp);
        let shapes = [
            vec![1, 512, 1],
            vec![1, 384, 1],
            vec![1, 512, 16],
            vec![1, 384, 16],
        ];
        let views = [
            TensorView::new("Identity:0", &shapes[0], &scores_fine),
            TensorView::new("Identity_1:0", &shapes[1], &scores_coarse),
            TensorView::new("Identity_2:0", &shapes[2], &boxes_fine),
            TensorView::new("Identity_3:0", &shapes[3], &boxes_coarse),
        ];
        let d = l.decode(&views, 0.5).unwrap();
        assert_eq!(d.len(), 1);
        assert!((d[0].score - 1.0 / (1.0 + (-2.0f32).exp())).abs() < 1e-6);
        assert_eq!(d[0].bbox, [35.0, 14.0, 55.0, 38.0]);
        let lm = d[0].landmarks.unwrap();
        assert_eq!(lm[0], [38.0, 24.0]);
        assert_eq!(lm[1], [50.0, 24.0]);
        assert_eq!(lm[2], [44.0, 30.0]);
        // The mouth corners straddle the mouth centre (44, 36), level with each other.
        assert!((lm[3][1] - lm[4][1]).abs() < 0.2 && lm[3][0] < 44.0 && lm[4][0] > 44.0);
        assert!(((lm[3][0] + lm[4][0]) / 2.0 - 44.0).abs() < 0.5);
        // A wrong shape is an error naming the output.
        let bad = [vec![1, 500, 1]];
        let views2 = [
            TensorView::new("Identity:0", &bad[0], &scores_fine[..500]),
            views[1],
            views[2],
            views[3],
        ];
        assert!(matches!(
            l.decode(&views2, 0.5),
            Err(DetectError::OutputShape { .. })
        ));
    }

    #[test]
    fn blending_averages_overlaps_by_score() {
        let c = |x: f32, score: f32| Candidate {
            bbox: [x, 0.0, x + 10.0, 10.0],
            score,
            keypoints: [[x, 0.0]; 6],
        };
        let out = blend(vec![c(0.0, 0.6), c(1.0, 0.9), c(50.0, 0.7)], 0.3);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].score, 0.9);
        let x = (0.0 * 0.6 + 1.0 * 0.9) / 1.5;
        assert!((out[0].bbox[0] - x).abs() < 1e-5);
        assert!((out[0].keypoints[0][0] - x).abs() < 1e-5);
        assert_eq!(out[1].bbox[0], 50.0);
    }

    #[test]
    fn five_points_of_a_template_face_are_the_template() {
        // Keypoints taken from the ArcFace template itself, scaled, rotated and moved.
        let (s, angle, tx, ty) = (2.5f32, 0.3f32, 100.0, 40.0);
        let map = |p: [f32; 2]| {
            let (c, si) = (angle.cos(), angle.sin());
            [
                s * (c * p[0] - si * p[1]) + tx,
                s * (si * p[0] + c * p[1]) + ty,
            ]
        };
        let t = ARCFACE_112;
        let mouth = [(t[3][0] + t[4][0]) / 2.0, (t[3][1] + t[4][1]) / 2.0];
        let kp = [
            map(t[0]),
            map(t[1]),
            map(t[2]),
            map(mouth),
            [0.0; 2],
            [0.0; 2],
        ];
        let five = five_points(&kp);
        for (got, want) in five.iter().zip(t.map(map)) {
            assert!((got[0] - want[0]).abs() < 0.2 && (got[1] - want[1]).abs() < 0.2);
        }
        // Degenerate keypoints give finite points.
        assert!(five_points(&[[5.0, 5.0]; 6]).iter().all(|p| p[0] == 5.0));
    }
}
