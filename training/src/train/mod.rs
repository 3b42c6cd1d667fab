// SPDX-License-Identifier: MPL-2.0
//! Training (`affect-train train --config FILE`): AdamW with warm-up and cosine decay, the
//! masked multi-task loss, validation with the ABAW metrics after each epoch, `best/` and
//! `last/` checkpoints, resuming from `last/`, and a JSON-lines log.

pub mod checkpoint;
pub mod config;
pub mod loader;
pub mod predict;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use affect_core::labels::{N_AUS, N_EXPRESSIONS};
use affect_core::metrics;
use serde::Serialize;
use tch::{Device, Kind, Tensor, nn};
use thiserror::Error;

use crate::data::{AffWild2, DataError, Split};
use crate::loss::{LossWeights, Targets, multitask_loss};
use crate::model::{AffectNet, ExpressionHead, probabilities};
use crate::rng::Rng;
use checkpoint::{CheckpointError, CheckpointMeta};
use config::{OptimizerConfig, TrainConfig};
use loader::{Batch, ClipSet, InputSpec, for_each_batch};

#[derive(Debug, Error)]
pub enum TrainError {
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{0}")]
    Setup(String),
}

/// AdamW (decoupled weight decay, not applied to biases and per-channel parameters), with
/// its moments kept by parameter name so that they can be checkpointed.
pub struct AdamW {
    params: Vec<(String, Tensor)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    pub step: u64,
    cfg: OptimizerConfig,
}

impl AdamW {
    pub fn new(vs: &nn::VarStore, cfg: &OptimizerConfig) -> Self {
        let mut params: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let m = params.iter().map(|(_, t)| t.zeros_like()).collect();
        let v = params.iter().map(|(_, t)| t.zeros_like()).collect();
        Self {
            params,
            m,
            v,
            step: 0,
            cfg: cfg.clone(),
        }
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// Clips the global gradient norm, then takes one step at learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let c = &self.cfg;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        tch::no_grad(|| {
            let grads: Vec<Tensor> = self.params.iter().map(|(_, p)| p.grad()).collect();
            let mut scale = 1.0;
            if c.grad_clip > 0.0 {
                let sq: Vec<Tensor> = grads
                    .iter()
                    .filter(|g| g.defined())
                    .map(|g| g.to_kind(Kind::Float).square().sum(Kind::Float))
                    .collect();
                if !sq.is_empty() {
                    let norm = Tensor::stack(&sq, 0)
                        .sum(Kind::Float)
                        .sqrt()
                        .double_value(&[]);
                    if norm.is_finite() && norm > c.grad_clip {
                        scale = c.grad_clip / norm;
                    }
                }
            }
            for (k, ((_, p), g)) in self.params.iter_mut().zip(&grads).enumerate() {
                if !g.defined() {
                    continue;
                }
                // In place: temporaries of every parameter's size would be allocated and
                // released (and page-faulted in) every step.
                let mut g = g.shallow_clone();
                if scale != 1.0 {
                    let _ = g.g_mul_scalar_(scale);
                }
                let _ = self.m[k].lerp_(&g, 1.0 - c.beta1);
                let _ = self.v[k].lerp_(&(&g * &g), 1.0 - c.beta2);
                if p.dim() > 1 {
                    let _ = p.g_mul_scalar_(1.0 - lr * c.weight_decay);
                }
                let mut denom = self.v[k].sqrt();
                let _ = denom.g_div_scalar_(bc2.sqrt());
                let _ = denom.g_add_scalar_(c.eps);
                let mut update = &self.m[k] / &denom;
                let _ = update.g_mul_scalar_(-lr / bc1);
                let _ = p.g_add_(&update);
            }
        });
    }

    /// Moments by name (`m.<param>`, `v.<param>`) and the step count, for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (k, (name, _)) in self.params.iter().enumerate() {
            out.push((format!("m.{name}"), self.m[k].shallow_clone()));
            out.push((format!("v.{name}"), self.v[k].shallow_clone()));
        }
        out.push(("step".into(), Tensor::from_slice(&[self.step as i64])));
        out
    }

    pub fn load_state(&mut self, state: &[(String, Tensor)]) {
        let find = |key: &str| state.iter().find(|(k, _)| k == key).map(|(_, t)| t);
        tch::no_grad(|| {
            for (k, (name, _)) in self.params.iter().enumerate() {
                if let Some(t) = find(&format!("m.{name}")) {
                    self.m[k].copy_(t);
                }
                if let Some(t) = find(&format!("v.{name}")) {
                    self.v[k].copy_(t);
                }
            }
        });
        if let Some(s) = find("step") {
            self.step = s.int64_value(&[0]) as u64;
        }
    }
}

/// Learning rate at `step` of `total`: linear warm-up, then cosine decay to
/// `min_lr_fraction * lr`.
pub fn learning_rate(cfg: &OptimizerConfig, step: u64, total: u64) -> f64 {
    let warm = (cfg.warmup * total as f64).ceil().max(1.0);
    let s = step as f64;
    if s < warm {
        return cfg.lr * (s + 1.0) / warm;
    }
    let progress = ((s - warm) / (total as f64 - warm).max(1.0)).min(1.0);
    let floor = cfg.min_lr_fraction;
    cfg.lr * (floor + (1.0 - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
}

/// Validation results: mean loss terms and the ABAW scores (`None` where the split has no
/// labels of that task).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Evaluation {
    pub loss: f64,
    pub va_ccc: f64,
    pub va_mse: f64,
    pub au: f64,
    pub expression: f64,
    pub ccc_valence: Option<f64>,
    pub ccc_arousal: Option<f64>,
    pub p_va: Option<f64>,
    pub p_expr: Option<f64>,
    pub p_au: Option<f64>,
    /// `P_VA + P_EXPR + P_AU` over the tasks present.
    pub score: f64,
    pub frames: usize,
}

/// Tensors of a batch on `device`.
pub struct BatchTensors {
    pub face: Tensor,
    pub audio: Option<Tensor>,
    pub targets: Targets,
}

pub fn batch_tensors(
    b: &Batch,
    size: usize,
    audio_frames: Option<usize>,
    device: Device,
) -> BatchTensors {
    let rows = (b.clips * b.len) as i64;
    let s = size as i64;
    BatchTensors {
        face: Tensor::from_slice(&b.face)
            .view([rows, 3, s, s])
            .to_device(device),
        audio: match (&b.audio, audio_frames) {
            (Some(a), Some(t)) => Some(
                Tensor::from_slice(a)
                    .view([rows, 1, t as i64, 64])
                    .to_device(device),
            ),
            _ => None,
        },
        targets: Targets {
            va: Tensor::from_slice(&b.va).view([rows, 2]).to_device(device),
            expression: Tensor::from_slice(&b.expression).to_device(device),
            au: Tensor::from_slice(&b.au)
                .view([rows, N_AUS as i64])
                .to_device(device),
        },
    }
}

/// One optimisation step on a batch of clips: forward (autocast when `amp`), the masked
/// multi-task loss, backward, AdamW at learning rate `lr`. Returns the loss terms.
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    net: &AffectNet,
    opt: &mut AdamW,
    t: &BatchTensors,
    b: &Batch,
    weights: &LossWeights,
    arcface: Option<(f64, f64)>,
    amp: bool,
    lr: f64,
) -> crate::loss::LossTerms {
    let outputs = tch::autocast(amp, || {
        net.forward_clips(
            &t.face,
            t.audio.as_ref(),
            b.clips as i64,
            b.len as i64,
            true,
        )
    });
    let l = multitask_loss(&outputs, &t.targets, weights, arcface);
    opt.zero_grad();
    l.total.backward();
    opt.step(lr);
    l
}

pub fn input_spec(net: &AffectNet) -> InputSpec {
    let c = &net.config;
    InputSpec {
        size: c.input_size as usize,
        mean: c.mean,
        std: c.std,
        audio_frames: c.audio.then_some(c.audio_frames as usize),
    }
}

fn arcface_of(net: &AffectNet) -> Option<(f64, f64)> {
    let c = &net.config;
    (c.expression_head == ExpressionHead::Arcface).then_some((c.arcface_scale, c.arcface_margin))
}

/// Runs `net` (eval mode) over every clip of `set` and scores it the ABAW way.
pub fn evaluate(
    net: &AffectNet,
    set: &ClipSet,
    batch_size: usize,
    workers: usize,
    weights: &LossWeights,
    device: Device,
) -> Result<Evaluation, TrainError> {
    let spec = input_spec(net);
    let n = set.samples.len();
    let mut va = vec![[0f32; 2]; n];
    let mut expr = vec![0usize; n];
    let mut au = vec![[0u8; N_AUS]; n];
    let mut seen = vec![false; n];
    let (mut sums, mut batches) = ([0f64; 5], 0usize);
    let order: Vec<usize> = (0..set.clips.len()).collect();
    for_each_batch::<TrainError>(set, &order, batch_size, &spec, None, workers, |b| {
        let t = batch_tensors(&b, spec.size, spec.audio_frames, device);
        let out = tch::no_grad(|| {
            net.forward_clips(
                &t.face,
                t.audio.as_ref(),
                b.clips as i64,
                b.len as i64,
                false,
            )
        });
        let l = multitask_loss(&out, &t.targets, weights, arcface_of(net));
        for (s, v) in sums
            .iter_mut()
            .zip([&l.total, &l.va_ccc, &l.va_mse, &l.au, &l.expression])
        {
            *s += v.double_value(&[]);
        }
        batches += 1;
        let (pva, pau, pex) = probabilities(&out);
        let pva: Vec<f32> = Vec::try_from(
            pva.to_device(Device::Cpu)
                .to_kind(Kind::Float)
                .flatten(0, -1),
        )?;
        let pau: Vec<f32> = Vec::try_from(
            pau.to_device(Device::Cpu)
                .to_kind(Kind::Float)
                .flatten(0, -1),
        )?;
        let pex: Vec<i64> = Vec::try_from(pex.argmax(1, false).to_device(Device::Cpu))?;
        for (r, &i) in b.rows.iter().enumerate() {
            va[i] = [pva[2 * r], pva[2 * r + 1]];
            expr[i] = pex[r] as usize;
            for k in 0..N_AUS {
                au[i][k] = u8::from(pau[r * N_AUS + k] >= 0.5);
            }
            seen[i] = true;
        }
        Ok(())
    })?;
    let nb = batches.max(1) as f64;
    let mut e = Evaluation {
        loss: sums[0] / nb,
        va_ccc: sums[1] / nb,
        va_mse: sums[2] / nb,
        au: sums[3] / nb,
        expression: sums[4] / nb,
        frames: seen.iter().filter(|s| **s).count(),
        ..Default::default()
    };
    let (mut pv, mut pa, mut gv, mut ga) = (vec![], vec![], vec![], vec![]);
    let (mut pe, mut ge) = (vec![], vec![]);
    let (mut pu, mut gu) = (vec![], vec![]);
    for i in (0..n).filter(|&i| seen[i]) {
        let l = &set.samples[i].labels;
        if let Some([v, a]) = l.va {
            pv.push(va[i][0]);
            pa.push(va[i][1]);
            gv.push(v);
            ga.push(a);
        }
        if let Some(x) = l.expression {
            pe.push(expr[i]);
            ge.push(x);
        }
        if let Some(g) = l.au {
            pu.extend_from_slice(&au[i]);
            gu.extend_from_slice(&g);
        }
    }
    if let Ok(s) = metrics::va_scores(&pv, &pa, &gv, &ga) {
        e.ccc_valence = Some(s.ccc_valence);
        e.ccc_arousal = Some(s.ccc_arousal);
        e.p_va = Some(s.p_va);
    }
    e.p_expr = metrics::expr_scores(&pe, &ge, N_EXPRESSIONS)
        .ok()
        .map(|s| s.macro_f1);
    e.p_au = metrics::au_scores(&pu, &gu, N_AUS).ok().map(|s| s.mean_f1);
    e.score = e.p_va.unwrap_or(0.0) + e.p_expr.unwrap_or(0.0) + e.p_au.unwrap_or(0.0);
    Ok(e)
}

/// One line of `log.jsonl`.
#[derive(Serialize)]
struct LogLine<'a> {
    epoch: usize,
    step: u64,
    lr: f64,
    train_loss: f64,
    train_va_ccc: f64,
    train_va_mse: f64,
    train_au: f64,
    train_expression: f64,
    images_per_s: f64,
    seconds: f64,
    val: &'a Evaluation,
}

/// What a run ended with.
#[derive(Clone, Debug)]
pub struct Summary {
    pub epochs: usize,
    pub first_val: Option<Evaluation>,
    pub last_val: Evaluation,
    pub best_score: f64,
    pub out: PathBuf,
}

pub fn select_device(name: &str) -> Result<Device, TrainError> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        "cuda" => Err(TrainError::Setup(
            "train.device = \"cuda\" but libtorch sees no CUDA device".into(),
        )),
        _ => Ok(Device::cuda_if_available()),
    }
}

/// Trains as `cfg` says. With `resume`, continues from `<out>/last` when it exists.
pub fn train(
    cfg: &TrainConfig,
    resume: bool,
    command: Option<String>,
) -> Result<Summary, TrainError> {
    let device = select_device(&cfg.train.device)?;
    if cfg.train.threads > 0 {
        tch::set_num_threads(cfg.train.threads as i32);
    }
    tch::manual_seed(cfg.train.seed as i64);
    let out = cfg.train.out.clone();
    std::fs::create_dir_all(&out).map_err(|source| TrainError::Io {
        path: out.clone(),
        source,
    })?;

    let (train_set, val_set) = open_clip_sets(cfg)?;

    let mut vs = nn::VarStore::new(device);
    let net = AffectNet::new(&vs.root(), &cfg.network);
    let mut opt = AdamW::new(&vs, &cfg.optimizer);
    let mut meta = CheckpointMeta {
        network: cfg.network.clone(),
        epoch: 0,
        step: 0,
        best_score: None,
        name: cfg.name.clone(),
        training_data: Some(
            cfg.data
                .description
                .clone()
                .unwrap_or_else(|| cfg.data.root.display().to_string()),
        ),
        command,
    };
    if let Some(init) = &cfg.train.init {
        load_weights(&mut vs, init, cfg)?;
    }
    let last = out.join("last");
    let best = out.join("best");
    if resume && last.join(checkpoint::META_FILE).is_file() {
        let m = load_weights(&mut vs, &last, cfg)?;
        opt.load_state(&checkpoint::load_optimizer(&last, device)?);
        meta.epoch = m.epoch;
        meta.step = m.step;
        meta.best_score = m.best_score;
    }

    let steps_per_epoch = {
        let n = train_set.clips.len().div_ceil(cfg.train.batch_size);
        cfg.train.max_steps_per_epoch.map_or(n, |m| m.min(n))
    };
    let total_steps = (steps_per_epoch * cfg.train.epochs) as u64;
    let spec = input_spec(&net);
    let log_path = out.join("log.jsonl");
    let mut log = open_log(&log_path)?;
    let amp = cfg.train.mixed_precision && device.is_cuda();
    let arc = arcface_of(&net);
    let mut first_val = None;
    let mut last_val = None;

    if meta.epoch == 0 {
        // The untrained network's validation score: the baseline the log starts from.
        first_val = Some(evaluate(
            &net,
            &val_set,
            cfg.train.batch_size,
            cfg.data.workers,
            &cfg.loss,
            device,
        )?);
    }
    for epoch in meta.epoch..cfg.train.epochs {
        let started = Instant::now();
        let order = epoch_order(
            train_set.clips.len(),
            cfg.train.seed,
            epoch,
            steps_per_epoch * cfg.train.batch_size,
        );
        let bar = epoch_bar(cfg, epoch, steps_per_epoch);
        let mut sums = [0f64; 5];
        let mut steps = 0usize;
        let mut images = 0usize;
        let mut lr = 0.0;
        for_each_batch::<TrainError>(
            &train_set,
            &order,
            cfg.train.batch_size,
            &spec,
            Some((&cfg.augment, cfg.train.seed ^ ((epoch as u64) << 32))),
            cfg.data.workers,
            |b| {
                let t = batch_tensors(&b, spec.size, spec.audio_frames, device);
                lr = learning_rate(&cfg.optimizer, opt.step, total_steps);
                let l = train_step(&net, &mut opt, &t, &b, &cfg.loss, arc, amp, lr);
                let values = [&l.total, &l.va_ccc, &l.va_mse, &l.au, &l.expression]
                    .map(|v| v.double_value(&[]));
                if !values[0].is_finite() {
                    return Err(TrainError::Setup(format!(
                        "the loss became {} at step {} (lower optimizer.lr?)",
                        values[0], opt.step
                    )));
                }
                for (s, v) in sums.iter_mut().zip(values) {
                    *s += v;
                }
                steps += 1;
                images += b.clips * b.len;
                bar.set_message(format!("loss {:.4}", sums[0] / steps as f64));
                bar.inc(1);
                // Without a terminal the bar is hidden: report every tenth of an epoch instead.
                let tenth = steps_per_epoch.div_ceil(10).max(1);
                if cfg.train.progress && bar.is_hidden() && steps.is_multiple_of(tenth) {
                    eprintln!(
                        "epoch {}/{} step {steps}/{steps_per_epoch}: loss {:.4}, {:.1} images/s",
                        epoch + 1,
                        cfg.train.epochs,
                        sums[0] / steps as f64,
                        images as f64 / started.elapsed().as_secs_f64()
                    );
                }
                Ok(())
            },
        )?;
        bar.finish_and_clear();
        let train_seconds = started.elapsed().as_secs_f64();
        let val = evaluate(
            &net,
            &val_set,
            cfg.train.batch_size,
            cfg.data.workers,
            &cfg.loss,
            device,
        )?;
        let ns = steps.max(1) as f64;
        let line = LogLine {
            epoch: epoch + 1,
            step: opt.step,
            lr,
            train_loss: sums[0] / ns,
            train_va_ccc: sums[1] / ns,
            train_va_mse: sums[2] / ns,
            train_au: sums[3] / ns,
            train_expression: sums[4] / ns,
            images_per_s: images as f64 / train_seconds,
            seconds: started.elapsed().as_secs_f64(),
            val: &val,
        };
        write_epoch_log(&mut log, &log_path, &line, cfg.train.epochs)?;
        meta.epoch = epoch + 1;
        meta.step = opt.step;
        let improved = meta.best_score.is_none_or(|b| val.score > b);
        if improved {
            meta.best_score = Some(val.score);
            checkpoint::save(&best, &meta, &vs, &opt.state())?;
        }
        checkpoint::save(&last, &meta, &vs, &opt.state())?;
        last_val = Some(val);
    }
    let last_val = match last_val {
        Some(v) => v,
        // Nothing left to train: report the checkpoint as it is.
        None => evaluate(
            &net,
            &val_set,
            cfg.train.batch_size,
            cfg.data.workers,
            &cfg.loss,
            device,
        )?,
    };
    Ok(Summary {
        epochs: meta.epoch,
        first_val,
        last_val,
        best_score: meta.best_score.unwrap_or(f64::NAN),
        out,
    })
}

/// The training and validation clip sets of `cfg`'s data (clips of one frame for a network
/// that is not temporal); an error when either is empty.
fn open_clip_sets(cfg: &TrainConfig) -> Result<(ClipSet, ClipSet), TrainError> {
    let clip_len = if cfg.network.temporal {
        cfg.data.clip_len
    } else {
        1
    };
    let data = AffWild2::open(&cfg.data.root)?;
    let train_set = ClipSet::open(
        &data,
        Split::Train,
        clip_len,
        cfg.network.audio,
        cfg.data.max_train_clips,
    )?;
    let val_clip_len = if cfg.network.temporal {
        cfg.data.val_clip_len.unwrap_or(clip_len)
    } else {
        1
    };
    let val_set = ClipSet::open(
        &data,
        Split::Validation,
        val_clip_len,
        cfg.network.audio,
        cfg.data.max_val_clips,
    )?;
    if train_set.clips.is_empty() || val_set.clips.is_empty() {
        return Err(TrainError::Setup(format!(
            "{}: no training clips of {clip_len} or validation clips of {val_clip_len} annotated frames",
            cfg.data.root.display()
        )));
    }
    Ok((train_set, val_set))
}

/// Loads the weights of the checkpoint in `dir` into `vs`, after checking that its network is
/// the configuration's; returns the checkpoint's metadata.
fn load_weights(
    vs: &mut nn::VarStore,
    dir: &Path,
    cfg: &TrainConfig,
) -> Result<CheckpointMeta, TrainError> {
    let m = checkpoint::read_meta(dir)?;
    if m.network != cfg.network {
        return Err(TrainError::Setup(format!(
            "{}: the checkpoint's network differs from the configuration's [network]",
            dir.display()
        )));
    }
    let model = dir.join(checkpoint::MODEL_FILE);
    vs.load(&model).map_err(|source| CheckpointError::Torch {
        path: model,
        source,
    })?;
    Ok(m)
}

/// The training log at `path`, opened for appending (created when missing).
fn open_log(path: &Path) -> Result<std::fs::File, TrainError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// The clips of one epoch, in an order shuffled by the seed and the epoch, the first `take`.
fn epoch_order(clips: usize, seed: u64, epoch: usize, take: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..clips).collect();
    let mut rng = Rng::new(seed ^ (epoch as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order.truncate(take);
    order
}

/// The progress bar of one epoch (hidden without `train.progress`).
fn epoch_bar(cfg: &TrainConfig, epoch: usize, steps_per_epoch: usize) -> indicatif::ProgressBar {
    let bar = if cfg.train.progress {
        indicatif::ProgressBar::new(steps_per_epoch as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "epoch {prefix} {bar:30} {pos}/{len} {per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_prefix(format!("{}/{}", epoch + 1, cfg.train.epochs));
    bar
}

/// Appends an epoch's line to the training log and says it on stderr.
fn write_epoch_log(
    log: &mut std::fs::File,
    log_path: &Path,
    line: &LogLine<'_>,
    epochs: usize,
) -> Result<(), TrainError> {
    let json = serde_json::to_string(line).map_err(|e| TrainError::Setup(e.to_string()))?;
    writeln!(log, "{json}").map_err(|source| TrainError::Io {
        path: log_path.to_path_buf(),
        source,
    })?;
    let val = line.val;
    eprintln!(
        "epoch {}/{}: train loss {:.4}, val loss {:.4}, P_VA {}, P_EXPR {}, P_AU {}, {:.0} images/s",
        line.epoch,
        epochs,
        line.train_loss,
        val.loss,
        fmt_score(val.p_va),
        fmt_score(val.p_expr),
        fmt_score(val.p_au),
        line.images_per_s
    );
    Ok(())
}

fn fmt_score(s: Option<f64>) -> String {
    s.map_or_else(|| "-".into(), |v| format!("{v:.3}"))
}
