// SPDX-License-Identifier: MPL-2.0
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};

use affect_core::align::{self, RgbImage};
use affect_core::detect::haar::{HaarCascade, HaarDetector, HaarParams};
use affect_core::detect::mtcnn::{Mtcnn, MtcnnParams, RgbFrame};
use affect_core::detect::{DetectParams, Detection, DetectorLayout, iou, nms};
use affect_core::landmark_prior::BoxLandmarkPrior;
use affect_core::pixels::{self, FrameLayout};

use crate::frame::{buffer_layout, frame_layout};
use affect_core::track::{IouTracker, TrackedFace, TrackerParams};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::VideoRegionOfInterestMeta;

use crate::choices::{DetectorKind, ExecutionProvider};
use crate::detector::{OpenError, OrtDetector};
use crate::meta::Face;
use crate::mtcnn::OrtMtcnn;
use crate::session::{Provider, SessionOptions};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "affectfacecrop",
        gst::DebugColorFlags::empty(),
        Some("Affect face finder, tracker and aligner"),
    )
});

const DEFAULT_HAAR_CASCADE: &str =
    "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml";
/// `detect-interval` that means "automatic": every frame, except MTCNN on streams of 25
/// frames/s or more, which it runs [`MTCNN_DETECTIONS_PER_SECOND`] times a second.
const DEFAULT_DETECT_INTERVAL: u32 = 0;
/// How often automatic intervals run MTCNN or BlazeFace: enough for the tracker to follow
/// faces, and what two cores keep up with at 1280x720 (see the README's detector benchmark).
const MTCNN_DETECTIONS_PER_SECOND: f64 = 8.0;
/// The smallest face MTCNN's first network sees, in pixels of the copy it searches.
const MTCNN_CELL: f32 = 12.0;
const DEFAULT_SCORE_THRESHOLD: f64 = 0.6;
const DEFAULT_NMS_IOU: f64 = 0.4;
const DEFAULT_MAX_FACES: u32 = 16;
const DEFAULT_MIN_FACE_SIZE: u32 = 32;
const DEFAULT_HAAR_MIN_NEIGHBORS: u32 = 4;
const DEFAULT_TRACK_IOU: f64 = 0.3;
const DEFAULT_TRACK_MIN_HITS: u32 = 2;
const DEFAULT_TRACK_MAX_MISSES: u32 = 10;
const DEFAULT_CROP_SIZE: u32 = 112;
const DEFAULT_TRACK_ID: i64 = -1;
const DEFAULT_BOX_MARGIN: f64 = 0.2;
const DEFAULT_ESTIMATE_LANDMARKS: bool = true;
const DEFAULT_DEVICE_ID: i32 = 0;
/// `detect-width` that means "automatic": see [`auto_detect_width`].
const DEFAULT_DETECT_WIDTH: i32 = -1;

/// The copy MTCNN searches by default: frames up to 640 wide as they are, wider ones at a
/// quarter of their width but at least 320, so that the smallest face found is 48 pixels at
/// 1280 and wider (30-48 below). With the automatic interval this keeps a 1280x720 stream of
/// four faces at 25 frames/s on two cores (README, detector benchmark).
fn auto_detect_width(frame_width: usize) -> Option<usize> {
    (frame_width > 640).then(|| (frame_width / 4).max(320))
}

/// The smallest face searched for: `min-face-size`, or what MTCNN's first network sees on the
/// copy `detect-width` wide if that is larger. BlazeFace's tiles are sized from it, so both
/// detectors look for the same faces on the same settings.
fn searched_min_face(min_face_size: f32, frame_width: usize, detect_width: Option<usize>) -> f32 {
    let on_copy = detect_width.map_or(0.0, |w| MTCNN_CELL * frame_width as f32 / w.max(1) as f32);
    min_face_size.max(on_copy)
}

#[derive(Debug, Eq, PartialEq, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstAffectFaceCropMode")]
pub enum Mode {
    #[enum_value(name = "Pass the video through with face metadata", nick = "annotate")]
    Annotate = 0,
    #[enum_value(name = "Output the aligned crop of one face", nick = "crop")]
    Crop = 1,
}

#[derive(Debug, Eq, PartialEq, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstAffectFaceCropNoFace")]
pub enum NoFace {
    #[enum_value(name = "Drop the frame (a gap downstream)", nick = "drop")]
    Drop = 0,
    #[enum_value(name = "Output a black crop", nick = "black")]
    Black = 1,
}

#[derive(Debug, Clone)]
struct Settings {
    mode: Mode,
    detector: DetectorKind,
    detector_model: Option<PathBuf>,
    haar_cascade: PathBuf,
    region: Option<String>,
    detect_interval: u32,
    score_threshold: f64,
    nms_iou: f64,
    max_faces: u32,
    min_face_size: u32,
    haar_min_neighbors: u32,
    track_iou: f64,
    track_min_hits: u32,
    track_max_misses: u32,
    crop_size: u32,
    track_id: i64,
    box_margin: f64,
    estimate_landmarks: bool,
    no_face: NoFace,
    mtcnn_models: Option<PathBuf>,
    detect_width: i32,
    execution_provider: ExecutionProvider,
    device_id: i32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            mode: Mode::Annotate,
            detector: DetectorKind::Auto,
            detector_model: None,
            haar_cascade: DEFAULT_HAAR_CASCADE.into(),
            region: None,
            detect_interval: DEFAULT_DETECT_INTERVAL,
            score_threshold: DEFAULT_SCORE_THRESHOLD,
            nms_iou: DEFAULT_NMS_IOU,
            max_faces: DEFAULT_MAX_FACES,
            min_face_size: DEFAULT_MIN_FACE_SIZE,
            haar_min_neighbors: DEFAULT_HAAR_MIN_NEIGHBORS,
            track_iou: DEFAULT_TRACK_IOU,
            track_min_hits: DEFAULT_TRACK_MIN_HITS,
            track_max_misses: DEFAULT_TRACK_MAX_MISSES,
            crop_size: DEFAULT_CROP_SIZE,
            track_id: DEFAULT_TRACK_ID,
            box_margin: DEFAULT_BOX_MARGIN,
            estimate_landmarks: DEFAULT_ESTIMATE_LANDMARKS,
            no_face: NoFace::Drop,
            mtcnn_models: None,
            detect_width: DEFAULT_DETECT_WIDTH,
            execution_provider: ExecutionProvider::Cpu,
            device_id: DEFAULT_DEVICE_ID,
        }
    }
}

impl Settings {
    fn detect_params(&self) -> DetectParams {
        DetectParams {
            score_threshold: self.score_threshold as f32,
            nms_iou: self.nms_iou as f32,
            max_faces: self.max_faces as usize,
            min_face_size: self.min_face_size as f32,
        }
    }

    fn session_options(&self) -> SessionOptions {
        SessionOptions {
            provider: match self.execution_provider {
                ExecutionProvider::Cpu => Provider::Cpu,
                ExecutionProvider::Cuda => Provider::Cuda {
                    device_id: self.device_id,
                },
            },
            intra_op_threads: 0,
            fallback_to_cpu: false,
        }
    }
}

/// Largest coordinate a `region` may reach: far beyond any video frame, yet small enough that
/// the box stays exact in the f32 the tracker works in.
const REGION_LIMIT: f32 = (1 << 20) as f32;

/// Parses the `region` property: `x,y,w,h` in pixels.
fn parse_region(s: &str) -> Result<[f32; 4], String> {
    let v: Vec<f32> = s
        .split(',')
        .map(|p| p.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("region '{s}' is not x,y,w,h: {e}"))?;
    match v.as_slice() {
        [x, y, w, h]
            if v.iter().all(|c| c.is_finite())
                && *w > 0.0
                && *h > 0.0
                && *x >= 0.0
                && *y >= 0.0
                && x + w <= REGION_LIMIT
                && y + h <= REGION_LIMIT =>
        {
            Ok([*x, *y, x + w, y + h])
        }
        _ => Err(format!(
            "region '{s}' must be four finite numbers x,y,w,h with x, y >= 0, w, h > 0 and \
             x + w, y + h at most {REGION_LIMIT}"
        )),
    }
}

/// The MTCNN cascade and its networks.
struct MtcnnDetector {
    cascade: Mtcnn,
    nets: OrtMtcnn,
}

enum Finder {
    Upstream,
    FullFrame { region: Option<[f32; 4]> },
    Haar(Box<HaarDetector>),
    Onnx(Box<OrtDetector>),
    Mtcnn(Box<MtcnnDetector>),
}

impl Finder {
    /// Where the landmarks of this finder's box-only faces sit on average: Haar's own
    /// calibration; a fixed region is taken as framed like an aligned crop (so an aligned
    /// crop stays as it is); other detectors' boxes are like Haar's.
    fn landmark_prior(&self) -> BoxLandmarkPrior {
        match self {
            Finder::Haar(_) => BoxLandmarkPrior::HAAR_FRONTAL_DEFAULT,
            Finder::FullFrame { .. } => BoxLandmarkPrior::ARCFACE_CROP,
            Finder::Upstream | Finder::Onnx(_) | Finder::Mtcnn(_) => BoxLandmarkPrior::GENERIC,
        }
    }
}

/// A face's landmarks: the detector's, else (when `prior` is given) estimated from its box
/// `[x1, y1, x2, y2]`, with whether they were estimated.
fn landmarks_of(
    landmarks: Option<[[f32; 2]; 5]>,
    bbox: [f32; 4],
    prior: Option<&BoxLandmarkPrior>,
) -> (Option<[[f32; 2]; 5]>, bool) {
    match (landmarks, prior) {
        (Some(l), _) => (Some(l), false),
        (None, Some(p)) => {
            let estimated = p.landmarks(bbox);
            (estimated, estimated.is_some())
        }
        (None, None) => (None, false),
    }
}

/// The `affect-face` parameters of `face`, flagged when its landmarks were estimated.
fn face_params(face: &Face, estimated: bool) -> gst::Structure {
    let mut params = face.params();
    if estimated {
        params.set(crate::meta::LANDMARKS_ESTIMATED, true);
    }
    params
}

/// What the frames of caps without a frame rate have shown so far.
#[derive(Clone, Copy, Debug, PartialEq)]
enum RateProbe {
    /// The caps have a frame rate, or the second frame has been seen.
    Off,
    AwaitingFirst,
    /// The first frame's time.
    SawFirst(Option<gst::ClockTime>),
}

struct State {
    finder: Finder,
    /// Landmark prior of the finder's box-only faces.
    landmark_prior: BoxLandmarkPrior,
    tracker: IouTracker,
    detect_params: DetectParams,
    /// Input format, set by caps.
    layout: Option<FrameLayout>,
    /// Width of the copy MTCNN searches (None: the frame itself), set by caps.
    detect_width: Option<usize>,
    /// The detector interval `detect-interval=0` means for these caps.
    auto_interval: u32,
    /// Caps without a frame rate: a still image, or a video of variable frame rate, which its
    /// second frame tells apart.
    rate_probe: RateProbe,
    frame_index: u64,
    /// Scratch frames reused across buffers.
    rgb: Vec<u8>,
    grey: Vec<u8>,
    crop: Vec<u8>,
}

#[derive(Default)]
pub struct AffectFaceCrop {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

impl AffectFaceCrop {
    fn sink_caps() -> gst::Caps {
        crate::frame::video_caps()
    }

    fn crop_caps(size: Option<u32>) -> gst::Caps {
        let b = gst::Caps::builder("video/x-raw").field("format", "RGB");
        let b = match size {
            Some(s) => b.field("width", s as i32).field("height", s as i32),
            None => b
                .field("width", gst::IntRange::new(1, i32::MAX))
                .field("height", gst::IntRange::new(1, i32::MAX)),
        };
        b.field("framerate", gst::FractionRange::new((0, 1), (i32::MAX, 1)))
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build()
    }

    /// The folders searched for the MTCNN files when `mtcnn-models` is not set.
    fn mtcnn_search_path(&self) -> Vec<PathBuf> {
        let plugin_file = self
            .obj()
            .factory()
            .and_then(|f| f.plugin())
            .and_then(|p| p.filename());
        crate::mtcnn::search_path(plugin_file.as_deref())
    }

    fn load_mtcnn(&self, s: &Settings, dir: &std::path::Path) -> Result<Finder, gst::ErrorMessage> {
        let cascade = Mtcnn::new(MtcnnParams {
            min_face_size: f64::from(s.min_face_size).max(12.0),
            ..MtcnnParams::default()
        })
        .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ["{}", e]))?;
        let nets = OrtMtcnn::open(dir, &s.session_options()).map_err(|e| {
            gst::error_msg!(gst::ResourceError::OpenRead, ["MTCNN face detector: {}", e])
        })?;
        gst::info!(
            CAT,
            imp = self,
            "MTCNN from {} on {}",
            dir.display(),
            nets.provider
        );
        Ok(Finder::Mtcnn(Box::new(MtcnnDetector { cascade, nets })))
    }

    fn load_finder(&self, s: &Settings) -> Result<Finder, gst::ErrorMessage> {
        if s.detect_width == 0 {
            return Err(gst::error_msg!(
                gst::LibraryError::Settings,
                ["detect-width must be -1 (automatic) or a width in pixels, got 0"]
            ));
        }
        Ok(match s.detector {
            DetectorKind::Mtcnn | DetectorKind::Auto => {
                let searched = match &s.mtcnn_models {
                    Some(dir) => vec![dir.clone()],
                    None => self.mtcnn_search_path(),
                };
                match crate::mtcnn::find(&searched) {
                    Some(dir) => return self.load_mtcnn(s, &dir),
                    None if s.detector == DetectorKind::Mtcnn || s.mtcnn_models.is_some() => {
                        return Err(gst::error_msg!(
                            gst::ResourceError::NotFound,
                            [
                                "MTCNN face detector: no folder holds mtcnn-pnet.onnx, \
                                 mtcnn-rnet.onnx and mtcnn-onet.onnx (searched {}); set \
                                 mtcnn-models, or make them with `affect-train import mtcnn`",
                                searched
                                    .iter()
                                    .map(|p| p.display().to_string())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ]
                        ));
                    }
                    None => {
                        gst::info!(CAT, imp = self, "No MTCNN files found: Haar cascade");
                        return self.load_finder(&Settings {
                            detector: DetectorKind::Haar,
                            ..s.clone()
                        });
                    }
                }
            }
            DetectorKind::Upstream => Finder::Upstream,
            DetectorKind::FullFrame => Finder::FullFrame {
                region: s
                    .region
                    .as_deref()
                    .filter(|r| !r.trim().is_empty())
                    .map(parse_region)
                    .transpose()
                    .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ["{}", e]))?,
            },
            DetectorKind::Haar => {
                let cascade = HaarCascade::from_file(&s.haar_cascade).map_err(|e| {
                    gst::error_msg!(
                        gst::ResourceError::OpenRead,
                        [
                            "Cannot load the Haar cascade '{}': {} (Debian's opencv-data package \
                             installs the default one)",
                            s.haar_cascade.display(),
                            e
                        ]
                    )
                })?;
                let min = s.min_face_size as usize;
                let detector = HaarDetector::new(
                    cascade,
                    HaarParams {
                        scale_factor: 1.1,
                        min_neighbors: s.haar_min_neighbors,
                        min_size: (min, min),
                        max_size: None,
                    },
                )
                .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ["{}", e]))?;
                Finder::Haar(Box::new(detector))
            }
            DetectorKind::Onnx => {
                let path = s.detector_model.clone().ok_or_else(|| {
                    gst::error_msg!(
                        gst::LibraryError::Settings,
                        ["detector=onnx needs the detector-model property (an ONNX face detector file)"]
                    )
                })?;
                self.load_onnx(s, &path)?
            }
            DetectorKind::Blazeface => {
                let path = match &s.detector_model {
                    Some(p) => p.clone(),
                    None => {
                        let searched = self.mtcnn_search_path();
                        crate::detector::find_blazeface(&searched).ok_or_else(|| {
                            gst::error_msg!(
                                gst::ResourceError::NotFound,
                                [
                                    "BlazeFace face detector: no folder holds {} (searched {}); \
                                     set detector-model, or make it with `affect-train import \
                                     blazeface`",
                                    crate::detector::BLAZEFACE_FILE,
                                    searched
                                        .iter()
                                        .map(|p| p.display().to_string())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ]
                            )
                        })?
                    }
                };
                self.load_onnx(s, &path)?
            }
        })
    }

    /// `detect-interval=0`: MTCNN and BlazeFace [`MTCNN_DETECTIONS_PER_SECOND`] times a second
    /// on streams of 25 frames/s or more, other finders and slower streams every frame.
    fn auto_interval(finder: &Finder, rate: f64) -> u32 {
        let interval_detector = match finder {
            Finder::Mtcnn(_) => true,
            Finder::Onnx(d) => matches!(d.layout, DetectorLayout::BlazeFace(_)),
            _ => false,
        };
        if interval_detector && rate >= 25.0 {
            (rate / MTCNN_DETECTIONS_PER_SECOND).floor().max(1.0) as u32
        } else {
            1
        }
    }

    /// Caps without a frame rate: a second frame makes this a video of variable frame rate,
    /// whose automatic detector interval comes from the first two frames' times; under
    /// `detector=auto` the first frame went to the still-image detector, and the video gets
    /// the stream detector from now on, keeping its tracks.
    fn on_frame_without_rate(&self, state: &mut State, pts: Option<gst::ClockTime>) {
        let first = match state.rate_probe {
            RateProbe::Off => return,
            RateProbe::AwaitingFirst => {
                state.rate_probe = RateProbe::SawFirst(pts);
                return;
            }
            RateProbe::SawFirst(first) => first,
        };
        state.rate_probe = RateProbe::Off;
        let auto = self.settings.lock().unwrap().detector == DetectorKind::Auto;
        if auto && let Err(e) = self.choose_auto_finder(state, true, false) {
            gst::warning!(CAT, imp = self, "Keeping the still-image detector: {e:?}");
        }
        let rate = match (first, pts) {
            (Some(a), Some(b)) if b > a => 1e9 / (b - a).nseconds() as f64,
            _ => 0.0,
        };
        state.auto_interval = Self::auto_interval(&state.finder, rate);
        gst::info!(
            CAT,
            imp = self,
            "No frame rate in the caps but a second frame: a video ({rate:.1} frames/s from the \
             first two), detector interval {}",
            state.auto_interval
        );
    }

    /// `detector=auto`: BlazeFace on video streams when its file is found, MTCNN (or its
    /// fallback) on still images. With `reset`, the tracks of the other detector go.
    fn choose_auto_finder(
        &self,
        state: &mut State,
        stream: bool,
        reset: bool,
    ) -> Result<(), gst::ErrorMessage> {
        let on_blazeface = matches!(&state.finder,
            Finder::Onnx(d) if matches!(d.layout, DetectorLayout::BlazeFace(_)));
        if stream == on_blazeface {
            return Ok(());
        }
        let settings = self.settings.lock().unwrap().clone();
        let finder = if stream {
            let Some(path) = crate::detector::find_blazeface(&self.mtcnn_search_path()) else {
                return Ok(());
            };
            self.load_onnx(&settings, &path)?
        } else {
            self.load_finder(&settings)?
        };
        gst::info!(
            CAT,
            imp = self,
            "detector=auto: {} for {}",
            if stream {
                "BlazeFace"
            } else {
                "the still-image detector"
            },
            if stream {
                "a video stream"
            } else {
                "still images"
            }
        );
        state.landmark_prior = finder.landmark_prior();
        state.finder = finder;
        if reset {
            state.tracker.reset();
            state.frame_index = 0;
        }
        Ok(())
    }

    fn load_onnx(&self, s: &Settings, path: &std::path::Path) -> Result<Finder, gst::ErrorMessage> {
        let det = OrtDetector::open(path, &s.session_options()).map_err(|e| match e {
            OpenError::Session(e) => {
                gst::error_msg!(gst::ResourceError::OpenRead, ["Face detector: {}", e])
            }
            OpenError::Format(e) => {
                gst::error_msg!(gst::StreamError::Format, ["Face detector {}", e])
            }
        })?;
        gst::info!(
            CAT,
            imp = self,
            "Face detector {} is {} on {}",
            path.display(),
            det.layout,
            det.provider
        );
        Ok(Finder::Onnx(Box::new(det)))
    }

    /// The faces of one frame, before tracking.
    fn detect(
        &self,
        state: &mut State,
        data: &[u8],
        layout: &FrameLayout,
        buffer: &gst::BufferRef,
    ) -> Result<Vec<Detection>, String> {
        let (w, h) = (layout.width as f32, layout.height as f32);
        match &mut state.finder {
            Finder::Upstream => Ok(crate::meta::faces(buffer)
                .into_iter()
                .map(|f| Detection {
                    bbox: f.bbox,
                    score: f.score,
                    landmarks: f.landmarks,
                })
                .collect()),
            Finder::FullFrame { region } => {
                // A region reaching past the frame is cut to it; one wholly outside is no face.
                let [x1, y1, x2, y2] = region.unwrap_or([0.0, 0.0, w, h]);
                let bbox = [x1.min(w), y1.min(h), x2.min(w), y2.min(h)];
                Ok(if bbox[2] > bbox[0] && bbox[3] > bbox[1] {
                    vec![Detection {
                        bbox,
                        score: 1.0,
                        landmarks: None,
                    }]
                } else {
                    Vec::new()
                })
            }
            Finder::Haar(detector) => {
                pixels::to_grey(data, layout, &mut state.grey).map_err(|e| e.to_string())?;
                let faces = detector
                    .detect_grey(&state.grey, layout.width, layout.height, layout.width)
                    .map_err(|e| e.to_string())?;
                // Haar's score only ranks faces; its neighbour count already filtered them.
                let dets = faces.iter().map(|f| f.to_detection()).collect();
                Ok(nms(
                    dets,
                    state.detect_params.nms_iou,
                    state.detect_params.max_faces,
                ))
            }
            Finder::Mtcnn(det) => {
                let (rgb, stride): (&[u8], usize) = if layout.is_rgb() {
                    (&data[layout.offsets[0]..], layout.strides[0])
                } else {
                    pixels::to_rgb(data, layout, &mut state.rgb).map_err(|e| e.to_string())?;
                    (&state.rgb, layout.width * 3)
                };
                let frame = RgbFrame::new(rgb, layout.width, layout.height, stride)
                    .map_err(|e| e.to_string())?;
                let mut faces = det
                    .cascade
                    .detect(&mut det.nets, frame, state.detect_width)
                    .map_err(|e| e.to_string())?;
                let st = det.cascade.stats();
                gst::trace!(
                    CAT,
                    "MTCNN: resample {:?}, P-Net {:?}, R-Net {:?} on {}, O-Net {:?} on {}, {} faces",
                    st.resample,
                    st.pnet,
                    st.rnet,
                    st.proposals,
                    st.onet,
                    st.refined,
                    st.faces
                );
                // The cascade suppressed overlaps itself; the element's limits still apply.
                let params = &state.detect_params;
                faces.retain(|f| f.score >= params.score_threshold);
                faces.truncate(params.max_faces);
                Ok(faces)
            }
            Finder::Onnx(det) => {
                let (rgb, stride): (&[u8], usize) = if layout.is_rgb() {
                    (&data[layout.offsets[0]..], layout.strides[0])
                } else {
                    pixels::to_rgb(data, layout, &mut state.rgb).map_err(|e| e.to_string())?;
                    (&state.rgb, layout.width * 3)
                };
                // BlazeFace looks for the faces MTCNN would on the same settings.
                let min_face = searched_min_face(
                    state.detect_params.min_face_size,
                    layout.width,
                    state.detect_width,
                );
                let faces = det.detect(
                    rgb,
                    stride,
                    layout.width,
                    layout.height,
                    &state.detect_params,
                    min_face,
                )?;
                gst::trace!(
                    CAT,
                    "{}: {} runs, {} faces",
                    det.layout,
                    det.runs,
                    faces.len()
                );
                Ok(faces)
            }
        }
    }

    /// Detection (every `detect-interval` frames) and tracking for one frame.
    fn track(
        &self,
        state: &mut State,
        data: &[u8],
        layout: &FrameLayout,
        buffer: &gst::BufferRef,
        interval: u32,
    ) -> Result<Vec<TrackedFace>, gst::FlowError> {
        self.on_frame_without_rate(state, buffer.pts());
        // Upstream faces and fixed regions are known on every frame.
        let every_frame = matches!(state.finder, Finder::Upstream | Finder::FullFrame { .. });
        let interval = if interval == 0 {
            state.auto_interval
        } else {
            interval
        };
        let run = every_frame || state.frame_index.is_multiple_of(interval.max(1) as u64);
        state.frame_index += 1;
        if !run {
            return Ok(state.tracker.predict());
        }
        let detections = self.detect(state, data, layout, buffer).map_err(|e| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("Face detection failed: {}", e)
            );
            gst::FlowError::Error
        })?;
        gst::trace!(CAT, imp = self, "{} detections", detections.len());
        Ok(state.tracker.update(&detections))
    }

    /// The track crop mode follows: `track-id` if set, else the largest face of the frame.
    fn chosen(faces: &[TrackedFace], track_id: i64) -> Option<&TrackedFace> {
        if track_id >= 0 {
            return faces.iter().find(|f| f.id == track_id as u64);
        }
        faces.iter().max_by(|a, b| {
            let area = |f: &TrackedFace| (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]);
            area(a).total_cmp(&area(b))
        })
    }
}

#[glib::object_subclass]
impl ObjectSubclass for AffectFaceCrop {
    const NAME: &'static str = "GstAffectFaceCrop";
    type Type = super::AffectFaceCrop;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for AffectFaceCrop {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecEnum::builder_with_default("mode", Mode::Annotate)
                    .nick("Mode")
                    .blurb("annotate: pass the video through with face metadata; crop: output the aligned crop of one face")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("detector", DetectorKind::Auto)
                    .nick("Detector")
                    .blurb("Where faces come from (auto: BlazeFace on video streams, MTCNN on still \
                            images, as their files are found, else Haar)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("mtcnn-models")
                    .nick("MTCNN models")
                    .blurb("Folder of mtcnn-pnet.onnx, mtcnn-rnet.onnx and mtcnn-onet.onnx (empty: \
                            $AFFECT_MODEL_PATH, beside the plugin, the source tree)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("detect-width")
                    .nick("Detect width")
                    .blurb("MTCNN searches a copy of the frame scaled to this width, boxes and \
                            landmarks mapped back (-1: frames wider than 640 at a quarter of \
                            their width, at least 320)")
                    .minimum(-1)
                    .maximum(1 << 16)
                    .default_value(DEFAULT_DETECT_WIDTH)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("execution-provider", ExecutionProvider::Cpu)
                    .nick("Execution provider")
                    .blurb("Where the ONNX face detectors (MTCNN, detector=onnx) run")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("device-id")
                    .nick("Device id")
                    .blurb("GPU the detectors run on (execution-provider=cuda)")
                    .minimum(0)
                    .default_value(DEFAULT_DEVICE_ID)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("detector-model")
                    .nick("Detector model")
                    .blurb("ONNX face detector file (BlazeFace, YuNet, SCRFD or UltraFace layout) for \
                            detector=onnx, or another BlazeFace file for detector=blazeface")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("haar-cascade")
                    .nick("Haar cascade")
                    .blurb("OpenCV Haar cascade XML for detector=haar")
                    .default_value(Some(DEFAULT_HAAR_CASCADE))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("region")
                    .nick("Region")
                    .blurb("x,y,w,h of the face for detector=full-frame (empty: the whole frame)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("detect-interval")
                    .nick("Detect interval")
                    .blurb("Run the detector every N frames and track in between (0: every frame, \
                            MTCNN 8 times a second on streams of 25 frames/s or more)")
                    .minimum(0)
                    .default_value(DEFAULT_DETECT_INTERVAL)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("score-threshold")
                    .nick("Score threshold")
                    .blurb("Minimum detector score of a face (ONNX detectors)")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_SCORE_THRESHOLD)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("nms-iou")
                    .nick("NMS IoU")
                    .blurb("Overlap above which the weaker of two faces is suppressed (Haar, ONNX \
                            detectors; MTCNN suppresses its own)")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_NMS_IOU)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-faces")
                    .nick("Maximum faces")
                    .blurb("Keep at most this many faces per frame, the most confident")
                    .minimum(1)
                    .default_value(DEFAULT_MAX_FACES)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("min-face-size")
                    .nick("Minimum face size")
                    .blurb("Smallest face width/height in pixels")
                    .default_value(DEFAULT_MIN_FACE_SIZE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("haar-min-neighbors")
                    .nick("Haar minimum neighbours")
                    .blurb("Raw Haar windows a face needs (higher: fewer false faces)")
                    .default_value(DEFAULT_HAAR_MIN_NEIGHBORS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("track-iou")
                    .nick("Tracking IoU")
                    .blurb("Minimum overlap of a face with a track to continue it")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_TRACK_IOU)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("track-min-hits")
                    .nick("Track birth hits")
                    .blurb("Consecutive detections before a new face is reported (detector frames)")
                    .minimum(1)
                    .default_value(DEFAULT_TRACK_MIN_HITS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("track-max-misses")
                    .nick("Track timeout")
                    .blurb("Detector frames a face may be missed and keep its track id")
                    .default_value(DEFAULT_TRACK_MAX_MISSES)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("crop-size")
                    .nick("Crop size")
                    .blurb("Side in pixels of the aligned crop (mode=crop)")
                    .minimum(16)
                    .maximum(4096)
                    .default_value(DEFAULT_CROP_SIZE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt64::builder("track-id")
                    .nick("Track id")
                    .blurb("Track to crop in mode=crop (-1: the largest face of each frame)")
                    .minimum(-1)
                    .default_value(DEFAULT_TRACK_ID)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("box-margin")
                    .nick("Box margin")
                    .blurb("Relative margin around the box of a face without landmarks (mode=crop)")
                    .minimum(0.0)
                    .maximum(4.0)
                    .default_value(DEFAULT_BOX_MARGIN)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("estimate-landmarks")
                    .nick("Estimate landmarks")
                    .blurb("Give faces without landmarks (Haar, full-frame, box-only upstream or ONNX \
                            faces) 5 landmarks placed in the box by a mean face shape, flagged \
                            landmarks-estimated=true in affect-face, so that crops are aligned \
                            like ArcFace training crops on average")
                    .default_value(DEFAULT_ESTIMATE_LANDMARKS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("no-face", NoFace::Drop)
                    .nick("No face")
                    .blurb("What mode=crop outputs for a frame without the face")
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        let path = |v: &glib::Value| {
            v.get::<Option<String>>()
                .expect("type checked upstream")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        };
        match pspec.name() {
            "mode" => s.mode = value.get().expect("type checked upstream"),
            "detector" => s.detector = value.get().expect("type checked upstream"),
            "detector-model" => s.detector_model = path(value),
            "haar-cascade" => {
                s.haar_cascade = path(value).unwrap_or_else(|| DEFAULT_HAAR_CASCADE.into())
            }
            "region" => s.region = value.get().expect("type checked upstream"),
            "detect-interval" => s.detect_interval = value.get().expect("type checked upstream"),
            "score-threshold" => s.score_threshold = value.get().expect("type checked upstream"),
            "nms-iou" => s.nms_iou = value.get().expect("type checked upstream"),
            "max-faces" => s.max_faces = value.get().expect("type checked upstream"),
            "min-face-size" => s.min_face_size = value.get().expect("type checked upstream"),
            "haar-min-neighbors" => {
                s.haar_min_neighbors = value.get().expect("type checked upstream")
            }
            "track-iou" => s.track_iou = value.get().expect("type checked upstream"),
            "track-min-hits" => s.track_min_hits = value.get().expect("type checked upstream"),
            "track-max-misses" => s.track_max_misses = value.get().expect("type checked upstream"),
            "crop-size" => s.crop_size = value.get().expect("type checked upstream"),
            "track-id" => s.track_id = value.get().expect("type checked upstream"),
            "box-margin" => s.box_margin = value.get().expect("type checked upstream"),
            "estimate-landmarks" => {
                s.estimate_landmarks = value.get().expect("type checked upstream")
            }
            "no-face" => s.no_face = value.get().expect("type checked upstream"),
            "mtcnn-models" => s.mtcnn_models = path(value),
            "detect-width" => s.detect_width = value.get().expect("type checked upstream"),
            "execution-provider" => {
                s.execution_provider = value.get().expect("type checked upstream")
            }
            "device-id" => s.device_id = value.get().expect("type checked upstream"),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        match pspec.name() {
            "mode" => s.mode.to_value(),
            "detector" => s.detector.to_value(),
            "detector-model" => path(&s.detector_model).to_value(),
            "haar-cascade" => s.haar_cascade.display().to_string().to_value(),
            "region" => s.region.to_value(),
            "detect-interval" => s.detect_interval.to_value(),
            "score-threshold" => s.score_threshold.to_value(),
            "nms-iou" => s.nms_iou.to_value(),
            "max-faces" => s.max_faces.to_value(),
            "min-face-size" => s.min_face_size.to_value(),
            "haar-min-neighbors" => s.haar_min_neighbors.to_value(),
            "track-iou" => s.track_iou.to_value(),
            "track-min-hits" => s.track_min_hits.to_value(),
            "track-max-misses" => s.track_max_misses.to_value(),
            "crop-size" => s.crop_size.to_value(),
            "track-id" => s.track_id.to_value(),
            "box-margin" => s.box_margin.to_value(),
            "estimate-landmarks" => s.estimate_landmarks.to_value(),
            "no-face" => s.no_face.to_value(),
            "mtcnn-models" => path(&s.mtcnn_models).to_value(),
            "detect-width" => s.detect_width.to_value(),
            "execution-provider" => s.execution_provider.to_value(),
            "device-id" => s.device_id.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for AffectFaceCrop {}

impl ElementImpl for AffectFaceCrop {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Affect face finder",
                "Filter/Analyzer/Video",
                "Finds, tracks and aligns faces: region-of-interest meta with landmarks, or aligned face crops",
                "affect developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let sink = AffectFaceCrop::sink_caps();
            let mut src = sink.clone();
            src.merge(AffectFaceCrop::crop_caps(None));
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &src,
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &sink,
                )
                .unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for AffectFaceCrop {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::Both;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let finder = self.load_finder(&settings)?;
        // Faces from upstream or a fixed region are already decided: report them at once.
        let immediate = matches!(finder, Finder::Upstream | Finder::FullFrame { .. });
        let tracker = IouTracker::new(TrackerParams {
            iou_threshold: settings.track_iou as f32,
            min_hits: if immediate {
                1
            } else {
                settings.track_min_hits
            },
            max_misses: settings.track_max_misses,
            constant_velocity: true,
            // A photo, or a stream's first frame, has no earlier frames to confirm faces.
            confirm_at_start: true,
        });
        *self.state.lock().unwrap() = Some(State {
            landmark_prior: finder.landmark_prior(),
            finder,
            tracker,
            detect_params: settings.detect_params(),
            layout: None,
            detect_width: None,
            auto_interval: 1,
            rate_probe: RateProbe::Off,
            frame_index: 0,
            rgb: Vec::new(),
            grey: Vec::new(),
            crop: Vec::new(),
        });
        self.obj().set_in_place(settings.mode == Mode::Annotate);
        gst::debug!(
            CAT,
            imp = self,
            "Started: {:?} {:?}",
            settings.mode,
            settings.detector
        );
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        Ok(())
    }

    fn transform_caps(
        &self,
        direction: gst::PadDirection,
        caps: &gst::Caps,
        filter: Option<&gst::Caps>,
    ) -> Option<gst::Caps> {
        let s = self.settings.lock().unwrap();
        let other = match (s.mode, direction) {
            (Mode::Annotate, _) => caps.clone(),
            (Mode::Crop, dir) => {
                let mut out = if dir == gst::PadDirection::Sink {
                    Self::crop_caps(Some(s.crop_size))
                } else {
                    Self::sink_caps()
                };
                // Crops keep the frame rate of the video they come from.
                if let Some(rate) = caps
                    .structure(0)
                    .and_then(|st| st.value("framerate").ok().cloned())
                {
                    out.make_mut().set_value("framerate", rate);
                }
                out
            }
        };
        Some(match filter {
            Some(f) => f.intersect_with_mode(&other, gst::CapsIntersectMode::First),
            None => other,
        })
    }

    fn set_caps(&self, incaps: &gst::Caps, outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "Cannot parse input caps {}", incaps))?;
        let layout = frame_layout(&info)
            .ok_or_else(|| gst::loggable_error!(CAT, "Unsupported format {:?}", info.format()))?;
        let (asked, detector) = {
            let s = self.settings.lock().unwrap();
            (s.detect_width, s.detector)
        };
        let detect_width = match asked {
            w if w < 0 => auto_detect_width(layout.width),
            w if w as usize > layout.width => {
                gst::element_imp_error!(
                    self,
                    gst::LibraryError::Settings,
                    [
                        "detect-width={} is wider than the {}x{} frame (use -1 for automatic)",
                        w,
                        layout.width,
                        layout.height
                    ]
                );
                return Err(gst::loggable_error!(
                    CAT,
                    "detect-width {w} beyond the frame"
                ));
            }
            w => Some(w as usize).filter(|&w| w < layout.width),
        };
        let mut guard = self.state.lock().unwrap();
        let state = guard
            .as_mut()
            .ok_or_else(|| gst::loggable_error!(CAT, "Caps before start"))?;
        if state
            .layout
            .is_some_and(|l| l.width != layout.width || l.height != layout.height)
        {
            // Boxes of the old resolution mean nothing in the new one.
            gst::info!(CAT, imp = self, "Resolution changed: tracks reset");
            state.tracker.reset();
            // The new resolution's first frame is a detector frame.
            state.frame_index = 0;
        }
        state.layout = Some(layout);
        state.detect_width = detect_width;
        // The automatic interval keeps MTCNN near its detection rate whatever the frame rate.
        let fps = info.fps();
        let rate = if fps.denom() > 0 {
            fps.numer() as f64 / fps.denom() as f64
        } else {
            0.0
        };
        if detector == DetectorKind::Auto
            && let Err(e) = self.choose_auto_finder(state, rate > 0.0, true)
        {
            self.post_error_message(e);
            return Err(gst::loggable_error!(CAT, "No face detector for {incaps}"));
        }
        // Without a frame rate in the caps, the first two frames' times tell it.
        state.rate_probe = if rate <= 0.0 {
            RateProbe::AwaitingFirst
        } else {
            RateProbe::Off
        };
        state.auto_interval = Self::auto_interval(&state.finder, rate);
        gst::debug!(CAT, imp = self, "Configured {incaps} -> {outcaps}");
        Ok(())
    }

    fn unit_size(&self, caps: &gst::Caps) -> Option<usize> {
        gst_video::VideoInfo::from_caps(caps)
            .map(|info| info.size())
            .ok()
    }

    fn transform_meta<'a>(
        &self,
        outbuf: &mut gst::BufferRef,
        meta: gst::MetaRef<'a, gst::Meta>,
        inbuf: &'a gst::BufferRef,
    ) -> bool {
        // A crop has its own face meta; the frame's faces would sit at frame coordinates.
        if self.settings.lock().unwrap().mode == Mode::Crop
            && meta.downcast_ref::<VideoRegionOfInterestMeta>().is_some()
        {
            return false;
        }
        self.parent_transform_meta(outbuf, meta, inbuf)
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        if let gst::EventView::FlushStop(_) = event.view()
            && let Some(state) = self.state.lock().unwrap().as_mut()
        {
            // After a seek the faces are wherever the new position has them.
            state.tracker.reset();
            state.frame_index = 0;
        }
        self.parent_sink_event(event)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (interval, upstream, estimate) = {
            let s = self.settings.lock().unwrap();
            (
                s.detect_interval,
                s.detector == DetectorKind::Upstream,
                s.estimate_landmarks,
            )
        };
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let base = state.layout.ok_or(gst::FlowError::NotNegotiated)?;
        let layout = buffer_layout(&base, buf);
        let tracked = {
            let map = buf.map_readable().map_err(|_| {
                gst::element_imp_error!(self, gst::CoreError::Failed, ("Cannot map the frame"));
                gst::FlowError::Error
            })?;
            self.track(state, map.as_slice(), &layout, buf, interval)?
        };
        let prior = estimate.then_some(state.landmark_prior);
        drop(guard);
        let (fw, fh) = (layout.width as u32, layout.height as u32);
        if upstream {
            // Upstream faces keep their box and their other parameters; the track id and
            // the `affect-face` parameters are ours. ROI meta parameters cannot be edited in
            // place, so each face meta is replaced.
            let mut upstream_faces = Vec::new();
            buf.foreach_meta_mut(|mut meta| {
                if let Some(roi) = meta.downcast_ref::<VideoRegionOfInterestMeta>()
                    && let Some(face) = Face::from_meta(roi)
                {
                    let others: Vec<gst::Structure> = roi
                        .params()
                        .filter(|p| p.name() != crate::meta::FACE_PARAMS)
                        .map(|p| p.to_owned())
                        .collect();
                    upstream_faces.push((roi.rect(), others, face));
                    return std::ops::ControlFlow::Continue(
                        gst::buffer::BufferMetaForeachAction::Remove,
                    );
                }
                std::ops::ControlFlow::Continue(gst::buffer::BufferMetaForeachAction::Keep)
            });
            for (rect, others, face) in upstream_faces {
                let track = tracked
                    .iter()
                    .filter(|t| t.frames_since_detection == 0)
                    .max_by(|a, b| iou(&a.bbox, &face.bbox).total_cmp(&iou(&b.bbox, &face.bbox)));
                let (landmarks, estimated) =
                    landmarks_of(face.landmarks, face.bbox, prior.as_ref());
                let face = Face {
                    track_id: track.map_or(face.track_id, |t| t.id),
                    landmarks,
                    ..face
                };
                let mut meta =
                    VideoRegionOfInterestMeta::add(buf, crate::meta::FACE_ROI_TYPE, rect);
                meta.set_id(i32::try_from(face.track_id).unwrap_or(i32::MAX));
                for p in others {
                    meta.add_param(p);
                }
                meta.add_param(face_params(&face, estimated));
            }
        } else {
            for t in &tracked {
                let (landmarks, estimated) = landmarks_of(t.landmarks, t.bbox, prior.as_ref());
                let face = Face {
                    bbox: t.bbox,
                    track_id: t.id,
                    score: t.score,
                    landmarks,
                };
                face.attach_with(buf, fw, fh, face_params(&face, estimated));
            }
        }
        Ok(gst::FlowSuccess::Ok)
    }

    fn transform(
        &self,
        inbuf: &gst::Buffer,
        outbuf: &mut gst::BufferRef,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (interval, track_id, margin, no_face, size, estimate) = {
            let s = self.settings.lock().unwrap();
            (
                s.detect_interval,
                s.track_id,
                s.box_margin as f32,
                s.no_face,
                s.crop_size,
                s.estimate_landmarks,
            )
        };
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let base = state.layout.ok_or(gst::FlowError::NotNegotiated)?;
        let layout = buffer_layout(&base, inbuf);
        let map = inbuf.map_readable().map_err(|_| {
            gst::element_imp_error!(self, gst::CoreError::Failed, ("Cannot map the frame"));
            gst::FlowError::Error
        })?;
        let data = map.as_slice();
        let tracked = self.track(state, data, &layout, inbuf, interval)?;
        let Some(face) = Self::chosen(&tracked, track_id).copied() else {
            if no_face == NoFace::Drop {
                return Ok(gst_base::BASE_TRANSFORM_FLOW_DROPPED);
            }
            let mut omap = outbuf.map_writable().map_err(|_| gst::FlowError::Error)?;
            omap.as_mut_slice().fill(0);
            return Ok(gst::FlowSuccess::Ok);
        };

        let (src, stride): (&[u8], usize) = if layout.is_rgb() {
            (&data[layout.offsets[0]..], layout.strides[0])
        } else {
            pixels::to_rgb(data, &layout, &mut state.rgb).map_err(|e| {
                gst::element_imp_error!(self, gst::StreamError::Format, ("{}", e));
                gst::FlowError::Error
            })?;
            (&state.rgb, layout.width * 3)
        };
        let image =
            RgbImage::new(src, layout.width as u32, layout.height as u32, stride).map_err(|e| {
                gst::element_imp_error!(self, gst::StreamError::Format, ("{}", e));
                gst::FlowError::Error
            })?;
        let prior = estimate.then_some(state.landmark_prior);
        let (landmarks, estimated) = landmarks_of(face.landmarks, face.bbox, prior.as_ref());
        let transform = match landmarks {
            Some(l) => align::Similarity::to_arcface(&l, size),
            None => {
                let b = face.bbox;
                align::box_crop_transform([b[0], b[1], b[2] - b[0], b[3] - b[1]], margin, size)
            }
        };
        let crop_landmarks = transform.as_ref().ok().map(|t| {
            landmarks
                .map(|l| l.map(|p| t.apply(p)))
                .unwrap_or_else(|| align::arcface_template(size))
        });
        let row = size as usize * 3;
        state.crop.resize(row * size as usize, 0);
        transform
            .and_then(|t| align::warp_rgb8(&image, &t.affine(), &mut state.crop, size, size))
            .map_err(|e| {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Failed,
                    ("Face alignment failed: {}", e)
                );
                gst::FlowError::Error
            })?;
        drop(map);
        {
            let mut omap = outbuf.map_writable().map_err(|_| gst::FlowError::Error)?;
            let out = omap.as_mut_slice();
            // RGB rows of the output are padded to 4 bytes.
            let out_stride = out.len() / size as usize;
            for (dst, src) in out
                .chunks_exact_mut(out_stride)
                .zip(state.crop.chunks_exact(row))
            {
                dst[..row].copy_from_slice(src);
            }
        }
        // The crop is the face: downstream analysis reads it whole, aligned.
        let crop_face = Face {
            bbox: [0.0, 0.0, size as f32, size as f32],
            track_id: face.id,
            score: face.score,
            landmarks: if landmarks.is_some() {
                crop_landmarks
            } else {
                None
            },
        };
        crop_face.attach_with(outbuf, size, size, face_params(&crop_face, estimated));
        Ok(gst::FlowSuccess::Ok)
    }
}
