// SPDX-License-Identifier: MPL-2.0
//! The alignment transform equals skimage's `SimilarityTransform.estimate` and the warp equals
//! OpenCV's `warpAffine(..., INTER_LINEAR)`, both computed in the test.

use affect_core::align::{ARCFACE_112, RgbImage, Similarity, crop_aligned, warp_rgb8};
use affect_core::testutil::{read_f32, run_python, scratch_dir, write_f32};

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

/// Random 5-point sets: the template moved by a random similarity, plus landmark noise.
fn landmark_sets(rng: &mut Lcg, n: usize) -> Vec<[[f32; 2]; 5]> {
    (0..n)
        .map(|_| {
            let s = 0.5 + 3.0 * rng.uniform();
            let r = (rng.uniform() - 0.5) * 2.0;
            let t = Similarity {
                a: s * r.cos(),
                b: s * r.sin(),
                tx: rng.uniform() * 600.0 - 100.0,
                ty: rng.uniform() * 400.0 - 50.0,
            };
            ARCFACE_112.map(|p| {
                let q = t.apply(p);
                [
                    q[0] + (rng.uniform() as f32 - 0.5) * 8.0,
                    q[1] + (rng.uniform() as f32 - 0.5) * 8.0,
                ]
            })
        })
        .collect()
}

const SKIMAGE: &str = r#"
import sys, numpy as np
from skimage.transform import SimilarityTransform
src = np.fromfile(sys.argv[1], dtype='<f4').astype(np.float64).reshape(-1, 5, 2)
dst = np.fromfile(sys.argv[2], dtype='<f4').astype(np.float64).reshape(5, 2)
out = []
for s in src:
    t = SimilarityTransform()
    assert t.estimate(s, dst)
    out.append(t.params[:2].ravel())
np.array(out, dtype='<f4').tofile(sys.argv[3])
"#;

#[test]
fn similarity_equals_skimage() {
    let dir = scratch_dir("align-skimage");
    let mut rng = Lcg(3);
    let sets = landmark_sets(&mut rng, 50);
    let flat: Vec<f32> = sets.iter().flatten().flatten().copied().collect();
    write_f32(&dir.join("src"), &flat);
    let dst: Vec<f32> = ARCFACE_112.iter().flatten().copied().collect();
    write_f32(&dir.join("dst"), &dst);
    run_python(
        SKIMAGE,
        &[
            dir.join("src").to_str().unwrap(),
            dir.join("dst").to_str().unwrap(),
            dir.join("out").to_str().unwrap(),
        ],
    );
    let peer = read_f32(&dir.join("out"));
    assert_eq!(peer.len(), sets.len() * 6);
    for (i, set) in sets.iter().enumerate() {
        let ours = Similarity::to_arcface(set, 112).unwrap().affine().m;
        let theirs = &peer[i * 6..i * 6 + 6];
        for r in 0..2 {
            for c in 0..3 {
                let (o, t) = (ours[r][c], theirs[r * 3 + c] as f64);
                // Relative to the entry's size for the translations (f32 transfer).
                assert!(
                    (o - t).abs() <= 1e-4 * t.abs().max(1.0),
                    "set {i} entry ({r},{c}): ours {o}, skimage {t}"
                );
            }
        }
    }
}

const CV2: &str = r#"
import sys, numpy as np, cv2
w, h, n = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
img = np.fromfile(sys.argv[1], dtype=np.uint8).reshape(h, w, 3)
ms = np.fromfile(sys.argv[5], dtype='<f4').astype(np.float64).reshape(n, 2, 3)
out = [cv2.warpAffine(img, m, (112, 112), flags=cv2.INTER_LINEAR) for m in ms]
np.stack(out).astype(np.float32).tofile(sys.argv[6])
"#;

#[test]
fn warp_equals_cv2_warp_affine() {
    let dir = scratch_dir("align-cv2");
    let (w, h) = (320u32, 240u32);
    // Rows padded beyond width * 3, as video frames often are.
    let stride = w as usize * 3 + 16;
    let mut rng = Lcg(11);
    let mut frame = vec![0u8; stride * h as usize];
    let mut packed = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h as usize {
        for x in 0..w as usize {
            for ch in 0..3 {
                let smooth =
                    128.0 + 90.0 * ((x as f64 * 0.05 + ch as f64).sin() * (y as f64 * 0.07).cos());
                let v = (smooth + (rng.uniform() - 0.5) * 60.0).clamp(0.0, 255.0) as u8;
                frame[y * stride + x * 3 + ch] = v;
                packed.push(v);
            }
        }
    }
    std::fs::write(dir.join("img"), &packed).unwrap();
    // Faces of several sizes and angles, some reaching past the frame's edges.
    let sets = (0..12)
        .map(|_| {
            let s = 0.4 + 1.6 * rng.uniform();
            let r = (rng.uniform() - 0.5) * 1.5;
            let (cx, cy) = (rng.uniform() * w as f64, rng.uniform() * h as f64);
            let t = Similarity {
                a: s * r.cos(),
                b: s * r.sin(),
                tx: cx - s * (56.0 * r.cos() - 72.0 * r.sin()),
                ty: cy - s * (56.0 * r.sin() + 72.0 * r.cos()),
            };
            ARCFACE_112.map(|p| {
                let q = t.apply(p);
                [
                    q[0] + (rng.uniform() as f32 - 0.5) * 4.0,
                    q[1] + (rng.uniform() as f32 - 0.5) * 4.0,
                ]
            })
        })
        .collect::<Vec<_>>();
    let img = RgbImage::new(&frame, w, h, stride).unwrap();
    let mut ours = vec![0u8; sets.len() * 112 * 112 * 3];
    let mut matrices = Vec::new();
    for (set, out) in sets.iter().zip(ours.chunks_exact_mut(112 * 112 * 3)) {
        let t = crop_aligned(&img, set, 112, out).unwrap();
        matrices.extend(t.affine().m.iter().flatten().map(|&v| v as f32));
    }
    // The cv2 side warps with the f32-rounded matrix; warp ours again with the same one so
    // both sample exactly the same positions.
    for (i, out) in ours.chunks_exact_mut(112 * 112 * 3).enumerate() {
        let m = &matrices[i * 6..i * 6 + 6];
        let affine = affect_core::align::Affine {
            m: [
                [m[0] as f64, m[1] as f64, m[2] as f64],
                [m[3] as f64, m[4] as f64, m[5] as f64],
            ],
        };
        warp_rgb8(&img, &affine, out, 112, 112).unwrap();
    }
    write_f32(&dir.join("m"), &matrices);
    run_python(
        CV2,
        &[
            dir.join("img").to_str().unwrap(),
            &w.to_string(),
            &h.to_string(),
            &sets.len().to_string(),
            dir.join("m").to_str().unwrap(),
            dir.join("out").to_str().unwrap(),
        ],
    );
    let peer = read_f32(&dir.join("out"));
    assert_eq!(peer.len(), ours.len());
    for (i, (o, p)) in ours
        .chunks_exact(112 * 112 * 3)
        .zip(peer.chunks_exact(112 * 112 * 3))
        .enumerate()
    {
        let mad = o
            .iter()
            .zip(p)
            .map(|(&a, &b)| (a as f64 - b as f64).abs())
            .sum::<f64>()
            / o.len() as f64;
        let max = o
            .iter()
            .zip(p)
            .map(|(&a, &b)| (a as f64 - b as f64).abs())
            .fold(0.0, f64::max);
        println!("crop {i}: mean absolute difference {mad:.4} grey levels, max {max}");
        assert!(
            mad <= 1.0,
            "crop {i}: mean absolute difference {mad} grey levels (max {max})"
        );
        // The crop must hold image content, not only border.
        assert!(
            o.iter().filter(|&&v| v > 0).count() > o.len() / 8,
            "crop {i} is mostly black"
        );
    }
}

#[test]
fn warp_is_fast() {
    let (w, h) = (640u32, 480u32);
    let frame = vec![128u8; (w * h * 3) as usize];
    let img = RgbImage::new(&frame, w, h, w as usize * 3).unwrap();
    let lm = ARCFACE_112.map(|[x, y]| [x * 2.0 + 200.0, y * 2.0 + 100.0]);
    let mut out = vec![0u8; 112 * 112 * 3];
    let n = 200;
    let start = std::time::Instant::now();
    for _ in 0..n {
        crop_aligned(&img, &lm, 112, &mut out).unwrap();
    }
    let per_crop = start.elapsed().as_secs_f64() / n as f64;
    println!("aligned 112x112 crop: {:.3} ms", per_crop * 1e3);
    assert_eq!(out[3 * (56 * 112 + 56)], 128);
}
