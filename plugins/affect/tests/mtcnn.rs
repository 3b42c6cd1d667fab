// SPDX-License-Identifier: MPL-2.0
//! `affectfacecrop detector=mtcnn` on real photographs against facenet-pytorch's own
//! `MTCNN.detect` (the networks' source, run in the test with the same thresholds), its crops
//! against scikit-image's `SimilarityTransform` + `cv2.warpAffine`, and its errors.
//!
//! The photographs come from packages on the index: scikit-image's astronaut (Eileen Collins,
//! NASA, public domain) and matplotlib's Grace Hopper (public domain), and a 1280x720 "group"
//! made of them: several faces per frame, small and large, tilted up to 30 degrees.

mod common;

use std::path::{Path, PathBuf};

use affect_core::testutil::{GROUP_PHOTOGRAPH, run_python, scratch_dir};
use common::{collect, iou};
use gstaffect::meta;

/// Writes the photographs (PNG, so both sides decode the same pixels) into `dir` and returns
/// facenet-pytorch's faces of each: `name box0 box1 box2 box3 prob x0 y0 ... x4 y4` lines.
const PEER: &str = r#"
import sys, skimage.io
import torch
torch.set_num_threads(1)
from facenet_pytorch import MTCNN
out = sys.argv[1]
# A group photograph: faces cut (with their surroundings) from both, scaled and tilted.
group = group(1280, 720, [(40, 60, 220, 0, 0), (330, 80, 150, 18, 1), (560, 240, 110, -25, 0),
                          (760, 60, 260, 8, 1), (1080, 330, 90, 30, 0), (140, 420, 170, -12, 1)])
images = {'astronaut': astronaut, 'grace': grace, 'group': group}
mtcnn = MTCNN(keep_all=True, min_face_size=20, thresholds=[0.6, 0.7, 0.7], factor=0.709,
              select_largest=False, device='cpu')
for name, img in images.items():
    skimage.io.imsave(os.path.join(out, name + '.png'), img, check_contrast=False)
    boxes, probs, points = mtcnn.detect(img, landmarks=True)
    for b, p, l in zip(boxes if boxes is not None else [], probs if probs is not None else [],
                       points if points is not None else []):
        print(name, *[f'{v:.4f}' for v in list(b) + [p] + list(np.asarray(l).ravel())])
    print(name, img.shape[1], img.shape[0], 'size')
"#;

#[derive(Clone, Debug)]
struct PeerFace {
    bbox: [f32; 4],
    landmarks: [[f32; 2]; 5],
}

struct Photo {
    path: PathBuf,
    width: usize,
    faces: Vec<PeerFace>,
}

fn photos(dir: &Path) -> Vec<(String, Photo)> {
    let out = run_python(
        &format!("{GROUP_PHOTOGRAPH}{PEER}"),
        &[dir.to_str().unwrap()],
    );
    let mut photos: Vec<(String, Photo)> = Vec::new();
    let mut pending: Vec<(String, PeerFace)> = Vec::new();
    for line in out.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let name = parts[0].to_string();
        if parts.last() == Some(&"size") {
            photos.push((
                name.clone(),
                Photo {
                    path: dir.join(format!("{name}.png")),
                    width: parts[1].parse().unwrap(),
                    faces: pending
                        .iter()
                        .filter(|(n, _)| *n == name)
                        .map(|(_, f)| f.clone())
                        .collect(),
                },
            ));
            continue;
        }
        let v: Vec<f32> = parts[1..].iter().map(|s| s.parse().unwrap()).collect();
        pending.push((
            name,
            PeerFace {
                bbox: [v[0], v[1], v[2], v[3]],
                landmarks: std::array::from_fn(|k| [v[5 + 2 * k], v[6 + 2 * k]]),
            },
        ));
    }
    photos
}

fn faces_of(photo: &Photo, properties: &str) -> Vec<meta::Face> {
    let samples = collect(&format!(
        "filesrc location={} ! pngdec ! videoconvert ! video/x-raw,format=RGB \
         ! affectfacecrop detector=mtcnn min-face-size=20 {properties} ! appsink name=sink",
        photo.path.display()
    ))
    .unwrap();
    assert_eq!(samples.len(), 1, "a photograph is one frame");
    meta::faces(samples[0].buffer().unwrap())
}

#[test]
fn mtcnn_matches_facenet_pytorch_on_photographs() {
    let dir = scratch_dir("mtcnn-peer");
    let photos = photos(&dir);
    assert_eq!(photos.len(), 3);
    let group = &photos.iter().find(|(n, _)| n == "group").unwrap().1;
    assert!(
        group.faces.len() >= 5,
        "the group photograph holds six faces; the peer found {}",
        group.faces.len()
    );
    let (mut worst_iou, mut worst_px) = (1.0f32, 0.0f32);
    for (name, photo) in &photos {
        // The whole frame is searched, as the peer searches it.
        let ours = faces_of(photo, &format!("detect-width={}", photo.width));
        assert_eq!(
            ours.len(),
            photo.faces.len(),
            "{name}: {} faces, facenet-pytorch {}: {ours:?} vs {:?}",
            ours.len(),
            photo.faces.len(),
            photo.faces
        );
        for peer in &photo.faces {
            let best = ours
                .iter()
                .max_by(|a, b| iou(a.bbox, peer.bbox).total_cmp(&iou(b.bbox, peer.bbox)))
                .unwrap();
            let overlap = iou(best.bbox, peer.bbox);
            worst_iou = worst_iou.min(overlap);
            assert!(
                overlap >= 0.9,
                "{name}: box {:?} vs facenet-pytorch {:?}: IoU {overlap}",
                best.bbox,
                peer.bbox
            );
            let l = best.landmarks.expect("MTCNN faces carry landmarks");
            for (k, (a, b)) in l.iter().zip(&peer.landmarks).enumerate() {
                let d = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
                worst_px = worst_px.max(d);
                assert!(
                    d <= 2.0,
                    "{name}: landmark {k} {a:?} vs facenet-pytorch {b:?}: {d:.2} px"
                );
            }
        }
    }

    println!(
        "MTCNN vs facenet-pytorch over {} faces: worst box IoU {worst_iou:.4}, worst landmark \
         {worst_px:.3} px",
        photos.iter().map(|(_, p)| p.faces.len()).sum::<usize>()
    );

    // On a copy at half the width the group's faces are still found where they are.
    let half = faces_of(group, &format!("detect-width={}", group.width / 2));
    let found = group
        .faces
        .iter()
        .filter(|p| half.iter().any(|f| iou(f.bbox, p.bbox) >= 0.5))
        .count();
    assert!(
        found + 1 >= group.faces.len(),
        "detect-width={}: {found} of {} faces",
        group.width / 2,
        group.faces.len()
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn mtcnn_crops_follow_the_landmarks_as_skimage_and_opencv() {
    let dir = scratch_dir("mtcnn-crops");
    let photos = photos(&dir);
    let group = &photos.iter().find(|(n, _)| n == "group").unwrap().1;
    let faces = faces_of(group, "detect-width=1280");
    assert!(faces.len() >= 5, "{faces:?}");
    let frame = image::open(&group.path).unwrap().to_rgb8().into_raw();
    for face in &faces {
        let samples = collect(&format!(
            "filesrc location={} ! pngdec ! videoconvert ! video/x-raw,format=RGB \
             ! affectfacecrop mode=crop detector=mtcnn min-face-size=20 detect-width=1280 \
               track-id={} crop-size=112 ! appsink name=sink",
            group.path.display(),
            face.track_id
        ))
        .unwrap();
        assert_eq!(samples.len(), 1);
        let buffer = samples[0].buffer().unwrap();
        let map = buffer.map_readable().unwrap();
        // RGB rows of 112 pixels are 336 bytes: a multiple of 4, so no padding.
        let crop = map.as_slice();
        assert_eq!(crop.len(), 112 * 112 * 3);
        let reference =
            common::reference_arcface_crop(&dir, &frame, 1280, 720, &face.landmarks.unwrap());
        let mean_abs = common::mean_abs_diff(crop, &reference);
        assert!(
            mean_abs <= 1.0,
            "face {}: mean |element - cv2.warpAffine| = {mean_abs}",
            face.track_id
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A copy of the shipped MTCNN files in a fresh folder, for breaking one of them.
fn mtcnn_copy(name: &str) -> PathBuf {
    let dir = scratch_dir(name);
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    for stage in ["pnet", "rnet", "onet"] {
        let file = format!("mtcnn-{stage}.onnx");
        std::fs::copy(models.join(&file), dir.join(&file)).unwrap();
    }
    dir
}

fn start_error(properties: &str) -> String {
    collect(&format!(
        "videotestsrc num-buffers=1 ! video/x-raw,width=320,height=240 \
         ! affectfacecrop {properties} ! appsink name=sink"
    ))
    .expect_err("the element must refuse to start")
}

#[test]
fn bad_mtcnn_files_and_settings_fail_naming_the_problem() {
    let err = start_error("detector=mtcnn mtcnn-models=/nonexistent/models");
    assert!(
        err.contains("mtcnn-pnet.onnx") && err.contains("/nonexistent/models"),
        "{err}"
    );

    let dir = mtcnn_copy("mtcnn-corrupt");
    std::fs::write(dir.join("mtcnn-onet.onnx"), b"not a model").unwrap();
    let err = start_error(&format!("detector=mtcnn mtcnn-models={}", dir.display()));
    assert!(err.contains("mtcnn-onet.onnx"), "{err}");

    // An R-Net where the P-Net should be.
    let dir = mtcnn_copy("mtcnn-swapped");
    std::fs::copy(dir.join("mtcnn-rnet.onnx"), dir.join("mtcnn-pnet.onnx")).unwrap();
    let err = start_error(&format!("detector=mtcnn mtcnn-models={}", dir.display()));
    assert!(
        err.contains("mtcnn-pnet.onnx") && err.contains("not an MTCNN pnet"),
        "{err}"
    );

    let err = start_error("detector=mtcnn detect-width=0");
    assert!(err.contains("detect-width"), "{err}");
    let err = start_error("detector=mtcnn detect-width=400");
    assert!(
        err.contains("detect-width=400") && err.contains("320x240"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_photo_gives_its_faces_on_its_only_frame() {
    // Astronaut through `auto` (MTCNN, found in the source tree), the default.
    let dir = scratch_dir("mtcnn-photo");
    let path = dir.join("astronaut.png");
    run_python(
        "import sys, skimage.data, skimage.io; skimage.io.imsave(sys.argv[1], skimage.data.astronaut())",
        &[path.to_str().unwrap()],
    );
    let samples = collect(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! affectfacecrop ! appsink name=sink",
        path.display()
    ))
    .unwrap();
    assert_eq!(samples.len(), 1);
    let faces = meta::faces(samples[0].buffer().unwrap());
    assert_eq!(faces.len(), 1, "{faces:?}");
    assert!(faces[0].landmarks.is_some());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn faces_are_tracked_between_automatic_detections() {
    // At 25 frames/s MTCNN runs on every third frame by default: the frames in between keep
    // the face, with its track id, from the first frame on.
    let dir = scratch_dir("mtcnn-interval");
    let path = dir.join("astronaut.png");
    run_python(
        "import sys, skimage.data, skimage.io; skimage.io.imsave(sys.argv[1], skimage.data.astronaut())",
        &[path.to_str().unwrap()],
    );
    let samples = collect(&format!(
        "filesrc location={} ! pngdec ! videoconvert ! imagefreeze num-buffers=7 \
         ! video/x-raw,framerate=25/1 ! affectfacecrop ! appsink name=sink",
        path.display()
    ))
    .unwrap();
    assert_eq!(samples.len(), 7);
    let first = meta::faces(samples[0].buffer().unwrap());
    assert_eq!(first.len(), 1, "{first:?}");
    for (i, s) in samples.iter().enumerate() {
        let faces = meta::faces(s.buffer().unwrap());
        assert_eq!(faces.len(), 1, "frame {i}: {faces:?}");
        assert_eq!(faces[0].track_id, first[0].track_id, "frame {i}");
        assert!(
            iou(faces[0].bbox, first[0].bbox) > 0.95,
            "frame {i}: {:?} vs {:?}",
            faces[0].bbox,
            first[0].bbox
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
