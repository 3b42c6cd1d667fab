// SPDX-License-Identifier: MPL-2.0
//! The ABAW metrics equal scikit-learn's `f1_score` / `accuracy_score` and a float64 CCC
//! computed by numpy in the test, on random data.

use affect_core::metrics::{accuracy, au_scores, ccc, expr_scores, va_scores};
use affect_core::testutil::{run_python, scratch_dir, write_f32};

const TOLERANCE: f64 = 1e-9;

struct Lcg(u64);
impl Lcg {
    fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

const PEER: &str = r#"
import sys, numpy as np
from sklearn.metrics import f1_score, accuracy_score
d = sys.argv[1]
n = int(sys.argv[2])
f = lambda name: np.fromfile(f"{d}/{name}", dtype='<f4')
def ccc(p, g):
    p = p.astype(np.float64); g = g.astype(np.float64)
    mp, mg = p.mean(), g.mean()
    cov = ((p - mp) * (g - mg)).mean()
    return 2 * cov / (p.var() + g.var() + (mp - mg) ** 2)
out = [ccc(f('pv'), f('gv')), ccc(f('pa'), f('ga'))]
pe, ge = f('pe').astype(int), f('ge').astype(int)
out += list(f1_score(ge, pe, labels=list(range(8)), average=None, zero_division=0))
out.append(f1_score(ge, pe, labels=list(range(8)), average='macro', zero_division=0))
out.append(accuracy_score(ge, pe))
pau, gau = f('pau').astype(int).reshape(n, 12), f('gau').astype(int).reshape(n, 12)
out += [f1_score(gau[:, k], pau[:, k], zero_division=0) for k in range(12)]
out.append(f1_score(gau, pau, average='macro', zero_division=0))
out.append(accuracy_score(gau.ravel(), pau.ravel()))
print(' '.join(repr(float(v)) for v in out))
"#;

#[test]
fn metrics_equal_sklearn_and_float64_ccc() {
    let dir = scratch_dir("metrics-sklearn");
    let mut rng = Lcg(7);
    let n = 997;
    let gv: Vec<f32> = (0..n).map(|_| (rng.uniform() * 2.0 - 1.0) as f32).collect();
    let pv: Vec<f32> = gv
        .iter()
        .map(|g| g * 0.6 + (rng.uniform() - 0.4) as f32 * 0.5)
        .collect();
    let ga: Vec<f32> = (0..n).map(|_| (rng.uniform() * 2.0 - 1.0) as f32).collect();
    let pa: Vec<f32> = ga.iter().map(|g| -0.2 * g + rng.uniform() as f32).collect();
    // Class 7 never occurs in the ground truth and class 6 is never predicted: both must
    // still count in the macro mean.
    let ge: Vec<usize> = (0..n).map(|_| (rng.uniform() * 7.0) as usize).collect();
    let pe: Vec<usize> = ge
        .iter()
        .map(|&g| {
            if rng.uniform() < 0.6 {
                g
            } else {
                (rng.uniform() * 8.0) as usize
            }
        })
        .map(|c| if c == 6 { 7 } else { c })
        .collect();
    let gau: Vec<u8> = (0..n * 12)
        .map(|i| (rng.uniform() < 0.1 + 0.05 * (i % 12) as f64) as u8)
        .collect();
    let pau: Vec<u8> = gau
        .iter()
        .map(|&g| if rng.uniform() < 0.8 { g } else { 1 - g })
        .collect();
    let as_f32 = |v: &[usize]| v.iter().map(|&c| c as f32).collect::<Vec<_>>();
    let as_f32_u8 = |v: &[u8]| v.iter().map(|&c| c as f32).collect::<Vec<_>>();
    write_f32(&dir.join("pv"), &pv);
    write_f32(&dir.join("gv"), &gv);
    write_f32(&dir.join("pa"), &pa);
    write_f32(&dir.join("ga"), &ga);
    write_f32(&dir.join("pe"), &as_f32(&pe));
    write_f32(&dir.join("ge"), &as_f32(&ge));
    write_f32(&dir.join("pau"), &as_f32_u8(&pau));
    write_f32(&dir.join("gau"), &as_f32_u8(&gau));
    let out = run_python(PEER, &[dir.to_str().unwrap(), &n.to_string()]);
    let peer: Vec<f64> = out.split_whitespace().map(|v| v.parse().unwrap()).collect();
    assert_eq!(peer.len(), 2 + 8 + 2 + 12 + 2);

    let close = |ours: f64, theirs: f64, what: &str| {
        assert!(
            (ours - theirs).abs() <= TOLERANCE,
            "{what}: ours {ours}, peer {theirs}"
        );
    };
    close(ccc(&pv, &gv).unwrap(), peer[0], "CCC valence");
    close(ccc(&pa, &ga).unwrap(), peer[1], "CCC arousal");
    let va = va_scores(&pv, &pa, &gv, &ga).unwrap();
    close(va.p_va, 0.5 * (peer[0] + peer[1]), "P_VA");

    let e = expr_scores(&pe, &ge, 8).unwrap();
    for c in 0..8 {
        close(e.per_class_f1[c], peer[2 + c], &format!("F1 of class {c}"));
    }
    close(e.macro_f1, peer[10], "macro F1");
    close(e.accuracy, peer[11], "accuracy");
    close(accuracy(&pe, &ge).unwrap(), peer[11], "accuracy()");
    close(
        e.score_2020,
        0.67 * peer[10] + 0.33 * peer[11],
        "0.67 F1 + 0.33 Acc",
    );

    let a = au_scores(&pau, &gau, 12).unwrap();
    for k in 0..12 {
        close(
            a.per_au_f1[k],
            peer[12 + k],
            &format!("F1 of AU column {k}"),
        );
    }
    close(a.mean_f1, peer[24], "P_AU");
    close(a.accuracy, peer[25], "AU accuracy");
    close(
        a.score_2020,
        0.5 * peer[24] + 0.5 * peer[25],
        "0.5 F1 + 0.5 Acc",
    );
}
