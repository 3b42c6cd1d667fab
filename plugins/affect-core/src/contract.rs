// SPDX-License-Identifier: MPL-2.0
//! The ONNX model contract: tensor names, `metadata_props` keys, and a typed
//! [`ModelContract`] parsed from a model's metadata with one clear error per violation.
//!
//! A model file carries everything a pipeline needs to use it correctly (no side-car files):
//!
//! | input / output    | type | shape        | notes                                   |
//! |-------------------|------|--------------|-----------------------------------------|
//! | `face`            | f32  | `[N,C,H,W]`  | C = 3 (RGB) or 1 (grey, BT.601 luma), `(x/255 - mean) / std` per channel |
//! | `audio` (opt.)    | f32  | `[N,1,T,M]`  | log-mel window of `T` frames, `M` mels  |
//! | `state_in` (opt.) | f32  | `[N,S]`      | recurrent state of the face track       |
//! | `valence_arousal` | f32  | `[N,2]`      | tanh                                    |
//! | `au`              | f32  | `[N,A]`      | sigmoid, one per AU label               |
//! | `expression`      | f32  | `[N,C]`      | softmax, one per expression label       |
//! | `embedding` (opt.)| f32  | `[N,D]`      |                                         |
//! | `state_out` (opt.)| f32  | `[N,S]`      | present exactly when `state_in` is      |
//!
//! The batch axis `N` is dynamic.
//!
//! Version 2 (what this code writes for partial models) lets a model have any non-empty
//! subset of the three heads, named by `affect.heads` (e.g. `expression`); the label keys are
//! required exactly for the heads present (`affect.labels.au` for `au`,
//! `affect.labels.expression` for `expression`). `affect.face.channels` = 1 makes the face
//! input the grey (ITU-R BT.601 luma, `0.299 R + 0.587 G + 0.114 B`) of the same crop, with a
//! single mean and std (or three equal ones). Inputs in `[-1, 1]` (`x / 255 * 2 - 1`) are
//! mean 0.5, std 0.5: no range key is needed. Version-1 files (no `affect.heads`, all three
//! heads, RGB) load unchanged.

use std::collections::BTreeMap;
use std::fmt;

use crate::melspec::{MelConfig, MelNorm, MelScale, WindowKind};

/// The newest version of the contract this code reads and writes (it reads 1 and 2).
pub const CONTRACT_VERSION: u32 = 2;
/// Version 1: all three heads, RGB faces.
pub const CONTRACT_VERSION_1: u32 = 1;

/// Tensor names.
pub mod io {
    pub const FACE: &str = "face";
    pub const AUDIO: &str = "audio";
    pub const STATE_IN: &str = "state_in";
    pub const VALENCE_AROUSAL: &str = "valence_arousal";
    pub const AU: &str = "au";
    pub const EXPRESSION: &str = "expression";
    pub const EMBEDDING: &str = "embedding";
    pub const STATE_OUT: &str = "state_out";
}

/// `metadata_props` keys.
/// The largest sizes a model file may declare. Face models are trained on crops of 48 to 512
/// pixels and audio windows of a few seconds; a file that claims more (say a 100000 x 100000
/// face) is broken, and taking it at its word would allocate gigabytes per face.
pub mod limits {
    /// Height or width of the face crop, in pixels.
    pub const FACE_SIDE: usize = 2048;
    /// Spectrogram frames of the audio window (a minute at a 10 ms hop).
    pub const AUDIO_FRAMES: usize = 6000;
    /// FFT size, window and hop, in samples.
    pub const AUDIO_SAMPLES: usize = 1 << 16;
    /// Mel bands.
    pub const N_MELS: usize = 1024;
    /// Recurrent state values per face.
    pub const STATE_SIZE: usize = 1 << 16;
}

pub mod keys {
    /// Contract version, e.g. `1`. Required.
    pub const CONTRACT: &str = "affect.contract";
    /// Face crop height and width in pixels. Required.
    pub const FACE_HEIGHT: &str = "affect.face.height";
    pub const FACE_WIDTH: &str = "affect.face.width";
    /// Per-channel (R,G,B) mean and std applied to pixel values scaled to [0, 1]. Required.
    pub const FACE_MEAN: &str = "affect.face.mean";
    pub const FACE_STD: &str = "affect.face.std";
    /// How the crop is made: `arcface-5pt` (similarity transform of the 5 landmarks to the
    /// ArcFace template) or `box` (the detection box with a margin). Required.
    pub const FACE_ALIGNMENT: &str = "affect.face.alignment";
    /// Relative margin added around the box for `box` alignment (default 0).
    pub const FACE_BOX_MARGIN: &str = "affect.face.box_margin";
    /// `3` (RGB, the default) or `1` (grey); version 2.
    pub const FACE_CHANNELS: &str = "affect.face.channels";
    /// The heads the model has, comma-separated (`valence_arousal`, `au`, `expression`);
    /// required in version 2, all three in version 1.
    pub const HEADS: &str = "affect.heads";
    /// Audio features, required when the model has an `audio` input.
    pub const AUDIO_SAMPLE_RATE: &str = "affect.audio.sample_rate";
    pub const AUDIO_N_FFT: &str = "affect.audio.n_fft";
    pub const AUDIO_WIN: &str = "affect.audio.win";
    pub const AUDIO_HOP: &str = "affect.audio.hop";
    pub const AUDIO_N_MELS: &str = "affect.audio.n_mels";
    /// Spectrogram frames in one window (`T` of the `audio` input).
    pub const AUDIO_FRAMES: &str = "affect.audio.frames";
    /// Optional, defaulting to the `MelConfig` defaults.
    pub const AUDIO_F_MIN: &str = "affect.audio.f_min";
    pub const AUDIO_F_MAX: &str = "affect.audio.f_max";
    pub const AUDIO_MEL_SCALE: &str = "affect.audio.mel_scale";
    pub const AUDIO_MEL_NORM: &str = "affect.audio.mel_norm";
    pub const AUDIO_WINDOW: &str = "affect.audio.window";
    pub const AUDIO_POWER: &str = "affect.audio.power";
    pub const AUDIO_LOG_OFFSET: &str = "affect.audio.log_offset";
    /// Comma-separated label lists, in output order. Required.
    pub const LABELS_AU: &str = "affect.labels.au";
    pub const LABELS_EXPRESSION: &str = "affect.labels.expression";
    /// Recurrent state width `S`, required when the model has `state_in`.
    pub const STATE_SIZE: &str = "affect.state.size";
    /// Provenance, all optional free text.
    pub const MODEL_NAME: &str = "affect.model.name";
    pub const PROVENANCE_BACKBONE: &str = "affect.provenance.backbone";
    pub const PROVENANCE_TRAINING_DATA: &str = "affect.provenance.training_data";
    pub const PROVENANCE_DATE: &str = "affect.provenance.date";
    pub const PROVENANCE_COMMAND: &str = "affect.provenance.command";
    /// Where an imported model's weights came from (package, version, file).
    pub const PROVENANCE_SOURCE: &str = "affect.provenance.source";
    pub const PROVENANCE_LICENSE: &str = "affect.provenance.license";
    /// SHA-256 of the weights file the model was made from.
    pub const PROVENANCE_WEIGHTS_SHA256: &str = "affect.provenance.weights_sha256";
}

/// A way the model file breaks the contract. Every message names the key or tensor at fault.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ContractError {
    #[error("metadata key '{0}' is missing")]
    MissingKey(&'static str),
    #[error("metadata key '{key}' = '{value}' is not valid: {reason}")]
    BadValue {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "contract version {got} is not supported (this build reads versions 1 to \
         {CONTRACT_VERSION})"
    )]
    UnsupportedVersion { got: u32 },
    #[error("metadata key '{key}' is given but the model has no {head} head")]
    LabelsWithoutHead {
        key: &'static str,
        head: &'static str,
    },
    #[error("the model has no {kind} named '{name}'")]
    MissingTensor {
        kind: &'static str,
        name: &'static str,
    },
    #[error("{kind} '{name}' has shape {got}, the contract needs {expected}")]
    BadShape {
        kind: &'static str,
        name: String,
        got: String,
        expected: String,
    },
    #[error("{kind} '{name}' has element type {got}, the contract needs f32")]
    BadType {
        kind: &'static str,
        name: String,
        got: String,
    },
    #[error("the model has '{present}' but not '{missing}': recurrent state needs both")]
    UnpairedState {
        present: &'static str,
        missing: &'static str,
    },
}

/// One output head of a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Head {
    ValenceArousal,
    Au,
    Expression,
}

impl Head {
    pub const ALL: [Head; 3] = [Head::ValenceArousal, Head::Au, Head::Expression];

    /// The output tensor's name, which is also the head's name in `affect.heads`.
    pub fn name(self) -> &'static str {
        match self {
            Head::ValenceArousal => io::VALENCE_AROUSAL,
            Head::Au => io::AU,
            Head::Expression => io::EXPRESSION,
        }
    }

    /// The head named `name`.
    pub fn from_name(name: &str) -> Option<Head> {
        Head::ALL.into_iter().find(|h| h.name() == name)
    }

    /// The names of a comma-separated list of heads (`affect.heads`, `affectinfer`'s `heads`),
    /// in order, blanks around and between them skipped: each one's head, or the name itself
    /// when no head has it.
    pub fn parse_list(list: &str) -> impl Iterator<Item = Result<Head, &str>> {
        list.split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| Head::from_name(n).ok_or(n))
    }
}

impl fmt::Display for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The heads a model has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Heads {
    pub valence_arousal: bool,
    pub au: bool,
    pub expression: bool,
}

impl Heads {
    pub const ALL: Heads = Heads {
        valence_arousal: true,
        au: true,
        expression: true,
    };

    pub const NONE: Heads = Heads {
        valence_arousal: false,
        au: false,
        expression: false,
    };

    /// Adds `head`; false when it was there already.
    pub fn insert(&mut self, head: Head) -> bool {
        let flag = match head {
            Head::ValenceArousal => &mut self.valence_arousal,
            Head::Au => &mut self.au,
            Head::Expression => &mut self.expression,
        };
        !std::mem::replace(flag, true)
    }

    pub fn has(&self, head: Head) -> bool {
        match head {
            Head::ValenceArousal => self.valence_arousal,
            Head::Au => self.au,
            Head::Expression => self.expression,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Head> + '_ {
        Head::ALL.into_iter().filter(|h| self.has(*h))
    }

    /// The heads both have.
    pub fn overlap(&self, other: &Heads) -> Vec<Head> {
        self.iter().filter(|h| other.has(*h)).collect()
    }

    /// `valence_arousal,au,expression` (the present ones, in that order).
    pub fn list(&self) -> String {
        self.iter().map(Head::name).collect::<Vec<_>>().join(",")
    }
}

/// How the face crop is made from a detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alignment {
    /// Similarity transform of the 5 landmarks onto the ArcFace template, scaled to the crop.
    ArcFace5Point,
    /// The detection box (plus margin), resized to the crop.
    Box,
}

impl Alignment {
    pub fn as_str(&self) -> &'static str {
        match self {
            Alignment::ArcFace5Point => "arcface-5pt",
            Alignment::Box => "box",
        }
    }
}

impl fmt::Display for Alignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Face input of a model.
#[derive(Clone, Debug, PartialEq)]
pub struct FaceSpec {
    pub height: u32,
    pub width: u32,
    /// 3 (RGB) or 1 (grey).
    pub channels: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub alignment: Alignment,
    pub box_margin: f32,
}

impl FaceSpec {
    /// The map from frame pixels to this model's crop for a face with box `[x1, y1, x2, y2]`
    /// and, when known, its 5 landmarks. A landmark model given a face without landmarks gets
    /// the box crop (with the model's box margin): the nearest framing there is.
    pub fn crop_transform(
        &self,
        bbox: [f32; 4],
        landmarks: Option<&[[f32; 2]; 5]>,
    ) -> Result<crate::align::Similarity, crate::align::AlignError> {
        match (self.alignment, landmarks) {
            (Alignment::ArcFace5Point, Some(l)) => {
                crate::align::Similarity::to_arcface(l, self.width.min(self.height))
            }
            _ => crate::align::box_crop_transform(
                [bbox[0], bbox[1], bbox[2] - bbox[0], bbox[3] - bbox[1]],
                self.box_margin,
                self.width.min(self.height),
            ),
        }
    }

    /// Values of one face in the model's input: `channels x H x W`.
    pub fn tensor_len(&self) -> usize {
        (self.channels * self.width * self.height) as usize
    }

    /// Fills a `[C, H, W]` tensor from a packed RGB8 crop of this size: `(v / 255 - mean) /
    /// std` per channel, the normalisation the model was trained with; for grey models `v` is
    /// the crop's BT.601 luma `0.299 R + 0.587 G + 0.114 B` (unrounded) and the first mean and
    /// std apply.
    pub fn normalize_into(&self, crop: &[u8], out: &mut [f32]) {
        let plane = (self.width * self.height) as usize;
        debug_assert_eq!(crop.len(), plane * 3);
        debug_assert_eq!(out.len(), plane * self.channels as usize);
        if self.channels == 1 {
            let scale = 1.0 / (255.0 * self.std[0]);
            let shift = self.mean[0] / self.std[0];
            for (o, px) in out[..plane].iter_mut().zip(crop.chunks_exact(3)) {
                let y = 0.299 * px[0] as f32 + 0.587 * px[1] as f32 + 0.114 * px[2] as f32;
                *o = y * scale - shift;
            }
            return;
        }
        for c in 0..3 {
            let scale = 1.0 / (255.0 * self.std[c]);
            let shift = self.mean[c] / self.std[c];
            for (o, px) in out[c * plane..(c + 1) * plane]
                .iter_mut()
                .zip(crop.chunks_exact(3))
            {
                *o = px[c] as f32 * scale - shift;
            }
        }
    }
}

/// Audio input of a model: the spectrogram it was trained on and the window length.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioSpec {
    pub mel: MelConfig,
    pub frames: usize,
}

/// Everything the metadata of a contract model says, typed and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelContract {
    pub version: u32,
    pub face: FaceSpec,
    /// The heads the model has (all three in version 1).
    pub heads: Heads,
    pub audio: Option<AudioSpec>,
    pub state_size: Option<usize>,
    /// Labels of the `au` head (empty without one).
    pub au_labels: Vec<String>,
    /// Labels of the `expression` head (empty without one).
    pub expression_labels: Vec<String>,
    pub name: Option<String>,
    /// Provenance and any other `affect.*` keys not interpreted above, kept for display.
    pub provenance: BTreeMap<String, String>,
}

/// Element type and dimensions of one model input or output (`None` = dynamic axis).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub is_f32: bool,
    /// Element type as the runtime names it, for messages.
    pub type_name: String,
    pub dims: Vec<Option<i64>>,
}

impl TensorSpec {
    pub fn f32(name: &str, dims: &[Option<i64>]) -> Self {
        Self {
            name: name.to_string(),
            is_f32: true,
            type_name: "f32".to_string(),
            dims: dims.to_vec(),
        }
    }
}

fn shape_string(dims: &[Option<i64>]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| d.map_or_else(|| "?".to_string(), |v| v.to_string()))
        .collect();
    format!("[{}]", parts.join(","))
}

/// What the contract asks of one axis.
#[derive(Clone, Copy, Debug)]
enum Axis {
    /// The batch axis: must be dynamic.
    Batch,
    /// A fixed size that a dynamic axis also satisfies.
    Is(i64),
}

fn expected_string(axes: &[Axis]) -> String {
    let parts: Vec<String> = axes
        .iter()
        .map(|a| match a {
            Axis::Batch => "N".to_string(),
            Axis::Is(v) => v.to_string(),
        })
        .collect();
    format!("[{}]", parts.join(","))
}

fn check_tensor(kind: &'static str, t: &TensorSpec, axes: &[Axis]) -> Result<(), ContractError> {
    if !t.is_f32 {
        return Err(ContractError::BadType {
            kind,
            name: t.name.clone(),
            got: t.type_name.clone(),
        });
    }
    let ok = t.dims.len() == axes.len()
        && t.dims.iter().zip(axes).all(|(d, a)| match (a, d) {
            // A fixed batch axis would break batching across faces and frames.
            (Axis::Batch, d) => d.is_none() || *d == Some(-1),
            (Axis::Is(_), None) | (Axis::Is(_), Some(-1)) => true,
            (Axis::Is(v), Some(d)) => d == v,
        });
    if ok {
        Ok(())
    } else {
        Err(ContractError::BadShape {
            kind,
            name: t.name.clone(),
            got: shape_string(&t.dims),
            expected: expected_string(axes),
        })
    }
}

/// Reads typed values out of the metadata map, naming the key on failure.
struct Meta<'a>(&'a BTreeMap<String, String>);

impl Meta<'_> {
    fn raw(&self, key: &'static str) -> Option<&str> {
        self.0.get(key).map(|v| v.trim())
    }

    fn required(&self, key: &'static str) -> Result<&str, ContractError> {
        self.raw(key).ok_or(ContractError::MissingKey(key))
    }

    fn parse<T: std::str::FromStr>(
        &self,
        key: &'static str,
        value: &str,
    ) -> Result<T, ContractError>
    where
        T::Err: fmt::Display,
    {
        value.parse::<T>().map_err(|e| ContractError::BadValue {
            key,
            value: value.to_string(),
            reason: e.to_string(),
        })
    }

    fn required_parse<T: std::str::FromStr>(&self, key: &'static str) -> Result<T, ContractError>
    where
        T::Err: fmt::Display,
    {
        let v = self.required(key)?;
        self.parse(key, v)
    }

    fn optional_parse<T: std::str::FromStr>(
        &self,
        key: &'static str,
    ) -> Result<Option<T>, ContractError>
    where
        T::Err: fmt::Display,
    {
        self.raw(key).map(|v| self.parse(key, v)).transpose()
    }

    fn positive(&self, key: &'static str) -> Result<usize, ContractError> {
        let v: usize = self.required_parse(key)?;
        if v == 0 {
            return Err(ContractError::BadValue {
                key,
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(v)
    }

    /// A positive size no larger than `max`: a file that claims more is broken or hostile,
    /// and would make every user allocate for it.
    fn bounded(&self, key: &'static str, max: usize) -> Result<usize, ContractError> {
        let v = self.positive(key)?;
        if v > max {
            return Err(ContractError::BadValue {
                key,
                value: v.to_string(),
                reason: format!("must be at most {max}"),
            });
        }
        Ok(v)
    }

    /// Three comma-separated numbers; with `single_ok`, one number stands for all three.
    fn triple(
        &self,
        key: &'static str,
        positive: bool,
        single_ok: bool,
    ) -> Result<[f32; 3], ContractError> {
        let v = self.required(key)?;
        let bad = |reason: &str| ContractError::BadValue {
            key,
            value: v.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<f32> = v
            .split(',')
            .map(|p| p.trim().parse::<f32>())
            .collect::<Result<_, _>>()
            .map_err(|e| {
                bad(&format!(
                    "{e}; expected three comma-separated numbers (R,G,B)"
                ))
            })?;
        let parts = if single_ok && parts.len() == 1 {
            vec![parts[0]; 3]
        } else {
            parts
        };
        let arr: [f32; 3] = parts.try_into().map_err(|_| {
            bad(if single_ok {
                "expected one number (grey) or three comma-separated numbers"
            } else {
                "expected three comma-separated numbers (R,G,B)"
            })
        })?;
        if arr.iter().any(|x| !x.is_finite()) || (positive && arr.iter().any(|&x| x <= 0.0)) {
            return Err(bad(if positive {
                "every value must be finite and > 0"
            } else {
                "every value must be finite"
            }));
        }
        Ok(arr)
    }

    fn labels(&self, key: &'static str) -> Result<Vec<String>, ContractError> {
        let v = self.required(key)?;
        let labels: Vec<String> = v.split(',').map(|s| s.trim().to_string()).collect();
        if labels.iter().any(|l| l.is_empty()) {
            return Err(ContractError::BadValue {
                key,
                value: v.to_string(),
                reason: "expected a comma-separated list of non-empty labels".into(),
            });
        }
        Ok(labels)
    }

    /// The heads the model has: all three in version 1, else those `affect.heads` names.
    fn heads(&self, version: u32) -> Result<Heads, ContractError> {
        if version == CONTRACT_VERSION_1 {
            return Ok(Heads::ALL);
        }
        let v = self.required(keys::HEADS)?;
        let bad = |reason: String| ContractError::BadValue {
            key: keys::HEADS,
            value: v.to_string(),
            reason,
        };
        let mut heads = Heads::NONE;
        for head in Head::parse_list(v) {
            let head = head.map_err(|other| {
                bad(format!(
                    "unknown head '{other}' (expected valence_arousal, au, expression)"
                ))
            })?;
            if !heads.insert(head) {
                return Err(bad(format!("head '{head}' is named twice")));
            }
        }
        if heads.iter().next().is_none() {
            return Err(bad("a model needs at least one head".into()));
        }
        Ok(heads)
    }

    /// The face input: size, channels (RGB in version 1), normalisation and alignment.
    fn face(&self, version: u32) -> Result<FaceSpec, ContractError> {
        let channels: u32 = if version == CONTRACT_VERSION_1 {
            3
        } else {
            self.optional_parse(keys::FACE_CHANNELS)?.unwrap_or(3)
        };
        if channels != 1 && channels != 3 {
            return Err(ContractError::BadValue {
                key: keys::FACE_CHANNELS,
                value: channels.to_string(),
                reason: "must be 1 (grey) or 3 (RGB)".into(),
            });
        }
        let alignment = match self.required(keys::FACE_ALIGNMENT)? {
            "arcface-5pt" => Alignment::ArcFace5Point,
            "box" => Alignment::Box,
            other => {
                return Err(ContractError::BadValue {
                    key: keys::FACE_ALIGNMENT,
                    value: other.to_string(),
                    reason: "expected 'arcface-5pt' or 'box'".into(),
                });
            }
        };
        let box_margin: f32 = self.optional_parse(keys::FACE_BOX_MARGIN)?.unwrap_or(0.0);
        if !(box_margin.is_finite() && box_margin >= 0.0) {
            return Err(ContractError::BadValue {
                key: keys::FACE_BOX_MARGIN,
                value: box_margin.to_string(),
                reason: "must be finite and >= 0".into(),
            });
        }
        Ok(FaceSpec {
            height: self.bounded(keys::FACE_HEIGHT, limits::FACE_SIDE)? as u32,
            width: self.bounded(keys::FACE_WIDTH, limits::FACE_SIDE)? as u32,
            channels,
            mean: self.triple(keys::FACE_MEAN, false, channels == 1)?,
            std: self.triple(keys::FACE_STD, true, channels == 1)?,
            alignment,
            box_margin,
        })
    }

    /// The audio input of a model that has one: the log-mel parameters (defaults for the
    /// optional ones) and the window's length in frames.
    fn audio(&self) -> Result<AudioSpec, ContractError> {
        let defaults = MelConfig::default();
        let mel = MelConfig {
            sample_rate: self.positive(keys::AUDIO_SAMPLE_RATE)? as u32,
            n_fft: self.bounded(keys::AUDIO_N_FFT, limits::AUDIO_SAMPLES)?,
            win_length: self.bounded(keys::AUDIO_WIN, limits::AUDIO_SAMPLES)?,
            hop_length: self.bounded(keys::AUDIO_HOP, limits::AUDIO_SAMPLES)?,
            n_mels: self.bounded(keys::AUDIO_N_MELS, limits::N_MELS)?,
            f_min: self
                .optional_parse(keys::AUDIO_F_MIN)?
                .unwrap_or(defaults.f_min),
            f_max: self.optional_parse(keys::AUDIO_F_MAX)?,
            power: self
                .optional_parse(keys::AUDIO_POWER)?
                .unwrap_or(defaults.power),
            log_offset: self
                .optional_parse(keys::AUDIO_LOG_OFFSET)?
                .unwrap_or(defaults.log_offset),
            mel_scale: self
                .optional_parse::<MelScale>(keys::AUDIO_MEL_SCALE)?
                .unwrap_or_default(),
            norm: self
                .optional_parse::<MelNorm>(keys::AUDIO_MEL_NORM)?
                .unwrap_or_default(),
            window: self
                .optional_parse::<WindowKind>(keys::AUDIO_WINDOW)?
                .unwrap_or_default(),
        };
        mel.validate().map_err(|e| ContractError::BadValue {
            key: keys::AUDIO_SAMPLE_RATE,
            value: format!("{mel:?}"),
            reason: format!("the audio parameters do not make a spectrogram: {e}"),
        })?;
        Ok(AudioSpec {
            mel,
            frames: self.bounded(keys::AUDIO_FRAMES, limits::AUDIO_FRAMES)?,
        })
    }

    /// The labels of `head` under `key`: exactly for the heads present, since a key for an
    /// absent head is a file whose metadata and graph disagree.
    fn labels_of(
        &self,
        heads: &Heads,
        head: Head,
        key: &'static str,
    ) -> Result<Vec<String>, ContractError> {
        match (heads.has(head), self.raw(key).is_some()) {
            (true, _) => self.labels(key),
            (false, true) => Err(ContractError::LabelsWithoutHead {
                key,
                head: head.name(),
            }),
            (false, false) => Ok(Vec::new()),
        }
    }

    /// The `affect.*` keys the contract does not interpret (provenance: backbone, training
    /// data, date, ...), kept as they are.
    fn provenance(&self) -> BTreeMap<String, String> {
        let interpreted = [
            keys::CONTRACT,
            keys::FACE_HEIGHT,
            keys::FACE_WIDTH,
            keys::FACE_MEAN,
            keys::FACE_STD,
            keys::FACE_ALIGNMENT,
            keys::FACE_BOX_MARGIN,
            keys::FACE_CHANNELS,
            keys::HEADS,
            keys::LABELS_AU,
            keys::LABELS_EXPRESSION,
            keys::STATE_SIZE,
            keys::MODEL_NAME,
        ];
        self.0
            .iter()
            .filter(|(k, _)| {
                k.starts_with("affect.")
                    && !k.starts_with("affect.audio.")
                    && !interpreted.contains(&k.as_str())
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl ModelContract {
    /// Parses and checks the metadata of a model. `has_audio` / `has_state` say whether the
    /// model has an `audio` / `state_in` input, which makes the matching keys required.
    pub fn from_metadata(
        metadata: &BTreeMap<String, String>,
        has_audio: bool,
        has_state: bool,
    ) -> Result<Self, ContractError> {
        let m = Meta(metadata);
        let version: u32 = m.required_parse(keys::CONTRACT)?;
        if !(CONTRACT_VERSION_1..=CONTRACT_VERSION).contains(&version) {
            return Err(ContractError::UnsupportedVersion { got: version });
        }
        let heads = m.heads(version)?;
        let face = m.face(version)?;
        let audio = if has_audio { Some(m.audio()?) } else { None };
        let state_size = if has_state {
            Some(m.bounded(keys::STATE_SIZE, limits::STATE_SIZE)?)
        } else {
            None
        };
        let au_labels = m.labels_of(&heads, Head::Au, keys::LABELS_AU)?;
        let expression_labels = m.labels_of(&heads, Head::Expression, keys::LABELS_EXPRESSION)?;
        if heads.expression && expression_labels.len() < 2 {
            return Err(ContractError::BadValue {
                key: keys::LABELS_EXPRESSION,
                value: expression_labels.join(","),
                reason: "a softmax over fewer than 2 classes says nothing".into(),
            });
        }
        Ok(Self {
            version,
            face,
            heads,
            audio,
            state_size,
            au_labels,
            expression_labels,
            name: m.raw(keys::MODEL_NAME).map(str::to_string),
            provenance: m.provenance(),
        })
    }

    /// Writes the contract back as `metadata_props` (the exporter's side of the contract);
    /// [`ModelContract::from_metadata`] of the result gives `self` back.
    pub fn to_metadata(&self) -> BTreeMap<String, String> {
        let mut m = self.provenance.clone();
        let triple = |v: [f32; 3]| format!("{},{},{}", v[0], v[1], v[2]);
        m.insert(keys::CONTRACT.into(), self.version.to_string());
        m.insert(keys::FACE_HEIGHT.into(), self.face.height.to_string());
        m.insert(keys::FACE_WIDTH.into(), self.face.width.to_string());
        m.insert(keys::FACE_MEAN.into(), triple(self.face.mean));
        m.insert(keys::FACE_STD.into(), triple(self.face.std));
        m.insert(keys::FACE_ALIGNMENT.into(), self.face.alignment.to_string());
        m.insert(
            keys::FACE_BOX_MARGIN.into(),
            self.face.box_margin.to_string(),
        );
        if self.version >= 2 {
            m.insert(keys::HEADS.into(), self.heads.list());
            m.insert(keys::FACE_CHANNELS.into(), self.face.channels.to_string());
        }
        if let Some(a) = &self.audio {
            m.insert(
                keys::AUDIO_SAMPLE_RATE.into(),
                a.mel.sample_rate.to_string(),
            );
            m.insert(keys::AUDIO_N_FFT.into(), a.mel.n_fft.to_string());
            m.insert(keys::AUDIO_WIN.into(), a.mel.win_length.to_string());
            m.insert(keys::AUDIO_HOP.into(), a.mel.hop_length.to_string());
            m.insert(keys::AUDIO_N_MELS.into(), a.mel.n_mels.to_string());
            m.insert(keys::AUDIO_FRAMES.into(), a.frames.to_string());
            m.insert(keys::AUDIO_F_MIN.into(), a.mel.f_min.to_string());
            if let Some(f) = a.mel.f_max {
                m.insert(keys::AUDIO_F_MAX.into(), f.to_string());
            }
            m.insert(keys::AUDIO_MEL_SCALE.into(), a.mel.mel_scale.to_string());
            m.insert(keys::AUDIO_MEL_NORM.into(), a.mel.norm.to_string());
            m.insert(keys::AUDIO_WINDOW.into(), a.mel.window.to_string());
            m.insert(keys::AUDIO_POWER.into(), a.mel.power.to_string());
            m.insert(keys::AUDIO_LOG_OFFSET.into(), a.mel.log_offset.to_string());
        }
        if let Some(s) = self.state_size {
            m.insert(keys::STATE_SIZE.into(), s.to_string());
        }
        if self.heads.au {
            m.insert(keys::LABELS_AU.into(), self.au_labels.join(","));
        }
        if self.heads.expression {
            m.insert(
                keys::LABELS_EXPRESSION.into(),
                self.expression_labels.join(","),
            );
        }
        if let Some(n) = &self.name {
            m.insert(keys::MODEL_NAME.into(), n.clone());
        }
        m
    }

    /// Checks the model's inputs and outputs against the contract and this metadata: names,
    /// element types, ranks and every fixed dimension.
    pub fn check_io(
        &self,
        inputs: &[TensorSpec],
        outputs: &[TensorSpec],
    ) -> Result<(), ContractError> {
        let find = |list: &[TensorSpec], name: &str| list.iter().find(|t| t.name == name).cloned();
        let need = |kind: &'static str, list: &[TensorSpec], name: &'static str| {
            find(list, name).ok_or(ContractError::MissingTensor { kind, name })
        };
        use Axis::{Batch, Is};

        let face = need("input", inputs, io::FACE)?;
        check_tensor(
            "input",
            &face,
            &[
                Batch,
                Is(self.face.channels as i64),
                Is(self.face.height as i64),
                Is(self.face.width as i64),
            ],
        )?;

        match (&self.audio, find(inputs, io::AUDIO)) {
            (Some(a), Some(t)) => check_tensor(
                "input",
                &t,
                &[Batch, Is(1), Is(a.frames as i64), Is(a.mel.n_mels as i64)],
            )?,
            (Some(_), None) => {
                return Err(ContractError::MissingTensor {
                    kind: "input",
                    name: io::AUDIO,
                });
            }
            (None, Some(_)) => return Err(ContractError::MissingKey(keys::AUDIO_SAMPLE_RATE)),
            (None, None) => {}
        }

        let state_in = find(inputs, io::STATE_IN);
        let state_out = find(outputs, io::STATE_OUT);
        match (state_in, state_out) {
            (Some(i), Some(o)) => {
                let s = self
                    .state_size
                    .ok_or(ContractError::MissingKey(keys::STATE_SIZE))?
                    as i64;
                check_tensor("input", &i, &[Batch, Is(s)])?;
                check_tensor("output", &o, &[Batch, Is(s)])?;
            }
            (Some(_), None) => {
                return Err(ContractError::UnpairedState {
                    present: io::STATE_IN,
                    missing: io::STATE_OUT,
                });
            }
            (None, Some(_)) => {
                return Err(ContractError::UnpairedState {
                    present: io::STATE_OUT,
                    missing: io::STATE_IN,
                });
            }
            (None, None) => {}
        }

        for head in Head::ALL {
            let width = match head {
                Head::ValenceArousal => 2,
                Head::Au => self.au_labels.len() as i64,
                Head::Expression => self.expression_labels.len() as i64,
            };
            match (self.heads.has(head), find(outputs, head.name())) {
                (true, Some(t)) => check_tensor("output", &t, &[Batch, Is(width)])?,
                (true, None) => {
                    return Err(ContractError::MissingTensor {
                        kind: "output",
                        name: head.name(),
                    });
                }
                // An output the metadata does not declare would be silently ignored.
                (false, Some(_)) => {
                    return Err(ContractError::BadValue {
                        key: keys::HEADS,
                        value: self.heads.list(),
                        reason: format!("the model has a '{}' output not listed", head.name()),
                    });
                }
                (false, None) => {}
            }
        }
        if let Some(e) = find(outputs, io::EMBEDDING)
            && (e.dims.len() != 2 || !e.is_f32)
        {
            return Err(ContractError::BadShape {
                kind: "output",
                name: e.name,
                got: shape_string(&e.dims),
                expected: "[N,D]".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::{AU_LABELS, EXPRESSION_LABELS};

    fn full_metadata() -> BTreeMap<String, String> {
        let pairs = [
            (keys::CONTRACT, "1"),
            (keys::FACE_HEIGHT, "112"),
            (keys::FACE_WIDTH, "112"),
            (keys::FACE_MEAN, "0.5,0.5,0.5"),
            (keys::FACE_STD, "0.5, 0.5, 0.5"),
            (keys::FACE_ALIGNMENT, "arcface-5pt"),
            (keys::AUDIO_SAMPLE_RATE, "16000"),
            (keys::AUDIO_N_FFT, "512"),
            (keys::AUDIO_WIN, "400"),
            (keys::AUDIO_HOP, "160"),
            (keys::AUDIO_N_MELS, "64"),
            (keys::AUDIO_FRAMES, "100"),
            (keys::STATE_SIZE, "128"),
            (keys::MODEL_NAME, "tiny"),
            (keys::PROVENANCE_BACKBONE, "mobilefacenet"),
        ];
        let mut m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        m.insert(keys::LABELS_AU.into(), AU_LABELS.join(","));
        m.insert(keys::LABELS_EXPRESSION.into(), EXPRESSION_LABELS.join(","));
        m
    }

    fn full_io() -> (Vec<TensorSpec>, Vec<TensorSpec>) {
        (
            vec![
                TensorSpec::f32("face", &[None, Some(3), Some(112), Some(112)]),
                TensorSpec::f32("audio", &[Some(-1), Some(1), Some(100), Some(64)]),
                TensorSpec::f32("state_in", &[None, Some(128)]),
            ],
            vec![
                TensorSpec::f32("valence_arousal", &[None, Some(2)]),
                TensorSpec::f32("au", &[None, Some(12)]),
                TensorSpec::f32("expression", &[None, Some(8)]),
                TensorSpec::f32("state_out", &[None, Some(128)]),
            ],
        )
    }

    #[test]
    fn full_contract_parses_and_round_trips() {
        let c = ModelContract::from_metadata(&full_metadata(), true, true).unwrap();
        assert_eq!(c.face.height, 112);
        assert_eq!(c.face.std, [0.5; 3]);
        assert_eq!(c.face.alignment, Alignment::ArcFace5Point);
        let a = c.audio.as_ref().unwrap();
        assert_eq!(a.mel, MelConfig::default());
        assert_eq!(a.frames, 100);
        assert_eq!(c.state_size, Some(128));
        assert_eq!(c.au_labels.len(), 12);
        assert_eq!(c.name.as_deref(), Some("tiny"));
        assert_eq!(
            c.provenance
                .get(keys::PROVENANCE_BACKBONE)
                .map(String::as_str),
            Some("mobilefacenet")
        );
        let back = ModelContract::from_metadata(&c.to_metadata(), true, true).unwrap();
        assert_eq!(back, c);
        let (i, o) = full_io();
        c.check_io(&i, &o).unwrap();
    }

    #[test]
    fn normalisation_is_per_channel_chw() {
        let spec = FaceSpec {
            height: 2,
            width: 2,
            channels: 3,
            mean: [0.5, 0.25, 0.0],
            std: [0.5, 0.25, 1.0],
            alignment: Alignment::Box,
            box_margin: 0.0,
        };
        let crop: Vec<u8> = (0..12).map(|i| (i * 20) as u8).collect();
        let mut out = vec![0.0; 12];
        spec.normalize_into(&crop, &mut out);
        for p in 0..4 {
            for c in 0..3 {
                let v = crop[p * 3 + c] as f32 / 255.0;
                let want = (v - spec.mean[c]) / spec.std[c];
                assert!((out[c * 4 + p] - want).abs() < 1e-6);
            }
        }
    }

    /// A version-2 expression-only grey model (FER2013-like: 64x64, 7 classes).
    fn grey_expression_metadata() -> BTreeMap<String, String> {
        [
            (keys::CONTRACT, "2"),
            (keys::HEADS, "expression"),
            (keys::FACE_CHANNELS, "1"),
            (keys::FACE_HEIGHT, "64"),
            (keys::FACE_WIDTH, "64"),
            (keys::FACE_MEAN, "0.5"),
            (keys::FACE_STD, "0.5"),
            (keys::FACE_ALIGNMENT, "box"),
            (
                keys::LABELS_EXPRESSION,
                "Anger,Disgust,Fear,Happiness,Sadness,Surprise,Neutral",
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn grey_expression_io(classes: i64) -> (Vec<TensorSpec>, Vec<TensorSpec>) {
        (
            vec![TensorSpec::f32(
                "face",
                &[None, Some(1), Some(64), Some(64)],
            )],
            vec![TensorSpec::f32("expression", &[None, Some(classes)])],
        )
    }

    #[test]
    fn version_2_models_have_any_heads_and_grey_faces() {
        let c = ModelContract::from_metadata(&grey_expression_metadata(), false, false).unwrap();
        assert_eq!(
            c.heads,
            Heads {
                valence_arousal: false,
                au: false,
                expression: true
            }
        );
        assert_eq!(c.face.channels, 1);
        assert_eq!(c.face.mean, [0.5; 3]);
        assert!(c.au_labels.is_empty());
        assert_eq!(c.expression_labels.len(), 7);
        let (i, o) = grey_expression_io(7);
        c.check_io(&i, &o).unwrap();
        // Round trip through the metadata.
        let back = ModelContract::from_metadata(&c.to_metadata(), false, false).unwrap();
        assert_eq!(back, c);
        // Version 1 files are all three heads and RGB, as before.
        let v1 = ModelContract::from_metadata(&full_metadata(), true, true).unwrap();
        assert_eq!((v1.version, v1.heads, v1.face.channels), (1, Heads::ALL, 3));
    }

    #[test]
    fn grey_normalisation_is_bt601_luma() {
        let spec = FaceSpec {
            height: 1,
            width: 2,
            channels: 1,
            mean: [0.5; 3],
            std: [0.5; 3],
            alignment: Alignment::Box,
            box_margin: 0.0,
        };
        let crop = [255u8, 0, 0, 10, 200, 30];
        let mut out = vec![0.0; 2];
        spec.normalize_into(&crop, &mut out);
        let luma = |r: f32, g: f32, b: f32| 0.299 * r + 0.587 * g + 0.114 * b;
        for (o, y) in out.iter().zip([luma(255., 0., 0.), luma(10., 200., 30.)]) {
            assert!((o - (y / 255.0 - 0.5) / 0.5).abs() < 1e-6);
        }
    }

    #[test]
    fn malformed_version_2_files_are_named() {
        let with = |key: &str, value: Option<&str>| {
            let mut m = grey_expression_metadata();
            match value {
                Some(v) => m.insert(key.to_string(), v.to_string()),
                None => m.remove(key),
            };
            ModelContract::from_metadata(&m, false, false)
        };
        // No heads at all.
        let e = with(keys::HEADS, Some("")).unwrap_err();
        assert!(e.to_string().contains("at least one head"), "{e}");
        assert_eq!(
            with(keys::HEADS, None).unwrap_err(),
            ContractError::MissingKey(keys::HEADS)
        );
        let e = with(keys::HEADS, Some("expression,gaze")).unwrap_err();
        assert!(e.to_string().contains("'gaze'"), "{e}");
        // Labels for a head the model does not have.
        assert_eq!(
            with(keys::LABELS_AU, Some("AU1,AU2")).unwrap_err(),
            ContractError::LabelsWithoutHead {
                key: keys::LABELS_AU,
                head: "au"
            }
        );
        // A head without its labels.
        let mut m = grey_expression_metadata();
        m.insert(keys::HEADS.into(), "expression,au".into());
        assert_eq!(
            ModelContract::from_metadata(&m, false, false).unwrap_err(),
            ContractError::MissingKey(keys::LABELS_AU)
        );
        // Two channels.
        let e = with(keys::FACE_CHANNELS, Some("2")).unwrap_err();
        assert!(
            e.to_string().contains(keys::FACE_CHANNELS) && e.to_string().contains("1 (grey)"),
            "{e}"
        );
        // The label count does not match the head.
        let c = with(keys::HEADS, Some("expression")).unwrap();
        let (i, o) = grey_expression_io(8);
        let e = c.check_io(&i, &o).unwrap_err();
        assert!(
            e.to_string().contains("'expression'") && e.to_string().contains("[N,7]"),
            "{e}"
        );
        // A grey model given an RGB input, and an undeclared output.
        let (_, o) = grey_expression_io(7);
        let rgb = vec![TensorSpec::f32(
            "face",
            &[None, Some(3), Some(64), Some(64)],
        )];
        assert!(
            c.check_io(&rgb, &o)
                .unwrap_err()
                .to_string()
                .contains("[N,1,64,64]")
        );
        let mut extra = o.clone();
        extra.push(TensorSpec::f32("au", &[None, Some(12)]));
        let e = c.check_io(&i, &extra).unwrap_err();
        assert!(e.to_string().contains("'au' output not listed"), "{e}");
        // Version 3 does not exist yet.
        assert_eq!(
            with(keys::CONTRACT, Some("3")).unwrap_err(),
            ContractError::UnsupportedVersion { got: 3 }
        );
    }

    #[test]
    fn each_missing_key_is_named() {
        for key in [
            keys::CONTRACT,
            keys::FACE_HEIGHT,
            keys::FACE_MEAN,
            keys::FACE_ALIGNMENT,
            keys::AUDIO_N_MELS,
            keys::AUDIO_FRAMES,
            keys::STATE_SIZE,
            keys::LABELS_AU,
            keys::LABELS_EXPRESSION,
        ] {
            let mut m = full_metadata();
            m.remove(key);
            let err = ModelContract::from_metadata(&m, true, true).unwrap_err();
            assert_eq!(err, ContractError::MissingKey(key));
            assert!(err.to_string().contains(key));
        }
        // Audio and state keys are only required of models with those inputs.
        let mut m = full_metadata();
        m.retain(|k, _| !k.starts_with("affect.audio.") && k != keys::STATE_SIZE);
        ModelContract::from_metadata(&m, false, false).unwrap();
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            (keys::CONTRACT, "7", "version 7"),
            (keys::FACE_HEIGHT, "0", keys::FACE_HEIGHT),
            (keys::FACE_WIDTH, "wide", keys::FACE_WIDTH),
            (keys::FACE_MEAN, "0.5,0.5", keys::FACE_MEAN),
            (keys::FACE_STD, "0.5,0,0.5", keys::FACE_STD),
            (keys::FACE_ALIGNMENT, "dlib-68", "arcface-5pt"),
            (keys::AUDIO_MEL_SCALE, "bark", "bark"),
            (keys::AUDIO_WIN, "1024", "window length"),
            (keys::LABELS_AU, "AU1,,AU2", keys::LABELS_AU),
            (keys::LABELS_EXPRESSION, "Happy", keys::LABELS_EXPRESSION),
        ];
        for (key, value, needle) in cases {
            let mut m = full_metadata();
            m.insert(key.to_string(), value.to_string());
            let err = ModelContract::from_metadata(&m, true, true)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{key}={value}: {err}");
        }
    }

    /// Sizes beyond what any model needs are refused naming the key, before anything is
    /// allocated for them.
    #[test]
    fn absurd_sizes_are_refused_naming_the_key() {
        let cases = [
            (keys::FACE_WIDTH, "100000"),
            (keys::FACE_HEIGHT, "100000"),
            (keys::AUDIO_FRAMES, "99999999"),
            (keys::AUDIO_N_MELS, "5000"),
            (keys::AUDIO_HOP, "1000000"),
            (keys::STATE_SIZE, "100000000"),
        ];
        for (key, value) in cases {
            let mut m = full_metadata();
            m.insert(key.to_string(), value.to_string());
            let err = ModelContract::from_metadata(&m, true, true)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(key) && err.contains("at most"),
                "{key}={value}: {err}"
            );
        }
        // The largest sizes allowed still load.
        let mut m = full_metadata();
        m.insert(keys::FACE_WIDTH.into(), limits::FACE_SIDE.to_string());
        ModelContract::from_metadata(&m, true, true).unwrap();
    }

    #[test]
    fn io_violations_are_named() {
        let c = ModelContract::from_metadata(&full_metadata(), true, true).unwrap();
        let (inputs, outputs) = full_io();

        let mut i = inputs.clone();
        i.retain(|t| t.name != "face");
        let err = c.check_io(&i, &outputs).unwrap_err().to_string();
        assert_eq!(err, "the model has no input named 'face'");

        let mut i = inputs.clone();
        i[0].dims = vec![None, Some(3), Some(96), Some(96)];
        let err = c.check_io(&i, &outputs).unwrap_err().to_string();
        assert_eq!(
            err,
            "input 'face' has shape [?,3,96,96], the contract needs [N,3,112,112]"
        );

        let mut i = inputs.clone();
        i[0].dims[0] = Some(1);
        assert!(
            c.check_io(&i, &outputs).is_err(),
            "fixed batch axis accepted"
        );

        let mut i = inputs.clone();
        i[1].dims = vec![None, Some(1), Some(50), Some(64)];
        let err = c.check_io(&i, &outputs).unwrap_err().to_string();
        assert!(
            err.contains("'audio'") && err.contains("[N,1,100,64]"),
            "{err}"
        );

        let mut o = outputs.clone();
        o[1].dims = vec![None, Some(10)];
        let err = c.check_io(&inputs, &o).unwrap_err().to_string();
        assert!(err.contains("'au'") && err.contains("[N,12]"), "{err}");

        let mut o = outputs.clone();
        o.retain(|t| t.name != "state_out");
        let err = c.check_io(&inputs, &o).unwrap_err().to_string();
        assert!(err.contains("'state_in' but not 'state_out'"), "{err}");

        let mut o = outputs.clone();
        o.retain(|t| t.name != "expression");
        let err = c.check_io(&inputs, &o).unwrap_err().to_string();
        assert_eq!(err, "the model has no output named 'expression'");

        let mut i = inputs.clone();
        i[0].is_f32 = false;
        i[0].type_name = "f16".into();
        let err = c.check_io(&i, &outputs).unwrap_err().to_string();
        assert!(err.contains("element type f16"), "{err}");
    }
}
