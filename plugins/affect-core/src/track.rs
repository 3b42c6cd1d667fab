// SPDX-License-Identifier: MPL-2.0
//! IoU tracker: gives the faces of successive frames stable ids.
//!
//! Each detector frame ([`IouTracker::update`]) matches detections to live tracks greedily by
//! IoU (best pair first, pairs below [`TrackerParams::iou_threshold`] never match). A new
//! track is tentative until it has been matched on `min_hits` consecutive detector frames; only
//! then is it reported and given the next id, so a one-frame false positive never consumes
//! one. A confirmed track survives up to `max_misses` detector frames without a match (and
//! keeps its id through them); one more and it is dropped. A tentative track dies on its
//! first miss.
//!
//! With [`TrackerParams::confirm_at_start`], the faces of the first detector frame (of a new
//! tracker, or after [`IouTracker::reset`]) are reported at once: a photo, or the first frame
//! of a stream, has no earlier frames to confirm them with, and flicker can only arise later.
//!
//! Frames between detector runs (`detect-interval`) call [`IouTracker::predict`]: tracks coast
//! with their last box (moved by their velocity when `constant_velocity` is on), and nothing
//! ages towards death, so a slow detector does not kill tracks.

use crate::detect::{Detection, iou};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrackerParams {
    /// Minimum IoU between a track's (predicted) box and a detection to match them.
    pub iou_threshold: f32,
    /// Consecutive matched detector frames before a track is reported.
    pub min_hits: u32,
    /// Detector frames a confirmed track may go unmatched and stay alive.
    pub max_misses: u32,
    /// Predict each track's box by its last observed velocity before matching and while
    /// coasting; keeps the ids of faces that cross each other.
    pub constant_velocity: bool,
    /// Report the faces of the first detector frame at once (see the module documentation).
    pub confirm_at_start: bool,
}

impl Default for TrackerParams {
    fn default() -> Self {
        Self {
            iou_threshold: 0.3,
            min_hits: 3,
            max_misses: 10,
            constant_velocity: true,
            confirm_at_start: false,
        }
    }
}

/// A reported face of the current frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrackedFace {
    /// Stable id, counting up from 1 in order of confirmation.
    pub id: u64,
    /// The box of the last matched detection, moved by the velocity when predicting.
    pub bbox: [f32; 4],
    /// Score and landmarks of the last matched detection (landmarks moved with the box).
    pub score: f32,
    pub landmarks: Option<[[f32; 2]; 5]>,
    /// Frames since the track was last matched to a detection (0: detected in this frame).
    pub frames_since_detection: u32,
}

#[derive(Clone, Debug)]
struct Track {
    /// 0 while tentative.
    id: u64,
    bbox: [f32; 4],
    score: f32,
    landmarks: Option<[[f32; 2]; 5]>,
    /// Box corner velocity in pixels per frame.
    velocity: [f32; 4],
    hits: u32,
    /// Detector frames without a match in a row.
    misses: u32,
    frames_since_detection: u32,
}

impl Track {
    fn confirmed(&self) -> bool {
        self.id != 0
    }

    fn shifted(&self, frames: f32) -> ([f32; 4], Option<[[f32; 2]; 5]>) {
        let v = self.velocity;
        let bbox = std::array::from_fn(|i| self.bbox[i] + v[i] * frames);
        // Landmarks follow the box centre.
        let dx = (v[0] + v[2]) / 2.0 * frames;
        let dy = (v[1] + v[3]) / 2.0 * frames;
        (
            bbox,
            self.landmarks.map(|l| l.map(|p| [p[0] + dx, p[1] + dy])),
        )
    }

    fn report(&self, constant_velocity: bool) -> TrackedFace {
        let (bbox, landmarks) = if constant_velocity {
            self.shifted(self.frames_since_detection as f32)
        } else {
            (self.bbox, self.landmarks)
        };
        TrackedFace {
            id: self.id,
            bbox,
            score: self.score,
            landmarks,
            frames_since_detection: self.frames_since_detection,
        }
    }
}

#[derive(Clone, Debug)]
pub struct IouTracker {
    params: TrackerParams,
    tracks: Vec<Track>,
    last_id: u64,
    /// Whether a detector frame was seen since creation or the last reset.
    started: bool,
}

impl IouTracker {
    pub fn new(params: TrackerParams) -> Self {
        Self {
            params,
            tracks: Vec::new(),
            last_id: 0,
            started: false,
        }
    }

    pub fn params(&self) -> &TrackerParams {
        &self.params
    }

    /// Forgets every track; ids keep counting up so they stay unique over the stream.
    pub fn reset(&mut self) {
        self.tracks.clear();
        self.started = false;
    }

    /// A frame the detector ran on: matches, births and deaths. Returns the confirmed tracks,
    /// those matched in this frame first, in id order within each group.
    pub fn update(&mut self, detections: &[Detection]) -> Vec<TrackedFace> {
        let cv = self.params.constant_velocity;
        let predicted: Vec<[f32; 4]> = self
            .tracks
            .iter()
            .map(|t| {
                if cv {
                    t.shifted(t.frames_since_detection as f32 + 1.0).0
                } else {
                    t.bbox
                }
            })
            .collect();

        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (ti, p) in predicted.iter().enumerate() {
            for (di, d) in detections.iter().enumerate() {
                let overlap = iou(p, &d.bbox);
                if overlap >= self.params.iou_threshold && overlap > 0.0 {
                    pairs.push((overlap, ti, di));
                }
            }
        }
        // Best overlap first; ties by confirmed-first then older track, for determinism.
        pairs.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then_with(|| a.1.cmp(&b.1))
                .then_with(|| a.2.cmp(&b.2))
        });
        let mut track_matched = vec![false; self.tracks.len()];
        let mut det_matched = vec![false; detections.len()];
        for (_, ti, di) in pairs {
            if track_matched[ti] || det_matched[di] {
                continue;
            }
            track_matched[ti] = true;
            det_matched[di] = true;
            let t = &mut self.tracks[ti];
            let d = &detections[di];
            let frames = (t.frames_since_detection + 1) as f32;
            t.velocity = std::array::from_fn(|i| (d.bbox[i] - t.bbox[i]) / frames);
            t.bbox = d.bbox;
            t.score = d.score;
            t.landmarks = d.landmarks;
            t.hits += 1;
            t.misses = 0;
            t.frames_since_detection = 0;
            if !t.confirmed() && t.hits >= self.params.min_hits {
                self.last_id += 1;
                t.id = self.last_id;
            }
        }

        let max_misses = self.params.max_misses;
        let mut kept = Vec::with_capacity(self.tracks.len() + detections.len());
        for (t, matched) in self.tracks.drain(..).zip(&track_matched) {
            let mut t = t;
            if !matched {
                t.misses += 1;
                t.frames_since_detection += 1;
                if !t.confirmed() || t.misses > max_misses {
                    continue;
                }
            }
            kept.push(t);
        }
        for (d, matched) in detections.iter().zip(&det_matched) {
            if *matched {
                continue;
            }
            let mut t = Track {
                id: 0,
                bbox: d.bbox,
                score: d.score,
                landmarks: d.landmarks,
                velocity: [0.0; 4],
                hits: 1,
                misses: 0,
                frames_since_detection: 0,
            };
            if self.params.min_hits <= 1 || (self.params.confirm_at_start && !self.started) {
                self.last_id += 1;
                t.id = self.last_id;
            }
            kept.push(t);
        }
        self.tracks = kept;
        self.started = true;
        self.report()
    }

    /// A frame the detector did not run on: every live track coasts one frame.
    pub fn predict(&mut self) -> Vec<TrackedFace> {
        for t in &mut self.tracks {
            t.frames_since_detection += 1;
        }
        self.report()
    }

    fn report(&self) -> Vec<TrackedFace> {
        let cv = self.params.constant_velocity;
        let mut out: Vec<TrackedFace> = self
            .tracks
            .iter()
            .filter(|t| t.confirmed())
            .map(|t| t.report(cv))
            .collect();
        out.sort_by_key(|f| (f.frames_since_detection != 0, f.id));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x: f32, y: f32, size: f32) -> Detection {
        Detection {
            bbox: [x, y, x + size, y + size],
            score: 0.9,
            landmarks: Some([[x + 0.3 * size, y + 0.4 * size]; 5]),
        }
    }

    fn ids(faces: &[TrackedFace]) -> Vec<u64> {
        faces.iter().map(|f| f.id).collect()
    }

    fn id_at(faces: &[TrackedFace], x: f32) -> Option<u64> {
        faces
            .iter()
            .find(|f| (f.bbox[0] - x).abs() < 1e-3)
            .map(|f| f.id)
    }

    #[test]
    fn faces_of_the_first_frame_are_reported_at_once_when_asked() {
        let params = TrackerParams {
            confirm_at_start: true,
            ..TrackerParams::default()
        };
        let mut tr = IouTracker::new(params);
        let out = tr.update(&[face(100.0, 100.0, 80.0), face(300.0, 100.0, 60.0)]);
        assert_eq!(ids(&out), vec![1, 2]);
        // Later births still need min_hits frames: a blip on frame 2 is not reported.
        let out = tr.update(&[
            face(100.0, 100.0, 80.0),
            face(300.0, 100.0, 60.0),
            face(500.0, 0.0, 50.0),
        ]);
        assert_eq!(ids(&out), vec![1, 2]);
        // After a reset (a seek, a new resolution) the next frame is a first frame again.
        tr.reset();
        assert_eq!(ids(&tr.update(&[face(10.0, 10.0, 40.0)])), vec![3]);
        // Without the option, the first frame waits like any other.
        let mut tr = IouTracker::new(TrackerParams::default());
        assert!(tr.update(&[face(100.0, 100.0, 80.0)]).is_empty());
    }

    #[test]
    fn births_need_consecutive_hits_and_false_positives_use_no_id() {
        let mut tr = IouTracker::new(TrackerParams::default());
        // A one-frame blip, then nothing: never reported.
        assert!(tr.update(&[face(500.0, 0.0, 50.0)]).is_empty());
        assert!(tr.update(&[]).is_empty());
        // A steady face: reported from its third frame, with id 1.
        assert!(tr.update(&[face(100.0, 100.0, 80.0)]).is_empty());
        assert!(tr.update(&[face(102.0, 100.0, 80.0)]).is_empty());
        let out = tr.update(&[face(104.0, 100.0, 80.0)]);
        assert_eq!(ids(&out), vec![1]);
        assert_eq!(out[0].bbox, [104.0, 100.0, 184.0, 180.0]);
        // A tentative track that misses once starts over.
        let mut tr = IouTracker::new(TrackerParams::default());
        tr.update(&[face(100.0, 100.0, 80.0)]);
        tr.update(&[face(100.0, 100.0, 80.0)]);
        tr.update(&[]);
        assert!(tr.update(&[face(100.0, 100.0, 80.0)]).is_empty());
    }

    #[test]
    fn a_short_miss_keeps_the_id_and_a_long_one_ends_the_track() {
        let params = TrackerParams {
            max_misses: 3,
            ..TrackerParams::default()
        };
        let mut tr = IouTracker::new(params);
        for _ in 0..3 {
            tr.update(&[face(100.0, 100.0, 80.0)]);
        }
        for miss in 1..=3 {
            let out = tr.update(&[]);
            assert_eq!(ids(&out), vec![1], "missed frame {miss}");
            assert_eq!(out[0].frames_since_detection, miss);
        }
        let out = tr.update(&[face(101.0, 100.0, 80.0)]);
        assert_eq!(ids(&out), vec![1]);
        assert_eq!(out[0].frames_since_detection, 0);
        for _ in 0..4 {
            tr.update(&[]);
        }
        assert!(tr.update(&[]).is_empty());
        // The face comes back: a new track, born again, with the next id.
        for _ in 0..2 {
            assert!(tr.update(&[face(101.0, 100.0, 80.0)]).is_empty());
        }
        assert_eq!(ids(&tr.update(&[face(101.0, 100.0, 80.0)])), vec![2]);
    }

    #[test]
    fn crossing_faces_keep_their_ids() {
        // Two equal faces at the same height move through each other, 10 px per frame.
        let mut tr = IouTracker::new(TrackerParams::default());
        let (mut a, mut b) = (0.0f32, 300.0f32);
        let mut a_id = None;
        let mut b_id = None;
        for frame in 0..30 {
            let out = tr.update(&[face(b, 100.0, 100.0), face(a, 100.0, 100.0)]);
            if frame >= 2 {
                let (ia, ib) = (id_at(&out, a), id_at(&out, b));
                if (a - b).abs() > 1e-3 {
                    assert!(ia.is_some() && ib.is_some() && ia != ib, "frame {frame}");
                    assert_eq!(*a_id.get_or_insert(ia), ia, "frame {frame}: a changed id");
                    assert_eq!(*b_id.get_or_insert(ib), ib, "frame {frame}: b changed id");
                }
            }
            a += 10.0;
            b -= 10.0;
        }
        assert!(a > 250.0 && b < 50.0, "the faces did cross");
        assert_eq!(ids(&tr.update(&[])).len(), 2);
    }

    #[test]
    fn without_velocity_crossing_faces_swap_which_is_why_it_is_the_default() {
        let mut tr = IouTracker::new(TrackerParams {
            constant_velocity: false,
            ..TrackerParams::default()
        });
        let (mut a, mut b) = (0.0f32, 305.0f32);
        let mut first = None;
        let mut swapped = false;
        for _ in 0..30 {
            let out = tr.update(&[face(a, 100.0, 100.0), face(b, 100.0, 100.0)]);
            if let Some(id) = id_at(&out, a) {
                swapped |= *first.get_or_insert(id) != id;
            }
            a += 10.0;
            b -= 10.0;
        }
        assert!(swapped);
    }

    #[test]
    fn coasting_keeps_tracks_and_moves_them_by_their_velocity() {
        let mut tr = IouTracker::new(TrackerParams::default());
        for k in 0..3 {
            tr.update(&[face(100.0 + 4.0 * k as f32, 50.0, 80.0)]);
        }
        // Detector every 5th frame: 4 coasting frames, far more than max_misses would allow if
        // they counted as misses.
        let params = TrackerParams {
            max_misses: 1,
            ..TrackerParams::default()
        };
        tr.params = params;
        for k in 1..=4 {
            let out = tr.predict();
            assert_eq!(ids(&out), vec![1]);
            let x = 108.0 + 4.0 * k as f32;
            assert!((out[0].bbox[0] - x).abs() < 1e-4, "{:?}", out[0].bbox);
            let lm = out[0].landmarks.unwrap()[0];
            assert!((lm[0] - (x + 24.0)).abs() < 1e-4);
        }
        // The detector's next box continues the motion: matched, same id, velocity kept.
        let out = tr.update(&[face(128.0, 50.0, 80.0)]);
        assert_eq!(ids(&out), vec![1]);
        assert_eq!(out[0].frames_since_detection, 0);
        let out = tr.predict();
        assert!((out[0].bbox[0] - 132.0).abs() < 1e-4);
        // Without velocity the last box is reported as is.
        let mut still = IouTracker::new(TrackerParams {
            constant_velocity: false,
            ..TrackerParams::default()
        });
        for k in 0..3 {
            still.update(&[face(100.0 + 4.0 * k as f32, 50.0, 80.0)]);
        }
        assert_eq!(still.predict()[0].bbox[0], 108.0);
    }

    #[test]
    fn min_hits_of_one_reports_at_once() {
        let mut tr = IouTracker::new(TrackerParams {
            min_hits: 1,
            ..TrackerParams::default()
        });
        let out = tr.update(&[face(0.0, 0.0, 50.0), face(200.0, 0.0, 50.0)]);
        assert_eq!(ids(&out), vec![1, 2]);
    }
}
