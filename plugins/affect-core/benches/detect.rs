// SPDX-License-Identifier: MPL-2.0
//! Per-frame cost of finding faces on one core, split into detection (Haar cascade; detector
//! preprocessing, decoding and suppression of model outputs), tracking and alignment, on a
//! 1920x1080 frame holding four faces. Ratios are against the integral images of the same
//! frame measured in the same run: the least any Haar detector must do per frame.
//!
//! `cargo bench -p affect-core --bench detect` (needs the Python of the test set-up for
//! scikit-image's `astronaut.png`, and Debian's `opencv-data` for the cascade).

use std::hint::black_box;
use std::time::Duration;

use affect_core::align::{RgbImage, crop_aligned};
use affect_core::bench::best_of;
use affect_core::detect::haar::{
    DEBIAN_FRONTAL_FACE, HaarCascade, HaarDetector, HaarParams, integral_images, rgb_to_grey,
};
use affect_core::detect::{
    DetectParams, Detection, DetectorLayout, OutputInfo, ResizeMode, TensorView,
};
use affect_core::testutil::{run_python, scratch_dir};
use affect_core::track::{IouTracker, TrackerParams};

const W: usize = 1920;
const H: usize = 1080;

struct Xorshift(u32);

impl Xorshift {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0 as f32 / u32::MAX as f32
    }
}

/// The astronaut photograph (512x512 RGB) from scikit-image's data folder.
fn astronaut() -> Vec<u8> {
    let dir = scratch_dir("bench-detect");
    let path = dir.join("astronaut.rgb");
    run_python(
        "import sys, os, skimage.io, skimage.data\n\
         im = skimage.io.imread(os.path.join(os.path.dirname(skimage.data.__file__), 'astronaut.png'))\n\
         im.tofile(sys.argv[1])",
        &[path.to_str().unwrap()],
    );
    std::fs::read(path).unwrap()
}

/// A 1920x1080 RGB frame: a noisy gradient with the photograph pasted at four sizes, so four
/// faces of about 60 to 95 pixels.
fn frame_with_four_faces() -> (Vec<u8>, Vec<[usize; 3]>) {
    let photo = astronaut();
    let mut rng = Xorshift(7);
    let mut frame = vec![0u8; W * H * 3];
    for y in 0..H {
        for x in 0..W {
            let base = 60.0 + 80.0 * x as f32 / W as f32 + 40.0 * y as f32 / H as f32;
            for c in 0..3 {
                frame[(y * W + x) * 3 + c] = (base + 20.0 * rng.next()) as u8;
            }
        }
    }
    // (x, y, size) of each pasted copy.
    let pastes = vec![
        [60, 40, 512],
        [700, 80, 384],
        [1250, 300, 448],
        [300, 650, 320],
    ];
    for &[px, py, size] in &pastes {
        for y in 0..size {
            for x in 0..size {
                // Nearest neighbour is enough for a benchmark scene.
                let (sx, sy) = (x * 512 / size, y * 512 / size);
                let src = &photo[(sy * 512 + sx) * 3..(sy * 512 + sx) * 3 + 3];
                let dst = ((py + y) * W + px + x) * 3;
                frame[dst..dst + 3].copy_from_slice(src);
            }
        }
    }
    (frame, pastes)
}

/// SCRFD outputs for a 640x640 input (strides 8/16/32, two anchors, landmarks) with weak
/// background scores everywhere and each face answered by three neighbouring anchors, as a
/// real model answers.
fn scrfd_outputs(faces: &[[f32; 4]]) -> (Vec<String>, Vec<Vec<usize>>, Vec<Vec<f32>>) {
    let mut rng = Xorshift(11);
    let strides = [8usize, 16, 32];
    let mut names = Vec::new();
    let mut shapes = Vec::new();
    let mut data: Vec<Vec<f32>> = Vec::new();
    for c in [1usize, 4, 10] {
        for s in strides {
            let n = (640 / s) * (640 / s) * 2;
            names.push(format!("out{}", names.len()));
            shapes.push(vec![n, c]);
            data.push(
                (0..n * c)
                    .map(|_| if c == 1 { 0.3 * rng.next() } else { rng.next() })
                    .collect(),
            );
        }
    }
    for f in faces {
        let size = f[2] - f[0];
        let si = if size < 64.0 {
            0
        } else if size < 128.0 {
            1
        } else {
            2
        };
        let s = strides[si] as f32;
        let cols = 640 / strides[si];
        let (cx, cy) = ((f[0] + f[2]) / 2.0, (f[1] + f[3]) / 2.0);
        for (k, dx) in [0.0f32, 1.0, -1.0].into_iter().enumerate() {
            let col = ((cx / s).round() + dx) as usize;
            let row = (cy / s).round() as usize;
            let anchor = 2 * (row * cols + col);
            let (ax, ay) = (col as f32 * s, row as f32 * s);
            data[si][anchor] = 0.9 - 0.05 * k as f32;
            data[3 + si][anchor * 4..anchor * 4 + 4].copy_from_slice(&[
                (ax - f[0]) / s,
                (ay - f[1]) / s,
                (f[2] - ax) / s,
                (f[3] - ay) / s,
            ]);
        }
    }
    (names, shapes, data)
}

/// OpenCV's own `detectMultiScale(grey, 1.1, 3)` on one thread, best of 5, in milliseconds,
/// with the faces it found; `None` when the installed OpenCV has no `CascadeClassifier`
/// (OpenCV 5 moved it out of the main package).
fn opencv_haar_ms(grey: &[u8], width: usize, height: usize) -> Option<(f64, usize)> {
    let dir = scratch_dir("bench-detect-opencv");
    let path = dir.join("grey.u8");
    std::fs::write(&path, grey).unwrap();
    let printed = run_python(
        "import sys, time, numpy as np, cv2\n\
         if not hasattr(cv2, 'CascadeClassifier'):\n    print('none'); sys.exit(0)\n\
         cv2.setNumThreads(1)\n\
         g = np.fromfile(sys.argv[1], np.uint8).reshape(int(sys.argv[3]), int(sys.argv[2]))\n\
         c = cv2.CascadeClassifier(sys.argv[4])\n\
         best = 1e9\n\
         for _ in range(5):\n    t = time.perf_counter(); r = c.detectMultiScale(g, 1.1, 3); best = min(best, time.perf_counter() - t)\n\
         print(best * 1e3, len(r))",
        &[
            path.to_str().unwrap(),
            &width.to_string(),
            &height.to_string(),
            DEBIAN_FRONTAL_FACE,
        ],
    );
    let mut it = printed.split_whitespace();
    let ms: f64 = it.next()?.parse().ok()?;
    let n: usize = it.next()?.parse().ok()?;
    Some((ms, n))
}

fn main() {
    let cascade = match HaarCascade::from_file(DEBIAN_FRONTAL_FACE) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e} (install Debian's opencv-data)");
            std::process::exit(1);
        }
    };
    let (rgb, pastes) = frame_with_four_faces();
    let mut grey = Vec::new();
    rgb_to_grey(&rgb, W, H, W * 3, &mut grey).unwrap();

    // Baseline: the integral images of the full frame.
    let stride = W + 1;
    let mut sum = vec![0u32; stride * (H + 1)];
    let mut sqsum = vec![0u32; stride * (H + 1)];
    let baseline = best_of(20, || {
        integral_images(&grey, W, H, W, stride, &mut sum, &mut sqsum);
        black_box((&sum, &sqsum));
    });

    let to_grey = best_of(20, || {
        rgb_to_grey(&rgb, W, H, W * 3, &mut grey).unwrap();
        black_box(&grey);
    });

    let mut haar = HaarDetector::new(cascade.clone(), HaarParams::default()).unwrap();
    let mut faces = Vec::new();
    let haar_full = best_of(3, || faces = haar.detect_grey(&grey, W, H, W).unwrap());
    let found_full = faces.len();

    // A live set-up ignores faces below 60 pixels.
    let live = HaarParams {
        min_size: (60, 60),
        ..HaarParams::default()
    };
    let mut haar_live = HaarDetector::new(cascade.clone(), live).unwrap();
    let haar_min60 = best_of(3, || faces = haar_live.detect_grey(&grey, W, H, W).unwrap());
    let found_min60 = faces.len();

    // The same scene at 640x480 (the frame scaled by 1/3 horizontally, 4/9 vertically would
    // distort it; take the 640x480 region of the top-left copy instead, a face of ~95 px).
    let (sw, sh) = (640, 480);
    let crop: Vec<u8> = (0..sh)
        .flat_map(|y| {
            grey[(40 + y) * W + 60..(40 + y) * W + 60 + sw]
                .iter()
                .copied()
        })
        .collect();
    let mut haar_small = HaarDetector::new(cascade, HaarParams::default()).unwrap();
    let haar_640 = best_of(5, || {
        faces = haar_small.detect_grey(&crop, sw, sh, sw).unwrap()
    });
    let found_640 = faces.len();
    let mut haar_small_40 = HaarDetector::new(
        haar_small.cascade().clone(),
        HaarParams {
            min_size: (40, 40),
            ..HaarParams::default()
        },
    )
    .unwrap();
    let haar_640_min40 = best_of(5, || {
        faces = haar_small_40.detect_grey(&crop, sw, sh, sw).unwrap()
    });
    let found_640_min40 = faces.len();
    let opencv_640 = opencv_haar_ms(&crop, sw, sh);

    // Model detectors: fill the input tensor, decode, map back and suppress.
    let layout_faces: Vec<[f32; 4]> = pastes
        .iter()
        .map(|&[x, y, s]| {
            // The face sits at about (0.35 .. 0.53, 0.13 .. 0.31) of the photograph; in model
            // pixels (1920x1080 -> 640x360 at the top-left) everything shrinks by 3.
            let (x, y, s) = (x as f32, y as f32, s as f32);
            [
                (x + 0.35 * s) / 3.0,
                (y + 0.13 * s) / 3.0,
                (x + 0.53 * s) / 3.0,
                (y + 0.31 * s) / 3.0,
            ]
        })
        .collect();
    let (names, shapes, data) = scrfd_outputs(&layout_faces);
    let infos: Vec<OutputInfo> = names
        .iter()
        .zip(&shapes)
        .map(|(n, s)| OutputInfo::new(n.clone(), &[s[0] as i64, s[1] as i64]))
        .collect();
    let layout = DetectorLayout::recognize(&[1, 3, 640, 640], &infos).unwrap();
    let pre = layout.preprocess();
    let letterbox = pre.letterbox(W, H).unwrap();
    assert_eq!(pre.resize, ResizeMode::LetterboxTopLeft);
    let mut input = vec![0.0f32; pre.tensor_len()];
    let fill = best_of(10, || {
        pre.fill_nchw(&rgb, W * 3, &letterbox, &mut input).unwrap();
        black_box(&input);
    });
    let views: Vec<TensorView<'_>> = (0..names.len())
        .map(|i| TensorView::new(&names[i], &shapes[i], &data[i]))
        .collect();
    let params = DetectParams {
        score_threshold: 0.5,
        ..DetectParams::default()
    };
    let mut decoded: Vec<Detection> = Vec::new();
    let decode = best_of(20, || {
        decoded = layout.detect(&views, &letterbox, &params).unwrap();
    });
    assert_eq!(decoded.len(), 4, "{decoded:?}");

    // Tracking: one update with the four faces, moving a little each frame.
    let mut tracker = IouTracker::new(TrackerParams::default());
    let mut frame_no = 0.0f32;
    let track = best_of(20, || {
        for _ in 0..100 {
            frame_no += 1.0;
            let moved: Vec<Detection> = decoded
                .iter()
                .map(|d| Detection {
                    bbox: [
                        d.bbox[0] + frame_no * 0.5,
                        d.bbox[1],
                        d.bbox[2] + frame_no * 0.5,
                        d.bbox[3],
                    ],
                    ..*d
                })
                .collect();
            black_box(tracker.update(&moved));
        }
    }) / 100;
    assert_eq!(tracker.predict().len(), 4);

    // Alignment: the four 112x112 ArcFace crops.
    let image = RgbImage::new(&rgb, W as u32, H as u32, W * 3).unwrap();
    let mut crop_out = vec![0u8; 112 * 112 * 3];
    let align = best_of(20, || {
        for d in &decoded {
            let lm = d.landmarks.unwrap_or_else(|| {
                let [x1, y1, x2, y2] = d.bbox;
                let (w, h) = (x2 - x1, y2 - y1);
                [
                    [x1 + 0.3 * w, y1 + 0.4 * h],
                    [x1 + 0.7 * w, y1 + 0.4 * h],
                    [x1 + 0.5 * w, y1 + 0.6 * h],
                    [x1 + 0.35 * w, y1 + 0.8 * h],
                    [x1 + 0.65 * w, y1 + 0.8 * h],
                ]
            });
            black_box(crop_aligned(&image, &lm, 112, &mut crop_out).unwrap());
        }
    });

    println!("face finding per frame, one core; 1920x1080 frame with 4 faces (60-95 px)");
    println!(
        "{:<52} {:>12} {:>8} {:>14}",
        "run", "time (ms)", "faces", "vs baseline"
    );
    let rows: [(&str, Duration, Option<usize>); 11] = [
        ("integral images, 1920x1080 (baseline)", baseline, None),
        ("RGB -> grey, 1920x1080", to_grey, None),
        (
            "haar detection, 1920x1080, all sizes",
            haar_full,
            Some(found_full),
        ),
        (
            "haar detection, 1920x1080, faces >= 60 px",
            haar_min60,
            Some(found_min60),
        ),
        (
            "haar detection, 640x480, all sizes",
            haar_640,
            Some(found_640),
        ),
        (
            "haar detection, 640x480, faces >= 40 px",
            haar_640_min40,
            Some(found_640_min40),
        ),
        ("model input fill, 1920x1080 -> 640x640 (SCRFD)", fill, None),
        (
            "SCRFD decode + NMS, 640x640 outputs",
            decode,
            Some(decoded.len()),
        ),
        ("tracking update, 4 faces", track, None),
        ("alignment, 4 crops of 112x112", align, None),
        (
            "haar every 5th frame + tracking, amortised",
            haar_min60 / 5 + track,
            None,
        ),
    ];
    for (name, d, n) in rows {
        println!(
            "{:<52} {:>12.4} {:>8} {:>13.3}x",
            name,
            d.as_secs_f64() * 1e3,
            n.map(|n| n.to_string()).unwrap_or_default(),
            d.as_secs_f64() / baseline.as_secs_f64()
        );
    }
    match opencv_640 {
        Some((ms, n)) => println!(
            "{:<52} {:>12.4} {:>8} {:>13.3}x   (ours: {:.2}x OpenCV's time)",
            "OpenCV detectMultiScale, 640x480, one thread",
            ms,
            n,
            ms / 1e3 / baseline.as_secs_f64(),
            haar_640.as_secs_f64() * 1e3 / ms
        ),
        None => {
            println!("OpenCV detectMultiScale: not measured (this OpenCV has no CascadeClassifier)")
        }
    }
}
