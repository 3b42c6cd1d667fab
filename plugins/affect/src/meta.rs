// SPDX-License-Identifier: MPL-2.0
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

/// What the models said of one face: the `affect` parameter structure. Each head is there
/// only when a model that has it ran on the face: `valence`/`arousal` for `valence_arousal`,
/// `expression`, `expression-probs` and `expression-labels` for `expression`, `au-probs` and
/// `au-labels` for `au`. Absent heads are absent fields (empty vectors and `None` here), never
/// zeros. `model` names every model that contributed, in the order they ran, joined by `+`.
#[derive(Clone, Debug, PartialEq)]
pub struct AffectResult {
    pub valence: Option<f64>,
    pub arousal: Option<f64>,
    /// The most probable expression's label.
    pub expression: Option<String>,
    pub expression_probs: Vec<f64>,
    pub expression_labels: Vec<String>,
    pub au_probs: Vec<f64>,
    pub au_labels: Vec<String>,
    /// The models' names (or files), `+`-separated.
    pub model: String,
}

/// Separates the models of a chain in [`AffectResult::model`].
pub const MODEL_SEPARATOR: &str = "+";

impl AffectResult {
    /// The result of a model run: the heads it has, with the label lists of its contract.
    pub fn new(
        valence_arousal: Option<[f32; 2]>,
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
            .cloned();
        AffectResult {
            valence: valence_arousal.map(|v| v[0] as f64),
            arousal: valence_arousal.map(|v| v[1] as f64),
            expression,
            expression_probs: expression_probs.iter().map(|&p| p as f64).collect(),
            expression_labels: expression_labels.to_vec(),
            au_probs: au_probs.iter().map(|&p| p as f64).collect(),
            au_labels: au_labels.to_vec(),
            model,
        }
    }

    pub fn has_valence_arousal(&self) -> bool {
        self.valence.is_some() && self.arousal.is_some()
    }

    pub fn has_expression(&self) -> bool {
        !self.expression_probs.is_empty()
    }

    pub fn has_au(&self) -> bool {
        !self.au_probs.is_empty()
    }

    /// The heads present, by their output names.
    pub fn heads(&self) -> Vec<&'static str> {
        let mut h = Vec::new();
        if self.has_valence_arousal() {
            h.push("valence_arousal");
        }
        if self.has_au() {
            h.push("au");
        }
        if self.has_expression() {
            h.push("expression");
        }
        h
    }

    /// Adds `later`'s heads (a model downstream on the same face) to this result; a head both
    /// give is `later`'s. Returns the heads that were replaced.
    pub fn merge(&mut self, later: AffectResult) -> Vec<&'static str> {
        let mut replaced = Vec::new();
        let (later_expression, later_au) = (later.has_expression(), later.has_au());
        if later.has_valence_arousal() {
            if self.has_valence_arousal() {
                replaced.push("valence_arousal");
            }
            self.valence = later.valence;
            self.arousal = later.arousal;
        }
        if later_expression {
            if self.has_expression() {
                replaced.push("expression");
            }
            self.expression = later.expression;
            self.expression_probs = later.expression_probs;
            self.expression_labels = later.expression_labels;
        }
        if later_au {
            if self.has_au() {
                replaced.push("au");
            }
            self.au_probs = later.au_probs;
            self.au_labels = later.au_labels;
        }
        if !later.model.is_empty() {
            if self.model.is_empty() {
                self.model = later.model;
            } else {
                self.model = format!("{}{MODEL_SEPARATOR}{}", self.model, later.model);
            }
        }
        replaced
    }

    /// The `affect` parameter structure, with the fields of the heads present.
    pub fn to_structure(&self) -> gst::Structure {
        let f64s = |v: &[f64]| gst::Array::new(v.iter().copied());
        let strs = |v: &[String]| gst::Array::new(v.iter().map(String::as_str));
        let mut b = gst::Structure::builder(AFFECT_PARAMS);
        if let (Some(v), Some(a)) = (self.valence, self.arousal) {
            b = b.field("valence", v).field("arousal", a);
        }
        if self.has_expression() {
            b = b
                .field("expression", self.expression.as_deref().unwrap_or(""))
                .field("expression-probs", f64s(&self.expression_probs))
                .field("expression-labels", strs(&self.expression_labels));
        }
        if self.has_au() {
            b = b
                .field("au-probs", f64s(&self.au_probs))
                .field("au-labels", strs(&self.au_labels));
        }
        b.field("model", self.model.as_str()).build()
    }

    /// Reads an `affect` structure (from a face's meta or an element message's `faces`);
    /// `None` when it is not one, holds no head, or a head's fields are malformed (probs and
    /// labels of different lengths, wrong types).
    pub fn from_structure(s: &gst::StructureRef) -> Option<AffectResult> {
        if s.name() != AFFECT_PARAMS {
            return None;
        }
        let f64s = |field: &str| -> Option<Option<Vec<f64>>> {
            if !s.has_field(field) {
                return Some(None);
            }
            let a = s.get::<gst::Array>(field).ok()?;
            a.iter()
                .map(|v| v.get::<f64>().ok())
                .collect::<Option<Vec<f64>>>()
                .map(Some)
        };
        let strs = |field: &str| -> Option<Option<Vec<String>>> {
            if !s.has_field(field) {
                return Some(None);
            }
            let a = s.get::<gst::Array>(field).ok()?;
            a.iter()
                .map(|v| v.get::<String>().ok())
                .collect::<Option<Vec<String>>>()
                .map(Some)
        };
        let opt_f64 = |field: &str| -> Option<Option<f64>> {
            if !s.has_field(field) {
                return Some(None);
            }
            s.get::<f64>(field).ok().map(Some)
        };
        let valence = opt_f64("valence")?;
        let arousal = opt_f64("arousal")?;
        if valence.is_some() != arousal.is_some() {
            return None;
        }
        let expression_probs = f64s("expression-probs")?.unwrap_or_default();
        let expression_labels = strs("expression-labels")?.unwrap_or_default();
        let au_probs = f64s("au-probs")?.unwrap_or_default();
        let au_labels = strs("au-labels")?.unwrap_or_default();
        if expression_probs.len() != expression_labels.len() || au_probs.len() != au_labels.len() {
            return None;
        }
        let r = AffectResult {
            valence,
            arousal,
            expression: s.get::<String>("expression").ok(),
            expression_probs,
            expression_labels,
            au_probs,
            au_labels,
            model: s.get::<String>("model").unwrap_or_default(),
        };
        (!r.heads().is_empty()).then_some(r)
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
            Some([0.25, -0.5]),
            &[0.1, 0.7, 0.2],
            &[0.9, 0.05],
            &labels(&["Neutral", "Anger", "Other"]),
            &labels(&["AU1", "AU2"]),
            "m".into(),
        );
        assert_eq!(result.expression.as_deref(), Some("Anger"));
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
        assert_eq!(got.valence, Some(0.25));
        assert_eq!(got.arousal, Some(-0.5));
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
    fn partial_results_keep_their_heads_and_merge() {
        gst::init().unwrap();
        let labels = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // A valence/arousal and AU model, then an expression-only model on the same face.
        let first = AffectResult::new(
            Some([0.5, 0.1]),
            &[],
            &[0.2, 0.8],
            &[],
            &labels(&["AU1", "AU2"]),
            "synthetic".into(),
        );
        let s = first.to_structure();
        assert!(!s.has_field("expression") && !s.has_field("expression-probs"));
        assert_eq!(AffectResult::from_structure(&s).as_ref(), Some(&first));
        assert_eq!(first.heads(), vec!["valence_arousal", "au"]);
        let second = AffectResult::new(
            None,
            &[0.3, 0.7],
            &[],
            &labels(&["Neutral", "Happiness"]),
            &[],
            "fer".into(),
        );
        let s2 = second.to_structure();
        assert!(!s2.has_field("valence") && !s2.has_field("au-probs"));
        let mut merged = first.clone();
        assert!(merged.merge(second.clone()).is_empty());
        assert_eq!(merged.valence, Some(0.5));
        assert_eq!(merged.au_probs, first.au_probs);
        assert_eq!(merged.expression.as_deref(), Some("Happiness"));
        assert_eq!(merged.model, "synthetic+fer");
        // A head both give is the later one's, and is reported.
        let mut again = merged.clone();
        assert_eq!(again.merge(second), vec!["expression"]);
        // A structure with no head, or probabilities without their labels, is not a result.
        let empty = gst::Structure::builder(AFFECT_PARAMS)
            .field("model", "m")
            .build();
        assert_eq!(AffectResult::from_structure(&empty), None);
        let broken = gst::Structure::builder(AFFECT_PARAMS)
            .field("au-probs", gst::Array::new([0.5f64]))
            .build();
        assert_eq!(AffectResult::from_structure(&broken), None);
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
