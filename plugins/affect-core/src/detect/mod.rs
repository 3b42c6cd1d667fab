// SPDX-License-Identifier: MPL-2.0
//! Face detection shared by the `affectfacecrop` element: the common result type, non-maximum
//! suppression, the letterbox/resize that maps model-input coordinates back to frame pixels,
//! the input preprocessing each detector expects, recognition of a detector's output layout
//! and the decoders for the BlazeFace, YuNet, SCRFD and UltraFace layouts, plus a Haar cascade detector
//! that needs no model download.
//!
//! Decoders take the model's outputs as plain `f32` slices with their names and shapes, so this
//! module depends on no inference runtime: the element runs the model and hands the tensors here.
//!
//! Coordinates are in pixels with edges, not centres: a box `[x1, y1, x2, y2]` covers
//! `x1 <= x < x2`, so its width is `x2 - x1`.

pub mod blazeface;
pub mod haar;
pub mod mtcnn;
pub mod scrfd;
pub mod ultraface;
pub mod yunet;

use std::fmt;

pub use blazeface::BlazeFaceLayout;
pub use scrfd::ScrfdLayout;
pub use ultraface::{UltraFaceBoxes, UltraFaceLayout};
pub use yunet::YuNetLayout;

/// One face found in a frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    /// `[x1, y1, x2, y2]` in frame pixels.
    pub bbox: [f32; 4],
    /// Detector confidence in `[0, 1]`.
    pub score: f32,
    /// Five points in ArcFace order: left eye, right eye, nose tip, left mouth corner, right
    /// mouth corner, where "left" is the image left (the subject's right). Frame pixels.
    pub landmarks: Option<[[f32; 2]; 5]>,
}

impl Detection {
    pub fn width(&self) -> f32 {
        self.bbox[2] - self.bbox[0]
    }

    pub fn height(&self) -> f32 {
        self.bbox[3] - self.bbox[1]
    }
}

/// Filtering applied to a detector's raw candidates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DetectParams {
    /// Candidates scoring below this are dropped before suppression.
    pub score_threshold: f32,
    /// A candidate overlapping a better one by more than this IoU is suppressed.
    pub nms_iou: f32,
    /// At most this many faces are kept, the best-scoring ones.
    pub max_faces: usize,
    /// Faces whose box is narrower or lower than this (frame pixels) are dropped.
    pub min_face_size: f32,
}

impl Default for DetectParams {
    fn default() -> Self {
        Self {
            score_threshold: 0.6,
            nms_iou: 0.4,
            max_faces: 16,
            min_face_size: 20.0,
        }
    }
}

/// What went wrong turning a detector's outputs, or a frame, into faces.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DetectError {
    #[error(
        "the detector's outputs match no known face detector layout (BlazeFace, YuNet, SCRFD, \
         UltraFace); \
         it has {count} output(s): {outputs}"
    )]
    UnknownLayout { count: usize, outputs: String },
    #[error("the {layout} decoder expects output '{name}' but the model has none by that name")]
    MissingOutput { layout: &'static str, name: String },
    #[error("the {layout} decoder expects {expected} outputs, got {got}")]
    OutputCount {
        layout: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("output '{name}' has shape {shape:?} but the {layout} layout needs {expected}")]
    OutputShape {
        layout: &'static str,
        name: String,
        shape: Vec<usize>,
        expected: String,
    },
    #[error("output '{name}' holds {got} values but its shape {shape:?} needs {expected}")]
    TensorLength {
        name: String,
        shape: Vec<usize>,
        got: usize,
        expected: usize,
    },
    #[error("{what} must be {requirement}, got {got}")]
    InvalidSize {
        what: &'static str,
        requirement: &'static str,
        got: String,
    },
    #[error(
        "frame buffer of {got} bytes is too small for {width}x{height} RGB with a stride of \
         {stride} bytes (needs {needed})"
    )]
    FrameTooSmall {
        width: usize,
        height: usize,
        stride: usize,
        got: usize,
        needed: usize,
    },
    #[error("input tensor has {got} values, a 3x{height}x{width} input needs {needed}")]
    InputTensorSize {
        width: usize,
        height: usize,
        got: usize,
        needed: usize,
    },
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes; 0 when either is empty.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area_a = (a[2] - a[0]).max(0.0) * (a[3] - a[1]).max(0.0);
    let area_b = (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0);
    let union = area_a + area_b - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// Greedy non-maximum suppression: repeatedly keeps the best-scoring remaining detection and
/// drops every other one overlapping it by more than `iou_threshold`. The result is sorted by
/// descending score (ties keep their input order) and holds at most `max_keep` detections.
pub fn nms(mut detections: Vec<Detection>, iou_threshold: f32, max_keep: usize) -> Vec<Detection> {
    // NaN scores would make the order undefined; they rank last and are never kept first.
    detections.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or_else(|| a.score.is_nan().cmp(&b.score.is_nan()))
    });
    let mut kept: Vec<Detection> = Vec::new();
    for d in detections {
        if kept.len() >= max_keep {
            break;
        }
        if kept.iter().all(|k| iou(&k.bbox, &d.bbox) <= iou_threshold) {
            kept.push(d);
        }
    }
    kept
}

/// Square tiles `[x, y, side, side]` covering a `width` x `height` frame, neighbours overlapping
/// by at least a fifth of a side so a face cut by one tile's edge is whole in the next, spread
/// evenly from edge to edge. A side at least the frame's gives the frame itself.
pub fn square_tiles(width: usize, height: usize, side: usize) -> Vec<[usize; 4]> {
    let side = side.max(1);
    let starts = |len: usize| -> Vec<usize> {
        if len <= side {
            return vec![0];
        }
        let overlap = side / 5;
        let count = (len - overlap).div_ceil(side - overlap).max(2);
        (0..count)
            .map(|i| ((len - side) as f64 * i as f64 / (count - 1) as f64).round() as usize)
            .collect()
    };
    let (tw, th) = (side.min(width), side.min(height));
    let xs = starts(width);
    starts(height)
        .into_iter()
        .flat_map(|y| xs.iter().map(move |&x| [x, y, tw, th]))
        .collect()
}

/// Faces found in overlapping tiles (and the whole frame) as one list: overlaps suppressed as
/// [`nms`] does, and a face whose box lies mostly inside a better one dropped, since a tile's
/// edge can cut a face into a part that scores as a face of its own.
pub fn merge_tiles(
    detections: Vec<Detection>,
    iou_threshold: f32,
    max_keep: usize,
) -> Vec<Detection> {
    let kept = nms(detections, iou_threshold, usize::MAX);
    let mut out: Vec<Detection> = Vec::new();
    for d in kept {
        let inside_better = out.iter().any(|k| {
            let ix = (d.bbox[2].min(k.bbox[2]) - d.bbox[0].max(k.bbox[0])).max(0.0);
            let iy = (d.bbox[3].min(k.bbox[3]) - d.bbox[1].max(k.bbox[1])).max(0.0);
            ix * iy > 0.6 * d.width() * d.height()
        });
        if !inside_better {
            out.push(d);
        }
        if out.len() == max_keep {
            break;
        }
    }
    out
}

/// Turns decoded candidates (model-input coordinates) into the faces a frame reports: maps them
/// to frame pixels, applies the score threshold and minimum size, suppresses overlaps and keeps
/// the best `max_faces`.
pub fn postprocess(
    candidates: Vec<Detection>,
    letterbox: &Letterbox,
    params: &DetectParams,
) -> Vec<Detection> {
    let in_frame: Vec<Detection> = candidates
        .into_iter()
        .filter(|d| d.score >= params.score_threshold)
        .map(|d| letterbox.detection_to_frame(&d))
        .filter(|d| d.width() >= params.min_face_size && d.height() >= params.min_face_size)
        .collect();
    nms(in_frame, params.nms_iou, params.max_faces)
}

/// How a frame is fitted into a detector's fixed input size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResizeMode {
    /// Scaled to exactly the input size; the aspect ratio changes (UltraFace's export).
    Stretch,
    /// Scaled keeping the aspect ratio and placed at the top-left corner, the rest padded
    /// (insightface's SCRFD, OpenCV's `FaceDetectorYN` pads right and bottom).
    LetterboxTopLeft,
    /// Scaled keeping the aspect ratio and centred, padded evenly on both sides.
    LetterboxCentered,
}

/// The mapping between frame pixels and model-input pixels: `model = frame * scale + pad`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Letterbox {
    pub frame_width: usize,
    pub frame_height: usize,
    pub input_width: usize,
    pub input_height: usize,
    pub scale_x: f32,
    pub scale_y: f32,
    pub pad_x: f32,
    pub pad_y: f32,
    /// The model-input pixels covered by the frame: `pad_x .. pad_x + content_width`.
    pub content_width: usize,
    pub content_height: usize,
}

impl Letterbox {
    pub fn new(
        frame_width: usize,
        frame_height: usize,
        input_width: usize,
        input_height: usize,
        mode: ResizeMode,
    ) -> Result<Self, DetectError> {
        for (what, v) in [
            ("frame width", frame_width),
            ("frame height", frame_height),
            ("detector input width", input_width),
            ("detector input height", input_height),
        ] {
            if v == 0 {
                return Err(DetectError::InvalidSize {
                    what,
                    requirement: "at least 1",
                    got: v.to_string(),
                });
            }
        }
        let (content_width, content_height) = match mode {
            ResizeMode::Stretch => (input_width, input_height),
            ResizeMode::LetterboxTopLeft | ResizeMode::LetterboxCentered => {
                let s = (input_width as f64 / frame_width as f64)
                    .min(input_height as f64 / frame_height as f64);
                // Whole pixels, as a resize to an integer size makes them; the per-axis scale
                // below then maps exactly onto the resized content.
                let cw = ((frame_width as f64 * s).round() as usize).clamp(1, input_width);
                let ch = ((frame_height as f64 * s).round() as usize).clamp(1, input_height);
                (cw, ch)
            }
        };
        let (pad_x, pad_y) = match mode {
            ResizeMode::LetterboxCentered => (
                ((input_width - content_width) / 2) as f32,
                ((input_height - content_height) / 2) as f32,
            ),
            _ => (0.0, 0.0),
        };
        Ok(Self {
            frame_width,
            frame_height,
            input_width,
            input_height,
            scale_x: content_width as f32 / frame_width as f32,
            scale_y: content_height as f32 / frame_height as f32,
            pad_x,
            pad_y,
            content_width,
            content_height,
        })
    }

    /// Model-input point to frame pixels.
    pub fn to_frame(&self, p: [f32; 2]) -> [f32; 2] {
        [
            (p[0] - self.pad_x) / self.scale_x,
            (p[1] - self.pad_y) / self.scale_y,
        ]
    }

    /// Frame point to model-input pixels.
    pub fn to_model(&self, p: [f32; 2]) -> [f32; 2] {
        [
            p[0] * self.scale_x + self.pad_x,
            p[1] * self.scale_y + self.pad_y,
        ]
    }

    /// A detection in model-input coordinates mapped to frame pixels; the box is clipped to the
    /// frame (landmarks are not: a half-visible face may have its eye outside).
    pub fn detection_to_frame(&self, d: &Detection) -> Detection {
        let a = self.to_frame([d.bbox[0], d.bbox[1]]);
        let b = self.to_frame([d.bbox[2], d.bbox[3]]);
        let (fw, fh) = (self.frame_width as f32, self.frame_height as f32);
        Detection {
            bbox: [
                a[0].clamp(0.0, fw),
                a[1].clamp(0.0, fh),
                b[0].clamp(0.0, fw),
                b[1].clamp(0.0, fh),
            ],
            score: d.score,
            landmarks: d.landmarks.map(|l| l.map(|p| self.to_frame(p))),
        }
    }
}

/// Where the channels sit in a detector's input tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TensorLayout {
    /// `[1, 3, H, W]` (PyTorch, Caffe, OpenCV's exports).
    Nchw,
    /// `[1, H, W, 3]` (TensorFlow and TFLite models such as BlazeFace).
    Nhwc,
}

/// Channel order of a detector's input tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

/// How a detector's input tensor is filled from a frame: `value = (pixel - mean) * scale` per
/// channel (in the tensor's channel order), pixels in `0..=255`, padding pixels are 0 before
/// normalisation (as a zero-filled canvas is in the reference implementations).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Preprocess {
    pub input_width: usize,
    pub input_height: usize,
    pub resize: ResizeMode,
    pub channels: ChannelOrder,
    pub mean: [f32; 3],
    pub scale: [f32; 3],
}

impl Preprocess {
    /// Number of `f32` values of the `[1, 3, H, W]` input tensor.
    pub fn tensor_len(&self) -> usize {
        3 * self.input_width * self.input_height
    }

    /// The letterbox that fits a `frame_width` x `frame_height` frame into this input.
    pub fn letterbox(
        &self,
        frame_width: usize,
        frame_height: usize,
    ) -> Result<Letterbox, DetectError> {
        Letterbox::new(
            frame_width,
            frame_height,
            self.input_width,
            self.input_height,
            self.resize,
        )
    }

    /// Fills an NCHW (`[1, 3, H, W]`) tensor from a packed RGB8 frame whose rows are `stride`
    /// bytes apart, resampling bilinearly through `letterbox` (pixel centres aligned as
    /// `cv2.resize` aligns them) and normalising as this preprocessing says.
    pub fn fill_nchw(
        &self,
        rgb: &[u8],
        stride: usize,
        letterbox: &Letterbox,
        out: &mut [f32],
    ) -> Result<(), DetectError> {
        self.fill_tensor(rgb, stride, letterbox, out, TensorLayout::Nchw)
    }

    /// As [`Preprocess::fill_nchw`], in either tensor layout: NCHW, or channels last
    /// (`[1, H, W, 3]`, TensorFlow's order, which BlazeFace's conversions keep).
    pub fn fill_tensor(
        &self,
        rgb: &[u8],
        stride: usize,
        letterbox: &Letterbox,
        out: &mut [f32],
        tensor: TensorLayout,
    ) -> Result<(), DetectError> {
        let (fw, fh) = (letterbox.frame_width, letterbox.frame_height);
        let (iw, ih) = (self.input_width, self.input_height);
        if letterbox.input_width != iw || letterbox.input_height != ih {
            return Err(DetectError::InvalidSize {
                what: "letterbox input size",
                requirement: "the detector's input size",
                got: format!(
                    "{}x{} (detector {iw}x{ih})",
                    letterbox.input_width, letterbox.input_height
                ),
            });
        }
        if stride < fw * 3 {
            return Err(DetectError::InvalidSize {
                what: "frame stride",
                requirement: "at least 3 bytes per pixel of the width",
                got: format!("{stride} for width {fw}"),
            });
        }
        let needed = stride * (fh - 1) + fw * 3;
        if rgb.len() < needed {
            return Err(DetectError::FrameTooSmall {
                width: fw,
                height: fh,
                stride,
                got: rgb.len(),
                needed,
            });
        }
        if out.len() != self.tensor_len() {
            return Err(DetectError::InputTensorSize {
                width: iw,
                height: ih,
                got: out.len(),
                needed: self.tensor_len(),
            });
        }
        let src_channel = |c: usize| match self.channels {
            ChannelOrder::Rgb => c,
            ChannelOrder::Bgr => 2 - c,
        };
        let pad_value: [f32; 3] = std::array::from_fn(|c| -self.mean[c] * self.scale[c]);
        match tensor {
            TensorLayout::Nchw => {
                for (c, plane) in out.chunks_exact_mut(iw * ih).enumerate() {
                    plane.fill(pad_value[c]);
                }
            }
            TensorLayout::Nhwc => {
                for pixel in out.chunks_exact_mut(3) {
                    pixel.copy_from_slice(&pad_value);
                }
            }
        }

        // Source sample positions and weights per output column / row of the content area.
        let taps = |count: usize, scale: f32, src_len: usize| -> Vec<(usize, usize, f32)> {
            (0..count)
                .map(|i| {
                    let s = ((i as f32 + 0.5) / scale - 0.5).max(0.0);
                    let i0 = (s.floor() as usize).min(src_len - 1);
                    let i1 = (i0 + 1).min(src_len - 1);
                    (i0, i1, (s - i0 as f32).clamp(0.0, 1.0))
                })
                .collect()
        };
        let xt = taps(letterbox.content_width, letterbox.scale_x, fw);
        let yt = taps(letterbox.content_height, letterbox.scale_y, fh);
        let (px, py) = (letterbox.pad_x as usize, letterbox.pad_y as usize);
        let plane_len = iw * ih;
        let mut row = vec![[0.0f32; 3]; xt.len()];
        for (v, &(y0, y1, wy)) in yt.iter().enumerate() {
            let r0 = &rgb[y0 * stride..y0 * stride + fw * 3];
            let r1 = &rgb[y1 * stride..y1 * stride + fw * 3];
            for (acc, &(x0, x1, wx)) in row.iter_mut().zip(&xt) {
                for (c, a) in acc.iter_mut().enumerate() {
                    let top = r0[x0 * 3 + c] as f32 * (1.0 - wx) + r0[x1 * 3 + c] as f32 * wx;
                    let bottom = r1[x0 * 3 + c] as f32 * (1.0 - wx) + r1[x1 * 3 + c] as f32 * wx;
                    *a = top * (1.0 - wy) + bottom * wy;
                }
            }
            let base = (py + v) * iw + px;
            match tensor {
                TensorLayout::Nchw => {
                    for c in 0..3 {
                        let sc = src_channel(c);
                        let dst = &mut out[c * plane_len + base..c * plane_len + base + row.len()];
                        for (d, a) in dst.iter_mut().zip(&row) {
                            *d = (a[sc] - self.mean[c]) * self.scale[c];
                        }
                    }
                }
                TensorLayout::Nhwc => {
                    let dst = &mut out[base * 3..(base + row.len()) * 3];
                    for (d, a) in dst.chunks_exact_mut(3).zip(&row) {
                        for c in 0..3 {
                            d[c] = (a[src_channel(c)] - self.mean[c]) * self.scale[c];
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// A model output as its name and shape (dimensions below zero are dynamic), as the inference
/// runtime describes it before anything has run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputInfo {
    pub name: String,
    pub shape: Vec<i64>,
}

impl OutputInfo {
    pub fn new(name: impl Into<String>, shape: &[i64]) -> Self {
        Self {
            name: name.into(),
            shape: shape.to_vec(),
        }
    }
}

/// One output tensor after a run: name, concrete shape and row-major values.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    pub data: &'a [f32],
}

impl<'a> TensorView<'a> {
    pub fn new(name: &'a str, shape: &'a [usize], data: &'a [f32]) -> Self {
        Self { name, shape, data }
    }

    /// The values, checked against the shape.
    fn values(&self) -> Result<&'a [f32], DetectError> {
        let expected: usize = self.shape.iter().product();
        if self.data.len() != expected {
            return Err(DetectError::TensorLength {
                name: self.name.to_string(),
                shape: self.shape.to_vec(),
                got: self.data.len(),
                expected,
            });
        }
        Ok(self.data)
    }

    /// `(rows, columns)` of a tensor shaped `[rows, columns]` or `[1, rows, columns]`.
    fn rows_cols(&self, layout: &'static str) -> Result<(usize, usize), DetectError> {
        match self.shape {
            [r, c] | [1, r, c] => Ok((*r, *c)),
            _ => Err(DetectError::OutputShape {
                layout,
                name: self.name.to_string(),
                shape: self.shape.to_vec(),
                expected: "[N, C] or [1, N, C]".into(),
            }),
        }
    }
}

/// The output layouts of the face detectors this crate decodes.
#[derive(Clone, Debug, PartialEq)]
pub enum DetectorLayout {
    BlazeFace(BlazeFaceLayout),
    YuNet(YuNetLayout),
    Scrfd(ScrfdLayout),
    UltraFace(UltraFaceLayout),
}

/// Formats outputs as `'name' [1, 6400, 1]` (dynamic dimensions as `?`) for error messages.
fn describe_outputs(outputs: &[OutputInfo]) -> String {
    outputs
        .iter()
        .map(|o| {
            let dims: Vec<String> = o
                .shape
                .iter()
                .map(|&d| {
                    if d < 0 {
                        "?".to_string()
                    } else {
                        d.to_string()
                    }
                })
                .collect();
            format!("'{}' [{}]", o.name, dims.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `(width, height)` of a `[N, 3, H, W]` input shape when both are fixed.
fn fixed_input_size(input_shape: &[i64]) -> Option<(usize, usize)> {
    match input_shape {
        [_, _, h, w] if *h > 0 && *w > 0 => Some((*w as usize, *h as usize)),
        _ => None,
    }
}

impl DetectorLayout {
    /// Picks the layout from the model's input shape (`[1, 3, H, W]`, dynamic dimensions below
    /// zero) and its outputs, in the model's output order. A dynamic input size gets the
    /// detector's usual size (640x640 for YuNet and SCRFD, 320x240 for UltraFace).
    pub fn recognize(input_shape: &[i64], outputs: &[OutputInfo]) -> Result<Self, DetectError> {
        if let Some(l) = BlazeFaceLayout::recognize(input_shape, outputs) {
            return Ok(Self::BlazeFace(l));
        }
        let input = fixed_input_size(input_shape);
        if let Some(l) = YuNetLayout::recognize(input, outputs) {
            return Ok(Self::YuNet(l));
        }
        if let Some(l) = UltraFaceLayout::recognize(input, outputs) {
            return Ok(Self::UltraFace(l));
        }
        if let Some(l) = ScrfdLayout::recognize(input, outputs) {
            return Ok(Self::Scrfd(l));
        }
        Err(DetectError::UnknownLayout {
            count: outputs.len(),
            outputs: describe_outputs(outputs),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::BlazeFace(_) => "BlazeFace",
            Self::YuNet(_) => "YuNet",
            Self::Scrfd(_) => "SCRFD",
            Self::UltraFace(_) => "UltraFace",
        }
    }

    /// Where the channels sit in the model's input tensor.
    pub fn tensor_layout(&self) -> TensorLayout {
        match self {
            Self::BlazeFace(_) => TensorLayout::Nhwc,
            _ => TensorLayout::Nchw,
        }
    }

    /// The input tensor's shape, `[1, 3, H, W]` or `[1, H, W, 3]`.
    pub fn input_shape(&self) -> [usize; 4] {
        let p = self.preprocess();
        match self.tensor_layout() {
            TensorLayout::Nchw => [1, 3, p.input_height, p.input_width],
            TensorLayout::Nhwc => [1, p.input_height, p.input_width, 3],
        }
    }

    /// The side of the square tiles a `width` x `height` frame is searched in so that faces
    /// of `min_face` frame pixels are seen large enough by this detector, or `None` when the
    /// whole frame at once does. Only BlazeFace, whose input is small and fixed, is tiled.
    pub fn tile_side(&self, width: usize, height: usize, min_face: f32) -> Option<usize> {
        let Self::BlazeFace(l) = self else {
            return None;
        };
        let long = width.max(height);
        // Frame pixels per input pixel the smallest face may be shrunk by.
        let shrink = (min_face / blazeface::MIN_FACE_INPUT_PX).max(1.0);
        let needed = ((l.input as f32 * shrink).round() as usize).max(l.input);
        (needed < long).then(|| needed.min(width.min(height)))
    }

    /// How to fill the model's input tensor.
    pub fn preprocess(&self) -> Preprocess {
        match self {
            Self::BlazeFace(l) => l.preprocess(),
            Self::YuNet(l) => l.preprocess(),
            Self::Scrfd(l) => l.preprocess(),
            Self::UltraFace(l) => l.preprocess(),
        }
    }

    /// Candidates scoring at least `score_threshold`, in model-input pixels, before suppression.
    pub fn decode(
        &self,
        outputs: &[TensorView<'_>],
        score_threshold: f32,
    ) -> Result<Vec<Detection>, DetectError> {
        match self {
            Self::BlazeFace(l) => l.decode(outputs, score_threshold),
            Self::YuNet(l) => l.decode(outputs, score_threshold),
            Self::Scrfd(l) => l.decode(outputs, score_threshold),
            Self::UltraFace(l) => l.decode(outputs, score_threshold),
        }
    }

    /// The faces of one frame: decode, map to frame pixels, filter, suppress.
    pub fn detect(
        &self,
        outputs: &[TensorView<'_>],
        letterbox: &Letterbox,
        params: &DetectParams,
    ) -> Result<Vec<Detection>, DetectError> {
        let candidates = self.decode(outputs, params.score_threshold)?;
        Ok(postprocess(candidates, letterbox, params))
    }
}

impl fmt::Display for DetectorLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.preprocess();
        write!(f, "{} ({}x{})", self.name(), p.input_width, p.input_height)
    }
}

/// Finds the output named `name`.
fn find_output<'a, 'b>(
    outputs: &'b [TensorView<'a>],
    layout: &'static str,
    name: &str,
) -> Result<&'b TensorView<'a>, DetectError> {
    outputs
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| DetectError::MissingOutput {
            layout,
            name: name.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(bbox: [f32; 4], score: f32) -> Detection {
        Detection {
            bbox,
            score,
            landmarks: None,
        }
    }

    #[test]
    fn iou_of_known_overlaps() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert_eq!(iou(&a, &a), 1.0);
        // Half overlap: intersection 50, union 150.
        assert!((iou(&a, &[5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&a, &[10.0, 0.0, 20.0, 10.0]), 0.0);
        assert_eq!(iou(&[0.0, 0.0, 0.0, 0.0], &[0.0, 0.0, 0.0, 0.0]), 0.0);
    }

    #[test]
    fn nms_keeps_best_of_each_cluster_and_caps_the_count() {
        let dets = vec![
            det([0.0, 0.0, 10.0, 10.0], 0.7),
            det([1.0, 0.0, 11.0, 10.0], 0.9), // IoU 0.82 with the first: same face
            det([100.0, 0.0, 110.0, 10.0], 0.8),
            det([5.0, 0.0, 15.0, 10.0], 0.6), // IoU 0.43 with the 0.9 box
            det([200.0, 0.0, 210.0, 10.0], 0.5),
        ];
        let kept = nms(dets.clone(), 0.5, 10);
        let scores: Vec<f32> = kept.iter().map(|d| d.score).collect();
        assert_eq!(scores, vec![0.9, 0.8, 0.6, 0.5]);
        // A stricter threshold also removes the partial overlap.
        let kept = nms(dets.clone(), 0.3, 10);
        let scores: Vec<f32> = kept.iter().map(|d| d.score).collect();
        assert_eq!(scores, vec![0.9, 0.8, 0.5]);
        let kept = nms(dets, 0.5, 2);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[1].bbox, [100.0, 0.0, 110.0, 10.0]);
    }

    #[test]
    fn square_tiles_cover_the_frame_with_overlap() {
        assert_eq!(square_tiles(640, 480, 640), vec![[0, 0, 640, 480]]);
        // 1280x720 in 720 px tiles: two, overlapping by 160 px.
        assert_eq!(
            square_tiles(1280, 720, 720),
            vec![[0, 0, 720, 720], [560, 0, 720, 720]]
        );
        for (w, h, side) in [(1920, 1080, 512), (1281, 719, 300), (300, 2000, 256)] {
            let tiles = square_tiles(w, h, side);
            // Every pixel is covered and every tile lies inside the frame.
            for t in &tiles {
                assert!(t[0] + t[2] <= w && t[1] + t[3] <= h, "{t:?} in {w}x{h}");
            }
            for (x, y) in [(0, 0), (w - 1, h - 1), (w / 2, h / 3), (w - 1, 0)] {
                assert!(
                    tiles
                        .iter()
                        .any(|t| x >= t[0] && x < t[0] + t[2] && y >= t[1] && y < t[1] + t[3])
                );
            }
            // Neighbours along a row overlap by at least a fifth of a side.
            let row: Vec<_> = tiles.iter().filter(|t| t[1] == 0).collect();
            for pair in row.windows(2) {
                assert!(pair[0][0] + side - pair[1][0] >= side / 5);
            }
        }
    }

    #[test]
    fn merging_tiles_drops_parts_of_better_faces() {
        let whole = det([100.0, 100.0, 200.0, 220.0], 0.9);
        let part = det([150.0, 100.0, 200.0, 180.0], 0.7); // IoU 0.33, all inside `whole`
        let other = det([400.0, 100.0, 450.0, 160.0], 0.6);
        let out = merge_tiles(vec![part, other, whole], 0.4, 10);
        assert_eq!(out, vec![whole, other]);
        assert_eq!(merge_tiles(vec![part, other, whole], 0.4, 1), vec![whole]);
    }

    #[test]
    fn only_blazeface_is_tiled_and_by_the_smallest_face() {
        let outputs = [
            OutputInfo::new("a", &[1, 512, 1]),
            OutputInfo::new("b", &[1, 384, 1]),
            OutputInfo::new("c", &[1, 512, 16]),
            OutputInfo::new("d", &[1, 384, 16]),
        ];
        let l = DetectorLayout::recognize(&[1, 256, 256, 3], &outputs).unwrap();
        assert_eq!(l.name(), "BlazeFace");
        assert_eq!(l.tensor_layout(), TensorLayout::Nhwc);
        assert_eq!(l.input_shape(), [1, 256, 256, 3]);
        // Faces of 48 px must be 16 input px: tiles of 768, cut to the frame's height.
        assert_eq!(l.tile_side(1280, 720, 48.0), Some(720));
        assert_eq!(l.tile_side(1920, 1080, 48.0), Some(768));
        assert_eq!(l.tile_side(1920, 1080, 32.0), Some(512));
        // Faces large enough for the whole frame: no tiles.
        assert_eq!(l.tile_side(640, 360, 48.0), None);
        assert_eq!(l.tile_side(1280, 720, 100.0), None);
    }

    #[test]
    fn nms_survives_nan_scores() {
        let kept = nms(
            vec![
                det([0.0, 0.0, 10.0, 10.0], f32::NAN),
                det([0.0, 0.0, 10.0, 10.0], 0.5),
            ],
            0.5,
            10,
        );
        assert_eq!(kept[0].score, 0.5);
    }

    #[test]
    fn letterbox_maps_round_trip_and_pads_as_documented() {
        // 1920x1080 into 640x640 at the top left: scale 1/3, content 640x360.
        let lb = Letterbox::new(1920, 1080, 640, 640, ResizeMode::LetterboxTopLeft).unwrap();
        assert_eq!((lb.content_width, lb.content_height), (640, 360));
        assert_eq!((lb.pad_x, lb.pad_y), (0.0, 0.0));
        assert_eq!(lb.to_model([1920.0, 1080.0]), [640.0, 360.0]);
        let lb = Letterbox::new(1920, 1080, 640, 640, ResizeMode::LetterboxCentered).unwrap();
        assert_eq!(lb.pad_y, 140.0);
        assert_eq!(lb.to_model([0.0, 0.0]), [0.0, 140.0]);
        let lb = Letterbox::new(640, 480, 320, 240, ResizeMode::Stretch).unwrap();
        assert_eq!((lb.scale_x, lb.scale_y), (0.5, 0.5));
        for mode in [
            ResizeMode::Stretch,
            ResizeMode::LetterboxTopLeft,
            ResizeMode::LetterboxCentered,
        ] {
            let lb = Letterbox::new(1280, 720, 320, 240, mode).unwrap();
            for p in [[0.0, 0.0], [1279.0, 719.0], [333.3, 123.4]] {
                let back = lb.to_frame(lb.to_model(p));
                assert!((back[0] - p[0]).abs() < 1e-3 && (back[1] - p[1]).abs() < 1e-3);
            }
        }
        assert!(matches!(
            Letterbox::new(0, 10, 10, 10, ResizeMode::Stretch),
            Err(DetectError::InvalidSize {
                what: "frame width",
                ..
            })
        ));
    }

    #[test]
    fn postprocess_maps_filters_and_suppresses() {
        let lb = Letterbox::new(1280, 720, 640, 640, ResizeMode::LetterboxCentered).unwrap();
        // Frame box [100, 200, 300, 420] is model box [50, 240, 150, 350] (scale 1/2, pad 140).
        let lm = [
            [60.0, 250.0],
            [90.0, 250.0],
            [75.0, 280.0],
            [65.0, 300.0],
            [85.0, 300.0],
        ];
        let face = Detection {
            bbox: [50.0, 240.0, 150.0, 350.0],
            score: 0.9,
            landmarks: Some(lm),
        };
        let dup = Detection {
            score: 0.8,
            landmarks: None,
            ..face
        };
        let weak = det([300.0, 240.0, 400.0, 350.0], 0.3);
        let tiny = det([500.0, 240.0, 505.0, 245.0], 0.95); // 10x10 frame pixels
        let params = DetectParams {
            score_threshold: 0.5,
            nms_iou: 0.4,
            max_faces: 8,
            min_face_size: 20.0,
        };
        let out = postprocess(vec![weak, dup, tiny, face], &lb, &params);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].bbox, [100.0, 200.0, 300.0, 420.0]);
        assert_eq!(out[0].landmarks.unwrap()[2], [150.0, 280.0]);
    }

    #[test]
    fn fill_nchw_matches_a_hand_computed_resize() {
        // 4x2 frame stretched to 2x1: each output pixel is the bilinear sample at the centre of
        // a 2x2 block, i.e. the mean of the block.
        let w = 4;
        let h = 2;
        let stride = w * 3 + 5; // rows padded, as video frames often are
        let mut rgb = vec![0u8; stride * h];
        for y in 0..h {
            for x in 0..w {
                let p = &mut rgb[y * stride + x * 3..y * stride + x * 3 + 3];
                p.copy_from_slice(&[(10 * x + y) as u8, 100, (200 - 10 * x) as u8]);
            }
        }
        let pre = Preprocess {
            input_width: 2,
            input_height: 1,
            resize: ResizeMode::Stretch,
            channels: ChannelOrder::Bgr,
            mean: [1.0, 2.0, 3.0],
            scale: [0.5, 1.0, 2.0],
        };
        let lb = pre.letterbox(w, h).unwrap();
        let mut out = vec![0.0; pre.tensor_len()];
        pre.fill_nchw(&rgb, stride, &lb, &mut out).unwrap();
        // Block means: R = 5.5 / 25.5, G = 100, B = 195 / 175; tensor channels are B, G, R.
        let expected = [
            (195.0 - 1.0) * 0.5,
            (175.0 - 1.0) * 0.5,
            100.0 - 2.0,
            100.0 - 2.0,
            (5.5 - 3.0) * 2.0,
            (25.5 - 3.0) * 2.0,
        ];
        for (o, e) in out.iter().zip(expected) {
            assert!((o - e).abs() < 1e-4, "{out:?}");
        }
        assert!(matches!(
            pre.fill_nchw(&rgb[..stride + 3], stride, &lb, &mut out),
            Err(DetectError::FrameTooSmall { .. })
        ));
        assert!(matches!(
            pre.fill_nchw(&rgb, stride, &lb, &mut out[..5]),
            Err(DetectError::InputTensorSize { .. })
        ));
    }

    #[test]
    fn channels_last_holds_the_same_values_transposed() {
        let pre = Preprocess {
            input_width: 16,
            input_height: 16,
            resize: ResizeMode::LetterboxCentered,
            channels: ChannelOrder::Rgb,
            mean: [127.5; 3],
            scale: [1.0 / 127.5; 3],
        };
        let (w, h) = (40, 24);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
        let lb = pre.letterbox(w, h).unwrap();
        let mut nchw = vec![0.0; pre.tensor_len()];
        let mut nhwc = vec![0.0; pre.tensor_len()];
        pre.fill_nchw(&rgb, w * 3, &lb, &mut nchw).unwrap();
        pre.fill_tensor(&rgb, w * 3, &lb, &mut nhwc, TensorLayout::Nhwc)
            .unwrap();
        for c in 0..3 {
            for p in 0..256 {
                assert_eq!(nchw[c * 256 + p], nhwc[p * 3 + c]);
            }
        }
    }

    #[test]
    fn fill_nchw_pads_outside_the_letterboxed_content() {
        let pre = Preprocess {
            input_width: 4,
            input_height: 4,
            resize: ResizeMode::LetterboxCentered,
            channels: ChannelOrder::Rgb,
            mean: [127.5; 3],
            scale: [1.0 / 128.0; 3],
        };
        let rgb = vec![255u8; 8 * 4 * 3]; // 8x4 -> 4x2 content, one padding row above and below
        let lb = pre.letterbox(8, 4).unwrap();
        assert_eq!((lb.pad_x, lb.pad_y), (0.0, 1.0));
        let mut out = vec![0.0; pre.tensor_len()];
        pre.fill_nchw(&rgb, 24, &lb, &mut out).unwrap();
        let white = 127.5 / 128.0;
        let pad = -127.5 / 128.0;
        for c in 0..3 {
            let plane = &out[c * 16..(c + 1) * 16];
            assert!(plane[..4].iter().all(|&v| v == pad));
            assert!(plane[4..12].iter().all(|&v| (v - white).abs() < 1e-6));
            assert!(plane[12..].iter().all(|&v| v == pad));
        }
    }
}
