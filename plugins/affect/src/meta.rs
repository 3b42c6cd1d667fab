//! The metadata the elements exchange: faces are `GstVideoRegionOfInterestMeta` of roi type
//! `face`, whose `id` is the track id, carrying an `affect-face` parameter structure
//! (`track-id`, `score`, and `landmarks` = 10 doubles x1,y1..x5,y5 in frame pixels, ArcFace
//! order: left eye, right eye, nose, left mouth corner, right mouth corner).

use gst_video::VideoRegionOfInterestMeta;

/// Roi type of a face.
pub const FACE_ROI_TYPE: &str = "face";
/// Name of the face parameter structure.
pub const FACE_PARAMS: &str = "affect-face";

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
        let mut meta = VideoRegionOfInterestMeta::add(
            buffer,
            FACE_ROI_TYPE,
            self.roi_rect(frame_width, frame_height),
        );
        meta.set_id(i32::try_from(self.track_id).unwrap_or(i32::MAX));
        meta.add_param(self.params());
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
            bbox: [x as f32, y as f32, (x + w) as f32, (y + h) as f32],
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

/// Every face of a buffer.
pub fn faces(buffer: &gst::BufferRef) -> Vec<Face> {
    buffer
        .iter_meta::<VideoRegionOfInterestMeta>()
        .filter_map(|m| Face::from_meta(&m))
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
