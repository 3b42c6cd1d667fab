// SPDX-License-Identifier: MPL-2.0
//! BlazeFace (`models/blazeface-back.onnx`) on real photographs against the package's own file
//! run by Python's onnxruntime, with the input made by OpenCV and the outputs decoded by a
//! NumPy transcription of MediaPipe's `TensorsToDetectionsCalculator` (anchors, sigmoid,
//! weighted suppression): same faces, boxes at IoU >= 0.98, keypoints within 1 px. Then the
//! element: `detector=blazeface` and `detector=auto` on a video stream of the group photograph
//! find the faces facenet-pytorch's MTCNN finds there (its tiles reach the small faces), and
//! `detector=auto` keeps MTCNN for a still image.
//!
//! The photographs come from packages on the index: scikit-image's astronaut (Eileen Collins,
//! NASA, public domain), matplotlib's Grace Hopper (public domain), and a 1280x720 group made
//! of them on scikit-image's coffee photograph (faces of 33-150 px, tilted up to 30 degrees).

mod common;

use std::path::Path;

use affect_core::detect::DetectParams;
use affect_core::testutil::{GROUP_PHOTOGRAPH, run_python, scratch_dir};
use common::{collect, iou};
use gstaffect::detector::OrtDetector;
use gstaffect::meta;
use gstaffect::session::{Provider, SessionOptions};

const REFERENCE: &str = r#"
import sys, hashlib, skimage.io, cv2
import onnx, onnxruntime as ort
out, shipped = sys.argv[1], sys.argv[2]
# The package's own file: the shipped one cut where its provenance says, checked by checksum.
data = open(shipped, 'rb').read()
meta = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
original = data[:int(meta['affect.provenance.original_length'])]
assert hashlib.sha256(original).hexdigest() == meta['affect.provenance.weights_sha256']
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.log_severity_level = 3
session = ort.InferenceSession(original, so, providers=['CPUExecutionProvider'])
group = group(1280, 720, [(40, 60, 220, 0, 0), (330, 80, 150, 18, 1), (560, 240, 110, -25, 0),
                          (760, 60, 260, 8, 1), (1080, 330, 90, 30, 0), (140, 420, 170, -12, 1),
                          (1100, 40, 60, 0, 1)])
S = 256
anchors = []
for cells, per in [(16, 2), (8, 6)]:
    for r in range(cells):
        for c in range(cells):
            anchors += [((c + 0.5) * S / cells, (r + 0.5) * S / cells)] * per
anchors = np.array(anchors, np.float32)
def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0])); ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    i = iw * ih
    return i / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i)
def detect(img, threshold):
    h, w, _ = img.shape
    s = min(S / w, S / h)
    cw, ch = round(w * s), round(h * s)
    px, py = (S - cw) // 2, (S - ch) // 2
    x = np.full((S, S, 3), -1.0, np.float32)
    x[py:py + ch, px:px + cw] = cv2.resize(img, (cw, ch), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 127.5 - 1.0
    names = [o.name for o in session.get_outputs()]
    o = dict(zip(names, session.run(None, {session.get_inputs()[0].name: x[None]})))
    by_shape = {v.shape[1:]: v[0] for v in o.values()}
    logits = np.concatenate([by_shape[(512, 1)][:, 0], by_shape[(384, 1)][:, 0]])
    reg = np.concatenate([by_shape[(512, 16)], by_shape[(384, 16)]])
    score = 1 / (1 + np.exp(-np.clip(logits, -100, 100)))
    cand = []
    for i in np.where(score >= threshold)[0]:
        a, r = anchors[i], reg[i]
        cx, cy = a[0] + r[0], a[1] + r[1]
        box = np.array([cx - r[2] / 2, cy - r[3] / 2, cx + r[2] / 2, cy + r[3] / 2])
        kp = np.array([[a[0] + r[4 + 2 * k], a[1] + r[5 + 2 * k]] for k in range(6)])
        cand.append((float(score[i]), box, kp))
    cand.sort(key=lambda c: -c[0])
    faces = []
    while cand:
        best = cand[0]
        cluster = [c for c in cand if iou(c[1], best[1]) > 0.3 or (c[1] == best[1]).all()]
        cand = [c for c in cand if not (iou(c[1], best[1]) > 0.3 or (c[1] == best[1]).all())]
        total = sum(c[0] for c in cluster)
        box = sum(c[1] * c[0] for c in cluster) / total
        kp = sum(c[2] * c[0] for c in cluster) / total
        to_frame = lambda p: ((p[0] - px) * w / cw, (p[1] - py) * h / ch)
        x1, y1 = to_frame(box[:2]); x2, y2 = to_frame(box[2:])
        faces.append((best[0], [min(max(x1, 0), w), min(max(y1, 0), h), min(max(x2, 0), w), min(max(y2, 0), h)],
                      [to_frame(p) for p in kp]))
    return faces
for name, img in {'astronaut': astronaut, 'grace': grace, 'group': group}.items():
    img = np.ascontiguousarray(img)
    img.tofile(os.path.join(out, name + '.rgb'))
    skimage.io.imsave(os.path.join(out, name + '.png'), img, check_contrast=False)
    for score, box, kp in detect(img, 0.5):
        print(name, f'{score:.5f}', *[f'{v:.3f}' for v in box], *[f'{v:.3f}' for p in kp for v in p])
    print(name, img.shape[1], img.shape[0], 'size')
# The peer's faces on the group (facenet-pytorch MTCNN, smallest face 20).
import torch
torch.set_num_threads(1)
from facenet_pytorch import MTCNN
boxes, _ = MTCNN(keep_all=True, min_face_size=20, device='cpu').detect(group)
for b in boxes:
    print('mtcnn', *[f'{v:.3f}' for v in b])
"#;

#[derive(Clone, Copy)]
struct Reference {
    score: f32,
    bbox: [f32; 4],
    keypoints: [[f32; 2]; 6],
}

fn shipped() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/blazeface-back.onnx")
}

#[test]
fn blazeface_matches_its_own_runtime_and_finds_the_group() {
    common::init();
    let dir = scratch_dir("blazeface-peer");
    let out = run_python(
        &format!("{GROUP_PHOTOGRAPH}{REFERENCE}"),
        &[dir.to_str().unwrap(), shipped().to_str().unwrap()],
    );
    let mut images: Vec<(String, usize, usize, Vec<Reference>)> = Vec::new();
    let mut pending: Vec<(String, Reference)> = Vec::new();
    let mut peer_group: Vec<[f32; 4]> = Vec::new();
    for line in out.lines() {
        let p: Vec<&str> = line.split_whitespace().collect();
        if p[0] == "mtcnn" {
            let v: Vec<f32> = p[1..].iter().map(|s| s.parse().unwrap()).collect();
            peer_group.push([v[0], v[1], v[2], v[3]]);
        } else if p.last() == Some(&"size") {
            let name = p[0].to_string();
            let faces = pending
                .iter()
                .filter(|(n, _)| *n == name)
                .map(|(_, r)| *r)
                .collect();
            images.push((name, p[1].parse().unwrap(), p[2].parse().unwrap(), faces));
        } else {
            let v: Vec<f32> = p[1..].iter().map(|s| s.parse().unwrap()).collect();
            pending.push((
                p[0].to_string(),
                Reference {
                    score: v[0],
                    bbox: [v[1], v[2], v[3], v[4]],
                    keypoints: std::array::from_fn(|k| [v[5 + 2 * k], v[6 + 2 * k]]),
                },
            ));
        }
    }
    assert_eq!(images.len(), 3, "{out}");

    let mut det = OrtDetector::open(
        &shipped(),
        &SessionOptions {
            provider: Provider::Cpu,
            intra_op_threads: 1,
            fallback_to_cpu: false,
        },
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let params = DetectParams {
        score_threshold: 0.5,
        nms_iou: 0.4,
        max_faces: 64,
        min_face_size: 0.0,
    };
    let (mut worst_iou, mut worst_px, mut compared) = (1.0f32, 0.0f32, 0);
    for (name, w, h, reference) in &images {
        let rgb = std::fs::read(dir.join(format!("{name}.rgb"))).unwrap();
        // A smallest face as large as the frame: one run on the whole frame, as the reference.
        let ours = det.detect(&rgb, w * 3, *w, *h, &params, 1e6).unwrap();
        assert_eq!(det.runs, 1);
        assert_eq!(
            ours.len(),
            reference.len(),
            "{name}: {} faces, the runtime's {}",
            ours.len(),
            reference.len()
        );
        assert!(!reference.is_empty(), "{name}: the runtime finds no face");
        for r in reference {
            let best = ours
                .iter()
                .max_by(|a, b| iou(a.bbox, r.bbox).total_cmp(&iou(b.bbox, r.bbox)))
                .unwrap();
            let overlap = iou(best.bbox, r.bbox);
            worst_iou = worst_iou.min(overlap);
            assert!(overlap >= 0.98, "{name}: {:?} vs {:?}", best.bbox, r.bbox);
            assert!((best.score - r.score).abs() < 0.01, "{name}: score");
            let l = best.landmarks.unwrap();
            // Eyes and nose are the detector's keypoints 0-2; the mouth corners straddle its
            // mouth centre (keypoint 3).
            let mouth = [(l[3][0] + l[4][0]) / 2.0, (l[3][1] + l[4][1]) / 2.0];
            for (a, b) in [
                (l[0], r.keypoints[0]),
                (l[1], r.keypoints[1]),
                (l[2], r.keypoints[2]),
            ]
            .into_iter()
            .chain([(mouth, r.keypoints[3])])
            {
                let d = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
                worst_px = worst_px.max(d);
                assert!(d <= 1.0, "{name}: keypoint {a:?} vs {b:?}: {d:.2} px");
            }
            // ArcFace order: the image-left eye first.
            assert!(l[0][0] < l[1][0], "{name}: eye order {l:?}");
            compared += 1;
        }
    }
    println!(
        "BlazeFace vs onnxruntime + reference decode over {compared} faces: worst IoU \
         {worst_iou:.4}, worst keypoint {worst_px:.3} px"
    );

    // The element on a stream of the group photograph: the tiles find the small faces too.
    let group = dir.join("group.png");
    assert!(peer_group.len() >= 7, "the peer finds the group's faces");
    for detector in ["blazeface", "auto"] {
        let samples = collect(&format!(
            "filesrc location={} ! pngdec ! imagefreeze num-buffers=3 ! videoconvert \
             ! video/x-raw,format=RGB,framerate=25/1 ! affectfacecrop detector={detector} \
               track-min-hits=1 ! appsink name=sink",
            group.display()
        ))
        .unwrap();
        let faces = meta::faces(samples[0].buffer().unwrap());
        let found = peer_group
            .iter()
            .filter(|p| faces.iter().any(|f| iou(f.bbox, **p) >= 0.5))
            .count();
        let false_faces = faces
            .iter()
            .filter(|f| peer_group.iter().all(|p| iou(f.bbox, *p) < 0.3))
            .count();
        println!(
            "detector={detector} on the 1280x720 group: {found} of MTCNN's {} faces at IoU 0.5, \
             {false_faces} others",
            peer_group.len()
        );
        assert!(
            found >= peer_group.len() - 1,
            "detector={detector}: {found} of {} faces: {faces:?}",
            peer_group.len()
        );
        assert_eq!(false_faces, 0, "{faces:?}");
        assert!(faces.iter().all(|f| f.landmarks.is_some()));
    }

    // A still image (no frame rate) keeps MTCNN under detector=auto: its landmarks are MTCNN's
    // five real points, so the mouth corners are not level in the 18-degree tilted face.
    let still = collect(&format!(
        "filesrc location={} ! pngdec ! videoconvert ! video/x-raw,format=RGB \
         ! affectfacecrop detector=auto ! appsink name=sink",
        group.display()
    ))
    .unwrap();
    let mtcnn = collect(&format!(
        "filesrc location={} ! pngdec ! videoconvert ! video/x-raw,format=RGB \
         ! affectfacecrop detector=mtcnn ! appsink name=sink",
        group.display()
    ))
    .unwrap();
    let boxes = |s: &[gst::Sample]| -> Vec<[f32; 4]> {
        meta::faces(s[0].buffer().unwrap())
            .iter()
            .map(|f| f.bbox)
            .collect()
    };
    assert_eq!(boxes(&still), boxes(&mtcnn));

    // Frames without a frame rate (a video of variable frame rate, or frames from images): the
    // first frame is searched as a still image, by MTCNN; a second frame makes it a video, on
    // BlazeFace from then on, and the faces keep their tracks.
    let frames = |detector: &str| {
        collect(&format!(
            "multifilesrc location={} num-buffers=3 ! pngdec ! videoconvert \
             ! video/x-raw,format=RGB ! affectfacecrop detector={detector} detect-interval=1 \
             ! appsink name=sink",
            group.display()
        ))
        .unwrap()
    };
    let (auto, by_mtcnn, by_blazeface) = (frames("auto"), frames("mtcnn"), frames("blazeface"));
    assert_eq!(auto.len(), 3);
    assert_eq!(boxes(&auto[..1]), boxes(&by_mtcnn[..1]), "frame 1 by MTCNN");
    // BlazeFace's faces, and a small face only MTCNN found coasting on in its track.
    let (on_auto, on_blazeface) = (boxes(&auto[2..]), boxes(&by_blazeface[2..]));
    assert!(
        on_blazeface.iter().all(|b| on_auto.contains(b)) && on_auto.len() <= on_blazeface.len() + 1,
        "frame 3 by BlazeFace: {on_auto:?} vs {on_blazeface:?}"
    );
    let ids = |s: &gst::Sample| -> Vec<u64> {
        let mut v: Vec<u64> = meta::faces(s.buffer().unwrap())
            .iter()
            .map(|f| f.track_id)
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(&auto[0]), ids(&auto[2]), "the same tracks throughout");
    let _ = std::fs::remove_dir_all(dir);
}
