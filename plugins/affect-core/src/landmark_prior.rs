// SPDX-License-Identifier: MPL-2.0
//! Five landmarks estimated from a face box with a mean-shape prior.
//!
//! Models trained on ArcFace-aligned crops see a different framing when a detector gives only
//! a box (Haar cascades, UltraFace, upstream boxes, a fixed region) and the box is cut out as
//! it is. Placing the mean face shape in the box, as fractions of its width and height, and
//! aligning those points onto the ArcFace template gives the training framing on average:
//! scale and position follow the detector's box the way they follow the face on average,
//! only the per-face deviations (pose, identity) remain.

use thiserror::Error;

use crate::align::ARCFACE_112;

/// Problems fitting a prior.
#[derive(Debug, Error, PartialEq)]
pub enum PriorError {
    #[error("no (box, landmarks) pairs to fit a prior on")]
    NoSamples,
    #[error("sample {0} has an empty or non-finite box or landmarks")]
    BadSample(usize),
}

/// The mean position of the 5 landmarks (ArcFace order: left eye, right eye, nose tip, left
/// mouth corner, right mouth corner; "left" is the image's left) inside a face box, as
/// fractions: `x = x1 + fx * (x2 - x1)`, `y = y1 + fy * (y2 - y1)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoxLandmarkPrior {
    pub points: [[f32; 2]; 5],
}

impl BoxLandmarkPrior {
    /// Boxes of OpenCV's `haarcascade_frontalface_default.xml` (scale factor 1.1, 4 minimum
    /// neighbours, as `affectfacecrop` runs it), fitted on the synthetic world's true landmarks
    /// of the faces the cascade found (389 of 720 in 4 videos of 3 s at 10 fps, 640x480, of
    /// each of the seeds 1001 to 1004, none of which the tests or the demo use; mean error
    /// 0.216 of the inter-ocular distance there). Reproduce with
    /// `cargo test --release -p affect-e2e --test landmark_prior_synthetic -- --ignored --nocapture`.
    pub const HAAR_FRONTAL_DEFAULT: BoxLandmarkPrior = BoxLandmarkPrior {
        points: [
            [0.3421, 0.4480],
            [0.6559, 0.4508],
            [0.4974, 0.6476],
            [0.3734, 0.8280],
            [0.6168, 0.8302],
        ],
    };

    /// A box framed as an ArcFace crop: the template as fractions of its 112-pixel square, so
    /// that the box of an already aligned crop maps onto itself.
    pub const ARCFACE_CROP: BoxLandmarkPrior = BoxLandmarkPrior {
        points: [
            [ARCFACE_112[0][0] / 112.0, ARCFACE_112[0][1] / 112.0],
            [ARCFACE_112[1][0] / 112.0, ARCFACE_112[1][1] / 112.0],
            [ARCFACE_112[2][0] / 112.0, ARCFACE_112[2][1] / 112.0],
            [ARCFACE_112[3][0] / 112.0, ARCFACE_112[3][1] / 112.0],
            [ARCFACE_112[4][0] / 112.0, ARCFACE_112[4][1] / 112.0],
        ],
    };

    /// The prior for boxes of a detector that was not calibrated (UltraFace, boxes from
    /// upstream elements): the Haar one, since face detectors' boxes are, like Haar's, roughly
    /// square from the brows to the chin (GStreamer's OpenCV `facedetect` runs this very
    /// cascade).
    pub const GENERIC: BoxLandmarkPrior = BoxLandmarkPrior::HAAR_FRONTAL_DEFAULT;

    /// The landmarks of a face with box `[x1, y1, x2, y2]` (frame pixels); `None` for an empty
    /// or non-finite box.
    pub fn landmarks(&self, bbox: [f32; 4]) -> Option<[[f32; 2]; 5]> {
        let [x1, y1, x2, y2] = bbox;
        let (w, h) = (x2 - x1, y2 - y1);
        let finite = [x1, y1, w, h].iter().all(|v| v.is_finite());
        if !(finite && w > 0.0 && h > 0.0) {
            return None;
        }
        Some(self.points.map(|[fx, fy]| [x1 + fx * w, y1 + fy * h]))
    }

    /// The least-squares prior of `(box, landmarks)` pairs (boxes `[x1, y1, x2, y2]`): the
    /// mean of each landmark's position relative to its box, which minimises the squared
    /// error of the fractions.
    pub fn fit(samples: &[([f32; 4], [[f32; 2]; 5])]) -> Result<BoxLandmarkPrior, PriorError> {
        if samples.is_empty() {
            return Err(PriorError::NoSamples);
        }
        let mut sum = [[0.0f64; 2]; 5];
        for (i, (b, l)) in samples.iter().enumerate() {
            let (w, h) = ((b[2] - b[0]) as f64, (b[3] - b[1]) as f64);
            let finite = b.iter().chain(l.iter().flatten()).all(|v| v.is_finite());
            if !(finite && w > 0.0 && h > 0.0) {
                return Err(PriorError::BadSample(i));
            }
            for (s, p) in sum.iter_mut().zip(l) {
                s[0] += (p[0] - b[0]) as f64 / w;
                s[1] += (p[1] - b[1]) as f64 / h;
            }
        }
        let n = samples.len() as f64;
        Ok(BoxLandmarkPrior {
            points: sum.map(|[x, y]| [(x / n) as f32, (y / n) as f32]),
        })
    }
}

/// Distance between the eye centres (points 0 and 1).
pub fn inter_ocular(landmarks: &[[f32; 2]; 5]) -> f32 {
    let [a, b] = [landmarks[0], landmarks[1]];
    (a[0] - b[0]).hypot(a[1] - b[1])
}

/// Mean point-to-point distance of `estimate` from `truth`, relative to the true inter-ocular
/// distance (the usual normalised mean error of 5-point landmark detectors).
pub fn normalized_mean_error(estimate: &[[f32; 2]; 5], truth: &[[f32; 2]; 5]) -> f32 {
    let mean = estimate
        .iter()
        .zip(truth)
        .map(|(e, t)| (e[0] - t[0]).hypot(e[1] - t[1]))
        .sum::<f32>()
        / 5.0;
    mean / inter_ocular(truth)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::align::{Similarity, arcface_template};

    #[test]
    fn landmarks_scale_and_move_with_the_box() {
        let p = BoxLandmarkPrior {
            points: [[0.25, 0.5], [0.75, 0.5], [0.5, 0.6], [0.3, 0.8], [0.7, 0.8]],
        };
        let l = p.landmarks([100.0, 40.0, 180.0, 140.0]).unwrap();
        assert_eq!(l[0], [120.0, 90.0]);
        assert_eq!(l[1], [160.0, 90.0]);
        assert_eq!(l[2], [140.0, 100.0]);
        assert_eq!(l[4], [156.0, 120.0]);
        assert_eq!(p.landmarks([10.0, 10.0, 10.0, 20.0]), None);
        assert_eq!(p.landmarks([f32::NAN, 0.0, 10.0, 20.0]), None);
        assert_eq!(p.landmarks([0.0, 0.0, f32::INFINITY, 20.0]), None);
    }

    #[test]
    fn the_arcface_prior_maps_an_aligned_crop_onto_itself() {
        for size in [112u32, 64, 224] {
            let s = size as f32;
            let l = BoxLandmarkPrior::ARCFACE_CROP
                .landmarks([0.0, 0.0, s, s])
                .unwrap();
            let template = arcface_template(size);
            for (a, b) in l.iter().zip(&template) {
                assert!((a[0] - b[0]).abs() < 1e-3 && (a[1] - b[1]).abs() < 1e-3);
            }
            let t = Similarity::to_arcface(&l, size).unwrap();
            assert!((t.a - 1.0).abs() < 1e-5 && t.b.abs() < 1e-6);
            assert!(t.tx.abs() < 1e-3 && t.ty.abs() < 1e-3);
        }
    }

    #[test]
    fn fit_recovers_the_fractions_of_exact_samples() {
        let truth = BoxLandmarkPrior::HAAR_FRONTAL_DEFAULT;
        let boxes = [
            [0.0, 0.0, 50.0, 50.0],
            [100.0, 20.0, 180.0, 110.0],
            [33.5, 7.25, 97.0, 70.75],
        ];
        let samples: Vec<_> = boxes
            .iter()
            .map(|&b| (b, truth.landmarks(b).unwrap()))
            .collect();
        let fitted = BoxLandmarkPrior::fit(&samples).unwrap();
        for (a, b) in fitted.points.iter().zip(&truth.points) {
            assert!((a[0] - b[0]).abs() < 1e-5 && (a[1] - b[1]).abs() < 1e-5);
        }
    }

    #[test]
    fn fit_is_the_mean_of_relative_positions() {
        // Two boxes of side 100 whose points sit 0.1 left and 0.1 right of the fractions:
        // the mean is the fractions themselves.
        let base = BoxLandmarkPrior::ARCFACE_CROP;
        let b = [0.0, 0.0, 100.0, 100.0];
        let l = base.landmarks(b).unwrap();
        let left = l.map(|[x, y]| [x - 10.0, y]);
        let right = l.map(|[x, y]| [x + 10.0, y + 4.0]);
        let fitted = BoxLandmarkPrior::fit(&[(b, left), (b, right)]).unwrap();
        for (a, e) in fitted.points.iter().zip(&base.points) {
            assert!((a[0] - e[0]).abs() < 1e-5);
            assert!((a[1] - (e[1] + 0.02)).abs() < 1e-5);
        }
        assert_eq!(BoxLandmarkPrior::fit(&[]), Err(PriorError::NoSamples));
        assert_eq!(
            BoxLandmarkPrior::fit(&[(b, left), ([5.0, 5.0, 5.0, 9.0], left)]),
            Err(PriorError::BadSample(1))
        );
    }

    #[test]
    fn normalized_error_is_relative_to_the_eye_distance() {
        let truth = arcface_template(112);
        let iod = inter_ocular(&truth);
        assert!((iod - 35.2378).abs() < 1e-3);
        // Every point 3 px off: mean error 3 px.
        let moved = truth.map(|[x, y]| [x + 3.0, y]);
        assert!((normalized_mean_error(&moved, &truth) - 3.0 / iod).abs() < 1e-6);
        assert_eq!(normalized_mean_error(&truth, &truth), 0.0);
    }
}
