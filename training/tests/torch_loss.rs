// SPDX-License-Identifier: MPL-2.0
//! The multi-task loss against closed forms computed here in f64 on hand-made batches, with
//! the Aff-Wild2 masks (-5 for valence/arousal, -1 for classes and AUs).

#![cfg(feature = "torch")]

use affect_train::loss::{LossWeights, Targets, arcface_logits, multitask_loss};
use affect_train::model::HeadOutputs;
use tch::{Kind, Tensor};

fn t2(rows: &[&[f64]]) -> Tensor {
    let cols = rows[0].len() as i64;
    let flat: Vec<f32> = rows
        .iter()
        .flat_map(|r| r.iter().map(|&v| v as f32))
        .collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, cols])
}

fn scalar(t: &Tensor) -> f64 {
    t.double_value(&[])
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Population CCC as the loss defines it (with its 1e-8 in the denominator).
fn ccc(p: &[f64], g: &[f64]) -> f64 {
    let n = p.len() as f64;
    let mp = p.iter().sum::<f64>() / n;
    let mg = g.iter().sum::<f64>() / n;
    let vp = p.iter().map(|x| (x - mp).powi(2)).sum::<f64>() / n;
    let vg = g.iter().map(|x| (x - mg).powi(2)).sum::<f64>() / n;
    let cov = p
        .iter()
        .zip(g)
        .map(|(x, y)| (x - mp) * (y - mg))
        .sum::<f64>()
        / n;
    2.0 * cov / (vp + vg + (mp - mg).powi(2) + 1e-8)
}

fn log_sum_exp(xs: &[f64]) -> f64 {
    let m = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    m + xs.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

const VA_PRED: [[f64; 2]; 5] = [
    [0.3, -0.2],
    [0.1, 0.5],
    [-0.4, 0.0],
    [0.8, 0.6],
    [0.0, -0.7],
];
// Row 2 has no valence, row 4 no labels at all; arousal is labelled on rows 0, 1, 2, 3.
const VA_GOLD: [[f64; 2]; 5] = [
    [0.5, -0.1],
    [0.2, 0.4],
    [-5.0, 0.3],
    [0.6, 0.9],
    [-5.0, -5.0],
];
const EXPR_GOLD: [i64; 5] = [2, -1, 0, 7, 2];

fn expr_logits() -> Vec<[f64; 8]> {
    (0..5)
        .map(|r| {
            let mut row = [0.0; 8];
            for (c, v) in row.iter_mut().enumerate() {
                *v = ((r * 8 + c) as f64 * 0.37).sin() * 2.0;
            }
            row
        })
        .collect()
}

fn au_logits() -> Vec<[f64; 12]> {
    (0..5)
        .map(|r| {
            let mut row = [0.0; 12];
            for (c, v) in row.iter_mut().enumerate() {
                *v = ((r * 12 + c) as f64 * 0.53).cos() * 3.0;
            }
            row
        })
        .collect()
}

/// AU labels: row 1 unlabelled, the others a fixed 0/1 pattern.
fn au_gold() -> Vec<[f64; 12]> {
    (0..5)
        .map(|r| {
            let mut row = [0.0; 12];
            for (c, v) in row.iter_mut().enumerate() {
                *v = if r == 1 {
                    -1.0
                } else {
                    ((r + c) % 3 == 0) as u8 as f64
                };
            }
            row
        })
        .collect()
}

fn outputs(expr_cos: Option<Tensor>) -> HeadOutputs {
    let ex = expr_logits();
    let au = au_logits();
    let ex_rows: Vec<&[f64]> = ex.iter().map(|r| r.as_slice()).collect();
    let au_rows: Vec<&[f64]> = au.iter().map(|r| r.as_slice()).collect();
    let va_rows: Vec<&[f64]> = VA_PRED.iter().map(|r| r.as_slice()).collect();
    HeadOutputs {
        va: t2(&va_rows),
        au_logits: t2(&au_rows),
        expr_logits: t2(&ex_rows),
        expr_cos,
        embedding: Tensor::zeros([5, 4], (Kind::Float, tch::Device::Cpu)),
    }
}

fn targets() -> Targets {
    let va_rows: Vec<&[f64]> = VA_GOLD.iter().map(|r| r.as_slice()).collect();
    let au = au_gold();
    let au_rows: Vec<&[f64]> = au.iter().map(|r| r.as_slice()).collect();
    Targets {
        va: t2(&va_rows),
        expression: Tensor::from_slice(&EXPR_GOLD),
        au: t2(&au_rows),
    }
}

#[test]
fn each_term_equals_its_closed_form_with_masks() {
    let weights = LossWeights {
        va_ccc: 2.0,
        va_mse: 0.5,
        au: 3.0,
        expression: 1.5,
    };
    let l = multitask_loss(&outputs(None), &targets(), &weights, None);

    // Valence on rows 0, 1, 3; arousal on rows 0..=3.
    let (mut pv, mut gv, mut pa, mut ga) = (vec![], vec![], vec![], vec![]);
    let (mut se, mut ne) = (0.0, 0.0);
    for r in 0..5 {
        if VA_GOLD[r][0] != -5.0 {
            pv.push(VA_PRED[r][0]);
            gv.push(VA_GOLD[r][0]);
        }
        if VA_GOLD[r][1] != -5.0 {
            pa.push(VA_PRED[r][1]);
            ga.push(VA_GOLD[r][1]);
        }
        for k in 0..2 {
            if VA_GOLD[r][k] != -5.0 {
                se += (VA_PRED[r][k] - VA_GOLD[r][k]).powi(2);
                ne += 1.0;
            }
        }
    }
    let want_ccc = 1.0 - 0.5 * (ccc(&pv, &gv) + ccc(&pa, &ga));
    let want_mse = se / ne;

    let (mut bce, mut nb) = (0.0, 0.0);
    for (x, y) in au_logits().iter().zip(au_gold()) {
        for k in 0..12 {
            if y[k] >= 0.0 {
                let p = sigmoid(x[k]);
                bce -= y[k] * p.ln() + (1.0 - y[k]) * (1.0 - p).ln();
                nb += 1.0;
            }
        }
    }
    let want_au = bce / nb;

    let (mut ce, mut nc) = (0.0, 0.0);
    for (x, &y) in expr_logits().iter().zip(&EXPR_GOLD) {
        if y >= 0 {
            ce += log_sum_exp(x) - x[y as usize];
            nc += 1.0;
        }
    }
    let want_expr = ce / nc;

    let close = |got: f64, want: f64, what: &str| {
        assert!(
            (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
            "{what}: {got} vs closed form {want}"
        );
    };
    close(scalar(&l.va_ccc), want_ccc, "1 - CCC");
    close(scalar(&l.va_mse), want_mse, "MSE");
    close(scalar(&l.au), want_au, "BCE");
    close(scalar(&l.expression), want_expr, "CE");
    close(
        scalar(&l.total),
        2.0 * want_ccc + 0.5 * want_mse + 3.0 * want_au + 1.5 * want_expr,
        "weighted sum",
    );
    eprintln!(
        "1-CCC {want_ccc:.6} MSE {want_mse:.6} BCE {want_au:.6} CE {want_expr:.6} total {:.6}",
        scalar(&l.total)
    );
}

#[test]
fn unlabelled_rows_do_not_move_any_term() {
    // Changing predictions where nothing is labelled leaves the loss unchanged...
    let base = multitask_loss(&outputs(None), &targets(), &LossWeights::default(), None);
    let o = outputs(None);
    let _ = o.expr_logits.get(1).fill_(50.0);
    let _ = o.au_logits.get(1).fill_(-50.0);
    let _ = o.va.get(4).fill_(0.99);
    let _ = o.va.get(2).get(0).fill_(-0.99);
    let moved = multitask_loss(&o, &targets(), &LossWeights::default(), None);
    assert!((scalar(&base.total) - scalar(&moved.total)).abs() < 1e-6);
    // ...and a batch with no labels at all has zero loss, not NaN.
    let none = Targets {
        va: Tensor::full([5, 2], -5.0, (Kind::Float, tch::Device::Cpu)),
        expression: Tensor::full([5], -1, (Kind::Int64, tch::Device::Cpu)),
        au: Tensor::full([5, 12], -1.0, (Kind::Float, tch::Device::Cpu)),
    };
    let l = multitask_loss(&outputs(None), &none, &LossWeights::default(), None);
    assert_eq!(scalar(&l.total), 0.0);
}

#[test]
fn arcface_target_logit_is_s_cos_theta_plus_m() {
    let (s, m) = (30.0, 0.5);
    let cos_rows: Vec<[f64; 8]> = (0..5)
        .map(|r| {
            let mut row = [0.0; 8];
            for (c, v) in row.iter_mut().enumerate() {
                *v = ((r * 8 + c) as f64 * 0.71).sin() * 0.95;
            }
            row
        })
        .collect();
    let rows: Vec<&[f64]> = cos_rows.iter().map(|r| r.as_slice()).collect();
    let cos = t2(&rows);
    let target = Tensor::from_slice(&EXPR_GOLD);
    let mask = target.ge(0).to_kind(Kind::Float);
    let logits = arcface_logits(&cos, &target.clamp_min(0), &mask, s, m);
    for (r, row) in cos_rows.iter().enumerate() {
        for (c, &cv) in row.iter().enumerate() {
            let want = if EXPR_GOLD[r] == c as i64 {
                s * (cv.acos() + m).cos()
            } else {
                s * cv
            };
            let got = logits.double_value(&[r as i64, c as i64]);
            assert!(
                (got - want).abs() < 1e-4,
                "row {r} class {c}: {got} vs {want}"
            );
        }
    }
    // Through the loss: cross-entropy over those logits, labelled rows only.
    let mut o = outputs(Some(cos.shallow_clone()));
    o.expr_logits = &cos * s;
    let only_expr = LossWeights {
        va_ccc: 0.0,
        va_mse: 0.0,
        au: 0.0,
        expression: 1.0,
    };
    let l = multitask_loss(&o, &targets(), &only_expr, Some((s, m)));
    let (mut ce, mut n) = (0.0, 0.0);
    for (r, row) in cos_rows.iter().enumerate() {
        let y = EXPR_GOLD[r];
        if y < 0 {
            continue;
        }
        let z: Vec<f64> = row
            .iter()
            .enumerate()
            .map(|(c, &cv)| {
                if c as i64 == y {
                    s * (cv.acos() + m).cos()
                } else {
                    s * cv
                }
            })
            .collect();
        ce += log_sum_exp(&z) - z[y as usize];
        n += 1.0;
    }
    let want = ce / n;
    let got = scalar(&l.total);
    assert!((got - want).abs() < 1e-4 * (1.0 + want), "{got} vs {want}");
}
