// SPDX-License-Identifier: MPL-2.0
//! The Haar detector against OpenCV's `CascadeClassifier.detectMultiScale` on a real
//! photograph: scikit-image's `astronaut.png` (Eileen Collins, 512x512) with Debian's
//! `haarcascade_frontalface_default.xml`.

use affect_core::detect::haar::{DEBIAN_FRONTAL_FACE, HaarCascade, HaarDetector, HaarParams};
use affect_core::detect::iou;
use affect_core::testutil::{run_python, scratch_dir};

/// Writes the photograph as raw RGB and OpenCV's grey conversion of it, and prints OpenCV's
/// detections as `x y w h` lines. OpenCV 5 moved `CascadeClassifier` out of the main package;
/// the set-up installs OpenCV 4.
const SCRIPT: &str = r#"
import sys, os
import numpy as np, cv2, skimage.io, skimage.data
out, cascade = sys.argv[1], sys.argv[2]
rgb = skimage.io.imread(os.path.join(os.path.dirname(skimage.data.__file__), 'astronaut.png'))
assert rgb.shape == (512, 512, 3) and rgb.dtype == np.uint8, rgb.shape
rgb.tofile(os.path.join(out, 'rgb.u8'))
grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
grey.tofile(os.path.join(out, 'grey.u8'))
assert hasattr(cv2, 'CascadeClassifier'), 'OpenCV %s has no CascadeClassifier: run ./setup.sh' % cv2.__version__
clf = cv2.CascadeClassifier(cascade)
assert not clf.empty(), cascade
for (x, y, w, h) in clf.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=3):
    print(x, y, w, h)
"#;

fn to_box(r: [i32; 4]) -> [f32; 4] {
    let [x, y, w, h] = r.map(|v| v as f32);
    [x, y, x + w, y + h]
}

#[test]
fn finds_the_astronauts_face_where_opencv_does() {
    let dir = scratch_dir("haar-astronaut");
    let printed = run_python(SCRIPT, &[dir.to_str().unwrap(), DEBIAN_FRONTAL_FACE]);
    let opencv: Vec<[i32; 4]> = printed
        .lines()
        .map(|l| {
            let v: Vec<i32> = l.split_whitespace().map(|t| t.parse().unwrap()).collect();
            [v[0], v[1], v[2], v[3]]
        })
        .collect();
    assert_eq!(
        opencv.len(),
        1,
        "OpenCV should find exactly the one face: {opencv:?}"
    );
    let reference = to_box(opencv[0]);
    // The face, checked by eye on the photograph: roughly x 170-290, y 60-190.
    assert!(
        reference[0] >= 160.0
            && reference[2] <= 300.0
            && reference[1] >= 50.0
            && reference[3] <= 200.0,
        "OpenCV's face {reference:?} is not where the face is"
    );

    let rgb = std::fs::read(dir.join("rgb.u8")).unwrap();
    let grey = std::fs::read(dir.join("grey.u8")).unwrap();
    let cascade = HaarCascade::from_file(DEBIAN_FRONTAL_FACE).unwrap();
    assert_eq!(cascade.window_size(), (24, 24));
    assert_eq!(cascade.stage_count(), 25);
    let mut detector = HaarDetector::new(cascade, HaarParams::default()).unwrap();

    // Our grey conversion is OpenCV's, bit for bit.
    let mut ours = Vec::new();
    affect_core::detect::haar::rgb_to_grey(&rgb, 512, 512, 512 * 3, &mut ours).unwrap();
    assert_eq!(ours.len(), grey.len());
    let differing = ours.iter().zip(&grey).filter(|(a, b)| a != b).count();
    assert_eq!(differing, 0, "grey levels differing from OpenCV's");

    let faces = detector.detect_rgb(&rgb, 512, 512, 512 * 3).unwrap();
    let best = faces
        .iter()
        .map(|f| (iou(&to_box(f.rect), &reference), f))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap_or_else(|| panic!("no face found; OpenCV found {opencv:?}"));
    eprintln!(
        "ours: {faces:?}, OpenCV: {opencv:?}, best IoU {:.3}",
        best.0
    );
    assert!(
        best.0 >= 0.7,
        "best IoU {} with OpenCV's {opencv:?}: {faces:?}",
        best.0
    );
    // Nothing else of note: every other face we report is weaker than the real one.
    for f in &faces {
        assert!(f.neighbors <= best.1.neighbors, "{faces:?}");
    }
    assert!(faces.len() <= 2, "{faces:?}");

    // The same frame with padded rows gives the same answer.
    let stride = 512 * 3 + 64;
    let mut padded = vec![0u8; stride * 512];
    for y in 0..512 {
        padded[y * stride..y * stride + 512 * 3].copy_from_slice(&rgb[y * 1536..(y + 1) * 1536]);
    }
    assert_eq!(
        detector.detect_rgb(&padded, 512, 512, stride).unwrap(),
        faces
    );

    // A minimum size above the face finds nothing there.
    let mut big_only = HaarDetector::new(
        HaarCascade::from_file(DEBIAN_FRONTAL_FACE).unwrap(),
        HaarParams {
            min_size: (150, 150),
            ..HaarParams::default()
        },
    )
    .unwrap();
    let big = big_only.detect_grey(&grey, 512, 512, 512).unwrap();
    assert!(
        big.iter().all(|f| iou(&to_box(f.rect), &reference) < 0.3),
        "{big:?}"
    );
}

/// The other frontal face cascades of `opencv-data`: `alt2` is made of two-split trees rather
/// than stumps; `alt` also finds a second, false face, which must match OpenCV's too.
const OTHER_CASCADES: [&str; 3] = ["alt", "alt2", "alt_tree"];

#[test]
fn other_frontal_face_cascades_including_trees_agree_with_opencv() {
    for name in OTHER_CASCADES {
        let path = format!("/usr/share/opencv4/haarcascades/haarcascade_frontalface_{name}.xml");
        let dir = scratch_dir(&format!("haar-astronaut-{name}"));
        let printed = run_python(SCRIPT, &[dir.to_str().unwrap(), &path]);
        let opencv: Vec<[i32; 4]> = printed
            .lines()
            .map(|l| {
                let v: Vec<i32> = l.split_whitespace().map(|t| t.parse().unwrap()).collect();
                [v[0], v[1], v[2], v[3]]
            })
            .collect();
        assert!(!opencv.is_empty(), "{name}: OpenCV finds no face");
        let grey = std::fs::read(dir.join("grey.u8")).unwrap();
        let mut detector = HaarDetector::new(
            HaarCascade::from_file(&path).unwrap(),
            HaarParams::default(),
        )
        .unwrap();
        let ours = detector.detect_grey(&grey, 512, 512, 512).unwrap();
        eprintln!("{name}: ours {ours:?}, OpenCV {opencv:?}");
        assert_eq!(
            ours.len(),
            opencv.len(),
            "{name}: ours {ours:?}, OpenCV {opencv:?}"
        );
        for r in &opencv {
            let best = ours
                .iter()
                .map(|f| iou(&to_box(f.rect), &to_box(*r)))
                .fold(0.0f32, f32::max);
            assert!(
                best >= 0.7,
                "{name}: OpenCV's {r:?} best IoU {best}: {ours:?}"
            );
        }
    }
}

#[test]
fn cascades_with_tilted_features_are_refused_naming_the_feature() {
    // The smile cascade of opencv-data uses 45-degree features; find the first by reading the
    // XML independently of the parser under test.
    let path = "/usr/share/opencv4/haarcascades/haarcascade_smile.xml";
    let xml = std::fs::read_to_string(path).unwrap();
    let features = &xml[xml.find("<features>").unwrap()..];
    let first_tilted = features
        .split("<rects>")
        .skip(1)
        .position(|f| {
            f.split("</_>\n    <_>")
                .next()
                .unwrap()
                .contains("<tilted>1</tilted>")
        })
        .unwrap();
    let err = HaarCascade::from_file(path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "Haar cascade feature {first_tilted} is tilted (45 degrees); tilted features are \
             not supported"
        )
    );
}
