// SPDX-License-Identifier: MPL-2.0
//! Single-shot ONNX face detectors (BlazeFace, YuNet, SCRFD, UltraFace) run through ONNX
//! Runtime for `affectfacecrop`: the session, the input tensor filled from a frame, and the
//! tiles BlazeFace's small fixed input needs to see small faces. Decoding is `affect-core`'s
//! [`DetectorLayout`]; this module only moves tensors.

use std::path::{Path, PathBuf};

use affect_core::detect::{
    DetectParams, Detection, DetectorLayout, OutputInfo, TensorLayout, TensorView, merge_tiles,
    square_tiles,
};

use crate::session::{self, Provider, SessionOptions};

/// The BlazeFace file `detector=blazeface` (and `auto` on streams) runs: the back-camera
/// model, whose 256x256 input finds faces of 16 input pixels and up.
pub const BLAZEFACE_FILE: &str = "blazeface-back.onnx";

/// The first folder of `dirs` holding [`BLAZEFACE_FILE`], as its path.
pub fn find_blazeface(dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter()
        .map(|d| d.join(BLAZEFACE_FILE))
        .find(|p| p.is_file())
}

/// Why a detector file cannot be used.
#[derive(Debug)]
pub enum OpenError {
    /// The file cannot be read or is no ONNX model ONNX Runtime loads.
    Session(String),
    /// The model loads but is no face detector this crate decodes.
    Format(String),
}

/// A loaded ONNX face detector.
pub struct OrtDetector {
    session: ort::session::Session,
    input_name: String,
    output_names: Vec<String>,
    pub layout: DetectorLayout,
    pub provider: Provider,
    input: Vec<f32>,
    /// Model runs of the last frame (tiles and the whole frame).
    pub runs: usize,
}

impl OrtDetector {
    /// Opens `path` and recognises its output layout.
    pub fn open(path: &Path, options: &SessionOptions) -> Result<Self, OpenError> {
        let (session, provider) = session::open(path, options).map_err(OpenError::Session)?;
        let input = session
            .inputs()
            .first()
            .ok_or_else(|| OpenError::Format(format!("'{}' has no input", path.display())))?;
        let input_name = input.name().to_string();
        let shape_of = |t: &ort::value::ValueType| match t {
            ort::value::ValueType::Tensor { shape, .. } => shape.to_vec(),
            _ => Vec::new(),
        };
        let input_shape = shape_of(input.dtype());
        let outputs: Vec<OutputInfo> = session
            .outputs()
            .iter()
            .map(|o| OutputInfo::new(o.name(), &shape_of(o.dtype())))
            .collect();
        let layout = DetectorLayout::recognize(&input_shape, &outputs)
            .map_err(|e| OpenError::Format(format!("'{}': {e}", path.display())))?;
        Ok(Self {
            input: vec![0.0; layout.preprocess().tensor_len()],
            output_names: outputs.into_iter().map(|o| o.name).collect(),
            session,
            input_name,
            layout,
            provider,
            runs: 0,
        })
    }

    /// The faces of a packed RGB frame, in frame pixels. A BlazeFace model searches the whole
    /// frame and, when faces of `min_face` pixels would be too small for it there, square tiles
    /// of the frame as well (see [`DetectorLayout::tile_side`]).
    pub fn detect(
        &mut self,
        rgb: &[u8],
        stride: usize,
        width: usize,
        height: usize,
        params: &DetectParams,
        min_face: f32,
    ) -> Result<Vec<Detection>, String> {
        self.runs = 0;
        let Some(side) = self.layout.tile_side(width, height, min_face) else {
            return self.detect_region(rgb, stride, [0, 0, width, height], params);
        };
        let mut all = self.detect_region(rgb, stride, [0, 0, width, height], params)?;
        for tile in square_tiles(width, height, side) {
            all.extend(self.detect_region(rgb, stride, tile, params)?);
        }
        Ok(merge_tiles(all, params.nms_iou, params.max_faces))
    }

    /// One model run on the region `[x, y, w, h]` of the frame; faces in frame pixels.
    fn detect_region(
        &mut self,
        rgb: &[u8],
        stride: usize,
        [x, y, w, h]: [usize; 4],
        params: &DetectParams,
    ) -> Result<Vec<Detection>, String> {
        self.runs += 1;
        let pre = self.layout.preprocess();
        let letterbox = pre.letterbox(w, h).map_err(|e| e.to_string())?;
        let start = y * stride + x * 3;
        let region = rgb
            .get(start..)
            .ok_or_else(|| format!("frame of {} bytes has no pixel ({x}, {y})", rgb.len()))?;
        let tensor_layout: TensorLayout = self.layout.tensor_layout();
        pre.fill_tensor(region, stride, &letterbox, &mut self.input, tensor_layout)
            .map_err(|e| e.to_string())?;
        let shape = self.layout.input_shape();
        let tensor = ort::value::TensorRef::from_array_view((shape, self.input.as_slice()))
            .map_err(|e| format!("cannot make the detector input: {e}"))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => tensor])
            .map_err(|e| format!("face detector run failed: {e}"))?;
        let mut owned: Vec<(&str, Vec<usize>, &[f32])> = Vec::new();
        for name in &self.output_names {
            let value = outputs
                .get(name.as_str())
                .ok_or_else(|| format!("detector output '{name}' is missing"))?;
            let (shape, values) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| format!("detector output '{name}' is not f32: {e}"))?;
            owned.push((
                name.as_str(),
                shape.iter().map(|&d| d.max(0) as usize).collect(),
                values,
            ));
        }
        let views: Vec<TensorView<'_>> = owned
            .iter()
            .map(|(n, s, v)| TensorView::new(n, s, v))
            .collect();
        let mut faces = self
            .layout
            .detect(&views, &letterbox, params)
            .map_err(|e| e.to_string())?;
        let (dx, dy) = (x as f32, y as f32);
        for f in &mut faces {
            f.bbox = [
                f.bbox[0] + dx,
                f.bbox[1] + dy,
                f.bbox[2] + dx,
                f.bbox[3] + dy,
            ];
            if let Some(l) = f.landmarks.as_mut() {
                for p in l.iter_mut() {
                    p[0] += dx;
                    p[1] += dy;
                }
            }
        }
        Ok(faces)
    }
}
