// SPDX-License-Identifier: MPL-2.0
//! The multi-task loss: cross-entropy (expressions), binary cross-entropy (AUs), 1 - CCC plus
//! MSE (valence/arousal), summed with weights. Every term only sees labelled entries —
//! Aff-Wild2 marks unlabelled valence/arousal with -5 and unlabelled classes and AUs with -1 —
//! so a batch may mix frames labelled for any subset of the tasks. A term with nothing
//! labelled in the batch is zero.

use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

use crate::model::HeadOutputs;

fn one() -> f64 {
    1.0
}

/// Weights of the loss terms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossWeights {
    /// `1 - CCC`, averaged over valence and arousal.
    #[serde(default = "one")]
    pub va_ccc: f64,
    /// Mean squared error of valence and arousal.
    #[serde(default = "one")]
    pub va_mse: f64,
    /// Binary cross-entropy of the AUs.
    #[serde(default = "one")]
    pub au: f64,
    /// Cross-entropy of the expressions.
    #[serde(default = "one")]
    pub expression: f64,
}

impl Default for LossWeights {
    fn default() -> Self {
        Self {
            va_ccc: 1.0,
            va_mse: 1.0,
            au: 1.0,
            expression: 1.0,
        }
    }
}

/// Labels of a batch, as Aff-Wild2 writes them.
pub struct Targets {
    /// `[N, 2]` f32, -5 where unlabelled.
    pub va: Tensor,
    /// `[N]` i64 class index, -1 where unlabelled.
    pub expression: Tensor,
    /// `[N, 12]` f32 0/1, -1 where unlabelled.
    pub au: Tensor,
}

/// The loss of a batch: `total` for backpropagation, the terms for logging.
pub struct LossTerms {
    pub total: Tensor,
    pub va_ccc: Tensor,
    pub va_mse: Tensor,
    pub au: Tensor,
    pub expression: Tensor,
}

/// Keeps the CCC finite when both series are constant.
const CCC_EPS: f64 = 1e-8;

/// `1 - CCC` per column of `pred`/`gold` `[N, K]` over the rows where `mask` is 1, averaged
/// over the columns that have at least two labelled rows; CCC uses population moments:
/// `2 cov / (var_p + var_g + (mean_p - mean_g)^2 + 1e-8)`.
pub fn ccc_loss(pred: &Tensor, gold: &Tensor, mask: &Tensor) -> Tensor {
    let n = mask.sum_dim_intlist(0, false, Kind::Float);
    let nc = n.clamp_min(1.0);
    let mp = (pred * mask).sum_dim_intlist(0, false, Kind::Float) / &nc;
    let mg = (gold * mask).sum_dim_intlist(0, false, Kind::Float) / &nc;
    let dp = (pred - &mp) * mask;
    let dg = (gold - &mg) * mask;
    let vp = (&dp * &dp).sum_dim_intlist(0, false, Kind::Float) / &nc;
    let vg = (&dg * &dg).sum_dim_intlist(0, false, Kind::Float) / &nc;
    let cov = (&dp * &dg).sum_dim_intlist(0, false, Kind::Float) / &nc;
    let diff = &mp - &mg;
    let ccc = cov * 2.0 / (vp + vg + &diff * &diff + CCC_EPS);
    let valid = n.ge(2.0).to_kind(Kind::Float);
    let count = valid.sum(Kind::Float).clamp_min(1.0);
    ((ccc.neg() + 1.0) * valid).sum(Kind::Float) / count
}

/// ArcFace logits: `s * cos(theta + m)` for the target class of labelled rows (`mask`),
/// `s * cos(theta)` for every other entry. `cos` is `[N, C]`, `target` `[N]` i64 (any value
/// where unlabelled).
pub fn arcface_logits(
    cos: &Tensor,
    target: &Tensor,
    mask: &Tensor,
    scale: f64,
    margin: f64,
) -> Tensor {
    let c = cos.clamp(-1.0, 1.0);
    let sin = ((&c * &c).neg() + 1.0).clamp_min(1e-12).sqrt();
    // cos(theta + m) = cos theta cos m - sin theta sin m, theta in [0, pi].
    let with_margin = &c * margin.cos() - sin * margin.sin();
    let onehot = target
        .clamp_min(0)
        .one_hot(cos.size()[1])
        .to_kind(Kind::Float)
        * mask.unsqueeze(1);
    (&c + onehot * (with_margin - &c)) * scale
}

/// The weighted, masked multi-task loss. `arcface` = `(s, m)` when the expression head is
/// ArcFace (the margin is applied on labelled rows only).
pub fn multitask_loss(
    out: &HeadOutputs,
    targets: &Targets,
    weights: &LossWeights,
    arcface: Option<(f64, f64)>,
) -> LossTerms {
    let va_pred = out.va.to_kind(Kind::Float);
    // Labels are in [-1, 1]; -5 marks a missing one.
    let va_mask = targets.va.ge(-1.5).to_kind(Kind::Float);
    let va_ccc = ccc_loss(&va_pred, &targets.va, &va_mask);
    let err = (&va_pred - &targets.va) * &va_mask;
    let va_mse = (&err * &err).sum(Kind::Float) / va_mask.sum(Kind::Float).clamp_min(1.0);

    let au_mask = targets.au.ge(0.0).to_kind(Kind::Float);
    let au_bce = out
        .au_logits
        .to_kind(Kind::Float)
        .binary_cross_entropy_with_logits::<Tensor>(
            &targets.au.clamp(0.0, 1.0),
            None,
            None,
            Reduction::None,
        );
    let au = (au_bce * &au_mask).sum(Kind::Float) / au_mask.sum(Kind::Float).clamp_min(1.0);

    let ex_mask = targets.expression.ge(0).to_kind(Kind::Float);
    let target = targets.expression.clamp_min(0);
    let logits = match (arcface, &out.expr_cos) {
        (Some((s, m)), Some(cos)) => {
            arcface_logits(&cos.to_kind(Kind::Float), &target, &ex_mask, s, m)
        }
        _ => out.expr_logits.to_kind(Kind::Float),
    };
    let log_p = logits.log_softmax(1, Kind::Float);
    let nll = -log_p.gather(1, &target.unsqueeze(1), false).squeeze_dim(1);
    let expression = (nll * &ex_mask).sum(Kind::Float) / ex_mask.sum(Kind::Float).clamp_min(1.0);

    let total = &va_ccc * weights.va_ccc
        + &va_mse * weights.va_mse
        + &au * weights.au
        + &expression * weights.expression;
    LossTerms {
        total,
        va_ccc,
        va_mse,
        au,
        expression,
    }
}
