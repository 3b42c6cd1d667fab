// SPDX-License-Identifier: MPL-2.0
//! Scores of the ABAW challenges on Aff-Wild2, computed the way the challenge computes them.
//!
//! - Valence/arousal: Lin's concordance correlation coefficient (CCC) with population
//!   (ddof = 0) moments; `P_VA` is the mean CCC of valence and arousal.
//! - Expressions: per-class F1 and their unweighted (macro) mean over all 8 classes, whether or
//!   not a class occurs; `P_EXPR` is that macro F1. The 2020 challenge's score was
//!   `0.67 * F1 + 0.33 * accuracy`.
//! - Action units: binary F1 per AU and its mean over the 12 AUs (`P_AU`). The 2020 score was
//!   `0.5 * F1 + 0.5 * accuracy`, accuracy taken over every (frame, AU) decision.
//! - Multi-task learning: `MTL = P_VA + P_EXPR + P_AU`.
//!
//! F1 follows scikit-learn's `f1_score` with `zero_division=0`: a class with no true and no
//! predicted occurrence scores 0. All sums run in `f64`.

use thiserror::Error;

/// Inputs that no score can be computed from.
#[derive(Debug, Error, PartialEq)]
pub enum MetricError {
    #[error("{what}: {pred} predictions for {gold} ground-truth values")]
    LengthMismatch {
        what: &'static str,
        pred: usize,
        gold: usize,
    },
    #[error("{what}: no values to score")]
    Empty { what: &'static str },
    #[error("{what}: class {value} is outside 0..{n_classes}")]
    ClassOutOfRange {
        what: &'static str,
        value: usize,
        n_classes: usize,
    },
    #[error("{what}: {len} values do not make whole rows of {n_labels} labels")]
    Ragged {
        what: &'static str,
        len: usize,
        n_labels: usize,
    },
}

fn check_lengths(what: &'static str, pred: usize, gold: usize) -> Result<(), MetricError> {
    if pred != gold {
        return Err(MetricError::LengthMismatch { what, pred, gold });
    }
    if gold == 0 {
        return Err(MetricError::Empty { what });
    }
    Ok(())
}

/// Lin's concordance correlation coefficient
/// `2 cov(p, g) / (var(p) + var(g) + (mean(p) - mean(g))^2)`, population moments.
/// Two constant, equal series have a zero denominator; they score 0 (nothing was predicted
/// about variation).
pub fn ccc(pred: &[f32], gold: &[f32]) -> Result<f64, MetricError> {
    check_lengths("CCC", pred.len(), gold.len())?;
    let n = pred.len() as f64;
    let mean_p = pred.iter().map(|&v| v as f64).sum::<f64>() / n;
    let mean_g = gold.iter().map(|&v| v as f64).sum::<f64>() / n;
    let (mut var_p, mut var_g, mut cov) = (0.0, 0.0, 0.0);
    for (&p, &g) in pred.iter().zip(gold) {
        let dp = p as f64 - mean_p;
        let dg = g as f64 - mean_g;
        var_p += dp * dp;
        var_g += dg * dg;
        cov += dp * dg;
    }
    let denominator = var_p / n + var_g / n + (mean_p - mean_g).powi(2);
    if denominator == 0.0 {
        return Ok(0.0);
    }
    Ok(2.0 * (cov / n) / denominator)
}

/// F1 from counts; 0 when there is nothing to count (`zero_division=0`).
fn f1_from_counts(tp: u64, fp: u64, fn_: u64) -> f64 {
    let denominator = 2 * tp + fp + fn_;
    if denominator == 0 {
        0.0
    } else {
        2.0 * tp as f64 / denominator as f64
    }
}

/// Binary F1 of the positive class; any non-zero value is positive.
pub fn binary_f1(pred: &[u8], gold: &[u8]) -> Result<f64, MetricError> {
    check_lengths("binary F1", pred.len(), gold.len())?;
    let (mut tp, mut fp, mut fn_) = (0u64, 0u64, 0u64);
    for (&p, &g) in pred.iter().zip(gold) {
        match (p != 0, g != 0) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => {}
        }
    }
    Ok(f1_from_counts(tp, fp, fn_))
}

fn check_classes(
    what: &'static str,
    values: &[usize],
    n_classes: usize,
) -> Result<(), MetricError> {
    match values.iter().find(|&&v| v >= n_classes) {
        Some(&value) => Err(MetricError::ClassOutOfRange {
            what,
            value,
            n_classes,
        }),
        None => Ok(()),
    }
}

/// F1 of every class `0..n_classes` (one-vs-rest), in class order.
pub fn per_class_f1(
    pred: &[usize],
    gold: &[usize],
    n_classes: usize,
) -> Result<Vec<f64>, MetricError> {
    check_lengths("per-class F1", pred.len(), gold.len())?;
    check_classes("per-class F1 prediction", pred, n_classes)?;
    check_classes("per-class F1 ground truth", gold, n_classes)?;
    let mut tp = vec![0u64; n_classes];
    let mut fp = vec![0u64; n_classes];
    let mut fn_ = vec![0u64; n_classes];
    for (&p, &g) in pred.iter().zip(gold) {
        if p == g {
            tp[p] += 1;
        } else {
            fp[p] += 1;
            fn_[g] += 1;
        }
    }
    Ok((0..n_classes)
        .map(|c| f1_from_counts(tp[c], fp[c], fn_[c]))
        .collect())
}

/// Unweighted mean of [`per_class_f1`] over all `n_classes` classes.
pub fn macro_f1(pred: &[usize], gold: &[usize], n_classes: usize) -> Result<f64, MetricError> {
    let f1 = per_class_f1(pred, gold, n_classes)?;
    Ok(mean(&f1))
}

/// Fraction of equal entries.
pub fn accuracy<T: PartialEq>(pred: &[T], gold: &[T]) -> Result<f64, MetricError> {
    check_lengths("accuracy", pred.len(), gold.len())?;
    let correct = pred.iter().zip(gold).filter(|(p, g)| p == g).count();
    Ok(correct as f64 / gold.len() as f64)
}

fn check_rows(what: &'static str, len: usize, n_labels: usize) -> Result<(), MetricError> {
    if n_labels == 0 || !len.is_multiple_of(n_labels) {
        return Err(MetricError::Ragged {
            what,
            len,
            n_labels,
        });
    }
    Ok(())
}

/// Binary F1 of every label of a multi-label problem. `pred` and `gold` are row-major
/// `[sample][label]` with `n_labels` columns; non-zero is positive.
pub fn per_label_f1(pred: &[u8], gold: &[u8], n_labels: usize) -> Result<Vec<f64>, MetricError> {
    check_lengths("per-label F1", pred.len(), gold.len())?;
    check_rows("per-label F1", gold.len(), n_labels)?;
    let mut counts = vec![(0u64, 0u64, 0u64); n_labels];
    for (p_row, g_row) in pred.chunks_exact(n_labels).zip(gold.chunks_exact(n_labels)) {
        for ((&p, &g), c) in p_row.iter().zip(g_row).zip(counts.iter_mut()) {
            match (p != 0, g != 0) {
                (true, true) => c.0 += 1,
                (true, false) => c.1 += 1,
                (false, true) => c.2 += 1,
                (false, false) => {}
            }
        }
    }
    Ok(counts
        .into_iter()
        .map(|(tp, fp, fn_)| f1_from_counts(tp, fp, fn_))
        .collect())
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// Valence/arousal scores.
#[derive(Clone, Debug, PartialEq)]
pub struct VaScores {
    pub ccc_valence: f64,
    pub ccc_arousal: f64,
    /// `P_VA`: mean of the two CCCs.
    pub p_va: f64,
}

/// Scores valence and arousal predictions against ground truth.
pub fn va_scores(
    pred_valence: &[f32],
    pred_arousal: &[f32],
    gold_valence: &[f32],
    gold_arousal: &[f32],
) -> Result<VaScores, MetricError> {
    let ccc_valence = ccc(pred_valence, gold_valence)?;
    let ccc_arousal = ccc(pred_arousal, gold_arousal)?;
    Ok(VaScores {
        ccc_valence,
        ccc_arousal,
        p_va: 0.5 * (ccc_valence + ccc_arousal),
    })
}

/// Expression scores.
#[derive(Clone, Debug, PartialEq)]
pub struct ExprScores {
    pub per_class_f1: Vec<f64>,
    /// `P_EXPR`: macro F1 over all classes.
    pub macro_f1: f64,
    pub accuracy: f64,
    /// The 2020 challenge's `0.67 * F1 + 0.33 * accuracy`.
    pub score_2020: f64,
}

/// Scores expression class predictions over `n_classes` classes.
pub fn expr_scores(
    pred: &[usize],
    gold: &[usize],
    n_classes: usize,
) -> Result<ExprScores, MetricError> {
    let per_class_f1 = per_class_f1(pred, gold, n_classes)?;
    let macro_f1 = mean(&per_class_f1);
    let accuracy = accuracy(pred, gold)?;
    Ok(ExprScores {
        per_class_f1,
        macro_f1,
        accuracy,
        score_2020: 0.67 * macro_f1 + 0.33 * accuracy,
    })
}

/// Action unit scores.
#[derive(Clone, Debug, PartialEq)]
pub struct AuScores {
    pub per_au_f1: Vec<f64>,
    /// `P_AU`: mean F1 over the AUs.
    pub mean_f1: f64,
    /// Accuracy over every (frame, AU) decision.
    pub accuracy: f64,
    /// The 2020 challenge's `0.5 * F1 + 0.5 * accuracy`.
    pub score_2020: f64,
}

/// Scores AU occurrence predictions, row-major `[frame][au]` with `n_aus` columns.
pub fn au_scores(pred: &[u8], gold: &[u8], n_aus: usize) -> Result<AuScores, MetricError> {
    let per_au_f1 = per_label_f1(pred, gold, n_aus)?;
    let mean_f1 = mean(&per_au_f1);
    let correct = pred
        .iter()
        .zip(gold)
        .filter(|&(&p, &g)| (p != 0) == (g != 0))
        .count();
    let accuracy = correct as f64 / gold.len() as f64;
    Ok(AuScores {
        per_au_f1,
        mean_f1,
        accuracy,
        score_2020: 0.5 * mean_f1 + 0.5 * accuracy,
    })
}

/// The multi-task score `P_VA + P_EXPR + P_AU` (range 0..3).
pub fn mtl_score(p_va: f64, p_expr: f64, p_au: f64) -> f64 {
    p_va + p_expr + p_au
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ccc_closed_forms() {
        let x = [0.1f32, -0.4, 0.7, 0.2];
        assert!((ccc(&x, &x).unwrap() - 1.0).abs() < 1e-12);
        let neg: Vec<f32> = x.iter().map(|v| -v).collect();
        // Mirror image around 0: cov = -var, and the mean gap adds to the denominator.
        let m = x.iter().map(|&v| v as f64).sum::<f64>() / 4.0;
        let var = x.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / 4.0;
        let expected = -2.0 * var / (2.0 * var + 4.0 * m * m);
        assert!((ccc(&neg, &x).unwrap() - expected).abs() < 1e-12);
        // A constant offset keeps correlation 1 but lowers the CCC.
        let shifted: Vec<f32> = x.iter().map(|v| v + 0.5).collect();
        assert!(ccc(&shifted, &x).unwrap() < 1.0);
        assert_eq!(ccc(&[0.3, 0.3], &[0.3, 0.3]).unwrap(), 0.0);
    }

    #[test]
    fn f1_by_hand() {
        // tp = 2, fp = 1, fn = 1 -> 4 / 6.
        let f1 = binary_f1(&[1, 1, 1, 0, 0], &[1, 1, 0, 1, 0]).unwrap();
        assert!((f1 - 4.0 / 6.0).abs() < 1e-15);
        assert_eq!(binary_f1(&[0, 0], &[0, 0]).unwrap(), 0.0);
        let per = per_class_f1(&[0, 1, 2, 2], &[0, 1, 1, 2], 4).unwrap();
        assert_eq!(per[0], 1.0);
        assert!((per[1] - 2.0 / 3.0).abs() < 1e-15);
        assert!((per[2] - 2.0 / 3.0).abs() < 1e-15);
        assert_eq!(per[3], 0.0);
        assert_eq!(accuracy(&[0usize, 1, 2, 2], &[0, 1, 1, 2]).unwrap(), 0.75);
    }

    #[test]
    fn weighted_forms_and_mtl() {
        let e = expr_scores(&[0, 1, 1], &[0, 1, 0], 2).unwrap();
        assert!((e.score_2020 - (0.67 * e.macro_f1 + 0.33 * e.accuracy)).abs() < 1e-15);
        let a = au_scores(&[1, 0, 1, 1], &[1, 0, 0, 1], 2).unwrap();
        assert_eq!(a.accuracy, 0.75);
        assert!((a.score_2020 - (0.5 * a.mean_f1 + 0.5 * a.accuracy)).abs() < 1e-15);
        assert_eq!(mtl_score(0.5, 0.25, 0.125), 0.875);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(matches!(
            ccc(&[0.0], &[]),
            Err(MetricError::LengthMismatch { .. })
        ));
        assert!(matches!(ccc(&[], &[]), Err(MetricError::Empty { .. })));
        assert!(matches!(
            per_class_f1(&[9], &[0], 8),
            Err(MetricError::ClassOutOfRange { value: 9, .. })
        ));
        assert!(matches!(
            per_label_f1(&[0; 5], &[0; 5], 2),
            Err(MetricError::Ragged { .. })
        ));
    }
}
