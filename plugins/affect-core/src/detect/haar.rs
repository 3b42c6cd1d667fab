// SPDX-License-Identifier: MPL-2.0
//! Viola-Jones face detection with OpenCV's Haar cascades, needing no model download: Debian's
//! `opencv-data` installs `haarcascade_frontalface_default.xml` at [`DEBIAN_FRONTAL_FACE`].
//!
//! Reads the cascade XML that `opencv_traincascade` writes (`<cascade>` with `<stages>`,
//! `<weakClassifiers>` of `<internalNodes>`/`<leafValues>` and `<features>` of weighted
//! `<rects>`), stumps and deeper trees alike. Tilted (45 degree) features are rejected with an
//! error naming the feature.
//!
//! Detection follows `cv::CascadeClassifier::detectMultiScale`: for scale factors 1, f, f^2,
//! ... the grey frame is resized bilinearly to `1/scale` of its size, its integral images
//! (sum and squared sum) are taken and the fixed-size window (24x24 for the frontal face) is
//! slid over it, every second position below scale 2 (skipping one more after a window fails
//! the first stage) and every position above. Each window's features are divided by
//! `area * stddev` of the window shrunk by one pixel on each side; windows with a standard
//! deviation of at most 10 grey levels are skipped as OpenCV skips them. Windows passing every
//! stage are grouped as `cv::groupRectangles` does (similarity `eps = 0.2`, groups of more
//! than `min_neighbors` windows kept, small groups inside bigger ones dropped). On
//! scikit-image's astronaut photograph the faces found with each of `opencv-data`'s frontal
//! face cascades are OpenCV 4.14's to within a pixel (`tests/haar_opencv.rs`).

use std::path::{Path, PathBuf};

use super::Detection;

/// Where Debian's `opencv-data` package installs the frontal face cascade.
pub const DEBIAN_FRONTAL_FACE: &str =
    "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml";

/// `cv::groupRectangles`'s similarity for `detectMultiScale`.
const GROUP_EPS: f64 = 0.2;
/// OpenCV skips windows whose grey-level standard deviation is at most this.
const MIN_WINDOW_STDDEV: f64 = 10.0;

#[derive(Debug, thiserror::Error)]
pub enum HaarError {
    #[error("cannot read Haar cascade {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Haar cascade is not well-formed XML: {0}")]
    Xml(String),
    #[error(
        "Haar cascade uses the old format (root <{0}> of type opencv-haar-classifier); \
         only the format of opencv_traincascade (<cascade>) is read"
    )]
    OldFormat(String),
    #[error("Haar cascade has no <{0}> element")]
    Missing(String),
    #[error("Haar cascade element <{element}> holds '{text}', which is not {expected}")]
    BadValue {
        element: String,
        text: String,
        expected: &'static str,
    },
    #[error("Haar cascade {what} is '{got}'; only '{supported}' is supported")]
    Unsupported {
        what: &'static str,
        got: String,
        supported: &'static str,
    },
    #[error(
        "Haar cascade feature {index} is tilted (45 degrees); tilted features are not supported"
    )]
    TiltedFeature { index: usize },
    #[error(
        "Haar cascade feature {index} has rectangle {rect:?} outside the {width}x{height} window"
    )]
    RectOutside {
        index: usize,
        rect: [i64; 4],
        width: usize,
        height: usize,
    },
    #[error("Haar cascade feature {index} has {count} rectangles; 1 to 3 are supported")]
    RectCount { index: usize, count: usize },
    #[error("Haar cascade stage {stage}, weak classifier {classifier}: {problem}")]
    BadClassifier {
        stage: usize,
        classifier: usize,
        problem: String,
    },
    #[error("{what} must be {requirement}, got {got}")]
    InvalidParam {
        what: &'static str,
        requirement: &'static str,
        got: String,
    },
    #[error(
        "frame buffer of {got} bytes is too small for {width}x{height} with {channels} byte(s) \
         per pixel and a stride of {stride} bytes (needs {needed})"
    )]
    FrameTooSmall {
        width: usize,
        height: usize,
        channels: usize,
        stride: usize,
        got: usize,
        needed: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Rect {
    x: u32,
    y: u32,
    w: u32,
    h: u32,
    weight: f32,
}

#[derive(Clone, Debug, PartialEq)]
struct Feature {
    rects: Vec<Rect>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Node {
    feature: u32,
    threshold: f32,
    /// Child node index within the tree when positive, else `-leaf index`.
    left: i32,
    right: i32,
}

#[derive(Clone, Debug, PartialEq)]
struct Tree {
    nodes: Vec<Node>,
    leaves: Vec<f32>,
}

#[derive(Clone, Debug, PartialEq)]
struct Stage {
    threshold: f32,
    trees: Vec<Tree>,
}

/// A cascade read from OpenCV's XML.
#[derive(Clone, Debug, PartialEq)]
pub struct HaarCascade {
    window_width: usize,
    window_height: usize,
    stages: Vec<Stage>,
    features: Vec<Feature>,
}

fn child<'a, 'i>(
    node: roxmltree::Node<'a, 'i>,
    name: &str,
) -> Result<roxmltree::Node<'a, 'i>, HaarError> {
    node.children()
        .find(|n| n.has_tag_name(name))
        .ok_or_else(|| HaarError::Missing(name.to_string()))
}

fn items<'a, 'i>(node: roxmltree::Node<'a, 'i>) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> {
    node.children().filter(|n| n.is_element())
}

fn text<'a>(node: roxmltree::Node<'a, '_>) -> &'a str {
    node.text().unwrap_or("").trim()
}

fn parse_number<T: std::str::FromStr>(
    node: roxmltree::Node<'_, '_>,
    expected: &'static str,
) -> Result<T, HaarError> {
    let t = text(node);
    t.parse().map_err(|_| HaarError::BadValue {
        element: node.tag_name().name().to_string(),
        text: t.to_string(),
        expected,
    })
}

fn parse_numbers<T: std::str::FromStr>(
    node: roxmltree::Node<'_, '_>,
    expected: &'static str,
) -> Result<Vec<T>, HaarError> {
    text(node)
        .split_whitespace()
        .map(|v| {
            v.parse().map_err(|_| HaarError::BadValue {
                element: node.tag_name().name().to_string(),
                text: v.to_string(),
                expected,
            })
        })
        .collect()
}

impl HaarCascade {
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, HaarError> {
        let path = path.as_ref();
        let xml = std::fs::read_to_string(path).map_err(|source| HaarError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_xml(&xml)
    }

    /// The frontal face cascade of Debian's `opencv-data`.
    pub fn debian_frontal_face() -> Result<Self, HaarError> {
        Self::from_file(DEBIAN_FRONTAL_FACE)
    }

    pub fn from_xml(xml: &str) -> Result<Self, HaarError> {
        let doc = roxmltree::Document::parse(xml).map_err(|e| HaarError::Xml(e.to_string()))?;
        let root = doc.root_element();
        let Some(cascade) = items(root).find(|n| n.has_tag_name("cascade")) else {
            if let Some(old) =
                items(root).find(|n| n.attribute("type_id") == Some("opencv-haar-classifier"))
            {
                return Err(HaarError::OldFormat(old.tag_name().name().to_string()));
            }
            return Err(HaarError::Missing("cascade".into()));
        };
        let stage_type = text(child(cascade, "stageType")?);
        if stage_type != "BOOST" {
            return Err(HaarError::Unsupported {
                what: "stage type",
                got: stage_type.into(),
                supported: "BOOST",
            });
        }
        let feature_type = text(child(cascade, "featureType")?);
        if feature_type != "HAAR" {
            return Err(HaarError::Unsupported {
                what: "feature type",
                got: feature_type.into(),
                supported: "HAAR",
            });
        }
        let window_width: usize = parse_number(child(cascade, "width")?, "a window width")?;
        let window_height: usize = parse_number(child(cascade, "height")?, "a window height")?;
        if window_width < 3 || window_height < 3 {
            return Err(HaarError::BadValue {
                element: "width/height".into(),
                text: format!("{window_width}x{window_height}"),
                expected: "a window of at least 3x3 pixels",
            });
        }

        let mut features = Vec::new();
        for (index, f) in items(child(cascade, "features")?).enumerate() {
            if let Some(t) = f.children().find(|n| n.has_tag_name("tilted"))
                && parse_number::<i64>(t, "0 or 1")? != 0
            {
                return Err(HaarError::TiltedFeature { index });
            }
            let mut rects = Vec::new();
            for r in items(child(f, "rects")?) {
                let v: Vec<f64> = parse_numbers(r, "a number of a rectangle 'x y w h weight'")?;
                let [x, y, w, h, weight] = v[..] else {
                    return Err(HaarError::BadValue {
                        element: "rects".into(),
                        text: text(r).into(),
                        expected: "five numbers 'x y w h weight'",
                    });
                };
                let rect = [x as i64, y as i64, w as i64, h as i64];
                if rect[0] < 0
                    || rect[1] < 0
                    || rect[2] <= 0
                    || rect[3] <= 0
                    || (rect[0] + rect[2]) as usize > window_width
                    || (rect[1] + rect[3]) as usize > window_height
                {
                    return Err(HaarError::RectOutside {
                        index,
                        rect,
                        width: window_width,
                        height: window_height,
                    });
                }
                rects.push(Rect {
                    x: rect[0] as u32,
                    y: rect[1] as u32,
                    w: rect[2] as u32,
                    h: rect[3] as u32,
                    weight: weight as f32,
                });
            }
            if rects.is_empty() || rects.len() > 3 {
                return Err(HaarError::RectCount {
                    index,
                    count: rects.len(),
                });
            }
            features.push(Feature { rects });
        }

        let mut stages = Vec::new();
        for (si, s) in items(child(cascade, "stages")?).enumerate() {
            let threshold: f32 = parse_number(child(s, "stageThreshold")?, "a number")?;
            let mut trees = Vec::new();
            for (ci, c) in items(child(s, "weakClassifiers")?).enumerate() {
                let bad = |problem: String| HaarError::BadClassifier {
                    stage: si,
                    classifier: ci,
                    problem,
                };
                let raw: Vec<f64> = parse_numbers(child(c, "internalNodes")?, "a number")?;
                let leaves: Vec<f32> = parse_numbers(child(c, "leafValues")?, "a number")?;
                if raw.is_empty() || !raw.len().is_multiple_of(4) {
                    return Err(bad(format!(
                        "{} internal node values are not groups of 'left right feature \
                         threshold' (categorical splits are not supported)",
                        raw.len()
                    )));
                }
                let nodes: Vec<Node> = raw
                    .chunks_exact(4)
                    .map(|n| Node {
                        left: n[0] as i32,
                        right: n[1] as i32,
                        feature: n[2].max(0.0) as u32,
                        threshold: n[3] as f32,
                    })
                    .collect();
                for (ni, n) in nodes.iter().enumerate() {
                    if n.feature as usize >= features.len() || raw[ni * 4 + 2] < 0.0 {
                        return Err(bad(format!(
                            "node {ni} uses feature {} but the cascade has {}",
                            raw[ni * 4 + 2],
                            features.len()
                        )));
                    }
                    for child in [n.left, n.right] {
                        // A positive child must come later in the tree so evaluation ends.
                        let ok = if child > 0 {
                            (child as usize) < nodes.len() && child as usize > ni
                        } else {
                            (child.unsigned_abs() as usize) < leaves.len()
                        };
                        if !ok {
                            return Err(bad(format!(
                                "node {ni} has child {child}, outside its {} nodes and {} leaves",
                                nodes.len(),
                                leaves.len()
                            )));
                        }
                    }
                }
                trees.push(Tree { nodes, leaves });
            }
            stages.push(Stage { threshold, trees });
        }
        if stages.is_empty() {
            return Err(HaarError::Missing(
                "stages/_ (the cascade has no stage)".into(),
            ));
        }
        Ok(Self {
            window_width,
            window_height,
            stages,
            features,
        })
    }

    /// The detection window the cascade was trained on, `(width, height)`.
    pub fn window_size(&self) -> (usize, usize) {
        (self.window_width, self.window_height)
    }

    pub fn stage_count(&self) -> usize {
        self.stages.len()
    }
}

/// `detectMultiScale`'s parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HaarParams {
    /// Ratio between successive scales, above 1 (OpenCV's usual 1.1).
    pub scale_factor: f64,
    /// A face needs more than this many overlapping raw windows.
    pub min_neighbors: u32,
    /// Smallest face `(width, height)` in frame pixels; `(0, 0)` for the cascade's window.
    pub min_size: (usize, usize),
    /// Largest face; `None` for the frame size.
    pub max_size: Option<(usize, usize)>,
}

impl Default for HaarParams {
    fn default() -> Self {
        Self {
            scale_factor: 1.1,
            min_neighbors: 3,
            min_size: (0, 0),
            max_size: None,
        }
    }
}

/// A grouped face: `[x, y, width, height]` in frame pixels and the number of raw windows that
/// were grouped into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HaarFace {
    pub rect: [i32; 4],
    pub neighbors: u32,
}

impl HaarFace {
    /// As a [`Detection`]; the score, `n / (n + 5)` for `n` neighbours, only ranks faces.
    pub fn to_detection(&self) -> Detection {
        let [x, y, w, h] = self.rect.map(|v| v as f32);
        let n = self.neighbors as f32;
        Detection {
            bbox: [x, y, x + w, y + h],
            score: n / (n + 5.0),
            landmarks: None,
        }
    }
}

/// Grey level as OpenCV's `cvtColor(RGB2GRAY)` computes it: `0.299 R + 0.587 G + 0.114 B` in
/// 15-bit fixed point (coefficients summing to exactly 2^15), rounded.
#[inline]
pub fn grey_of(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 9798 + g as u32 * 19235 + b as u32 * 3735 + (1 << 14)) >> 15) as u8
}

/// Converts a packed RGB8 frame (rows `stride` bytes apart) to tightly packed grey.
pub fn rgb_to_grey(
    rgb: &[u8],
    width: usize,
    height: usize,
    stride: usize,
    grey: &mut Vec<u8>,
) -> Result<(), HaarError> {
    check_frame(rgb.len(), width, height, 3, stride)?;
    grey.clear();
    grey.reserve(width * height);
    for y in 0..height {
        let row = &rgb[y * stride..y * stride + width * 3];
        grey.extend(row.chunks_exact(3).map(|p| grey_of(p[0], p[1], p[2])));
    }
    Ok(())
}

fn check_frame(
    len: usize,
    width: usize,
    height: usize,
    channels: usize,
    stride: usize,
) -> Result<(), HaarError> {
    if width == 0 || height == 0 {
        return Err(HaarError::InvalidParam {
            what: "frame size",
            requirement: "at least 1x1",
            got: format!("{width}x{height}"),
        });
    }
    if stride < width * channels {
        return Err(HaarError::InvalidParam {
            what: "frame stride",
            requirement: "at least the bytes of one row",
            got: format!("{stride} for {width} pixels of {channels} byte(s)"),
        });
    }
    let needed = stride * (height - 1) + width * channels;
    if len < needed {
        return Err(HaarError::FrameTooSmall {
            width,
            height,
            channels,
            stride,
            got: len,
            needed,
        });
    }
    Ok(())
}

/// Integral images of a `width` x `height` grey image (rows `src_stride` bytes apart) into
/// buffers with rows `stride >= width + 1` entries apart and a zero first row and column:
/// `sum[y][x]` is the sum of the pixels above and left of `(x, y)`, `sqsum` of their squares.
/// Arithmetic wraps at 32 bits as OpenCV's does; differences over a window stay exact as
/// long as the window's sum of squares fits (any window up to 256x256 pixels).
pub fn integral_images(
    grey: &[u8],
    width: usize,
    height: usize,
    src_stride: usize,
    stride: usize,
    sum: &mut [u32],
    sqsum: &mut [u32],
) {
    debug_assert!(stride > width && sum.len() >= stride * (height + 1));
    sum[..=width].fill(0);
    sqsum[..=width].fill(0);
    for y in 0..height {
        let row = &grey[y * src_stride..y * src_stride + width];
        let (above, this) = sum.split_at_mut((y + 1) * stride);
        let above = &above[y * stride..y * stride + width + 1];
        let this = &mut this[..width + 1];
        let (sq_above, sq_this) = sqsum.split_at_mut((y + 1) * stride);
        let sq_above = &sq_above[y * stride..y * stride + width + 1];
        let sq_this = &mut sq_this[..width + 1];
        this[0] = 0;
        sq_this[0] = 0;
        let (mut run, mut sq_run) = (0u32, 0u32);
        for x in 0..width {
            let v = row[x] as u32;
            run = run.wrapping_add(v);
            sq_run = sq_run.wrapping_add(v * v);
            this[x + 1] = above[x + 1].wrapping_add(run);
            sq_this[x + 1] = sq_above[x + 1].wrapping_add(sq_run);
        }
    }
}

/// Bilinear resize of tightly packed grey with `cv2.resize`'s pixel-centre alignment.
fn resize_bilinear(
    src: &[u8],
    sw: usize,
    sh: usize,
    dst: &mut Vec<u8>,
    dw: usize,
    dh: usize,
    row_buf: &mut Vec<f32>,
) {
    dst.clear();
    dst.resize(dw * dh, 0);
    let taps = |dn: usize, sn: usize| -> Vec<(usize, usize, f32)> {
        let ratio = sn as f64 / dn as f64;
        (0..dn)
            .map(|i| {
                let s = ((i as f64 + 0.5) * ratio - 0.5).max(0.0);
                let i0 = (s.floor() as usize).min(sn - 1);
                let i1 = (i0 + 1).min(sn - 1);
                (i0, i1, (s - i0 as f64).min(1.0) as f32)
            })
            .collect()
    };
    let xt = taps(dw, sw);
    let yt = taps(dh, sh);
    row_buf.clear();
    row_buf.resize(dw * 2, 0.0);
    let (top, bottom) = row_buf.split_at_mut(dw);
    let horizontal = |y: usize, out: &mut [f32]| {
        let row = &src[y * sw..(y + 1) * sw];
        for (o, &(x0, x1, wx)) in out.iter_mut().zip(&xt) {
            *o = row[x0] as f32 + (row[x1] as f32 - row[x0] as f32) * wx;
        }
    };
    let mut cached = (usize::MAX, usize::MAX);
    for (y, &(y0, y1, wy)) in yt.iter().enumerate() {
        // Downscaling rarely reuses rows, but upscaling by small factors does.
        if cached.0 != y0 {
            horizontal(y0, top);
        }
        if cached.1 != y1 {
            horizontal(y1, bottom);
        }
        cached = (y0, y1);
        let out = &mut dst[y * dw..(y + 1) * dw];
        for ((o, &a), &b) in out.iter_mut().zip(top.iter()).zip(bottom.iter()) {
            *o = (a + (b - a) * wy + 0.5) as u8;
        }
    }
}

/// Offsets of a rectangle's four integral-image corners relative to the window origin.
#[derive(Clone, Copy, Debug, Default)]
struct RectOffsets {
    tl: u32,
    tr: u32,
    bl: u32,
    br: u32,
    weight: f32,
}

impl RectOffsets {
    /// Offsets fit 32 bits: the window is at most a few hundred rows of a frame row apart.
    fn new(x: usize, y: usize, w: usize, h: usize, weight: f32, stride: usize) -> Self {
        Self {
            tl: (y * stride + x) as u32,
            tr: (y * stride + x + w) as u32,
            bl: ((y + h) * stride + x) as u32,
            br: ((y + h) * stride + x + w) as u32,
            weight,
        }
    }

    /// The rectangle's sum in the window whose integral entries start at `window[0]`.
    #[inline(always)]
    fn sum(&self, window: &[u32]) -> i32 {
        debug_assert!((self.br as usize) < window.len());
        // SAFETY: every offset is at most `br`; `RectOffsets` are built from rectangles checked
        // to lie inside the cascade window when the cascade was read, and callers cut `window`
        // to cover the whole cascade window (see `HaarDetector::scan_scale`), so all four
        // reads are in bounds. This is the detector's innermost loop; bounds checks here cost
        // a third of its time.
        unsafe {
            window
                .get_unchecked(self.br as usize)
                .wrapping_sub(*window.get_unchecked(self.tr as usize))
                .wrapping_sub(*window.get_unchecked(self.bl as usize))
                .wrapping_add(*window.get_unchecked(self.tl as usize)) as i32
        }
    }
}

/// Features laid out for one integral-image stride; a feature of fewer than three rectangles
/// has weight 0 in the rest.
#[derive(Clone, Copy, Debug, Default)]
struct PackedFeature {
    rects: [RectOffsets; 3],
    three: bool,
}

impl PackedFeature {
    /// The feature's weighted rectangle sum in `window`, times the window's `norm`.
    #[inline(always)]
    fn value(&self, window: &[u32], norm: f32) -> f32 {
        let mut v = self.rects[0].weight * self.rects[0].sum(window) as f32
            + self.rects[1].weight * self.rects[1].sum(window) as f32;
        if self.three {
            v += self.rects[2].weight * self.rects[2].sum(window) as f32;
        }
        v * norm
    }
}

/// A stump with its feature inlined, so the scan reads one contiguous array.
#[derive(Clone, Copy, Debug)]
struct PackedStump {
    feature: PackedFeature,
    threshold: f32,
    left: f32,
    right: f32,
}

#[derive(Clone, Copy, Debug)]
struct Stump {
    feature: u32,
    threshold: f32,
    left: f32,
    right: f32,
}

/// The cascade flattened for scanning: stumps when every weak classifier is a single split.
#[derive(Clone, Debug)]
enum Classifiers {
    Stumps {
        stumps: Vec<Stump>,
        /// `(end index into stumps, threshold)` per stage.
        stages: Vec<(usize, f32)>,
    },
    Trees,
}

/// A reusable detector: the cascade, its parameters and the per-frame buffers.
#[derive(Clone, Debug)]
pub struct HaarDetector {
    cascade: HaarCascade,
    params: HaarParams,
    classifiers: Classifiers,
    packed: Vec<PackedFeature>,
    packed_stumps: Vec<PackedStump>,
    packed_stride: usize,
    scaled: Vec<u8>,
    sum: Vec<u32>,
    sqsum: Vec<u32>,
    row_buf: Vec<f32>,
    grey: Vec<u8>,
    candidates: Vec<[i32; 4]>,
}

impl HaarDetector {
    pub fn new(cascade: HaarCascade, params: HaarParams) -> Result<Self, HaarError> {
        if !(params.scale_factor > 1.0 && params.scale_factor.is_finite()) {
            return Err(HaarError::InvalidParam {
                what: "scale factor",
                requirement: "a finite number above 1",
                got: params.scale_factor.to_string(),
            });
        }
        let stumps_only = cascade.stages.iter().all(|s| {
            s.trees
                .iter()
                .all(|t| t.nodes.len() == 1 && t.leaves.len() >= 2)
        });
        let classifiers = if stumps_only {
            let mut stumps = Vec::new();
            let mut stages = Vec::new();
            for s in &cascade.stages {
                for t in &s.trees {
                    let n = t.nodes[0];
                    let leaf = |c: i32| t.leaves[c.unsigned_abs() as usize];
                    stumps.push(Stump {
                        feature: n.feature,
                        threshold: n.threshold,
                        left: leaf(n.left),
                        right: leaf(n.right),
                    });
                }
                stages.push((stumps.len(), s.threshold));
            }
            Classifiers::Stumps { stumps, stages }
        } else {
            Classifiers::Trees
        };
        Ok(Self {
            cascade,
            params,
            classifiers,
            packed: Vec::new(),
            packed_stumps: Vec::new(),
            packed_stride: 0,
            scaled: Vec::new(),
            sum: Vec::new(),
            sqsum: Vec::new(),
            row_buf: Vec::new(),
            grey: Vec::new(),
            candidates: Vec::new(),
        })
    }

    pub fn params(&self) -> &HaarParams {
        &self.params
    }

    pub fn cascade(&self) -> &HaarCascade {
        &self.cascade
    }

    /// Faces in a packed RGB8 frame.
    pub fn detect_rgb(
        &mut self,
        rgb: &[u8],
        width: usize,
        height: usize,
        stride: usize,
    ) -> Result<Vec<HaarFace>, HaarError> {
        let mut grey = std::mem::take(&mut self.grey);
        let result = rgb_to_grey(rgb, width, height, stride, &mut grey)
            .and_then(|()| self.detect_grey(&grey, width, height, width));
        self.grey = grey;
        result
    }

    /// Faces in an 8-bit grey frame (rows `stride` bytes apart).
    pub fn detect_grey(
        &mut self,
        grey: &[u8],
        width: usize,
        height: usize,
        stride: usize,
    ) -> Result<Vec<HaarFace>, HaarError> {
        check_frame(grey.len(), width, height, 1, stride)?;
        let (ww, wh) = self.cascade.window_size();
        let (min_w, min_h) = self.params.min_size;
        let (max_w, max_h) = match self.params.max_size {
            Some((w, h)) if w > 0 && h > 0 => (w, h),
            _ => (width, height),
        };
        // The frame tightly packed, as every scale is resized from it.
        let packed_grey: std::borrow::Cow<'_, [u8]> = if stride == width {
            std::borrow::Cow::Borrowed(&grey[..width * height])
        } else {
            std::borrow::Cow::Owned(
                (0..height)
                    .flat_map(|y| grey[y * stride..y * stride + width].iter().copied())
                    .collect(),
            )
        };

        // One integral-image stride for every scale, so feature offsets are computed once.
        let istride = width + 1;
        if self.packed_stride != istride {
            self.pack_features(istride);
        }
        let needed = istride * (height + 1);
        if self.sum.len() < needed {
            self.sum.resize(needed, 0);
            self.sqsum.resize(needed, 0);
        }
        self.candidates.clear();

        let mut factor = 1.0f64;
        loop {
            let win_w = (ww as f64 * factor).round_ties_even() as usize;
            let win_h = (wh as f64 * factor).round_ties_even() as usize;
            let sw = (width as f64 / factor).round_ties_even() as usize;
            let sh = (height as f64 / factor).round_ties_even() as usize;
            if sw <= ww || sh <= wh || win_w > max_w || win_h > max_h {
                break;
            }
            if win_w >= min_w && win_h >= min_h {
                self.scan_scale(&packed_grey, width, height, sw, sh, factor as f32);
            }
            factor *= self.params.scale_factor;
        }
        Ok(group_rectangles(
            &self.candidates,
            self.params.min_neighbors,
            GROUP_EPS,
        ))
    }

    fn pack_features(&mut self, stride: usize) {
        self.packed = self
            .cascade
            .features
            .iter()
            .map(|f| {
                let mut p = PackedFeature {
                    three: f.rects.len() == 3,
                    ..PackedFeature::default()
                };
                for (o, r) in p.rects.iter_mut().zip(&f.rects) {
                    *o = RectOffsets::new(
                        r.x as usize,
                        r.y as usize,
                        r.w as usize,
                        r.h as usize,
                        r.weight,
                        stride,
                    );
                }
                p
            })
            .collect();
        if let Classifiers::Stumps { stumps, .. } = &self.classifiers {
            self.packed_stumps = stumps
                .iter()
                .map(|s| PackedStump {
                    feature: self.packed[s.feature as usize],
                    threshold: s.threshold,
                    left: s.left,
                    right: s.right,
                })
                .collect();
        }
        self.packed_stride = stride;
    }

    fn scan_scale(
        &mut self,
        grey: &[u8],
        width: usize,
        height: usize,
        sw: usize,
        sh: usize,
        scale: f32,
    ) {
        let istride = self.packed_stride;
        let (ww, wh) = self.cascade.window_size();
        if sw == width && sh == height {
            integral_images(
                grey,
                width,
                height,
                width,
                istride,
                &mut self.sum,
                &mut self.sqsum,
            );
        } else {
            let mut scaled = std::mem::take(&mut self.scaled);
            resize_bilinear(grey, width, height, &mut scaled, sw, sh, &mut self.row_buf);
            integral_images(&scaled, sw, sh, sw, istride, &mut self.sum, &mut self.sqsum);
            self.scaled = scaled;
        }
        // Variance over the window shrunk by a pixel on each side, as OpenCV's `normrect`.
        let norm = RectOffsets::new(1, 1, ww - 2, wh - 2, 1.0, istride);
        let area = ((ww - 2) * (wh - 2)) as f64;
        // A window's slice must reach its bottom-right integral entry.
        let window_span = wh * istride + ww + 1;
        let step = if scale >= 2.0 { 1 } else { 2 };
        let win_w = (ww as f32 * scale).round_ties_even() as i32;
        let win_h = (wh as f32 * scale).round_ties_even() as i32;
        let max_x = sw - ww;
        let max_y = sh - wh;
        let mut y = 0;
        while y <= max_y {
            let mut x = 0;
            while x <= max_x {
                let base = y * istride + x;
                let win = &self.sum[base..base + window_span];
                let sq = &self.sqsum[base..base + window_span];
                let s = norm.sum(win) as f64;
                let sq_sum = norm.sum(sq) as u32 as f64;
                let nf = area * sq_sum - s * s;
                let result = if nf > 0.0 && area / nf.sqrt() < 1.0 / MIN_WINDOW_STDDEV {
                    self.run_window(win, (1.0 / nf.sqrt()) as f32)
                } else {
                    -1
                };
                if result > 0 {
                    self.candidates.push([
                        (x as f32 * scale).round_ties_even() as i32,
                        (y as f32 * scale).round_ties_even() as i32,
                        win_w,
                        win_h,
                    ]);
                }
                if result == 0 {
                    x += step;
                }
                x += step;
            }
            y += step;
        }
    }

    /// 1 when the window passes every stage, else `-index` of the stage it failed.
    #[inline]
    fn run_window(&self, win: &[u32], norm: f32) -> i32 {
        let feature_value = |f: u32| -> f32 { self.packed[f as usize].value(win, norm) };
        match &self.classifiers {
            Classifiers::Stumps { stages, .. } => {
                let mut start = 0;
                for (si, &(end, threshold)) in stages.iter().enumerate() {
                    let mut total = 0.0f32;
                    for s in &self.packed_stumps[start..end] {
                        total += if s.feature.value(win, norm) < s.threshold {
                            s.left
                        } else {
                            s.right
                        };
                    }
                    if total < threshold {
                        return -(si as i32);
                    }
                    start = end;
                }
                1
            }
            Classifiers::Trees => {
                for (si, stage) in self.cascade.stages.iter().enumerate() {
                    let mut total = 0.0f32;
                    for tree in &stage.trees {
                        let mut idx = 0i32;
                        loop {
                            let n = &tree.nodes[idx as usize];
                            idx = if feature_value(n.feature) < n.threshold {
                                n.left
                            } else {
                                n.right
                            };
                            if idx <= 0 {
                                break;
                            }
                        }
                        total += tree.leaves[idx.unsigned_abs() as usize];
                    }
                    if total < stage.threshold {
                        return -(si as i32);
                    }
                }
                1
            }
        }
    }
}

/// `cv::groupRectangles(rects, group_threshold, eps)` keeping the neighbour counts: clusters
/// of similar rectangles are averaged, clusters of at most `group_threshold` rectangles
/// dropped, and a cluster lying inside a bigger, better-supported one dropped too.
pub fn group_rectangles(rects: &[[i32; 4]], group_threshold: u32, eps: f64) -> Vec<HaarFace> {
    if rects.is_empty() {
        return Vec::new();
    }
    if group_threshold == 0 {
        return rects
            .iter()
            .map(|&rect| HaarFace { rect, neighbors: 1 })
            .collect();
    }
    let similar = |a: &[i32; 4], b: &[i32; 4]| -> bool {
        let delta = eps * (a[2].min(b[2]) + a[3].min(b[3])) as f64 * 0.5;
        ((a[0] - b[0]).abs() as f64) <= delta
            && ((a[1] - b[1]).abs() as f64) <= delta
            && ((a[0] + a[2] - b[0] - b[2]).abs() as f64) <= delta
            && ((a[1] + a[3] - b[1] - b[3]).abs() as f64) <= delta
    };
    // Union-find over the similarity graph, as `cv::partition`.
    let mut parent: Vec<usize> = (0..rects.len()).collect();
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for i in 0..rects.len() {
        for j in 0..i {
            if similar(&rects[i], &rects[j]) {
                let (ri, rj) = (find(&mut parent, i), find(&mut parent, j));
                if ri != rj {
                    parent[ri] = rj;
                }
            }
        }
    }
    let mut label_of_root = vec![usize::MAX; rects.len()];
    let mut sums: Vec<[i64; 4]> = Vec::new();
    let mut counts: Vec<u32> = Vec::new();
    for (i, r) in rects.iter().enumerate() {
        let root = find(&mut parent, i);
        if label_of_root[root] == usize::MAX {
            label_of_root[root] = sums.len();
            sums.push([0; 4]);
            counts.push(0);
        }
        let l = label_of_root[root];
        for k in 0..4 {
            sums[l][k] += r[k] as i64;
        }
        counts[l] += 1;
    }
    let averaged: Vec<[i32; 4]> = sums
        .iter()
        .zip(&counts)
        .map(|(s, &n)| {
            let inv = 1.0f32 / n as f32;
            s.map(|v| (v as f32 * inv).round_ties_even() as i32)
        })
        .collect();
    let mut out = Vec::new();
    for (i, r1) in averaged.iter().enumerate() {
        let n1 = counts[i];
        if n1 <= group_threshold {
            continue;
        }
        let inside_better = averaged.iter().enumerate().any(|(j, r2)| {
            let n2 = counts[j];
            if j == i || n2 <= group_threshold {
                return false;
            }
            let dx = (r2[2] as f64 * eps).round_ties_even() as i32;
            let dy = (r2[3] as f64 * eps).round_ties_even() as i32;
            r1[0] >= r2[0] - dx
                && r1[1] >= r2[1] - dy
                && r1[0] + r1[2] <= r2[0] + r2[2] + dx
                && r1[1] + r1[3] <= r2[1] + r2[3] + dy
                && (n2 > 3.max(n1) || n1 < 3)
        });
        if !inside_better {
            out.push(HaarFace {
                rect: *r1,
                neighbors: n1,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4x4 cascade of one stage with one stump on a two-rectangle feature: left half minus
    /// right half of the window's inner 2x2.
    fn tiny_cascade(tilted: &str, nodes: &str) -> String {
        format!(
            r#"<?xml version="1.0"?>
<opencv_storage>
<cascade type_id="opencv-cascade-classifier"><stageType>BOOST</stageType>
  <featureType>HAAR</featureType>
  <height>4</height>
  <width>4</width>
  <stages>
    <_>
      <maxWeakCount>1</maxWeakCount>
      <stageThreshold>0.5</stageThreshold>
      <weakClassifiers>
        <_>
          <internalNodes>{nodes}</internalNodes>
          <leafValues>-1. 1.</leafValues></_></weakClassifiers></_></stages>
  <features>
    <_>
      <rects>
        <_>1 1 1 2 1.</_>
        <_>2 1 1 2 -1.</_></rects>{tilted}</_></features></cascade>
</opencv_storage>"#
        )
    }

    #[test]
    fn reads_a_cascade_and_rejects_broken_ones_by_name() {
        let c = HaarCascade::from_xml(&tiny_cascade("", "0 -1 0 0.1")).unwrap();
        assert_eq!(c.window_size(), (4, 4));
        assert_eq!(c.stage_count(), 1);
        let err =
            HaarCascade::from_xml(&tiny_cascade("<tilted>1</tilted>", "0 -1 0 0.1")).unwrap_err();
        assert!(
            matches!(err, HaarError::TiltedFeature { index: 0 }),
            "{err}"
        );
        let err = HaarCascade::from_xml(&tiny_cascade("", "0 -1 3 0.1")).unwrap_err();
        assert!(err.to_string().contains("uses feature 3"), "{err}");
        let err = HaarCascade::from_xml(&tiny_cascade("", "0 -7 0 0.1")).unwrap_err();
        assert!(err.to_string().contains("child -7"), "{err}");
        let err = HaarCascade::from_xml(&tiny_cascade("", "0 -1 0 zero")).unwrap_err();
        assert!(err.to_string().contains("'zero'"), "{err}");
        let err = HaarCascade::from_xml(
            "<opencv_storage><x type_id=\"opencv-haar-classifier\"/>\
            </opencv_storage>",
        )
        .unwrap_err();
        assert!(matches!(err, HaarError::OldFormat(_)), "{err}");
        assert!(matches!(
            HaarCascade::from_xml("<unclosed>").unwrap_err(),
            HaarError::Xml(_)
        ));
    }

    #[test]
    fn integral_images_sum_every_rectangle() {
        let (w, h) = (7, 5);
        let grey: Vec<u8> = (0..w * h).map(|i| (i * 37 % 251) as u8).collect();
        let stride = w + 3;
        let mut sum = vec![0; stride * (h + 1)];
        let mut sq = vec![0; stride * (h + 1)];
        integral_images(&grey, w, h, w, stride, &mut sum, &mut sq);
        for (x, y, rw, rh) in [(0, 0, 7, 5), (2, 1, 3, 2), (6, 4, 1, 1)] {
            let o = RectOffsets::new(x, y, rw, rh, 1.0, stride);
            let mut direct = 0u32;
            let mut direct_sq = 0u32;
            for yy in y..y + rh {
                for xx in x..x + rw {
                    let v = grey[yy * w + xx] as u32;
                    direct += v;
                    direct_sq += v * v;
                }
            }
            assert_eq!(o.sum(&sum) as u32, direct);
            assert_eq!(o.sum(&sq) as u32, direct_sq);
        }
    }

    #[test]
    fn grouping_merges_similar_windows_and_drops_weak_groups() {
        let rects = [
            [100, 100, 50, 50],
            [102, 98, 52, 52],
            [98, 101, 50, 50],
            [101, 100, 48, 48],
            [300, 300, 40, 40], // alone: dropped at threshold 2
            [300, 302, 40, 40],
        ];
        let faces = group_rectangles(&rects, 2, 0.2);
        assert_eq!(faces.len(), 1);
        // Means of x 100,102,98,101 = 100.25 -> 100, y 99.75 -> 100, size 50.
        assert_eq!(faces[0].rect, [100, 100, 50, 50]);
        assert_eq!(faces[0].neighbors, 4);
        assert_eq!(group_rectangles(&rects, 1, 0.2).len(), 2);
    }

    #[test]
    fn grey_matches_the_fixed_point_formula_at_the_extremes() {
        assert_eq!(grey_of(255, 255, 255), 255);
        assert_eq!(grey_of(0, 0, 0), 0);
        // 0.299 * 255 = 76.2, 0.587 * 255 = 149.7, 0.114 * 255 = 29.1
        assert_eq!(grey_of(255, 0, 0), 76);
        assert_eq!(grey_of(0, 255, 0), 150);
        assert_eq!(grey_of(0, 0, 255), 29);
    }

    #[test]
    fn rejects_frames_that_are_too_small_and_bad_parameters() {
        let c = HaarCascade::from_xml(&tiny_cascade("", "0 -1 0 0.1")).unwrap();
        let mut d = HaarDetector::new(c.clone(), HaarParams::default()).unwrap();
        assert!(matches!(
            d.detect_grey(&[0; 10], 4, 4, 4),
            Err(HaarError::FrameTooSmall { needed: 16, .. })
        ));
        assert!(d.detect_grey(&[0; 16], 4, 4, 4).unwrap().is_empty());
        let bad = HaarParams {
            scale_factor: 1.0,
            ..HaarParams::default()
        };
        assert!(matches!(
            HaarDetector::new(c, bad),
            Err(HaarError::InvalidParam {
                what: "scale factor",
                ..
            })
        ));
    }
}
