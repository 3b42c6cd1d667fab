// SPDX-License-Identifier: MPL-2.0
//! ABAW evaluation of a prediction file against the annotations of a data root.
//!
//! # Prediction files (`affect-train eval --pred FILE`)
//!
//! CSV with the header
//! `video,frame,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26`
//! and one row per predicted frame: `video` is the annotation name (`<video>`,
//! `<video>_left`, `<video>_right`), `frame` is 1-based as in the annotation files,
//! `valence`/`arousal` are in [-1, 1], `expression` is a class index (0..7, ABAW order) or a
//! class name, and each AU column is an occurrence probability or 0/1 (>= 0.5 counts as
//! occurring). Every annotated frame of the evaluated split must have a row.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use affect_core::labels::{
    AU_LABELS, EXPRESSION_LABELS, N_AUS, N_EXPRESSIONS, au_index, expression_index,
};
use affect_core::metrics::{self, AuScores, ExprScores, MetricError, VaScores};
use thiserror::Error;

use crate::data::{AffWild2, DataError, Split};

#[derive(Debug, Error)]
pub enum EvalError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "{path}: no prediction for {missing} annotated frames (first: {first_name} frame {first_frame})"
    )]
    Missing {
        path: PathBuf,
        missing: usize,
        first_name: String,
        first_frame: u32,
    },
    #[error(transparent)]
    Metric(#[from] MetricError),
}

/// One predicted frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub va: [f32; 2],
    pub expression: usize,
    pub au: [u8; N_AUS],
}

/// The prediction file header.
pub fn prediction_header() -> String {
    format!(
        "video,frame,valence,arousal,expression,{}",
        AU_LABELS.join(",")
    )
}

/// Reads a prediction file, keyed by (annotation name, 1-based frame).
pub fn read_predictions(path: &Path) -> Result<HashMap<(String, u32), Prediction>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let err = |line: usize, message: String| EvalError::Parse {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines
        .next()
        .ok_or_else(|| err(1, "empty prediction file".into()))?;
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    let expected: Vec<String> = prediction_header().split(',').map(str::to_string).collect();
    if columns.len() != expected.len()
        || columns[..5]
            .iter()
            .zip(&expected[..5])
            .any(|(c, e)| !c.eq_ignore_ascii_case(e))
        || columns[5..]
            .iter()
            .enumerate()
            .any(|(k, c)| au_index(c) != Some(k))
    {
        return Err(err(
            1,
            format!("header {header:?}, expected {:?}", prediction_header()),
        ));
    }
    let mut out = HashMap::new();
    for (i, line) in lines {
        let n = i + 1;
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != expected.len() {
            return Err(err(
                n,
                format!("{} fields, expected {}", f.len(), expected.len()),
            ));
        }
        let num = |s: &str, what: &str| {
            s.parse::<f32>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| err(n, format!("{what} {s:?} is not a number")))
        };
        let frame: u32 = f[1]
            .parse()
            .map_err(|_| err(n, format!("frame {:?} is not a frame number", f[1])))?;
        let expression = match f[4].parse::<usize>() {
            Ok(k) if k < N_EXPRESSIONS => k,
            Ok(k) => return Err(err(n, format!("expression {k} outside 0..{N_EXPRESSIONS}"))),
            Err(_) => expression_index(f[4])
                .ok_or_else(|| err(n, format!("unknown expression {:?}", f[4])))?,
        };
        let mut au = [0u8; N_AUS];
        for (k, a) in au.iter_mut().enumerate() {
            let p = num(f[5 + k], AU_LABELS[k])?;
            *a = (p >= 0.5) as u8;
        }
        let pred = Prediction {
            va: [num(f[2], "valence")?, num(f[3], "arousal")?],
            expression,
            au,
        };
        if out.insert((f[0].to_string(), frame), pred).is_some() {
            return Err(err(
                n,
                format!("second prediction for {} frame {frame}", f[0]),
            ));
        }
    }
    Ok(out)
}

/// Scores of one evaluation; a task without annotated frames has no scores.
#[derive(Clone, Debug)]
pub struct EvalReport {
    pub va: Option<VaScores>,
    pub expr: Option<ExprScores>,
    pub au: Option<AuScores>,
    pub frames: [usize; 3],
}

impl EvalReport {
    /// `P_VA + P_EXPR + P_AU`, with 0 for a task that has no frames.
    pub fn mtl(&self) -> f64 {
        metrics::mtl_score(
            self.va.as_ref().map_or(0.0, |s| s.p_va),
            self.expr.as_ref().map_or(0.0, |s| s.macro_f1),
            self.au.as_ref().map_or(0.0, |s| s.mean_f1),
        )
    }
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(v) = &self.va {
            writeln!(
                f,
                "VA    ({} frames): CCC valence {:.4}  CCC arousal {:.4}  P_VA {:.4}",
                self.frames[0], v.ccc_valence, v.ccc_arousal, v.p_va
            )?;
        }
        if let Some(e) = &self.expr {
            writeln!(
                f,
                "EXPR  ({} frames): P_EXPR (macro F1) {:.4}  accuracy {:.4}  0.67*F1+0.33*Acc {:.4}",
                self.frames[1], e.macro_f1, e.accuracy, e.score_2020
            )?;
            let per: Vec<String> = EXPRESSION_LABELS
                .iter()
                .zip(&e.per_class_f1)
                .map(|(l, v)| format!("{l} {v:.3}"))
                .collect();
            writeln!(f, "      F1 per class: {}", per.join("  "))?;
        }
        if let Some(a) = &self.au {
            writeln!(
                f,
                "AU    ({} frames): P_AU (mean F1) {:.4}  accuracy {:.4}  0.5*F1+0.5*Acc {:.4}",
                self.frames[2], a.mean_f1, a.accuracy, a.score_2020
            )?;
            let per: Vec<String> = AU_LABELS
                .iter()
                .zip(&a.per_au_f1)
                .map(|(l, v)| format!("{l} {v:.3}"))
                .collect();
            writeln!(f, "      F1 per AU: {}", per.join("  "))?;
        }
        write!(f, "MTL = P_VA + P_EXPR + P_AU = {:.4}", self.mtl())
    }
}

/// Scores the predictions of `pred_path` over every annotated frame of a split.
pub fn evaluate(data: &AffWild2, split: Split, pred_path: &Path) -> Result<EvalReport, EvalError> {
    let preds = read_predictions(pred_path)?;
    let (mut pv, mut pa, mut gv, mut ga) = (vec![], vec![], vec![], vec![]);
    let (mut pe, mut ge) = (vec![], vec![]);
    let (mut pau, mut gau) = (vec![], vec![]);
    let mut missing = 0usize;
    let mut first_missing = None;
    for name in data.names(split)? {
        for (i, labels) in data.labels(split, &name)?.into_iter().enumerate() {
            if labels.is_empty() {
                continue;
            }
            let frame = i as u32 + 1;
            let Some(p) = preds.get(&(name.clone(), frame)) else {
                missing += 1;
                first_missing.get_or_insert((name.clone(), frame));
                continue;
            };
            if let Some([v, a]) = labels.va {
                pv.push(p.va[0]);
                pa.push(p.va[1]);
                gv.push(v);
                ga.push(a);
            }
            if let Some(e) = labels.expression {
                pe.push(p.expression);
                ge.push(e);
            }
            if let Some(au) = labels.au {
                pau.extend_from_slice(&p.au);
                gau.extend_from_slice(&au);
            }
        }
    }
    if let Some((first_name, first_frame)) = first_missing {
        return Err(EvalError::Missing {
            path: pred_path.to_path_buf(),
            missing,
            first_name,
            first_frame,
        });
    }
    Ok(EvalReport {
        va: (!gv.is_empty())
            .then(|| metrics::va_scores(&pv, &pa, &gv, &ga))
            .transpose()?,
        expr: (!ge.is_empty())
            .then(|| metrics::expr_scores(&pe, &ge, N_EXPRESSIONS))
            .transpose()?,
        au: (!gau.is_empty())
            .then(|| metrics::au_scores(&pau, &gau, N_AUS))
            .transpose()?,
        frames: [gv.len(), ge.len(), gau.len() / N_AUS],
    })
}
