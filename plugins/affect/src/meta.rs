//! The metadata the elements exchange: faces are `GstVideoRegionOfInterestMeta` of roi type
//! `face`, whose `id` is the track id, carrying an `affect-face` parameter structure
//! (`track-id`, `score`, and `landmarks` = 10 doubles x1,y1..x5,y5 in frame pixels, ArcFace
//! order: left eye, right eye, nose, left mouth corner, right mouth corner). Landmarks
//! `affectfacecrop` estimated from the box (a mean face shape) come with
//! `landmarks-estimated=true`.

use gst_video::VideoRegionOfInterestMeta;

/// Roi type of a face.
pub const FACE_ROI_TYPE: &str = "face";
/// Name of the face parameter structure.
pub const FACE_PARAMS: &str = "affect-face";
/// Boolean field of the face parameters: the landmarks were estimated from the box, not found.
pub const LANDMARKS_ESTIMATED: &str = "landmarks-estimated";

/// What the face finder knows of one face.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Face {
    /// `[x1, y1, x2, y2]` in frame pixels.
    pub bbox: [f32; 4],
    pub track_id: u64,
    pub score: f32,
    pub landmarks: Option<[[f32; 2]; 5]>,
}

impl Face {
    /// The `affect-face` parameter structure.
    pub fn params(&self) -> gst::Structure {
        let mut s = gst::Structure::builder(FACE_PARAMS)
            .field("track-id", self.track_id)
            .field("score", self.score as f64)
            .build();
        if let Some(l) = self.landmarks {
            let values = l.iter().flat_map(|p| [p[0] as f64, p[1] as f64]);
            s.set("landmarks", gst::Array::new(values));
        }
        s
    }

    /// The box as the meta's integer `(x, y, w, h)`, clipped to the frame.
    pub fn roi_rect(&self, frame_width: u32, frame_height: u32) -> (u32, u32, u32, u32) {
        let clamp = |v: f32, max: u32| v.round().clamp(0.0, max as f32) as u32;
        let x1 = clamp(self.bbox[0], frame_width);
        let y1 = clamp(self.bbox[1], frame_height);
        let x2 = clamp(self.bbox[2], frame_width).max(x1);
        let y2 = clamp(self.bbox[3], frame_height).max(y1);
        (x1, y1, x2 - x1, y2 - y1)
    }

    /// Adds the face to `buffer` as a region-of-interest meta.
    pub fn attach(&self, buffer: &mut gst::BufferRef, frame_width: u32, frame_height: u32) {
        self.attach_with(buffer, frame_width, frame_height, self.params());
    }

    /// Adds the face with `params` as its `affect-face` structure (its `params()` with more
    /// fields, such as [`LANDMARKS_ESTIMATED`]).
    pub fn attach_with(
        &self,
        buffer: &mut gst::BufferRef,
        frame_width: u32,
        frame_height: u32,
        params: gst::Structure,
    ) {
        let mut meta = VideoRegionOfInterestMeta::add(
            buffer,
            FACE_ROI_TYPE,
            self.roi_rect(frame_width, frame_height),
        );
        meta.set_id(i32::try_from(self.track_id).unwrap_or(i32::MAX));
        meta.add_param(params);
    }

    /// Reads a face ROI meta: the box from the meta, the rest from its `affect-face`
    /// parameters when present (another detector's faces have only a box; their track id is
    /// the meta's id then).
    pub fn from_meta(meta: &VideoRegionOfInterestMeta) -> Option<Face> {
        if meta.roi_type() != FACE_ROI_TYPE {
            return None;
        }
        let (x, y, w, h) = meta.rect();
        let mut face = Face {
            // In u64: a box wrapped to 2^32 must not wrap again (or panic) here.
            bbox: [
                x as f32,
                y as f32,
                (x as u64 + w as u64) as f32,
                (y as u64 + h as u64) as f32,
            ],
            track_id: meta.id().max(0) as u64,
            score: 1.0,
            landmarks: None,
        };
        if let Some(p) = meta.param(FACE_PARAMS) {
            if let Ok(id) = p.get::<u64>("track-id") {
                face.track_id = id;
            }
            if let Ok(score) = p.get::<f64>("score") {
                face.score = score as f32;
            }
            face.landmarks = p.get::<gst::Array>("landmarks").ok().and_then(|a| {
                let v: Vec<f32> = a
                    .iter()
                    .filter_map(|v| v.get::<f64>().ok())
                    .map(|v| v as f32)
                    .collect();
                (v.len() == 10 && v.iter().all(|x| x.is_finite())).then(|| {
                    [
                        [v[0], v[1]],
                        [v[2], v[3]],
                        [v[4], v[5]],
                        [v[6], v[7]],
                        [v[8], v[9]],
                    ]
                })
            });
        }
        Some(face)
    }
}

/// Whether a face meta's landmarks were estimated from its box (`landmarks-estimated`);
/// `false` when the field or the face parameters are absent.
pub fn landmarks_estimated(meta: &VideoRegionOfInterestMeta) -> bool {
    meta.param(FACE_PARAMS)
        .and_then(|p| p.get::<bool>(LANDMARKS_ESTIMATED).ok())
        .unwrap_or(false)
}

/// Every face of a buffer.
pub fn faces(buffer: &gst::BufferRef) -> Vec<Face> {
    buffer
        .iter_meta::<VideoRegionOfInterestMeta>()
        .filter_map(|m| Face::from_meta(&m))
        .collect()
}

/// Name of the result parameter structure `affectinfer` adds to each face's meta (and of its
/// element message).
pub const AFFECT_PARAMS: &str = "affect";

/// What a model said of one face: the `affect` parameter structure.
#[derive(Clone, Debug, PartialEq)]
pub struct AffectResult {
    pub valence: f64,
    pub arousal: f64,
    /// The most probable expression's label.
    pub expression: String,
    pub expression_probs: Vec<f64>,
    pub expression_labels: Vec<String>,
    pub au_probs: Vec<f64>,
    pub au_labels: Vec<String>,
    /// The model's name (or file).
    pub model: String,
}

impl AffectResult {
    /// The result of a model run, with the label lists of its contract.
    pub fn new(
        valence_arousal: [f32; 2],
        expression_probs: &[f32],
        au_probs: &[f32],
        expression_labels: &[String],
        au_labels: &[String],
        model: String,
    ) -> AffectResult {
        let expression = expression_probs
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .and_then(|(i, _)| expression_labels.get(i))
            .cloned()
            .unwrap_or_default();
        AffectResult {
            valence: valence_arousal[0] as f64,
            arousal: valence_arousal[1] as f64,
            expression,
            expression_probs: expression_probs.iter().map(|&p| p as f64).collect(),
            expression_labels: expression_labels.to_vec(),
            au_probs: au_probs.iter().map(|&p| p as f64).collect(),
            au_labels: au_labels.to_vec(),
            model,
        }
    }

    /// The `affect` parameter structure.
    pub fn to_structure(&self) -> gst::Structure {
        let f64s = |v: &[f64]| gst::Array::new(v.iter().copied());
        let strs = |v: &[String]| gst::Array::new(v.iter().map(String::as_str));
        gst::Structure::builder(AFFECT_PARAMS)
            .field("valence", self.valence)
            .field("arousal", self.arousal)
            .field("expression", self.expression.as_str())
            .field("expression-probs", f64s(&self.expression_probs))
            .field("au-probs", f64s(&self.au_probs))
            .field("au-labels", strs(&self.au_labels))
            .field("expression-labels", strs(&self.expression_labels))
            .field("model", self.model.as_str())
            .build()
    }

    /// Reads an `affect` structure (from a face's meta or an element message's `faces`);
    /// `None` when it is not one or a field is missing or of the wrong type.
    pub fn from_structure(s: &gst::StructureRef) -> Option<AffectResult> {
        if s.name() != AFFECT_PARAMS {
            return None;
        }
        let f64s = |field: &str| -> Option<Vec<f64>> {
            let a = s.get::<gst::Array>(field).ok()?;
            a.iter().map(|v| v.get::<f64>().ok()).collect()
        };
        let strs = |field: &str| -> Option<Vec<String>> {
            let a = s.get::<gst::Array>(field).ok()?;
            a.iter().map(|v| v.get::<String>().ok()).collect()
        };
        Some(AffectResult {
            valence: s.get::<f64>("valence").ok()?,
            arousal: s.get::<f64>("arousal").ok()?,
            expression: s.get::<String>("expression").ok()?,
            expression_probs: f64s("expression-probs")?,
            expression_labels: strs("expression-labels")?,
            au_probs: f64s("au-probs")?,
            au_labels: strs("au-labels")?,
            model: s.get::<String>("model").unwrap_or_default(),
        })
    }

    /// Probability of the expression called `label`.
    pub fn expression_prob(&self, label: &str) -> Option<f64> {
        let i = self.expression_labels.iter().position(|l| l == label)?;
        self.expression_probs.get(i).copied()
    }

    /// Probability of the action unit called `label` (e.g. `AU12`).
    pub fn au_prob(&self, label: &str) -> Option<f64> {
        let i = self.au_labels.iter().position(|l| l == label)?;
        self.au_probs.get(i).copied()
    }
}

/// A face of a buffer with the model's results, when `affectinfer` gave any.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysedFace {
    pub face: Face,
    pub affect: Option<AffectResult>,
}

/// Every face of a buffer with its results, in meta order.
pub fn analysed_faces(buffer: &gst::BufferRef) -> Vec<AnalysedFace> {
    buffer
        .iter_meta::<VideoRegionOfInterestMeta>()
        .filter_map(|m| {
            let face = Face::from_meta(&m)?;
            let affect = m
                .param(AFFECT_PARAMS)
                .and_then(AffectResult::from_structure);
            Some(AnalysedFace { face, affect })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn face_round_trips_through_the_meta() {
        gst::init().unwrap();
        let face = Face {
            bbox: [10.4, 20.0, 60.6, 90.0],
            track_id: 7,
            score: 0.75,
            landmarks: Some([
                [20.0, 40.0],
                [50.0, 40.0],
                [35.0, 55.0],
                [25.0, 70.0],
                [45.0, 70.5],
            ]),
        };
        let mut buffer = gst::Buffer::new();
        face.attach(buffer.get_mut().unwrap(), 640, 480);
        let read = faces(&buffer);
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].bbox, [10.0, 20.0, 61.0, 90.0]);
        assert_eq!(read[0].track_id, 7);
        assert_eq!(read[0].score, 0.75);
        assert_eq!(read[0].landmarks, face.landmarks);
        let meta = buffer.meta::<VideoRegionOfInterestMeta>().unwrap();
        assert_eq!(meta.id(), 7);
        assert_eq!(meta.roi_type(), "face");
    }

    #[test]
    fn results_round_trip_through_the_meta() {
        gst::init().unwrap();
        let labels = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let result = AffectResult::new(
            [0.25, -0.5],
            &[0.1, 0.7, 0.2],
            &[0.9, 0.05],
            &labels(&["Neutral", "Anger", "Other"]),
            &labels(&["AU1", "AU2"]),
            "m".into(),
        );
        assert_eq!(result.expression, "Anger");
        let face = Face {
            bbox: [10.0, 20.0, 60.0, 90.0],
            track_id: 3,
            score: 0.5,
            landmarks: None,
        };
        let mut buffer = gst::Buffer::new();
        let buf = buffer.get_mut().unwrap();
        face.attach(buf, 640, 480);
        let mut meta = buf
            .meta_mut::<VideoRegionOfInterestMeta>()
            .expect("the face meta");
        meta.add_param(result.to_structure());
        let read = analysed_faces(&buffer);
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].face.track_id, 3);
        let got = read[0].affect.as_ref().expect("results");
        assert_eq!(got.valence, 0.25);
        assert_eq!(got.arousal, -0.5);
        assert_eq!(got.expression_prob("Anger"), Some(0.7f32 as f64));
        assert_eq!(got.au_prob("AU2"), Some(0.05f32 as f64));
        assert_eq!(got.au_prob("AU4"), None);
        assert_eq!(got, &result);
        // A face without results reads as such.
        let mut bare = gst::Buffer::new();
        face.attach(bare.get_mut().unwrap(), 640, 480);
        assert_eq!(analysed_faces(&bare)[0].affect, None);
    }

    #[test]
    fn boxes_are_clipped_to_the_frame() {
        let face = Face {
            bbox: [-5.0, 470.0, 700.0, 500.0],
            track_id: 1,
            score: 1.0,
            landmarks: None,
        };
        assert_eq!(face.roi_rect(640, 480), (0, 470, 640, 10));
    }
}
