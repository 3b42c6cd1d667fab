// SPDX-License-Identifier: MPL-2.0
//! Reference predictions of an exported model through ONNX Runtime, without libtorch and
//! without GStreamer: the data set's `cropped_aligned` crops resampled to the model's input
//! as the training loader does (bilinear, pixel centres, edges clamped, no augmentation),
//! normalised with the model's mean/std, the reader's audio window ending at each frame's
//! time ([`AudioFeatures::window`]), run frame by frame along each track with the recurrent
//! state carried, as a pipeline runs it. What a pipeline of the elements measures on the same
//! videos can be compared with this.
//!
//! `affect-train predict --onnx MODEL --data DIR --split S --out pred.csv`; the model is opened
//! as the elements open theirs (`affect_onnx`: the ONNX Runtime library from `ORT_DYLIB_PATH`,
//! else `libonnxruntime.so` on the loader path, which the set-up installs; the contract read
//! and checked).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use affect_core::contract::{ModelContract, io};
use affect_core::labels::{N_AUS, N_EXPRESSIONS};
use affect_core::metrics;
use affect_onnx::{Model, Provider, SessionOptions};
use ort::session::Session;
use ort::value::TensorRef;
use thiserror::Error;

use crate::data::audio::AudioFeatures;
use crate::data::{AffWild2, DataError, Split, frame_time, load_crop};
use crate::eval::{EvalReport, prediction_header};

#[derive(Debug, Error)]
pub enum OnnxPredictError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("model '{path}': {message}")]
    Model { path: PathBuf, message: String },
    #[error("{0}")]
    Scores(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a model said of one face in one frame.
#[derive(Clone, Debug, PartialEq)]
pub struct FramePrediction {
    pub va: [f32; 2],
    /// Probabilities in ABAW order.
    pub expression: [f32; N_EXPRESSIONS],
    pub au: [f32; N_AUS],
}

impl FramePrediction {
    /// The most probable expression's index.
    pub fn expression_class(&self) -> usize {
        self.expression
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i)
    }
}

/// Predictions keyed by (annotation name, 1-based frame).
pub type Predictions = HashMap<(String, u32), FramePrediction>;

/// An exported model opened on the CPU with its contract.
pub struct OnnxModel {
    session: Session,
    pub contract: ModelContract,
    path: PathBuf,
}

impl OnnxModel {
    /// Opens `path` on the CPU in the process's ONNX Runtime environment (the one the
    /// elements use too), its contract read and checked.
    pub fn open(path: &Path) -> Result<OnnxModel, OnnxPredictError> {
        let model_err = |message: String| OnnxPredictError::Model {
            path: path.to_path_buf(),
            message,
        };
        let options = SessionOptions {
            provider: Provider::Cpu,
            intra_op_threads: 0,
            fallback_to_cpu: false,
        };
        let model = Model::open(path, &options).map_err(model_err)?;
        let contract = model.contract().map_err(|e| model_err(e.to_string()))?;
        let session = model.session;
        if contract.au_labels.len() != N_AUS || contract.expression_labels.len() != N_EXPRESSIONS {
            return Err(model_err(format!(
                "{} AUs and {} expressions; the ABAW scores need {N_AUS} and {N_EXPRESSIONS}",
                contract.au_labels.len(),
                contract.expression_labels.len()
            )));
        }
        Ok(OnnxModel {
            session,
            contract,
            path: path.to_path_buf(),
        })
    }

    /// One face: `face` normalised CHW, `audio` the window when the model takes audio,
    /// `state` the track's state (updated in place) when the model has one.
    pub fn run(
        &mut self,
        face: &[f32],
        audio: Option<&[f32]>,
        state: Option<&mut Vec<f32>>,
    ) -> Result<FramePrediction, OnnxPredictError> {
        let model_err = |message: String| OnnxPredictError::Model {
            path: self.path.clone(),
            message,
        };
        let c = &self.contract;
        let (h, w) = (c.face.height as usize, c.face.width as usize);
        let mut inputs: Vec<(
            std::borrow::Cow<'_, str>,
            ort::session::SessionInputValue<'_>,
        )> = Vec::with_capacity(3);
        inputs.push((
            io::FACE.into(),
            TensorRef::from_array_view(([1, 3, h, w], face))
                .map_err(|e| model_err(e.to_string()))?
                .into(),
        ));
        if let (Some(a), Some(window)) = (&c.audio, audio) {
            inputs.push((
                io::AUDIO.into(),
                TensorRef::from_array_view(([1, 1, a.frames, a.mel.n_mels], window))
                    .map_err(|e| model_err(e.to_string()))?
                    .into(),
            ));
        }
        let state_size = c.state_size;
        if let (Some(s), Some(state)) = (state_size, state.as_deref()) {
            inputs.push((
                io::STATE_IN.into(),
                TensorRef::from_array_view(([1, s], state.as_slice()))
                    .map_err(|e| model_err(e.to_string()))?
                    .into(),
            ));
        }
        let outputs = self
            .session
            .run(inputs)
            .map_err(|e| model_err(format!("inference failed: {e}")))?;
        let take = |name: &str, n: usize| -> Result<Vec<f32>, OnnxPredictError> {
            let (_, v) = outputs[name]
                .try_extract_tensor::<f32>()
                .map_err(|e| model_err(format!("output '{name}': {e}")))?;
            if v.len() != n {
                return Err(model_err(format!(
                    "output '{name}' holds {} values, {n} expected",
                    v.len()
                )));
            }
            Ok(v.to_vec())
        };
        let va = take(io::VALENCE_AROUSAL, 2)?;
        let au = take(io::AU, N_AUS)?;
        let expression = take(io::EXPRESSION, N_EXPRESSIONS)?;
        if let (Some(s), Some(state)) = (state_size, state) {
            *state = take(io::STATE_OUT, s)?;
        }
        let mut p = FramePrediction {
            va: [va[0], va[1]],
            expression: [0.0; N_EXPRESSIONS],
            au: [0.0; N_AUS],
        };
        p.expression.copy_from_slice(&expression);
        p.au.copy_from_slice(&au);
        Ok(p)
    }
}

/// Resamples an RGB8 crop to `width`x`height` (bilinear at pixel centres, edges clamped: the
/// training loader's resampling without augmentation) and normalises it into CHW floats.
pub fn crop_tensor(rgb: &[u8], w: u32, h: u32, spec: &affect_core::contract::FaceSpec) -> Vec<f32> {
    let (ow, oh) = (spec.width as usize, spec.height as usize);
    let plane = ow * oh;
    let mut out = vec![0.0; 3 * plane];
    for y in 0..oh {
        let sy = (y as f32 + 0.5) / oh as f32 * h as f32 - 0.5;
        for x in 0..ow {
            let sx = (x as f32 + 0.5) / ow as f32 * w as f32 - 0.5;
            let pixel = crate::data::bilinear_rgb(rgb, w, h, sx, sy);
            for (c, level) in pixel.iter().enumerate() {
                let value = (level / 255.0).clamp(0.0, 1.0);
                out[c * plane + y * ow + x] = (value - spec.mean[c]) / spec.std[c];
            }
        }
    }
    out
}

/// Runs `model` over every crop of `split`, frame by frame along each track (annotation
/// name) with the state carried; frames without a crop are not run.
pub fn predict_split(
    model: &mut OnnxModel,
    data: &AffWild2,
    split: Split,
) -> Result<Predictions, OnnxPredictError> {
    let (samples, _) = data.samples(split)?;
    let mut by_track: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, s) in samples.iter().enumerate() {
        by_track.entry(s.name.clone()).or_default().push(i);
    }
    let mut audio_of: HashMap<String, (AudioFeatures, f64)> = HashMap::new();
    let mut preds = Predictions::new();
    let mut window = Vec::new();
    for (_, mut idx) in by_track {
        idx.sort_by_key(|&i| samples[i].frame);
        let mut state = model.contract.state_size.map(|s| vec![0.0; s]);
        for i in idx {
            let s = &samples[i];
            let audio = match &model.contract.audio {
                None => None,
                Some(spec) => {
                    if !audio_of.contains_key(&s.video) {
                        let path = data.video_path(&s.video)?;
                        let (features, fps) = AudioFeatures::from_file(&path, spec.mel.clone())?;
                        let fps = fps.ok_or_else(|| DataError::Media {
                            path: path.clone(),
                            message: "the video has no frame rate".into(),
                        })?;
                        audio_of.insert(s.video.clone(), (features, fps));
                    }
                    let (features, fps) = &audio_of[&s.video];
                    features.window(frame_time(s.frame, *fps), spec.frames, &mut window);
                    Some(window.as_slice())
                }
            };
            let (rgb, w, h) = load_crop(&s.crop)?;
            let face = crop_tensor(&rgb, w, h, &model.contract.face);
            let p = model.run(&face, audio, state.as_mut())?;
            preds.insert((s.name.clone(), s.frame), p);
        }
    }
    Ok(preds)
}

/// An annotated frame: annotation name, 1-based frame, prediction.
type Row = (String, u32, FramePrediction);

/// Every annotated frame of `split` with its prediction; a frame without one keeps its
/// track's previous prediction (as a pipeline holding its last result would), before any a
/// neutral one. Returns the rows and how many were held.
fn rows(
    data: &AffWild2,
    split: Split,
    preds: &Predictions,
) -> Result<(Vec<Row>, usize), OnnxPredictError> {
    let neutral = FramePrediction {
        va: [0.0; 2],
        expression: [0.0; N_EXPRESSIONS],
        au: [0.0; N_AUS],
    };
    let mut out = Vec::new();
    let mut held = 0;
    for name in data.names(split)? {
        let mut last = &neutral;
        for (k, l) in data.labels(split, &name)?.iter().enumerate() {
            let frame = k as u32 + 1;
            match preds.get(&(name.clone(), frame)) {
                Some(p) => last = p,
                None if !l.is_empty() => held += 1,
                None => {}
            }
            if !l.is_empty() {
                out.push((name.clone(), frame, last.clone()));
            }
        }
    }
    Ok((out, held))
}

/// Writes the prediction CSV `affect-train eval` reads; returns (rows, held frames).
pub fn write_predictions(
    data: &AffWild2,
    split: Split,
    preds: &Predictions,
    out: &Path,
) -> Result<(usize, usize), OnnxPredictError> {
    let io_err = |source| OnnxPredictError::Io {
        path: out.to_path_buf(),
        source,
    };
    let (rows, held) = rows(data, split, preds)?;
    let mut w = std::io::BufWriter::new(std::fs::File::create(out).map_err(io_err)?);
    writeln!(w, "{}", prediction_header()).map_err(io_err)?;
    for (name, frame, p) in &rows {
        let aus: Vec<String> = p.au.iter().map(|a| format!("{a:.4}")).collect();
        writeln!(
            w,
            "{name},{frame},{:.5},{:.5},{},{}",
            p.va[0],
            p.va[1],
            p.expression_class(),
            aus.join(",")
        )
        .map_err(io_err)?;
    }
    w.flush().map_err(io_err)?;
    Ok((rows.len(), held))
}

/// ABAW scores (P_VA, P_EXPR, P_AU) of `preds` over every annotated frame of `splits`
/// pooled, frames without a prediction holding the previous one.
pub fn score(
    data: &AffWild2,
    splits: &[Split],
    preds: &Predictions,
) -> Result<EvalReport, OnnxPredictError> {
    let (mut pv, mut pa, mut gv, mut ga) = (vec![], vec![], vec![], vec![]);
    let (mut pe, mut ge) = (vec![], vec![]);
    let (mut pau, mut gau) = (vec![], vec![]);
    for &split in splits {
        let (rows, _) = rows(data, split, preds)?;
        let mut labels: HashMap<String, Vec<crate::data::Labels>> = HashMap::new();
        for (name, frame, p) in rows {
            if !labels.contains_key(&name) {
                labels.insert(name.clone(), data.labels(split, &name)?);
            }
            let l = &labels[&name][frame as usize - 1];
            if let Some([v, a]) = l.va {
                pv.push(p.va[0]);
                pa.push(p.va[1]);
                gv.push(v);
                ga.push(a);
            }
            if let Some(e) = l.expression {
                pe.push(p.expression_class());
                ge.push(e);
            }
            if let Some(au) = l.au {
                pau.extend(p.au.iter().map(|&x| (x >= 0.5) as u8));
                gau.extend_from_slice(&au);
            }
        }
    }
    let e = |e: metrics::MetricError| OnnxPredictError::Scores(e.to_string());
    Ok(EvalReport {
        va: (!gv.is_empty())
            .then(|| metrics::va_scores(&pv, &pa, &gv, &ga))
            .transpose()
            .map_err(e)?,
        expr: (!ge.is_empty())
            .then(|| metrics::expr_scores(&pe, &ge, N_EXPRESSIONS))
            .transpose()
            .map_err(e)?,
        au: (!gau.is_empty())
            .then(|| metrics::au_scores(&pau, &gau, N_AUS))
            .transpose()
            .map_err(e)?,
        frames: [gv.len(), ge.len(), gau.len() / N_AUS],
    })
}

/// Predicts `split` with the ONNX model at `model` and writes the prediction CSV to `out`.
pub fn predict_to_csv(
    model: &Path,
    data: &AffWild2,
    split: Split,
    out: &Path,
) -> Result<(usize, usize), OnnxPredictError> {
    let mut m = OnnxModel::open(model)?;
    let preds = predict_split(&mut m, data, split)?;
    write_predictions(data, split, &preds, out)
}
