// SPDX-License-Identifier: MPL-2.0
//! The multi-task affect networks: a face backbone, optionally an audio branch fused with it
//! (A/V-MT) and a GRU over frames (CNN-RNN), and three heads — valence/arousal (tanh), AUs
//! (sigmoid), expressions (softmax, or ArcFace cosine logits for the MT-Arc variants).

pub mod backbone;
pub mod layers;

use affect_core::contract::io;
use affect_core::labels::{N_AUS, N_EXPRESSIONS};
use serde::{Deserialize, Serialize};
use tch::nn;
use tch::{Kind, Tensor};

use crate::export::graph::{Attr, GraphBuilder};
use layers::{Dense, GruCell, Sequential, host};

/// Face backbone family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackboneKind {
    Resnet18,
    Resnet50,
    Vgg16,
    Sphereface20,
    Mobilefacenet,
}

impl BackboneKind {
    pub const ALL: [BackboneKind; 5] = [
        BackboneKind::Resnet18,
        BackboneKind::Resnet50,
        BackboneKind::Vgg16,
        BackboneKind::Sphereface20,
        BackboneKind::Mobilefacenet,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            BackboneKind::Resnet18 => "resnet18",
            BackboneKind::Resnet50 => "resnet50",
            BackboneKind::Vgg16 => "vgg16",
            BackboneKind::Sphereface20 => "sphereface20",
            BackboneKind::Mobilefacenet => "mobilefacenet",
        }
    }
}

/// Expression head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpressionHead {
    /// Linear logits.
    Softmax,
    /// Scaled cosine between the normalised embedding and normalised class weights, with an
    /// additive angular margin on the target class in training.
    Arcface,
}

fn default_input_size() -> i64 {
    112
}
fn default_embedding() -> i64 {
    128
}
fn default_audio_frames() -> i64 {
    64
}
fn default_audio_width() -> i64 {
    16
}
fn default_audio_embedding() -> i64 {
    64
}
fn default_state_size() -> i64 {
    128
}
fn default_expression_head() -> ExpressionHead {
    ExpressionHead::Softmax
}
fn default_arcface_scale() -> f64 {
    30.0
}
fn default_arcface_margin() -> f64 {
    0.5
}
fn default_mean_std() -> [f32; 3] {
    [0.5; 3]
}

/// What network to build. Stored in every checkpoint, so that a checkpoint alone rebuilds
/// and exports its network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    pub backbone: BackboneKind,
    /// Square face crop size in pixels.
    #[serde(default = "default_input_size")]
    pub input_size: i64,
    /// Base channel count (first stage); the backbone's usual value when absent.
    #[serde(default)]
    pub base_width: Option<i64>,
    /// Face embedding size.
    #[serde(default = "default_embedding")]
    pub embedding: i64,
    /// Audio branch over the log-mel window (A/V-MT).
    #[serde(default)]
    pub audio: bool,
    /// Spectrogram frames in the audio window (10 ms each with the default features).
    #[serde(default = "default_audio_frames")]
    pub audio_frames: i64,
    #[serde(default = "default_audio_width")]
    pub audio_width: i64,
    #[serde(default = "default_audio_embedding")]
    pub audio_embedding: i64,
    /// GRU over frames (CNN-RNN) with this state size.
    #[serde(default)]
    pub temporal: bool,
    #[serde(default = "default_state_size")]
    pub state_size: i64,
    /// Temporal networks: the heads read the frame's embedding beside the GRU state
    /// (concatenated), so what a single frame shows (AUs above all) does not have to pass
    /// through a state that drifts over tracks much longer than the training clips.
    #[serde(default)]
    pub frame_skip: bool,
    #[serde(default = "default_expression_head")]
    pub expression_head: ExpressionHead,
    #[serde(default = "default_arcface_scale")]
    pub arcface_scale: f64,
    #[serde(default = "default_arcface_margin")]
    pub arcface_margin: f64,
    /// Per-channel normalisation of pixels scaled to [0, 1].
    #[serde(default = "default_mean_std")]
    pub mean: [f32; 3],
    #[serde(default = "default_mean_std")]
    pub std: [f32; 3],
}

impl NetworkConfig {
    pub fn new(backbone: BackboneKind) -> Self {
        Self {
            backbone,
            input_size: default_input_size(),
            base_width: None,
            embedding: default_embedding(),
            audio: false,
            audio_frames: default_audio_frames(),
            audio_width: default_audio_width(),
            audio_embedding: default_audio_embedding(),
            temporal: false,
            state_size: default_state_size(),
            frame_skip: false,
            expression_head: default_expression_head(),
            arcface_scale: default_arcface_scale(),
            arcface_margin: default_arcface_margin(),
            mean: default_mean_std(),
            std: default_mean_std(),
        }
    }

    /// Base channel count.
    pub fn width(&self) -> i64 {
        self.base_width.unwrap_or(64)
    }

    /// Checks the values a network cannot be built from; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        let min_size = match self.backbone {
            BackboneKind::Vgg16 | BackboneKind::Resnet18 | BackboneKind::Resnet50 => 32,
            _ => 16,
        };
        if self.input_size < min_size {
            return Err(format!(
                "network.input_size = {} is too small for {} (at least {min_size})",
                self.input_size,
                self.backbone.as_str()
            ));
        }
        for (key, v) in [
            ("network.base_width", self.width()),
            ("network.embedding", self.embedding),
            ("network.audio_frames", self.audio_frames),
            ("network.audio_width", self.audio_width),
            ("network.audio_embedding", self.audio_embedding),
            ("network.state_size", self.state_size),
        ] {
            if v < 1 {
                return Err(format!("{key} = {v} must be at least 1"));
            }
        }
        if self.audio && self.audio_frames < 4 {
            return Err(format!(
                "network.audio_frames = {} must be at least 4 (two 2x2 poolings)",
                self.audio_frames
            ));
        }
        if self.frame_skip && !self.temporal {
            return Err(
                "network.frame_skip = true needs network.temporal = true (it feeds the frame \
                 embedding to the heads beside the GRU state)"
                    .into(),
            );
        }
        if self.arcface_scale.is_nan() || self.arcface_scale <= 0.0 {
            return Err(format!(
                "network.arcface_scale = {} must be > 0",
                self.arcface_scale
            ));
        }
        if !(0.0..std::f64::consts::FRAC_PI_2).contains(&self.arcface_margin) {
            return Err(format!(
                "network.arcface_margin = {} must be in [0, pi/2)",
                self.arcface_margin
            ));
        }
        if self.std.iter().any(|s| s.is_nan() || *s <= 0.0) {
            return Err("network.std: every value must be > 0".into());
        }
        Ok(())
    }
}

/// Number of log-mel bands of the audio input (the affect-core default features).
pub const N_MELS: i64 = 64;

enum ExprHead {
    Linear(Dense),
    /// Class weights `[C, D]`.
    ArcFace(Tensor),
}

/// Raw outputs of the heads for a batch of frames.
pub struct HeadOutputs {
    /// Valence and arousal after tanh, `[N, 2]`.
    pub va: Tensor,
    /// AU logits (before the sigmoid), `[N, 12]`.
    pub au_logits: Tensor,
    /// Expression logits (before the softmax), `[N, 8]`: linear logits, or `s * cos` for
    /// ArcFace (without margin).
    pub expr_logits: Tensor,
    /// ArcFace cosines `[N, 8]` (the loss adds the margin on labelled rows).
    pub expr_cos: Option<Tensor>,
    /// The features the heads read, `[N, D]`.
    pub embedding: Tensor,
}

/// A multi-task affect network.
pub struct AffectNet {
    pub config: NetworkConfig,
    face: Sequential,
    audio: Option<Sequential>,
    fusion: Option<Dense>,
    gru: Option<GruCell>,
    va: Dense,
    au: Dense,
    expr: ExprHead,
}

impl AffectNet {
    /// Builds the network's variables under `p`. The configuration must have passed
    /// [`NetworkConfig::validate`].
    pub fn new(p: &nn::Path, config: &NetworkConfig) -> Self {
        let face = backbone::build(p / "face", config);
        let audio = config.audio.then(|| backbone::audio(p / "audio", config));
        let fusion = config.audio.then(|| {
            Dense::new(
                p / "fusion",
                config.embedding + config.audio_embedding,
                config.embedding,
            )
        });
        let gru = config
            .temporal
            .then(|| GruCell::new(p / "gru", config.embedding, config.state_size));
        let d = Self::feature_size(config);
        let expr = match config.expression_head {
            ExpressionHead::Softmax => {
                ExprHead::Linear(Dense::new(p / "expr", d, N_EXPRESSIONS as i64))
            }
            ExpressionHead::Arcface => ExprHead::ArcFace(p.var(
                "expr_arc",
                &[N_EXPRESSIONS as i64, d],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: 0.01,
                },
            )),
        };
        Self {
            config: config.clone(),
            face,
            audio,
            fusion,
            gru,
            va: Dense::new(p / "va", d, 2),
            au: Dense::new(p / "au", d, N_AUS as i64),
            expr,
        }
    }

    /// Width of the features the heads read.
    pub fn feature_size(config: &NetworkConfig) -> i64 {
        if config.temporal && config.frame_skip {
            config.embedding + config.state_size
        } else if config.temporal {
            config.state_size
        } else {
            config.embedding
        }
    }

    /// Per-frame embedding: face backbone, fused with the audio branch when present.
    pub fn frame_embedding(&self, face: &Tensor, audio: Option<&Tensor>, train: bool) -> Tensor {
        let f = self.face.forward_t(face, train);
        match (&self.audio, &self.fusion, audio) {
            (Some(branch), Some(fusion), Some(a)) => {
                let a = branch.forward_t(a, train);
                fusion.forward(&Tensor::cat(&[f, a], 1)).relu()
            }
            _ => f,
        }
    }

    /// What the heads of a temporal network read: the GRU state `h`, after the frame
    /// embedding `e` with `frame_skip`.
    fn head_input(&self, e: &Tensor, h: &Tensor) -> Tensor {
        if self.config.frame_skip {
            Tensor::cat(&[e, h], 1)
        } else {
            h.shallow_clone()
        }
    }

    fn heads(&self, features: Tensor) -> HeadOutputs {
        let va = self.va.forward(&features).tanh();
        let au_logits = self.au.forward(&features);
        let (expr_logits, expr_cos) = match &self.expr {
            ExprHead::Linear(d) => (d.forward(&features), None),
            ExprHead::ArcFace(w) => {
                let cos = normalize(&features).matmul(&normalize(w).transpose(0, 1));
                (&cos * self.config.arcface_scale, Some(cos))
            }
        };
        HeadOutputs {
            va,
            au_logits,
            expr_logits,
            expr_cos,
            embedding: features,
        }
    }

    /// One step per frame: `face` `[N,3,H,W]`, `audio` `[N,1,T,M]` (when the network has an
    /// audio branch), `state` `[N,S]` (temporal networks; zeros when absent). Returns the
    /// heads and the new state.
    pub fn step(
        &self,
        face: &Tensor,
        audio: Option<&Tensor>,
        state: Option<&Tensor>,
        train: bool,
    ) -> (HeadOutputs, Option<Tensor>) {
        let e = self.frame_embedding(face, audio, train);
        match &self.gru {
            Some(gru) => {
                let h0 = match state {
                    Some(s) => s.shallow_clone(),
                    None => Tensor::zeros([e.size()[0], gru.size], (e.kind(), e.device())),
                };
                let h = gru.step(&e, &h0);
                (self.heads(self.head_input(&e, &h)), Some(h))
            }
            None => (self.heads(e), None),
        }
    }

    /// Clips of `len` consecutive frames of `batch` tracks, frame-major within each clip
    /// (row `b * len + t`): temporal networks run the GRU from a zero state over each clip.
    pub fn forward_clips(
        &self,
        face: &Tensor,
        audio: Option<&Tensor>,
        batch: i64,
        len: i64,
        train: bool,
    ) -> HeadOutputs {
        self.forward_clips_from(face, audio, batch, len, None, train)
            .0
    }

    /// As [`AffectNet::forward_clips`], starting from `state` `[batch, S]` (zeros when
    /// absent); also returns the state after the last frame (temporal networks).
    pub fn forward_clips_from(
        &self,
        face: &Tensor,
        audio: Option<&Tensor>,
        batch: i64,
        len: i64,
        state: Option<&Tensor>,
        train: bool,
    ) -> (HeadOutputs, Option<Tensor>) {
        let e = self.frame_embedding(face, audio, train);
        match &self.gru {
            Some(gru) => {
                let e = e.view([batch, len, -1]);
                let mut h = match state {
                    Some(s) => s.shallow_clone(),
                    None => Tensor::zeros([batch, gru.size], (e.kind(), e.device())),
                };
                let mut states = Vec::with_capacity(len as usize);
                for t in 0..len {
                    h = gru.step(&e.select(1, t), &h);
                    states.push(h.shallow_clone());
                }
                let states = Tensor::stack(&states, 1).view([batch * len, -1]);
                let heads = self.heads(self.head_input(&e.view([batch * len, -1]), &states));
                (heads, Some(h))
            }
            None => (self.heads(e), None),
        }
    }

    /// Writes the single-step network into `g`, with the contract's input and output names.
    pub fn export(&self, g: &mut GraphBuilder) -> Result<(), tch::TchError> {
        let c = &self.config;
        let size = c.input_size;
        let face = g.input(io::FACE, &[None, Some(3), Some(size), Some(size)]);
        let audio = c.audio.then(|| {
            g.input(
                io::AUDIO,
                &[None, Some(1), Some(c.audio_frames), Some(N_MELS)],
            )
        });
        let state = c
            .temporal
            .then(|| g.input(io::STATE_IN, &[None, Some(c.state_size)]));

        let mut e = self.face.export(g, &face)?;
        if let (Some(branch), Some(fusion), Some(a)) = (&self.audio, &self.fusion, &audio) {
            let a = branch.export(g, a)?;
            let cat = g.op("Concat", &[&e, &a], vec![("axis", Attr::Int(1))]);
            let fused = fusion.export(g, &cat)?;
            e = g.unary("Relu", &fused);
        }
        if let (Some(gru), Some(h)) = (&self.gru, &state) {
            let next = gru.export(g, &e, h)?;
            g.output(&next, io::STATE_OUT, &[None, Some(c.state_size)]);
            e = if c.frame_skip {
                g.op("Concat", &[&e, &next], vec![("axis", Attr::Int(1))])
            } else {
                next
            };
        }
        let d = Self::feature_size(c);
        let va = self.va.export(g, &e)?;
        let va = g.unary("Tanh", &va);
        let au = self.au.export(g, &e)?;
        let au = g.unary("Sigmoid", &au);
        let logits = match &self.expr {
            ExprHead::Linear(dense) => dense.export(g, &e)?,
            ExprHead::ArcFace(w) => {
                // Class weights are constants: normalise them here, scaled by s, so the graph
                // only normalises the embedding.
                let wn = normalize(w).transpose(0, 1) * c.arcface_scale;
                let wn = g.constant("arc_w", &[d, N_EXPRESSIONS as i64], &host(&wn)?);
                let en = g.op(
                    "LpNormalization",
                    &[&e],
                    vec![("axis", Attr::Int(1)), ("p", Attr::Int(2))],
                );
                g.binary("MatMul", &en, &wn)
            }
        };
        let expr = g.op("Softmax", &[&logits], vec![("axis", Attr::Int(1))]);
        g.output(&va, io::VALENCE_AROUSAL, &[None, Some(2)]);
        g.output(&au, io::AU, &[None, Some(N_AUS as i64)]);
        g.output(&expr, io::EXPRESSION, &[None, Some(N_EXPRESSIONS as i64)]);
        g.output(&e, io::EMBEDDING, &[None, Some(d)]);
        Ok(())
    }
}

/// Rows scaled to unit L2 norm (as `torch.nn.functional.normalize`, eps 1e-12).
pub fn normalize(x: &Tensor) -> Tensor {
    let n = x
        .norm_scalaropt_dim(2.0, [1i64].as_slice(), true)
        .clamp_min(1e-12);
    x / n
}

/// Probabilities as the exported graph outputs them: `(va, au, expression)`.
pub fn probabilities(h: &HeadOutputs) -> (Tensor, Tensor, Tensor) {
    (
        h.va.shallow_clone(),
        h.au_logits.sigmoid(),
        h.expr_logits.softmax(1, Kind::Float),
    )
}
