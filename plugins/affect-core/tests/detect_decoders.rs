// SPDX-License-Identifier: MPL-2.0
//! Each detector layout decoded from output tensors built here: known faces are planted at
//! known cells, encoded forward as the layout defines, and must come back within 1e-3 pixels.

use affect_core::detect::{
    DetectError, DetectParams, Detection, DetectorLayout, Letterbox, OutputInfo, ResizeMode,
    TensorView, UltraFaceBoxes, nms,
};

const TOL: f32 = 1e-3;

/// A face to plant: box corners and landmarks in model-input pixels.
#[derive(Clone, Copy, Debug)]
struct Planted {
    bbox: [f32; 4],
    landmarks: [[f32; 2]; 5],
    score: f32,
}

fn planted(cx: f32, cy: f32, w: f32, h: f32, score: f32) -> Planted {
    let (x1, y1) = (cx - w / 2.0, cy - h / 2.0);
    Planted {
        bbox: [x1, y1, x1 + w, y1 + h],
        landmarks: [
            [x1 + 0.3 * w, y1 + 0.4 * h],
            [x1 + 0.7 * w, y1 + 0.4 * h],
            [x1 + 0.5 * w, y1 + 0.6 * h],
            [x1 + 0.35 * w, y1 + 0.8 * h],
            [x1 + 0.65 * w, y1 + 0.8 * h],
        ],
        score,
    }
}

/// Every planted face must be found exactly once, within `TOL`, and nothing else.
fn assert_found(found: &[Detection], planted: &[Planted], with_landmarks: bool) {
    assert_eq!(found.len(), planted.len(), "found {found:?}");
    for p in planted {
        let d = found
            .iter()
            .find(|d| (d.bbox[0] - p.bbox[0]).abs() < 0.5 && (d.bbox[1] - p.bbox[1]).abs() < 0.5)
            .unwrap_or_else(|| panic!("{p:?} not found in {found:?}"));
        for k in 0..4 {
            assert!((d.bbox[k] - p.bbox[k]).abs() < TOL, "{d:?} vs {p:?}");
        }
        assert!((d.score - p.score).abs() < 1e-5, "{d:?} vs {p:?}");
        match (with_landmarks, d.landmarks) {
            (true, Some(l)) => {
                for (a, b) in l.iter().zip(&p.landmarks) {
                    assert!((a[0] - b[0]).abs() < TOL && (a[1] - b[1]).abs() < TOL);
                }
            }
            (false, None) => {}
            (want, got) => panic!("landmarks expected: {want}, got {got:?}"),
        }
    }
}

// ---------------------------------------------------------------- YuNet

struct YuNetOutputs {
    names: Vec<String>,
    shapes: Vec<Vec<usize>>,
    data: Vec<Vec<f32>>,
}

impl YuNetOutputs {
    /// Zero scores everywhere (sqrt(0 * 0) = 0), `faces` planted at `(stride, row, col)`.
    fn new(w: usize, h: usize, faces: &[(usize, usize, usize, Planted)]) -> Self {
        let mut names = Vec::new();
        let mut shapes = Vec::new();
        let mut data = Vec::new();
        for prefix in ["cls", "obj", "bbox", "kps"] {
            for s in [8, 16, 32] {
                let c = match prefix {
                    "bbox" => 4,
                    "kps" => 10,
                    _ => 1,
                };
                let cells = (w / s) * (h / s);
                names.push(format!("{prefix}_{s}"));
                shapes.push(vec![1, cells, c]);
                data.push(vec![0.0; cells * c]);
            }
        }
        let mut out = Self {
            names,
            shapes,
            data,
        };
        for &(s, r, c, p) in faces {
            let cols = w / s;
            let idx = r * cols + c;
            let sf = s as f32;
            // Score = sqrt(cls * obj): split unevenly so a swapped or unsquared formula fails.
            out.set("cls", s, idx, &[p.score * p.score / 0.98]);
            out.set("obj", s, idx, &[0.98]);
            let (bw, bh) = (p.bbox[2] - p.bbox[0], p.bbox[3] - p.bbox[1]);
            let (cx, cy) = (p.bbox[0] + bw / 2.0, p.bbox[1] + bh / 2.0);
            out.set(
                "bbox",
                s,
                idx,
                &[
                    cx / sf - c as f32,
                    cy / sf - r as f32,
                    (bw / sf).ln(),
                    (bh / sf).ln(),
                ],
            );
            let kps: Vec<f32> = p
                .landmarks
                .iter()
                .flat_map(|l| [l[0] / sf - c as f32, l[1] / sf - r as f32])
                .collect();
            out.set("kps", s, idx, &kps);
        }
        out
    }

    fn set(&mut self, prefix: &str, s: usize, idx: usize, values: &[f32]) {
        let i = self
            .names
            .iter()
            .position(|n| *n == format!("{prefix}_{s}"))
            .unwrap();
        let c = values.len();
        self.data[i][idx * c..idx * c + c].copy_from_slice(values);
    }

    fn infos(&self) -> Vec<OutputInfo> {
        self.names
            .iter()
            .zip(&self.shapes)
            .map(|(n, s)| {
                OutputInfo::new(n.clone(), &s.iter().map(|&d| d as i64).collect::<Vec<_>>())
            })
            .collect()
    }

    fn views(&self) -> Vec<TensorView<'_>> {
        (0..self.names.len())
            .map(|i| TensorView::new(&self.names[i], &self.shapes[i], &self.data[i]))
            .collect()
    }
}

#[test]
fn yunet_decodes_planted_faces() {
    let faces = [
        (8, 10, 20, planted(163.0, 85.0, 30.0, 36.0, 0.93)),
        (16, 5, 7, planted(118.0, 90.0, 70.0, 80.0, 0.81)),
        (32, 15, 12, planted(400.0, 490.0, 200.0, 240.0, 0.7)),
    ];
    let out = YuNetOutputs::new(640, 640, &faces);
    let layout = DetectorLayout::recognize(&[1, 3, 640, 640], &out.infos()).unwrap();
    assert_eq!(layout.name(), "YuNet");
    let pre = layout.preprocess();
    assert_eq!((pre.input_width, pre.input_height), (640, 640));
    assert_eq!(pre.resize, ResizeMode::LetterboxTopLeft);
    let found = layout.decode(&out.views(), 0.5).unwrap();
    let planted: Vec<Planted> = faces.iter().map(|f| f.3).collect();
    assert_found(&found, &planted, true);
    // A threshold above one face's score drops just that face.
    assert_eq!(layout.decode(&out.views(), 0.75).unwrap().len(), 2);
}

#[test]
fn yunet_with_a_dynamic_input_uses_the_zoo_size_and_checks_real_shapes() {
    let out = YuNetOutputs::new(320, 320, &[]);
    let dynamic: Vec<OutputInfo> = out
        .infos()
        .into_iter()
        .map(|o| OutputInfo::new(o.name, &[1, -1, *o.shape.last().unwrap()]))
        .collect();
    let layout = DetectorLayout::recognize(&[1, 3, -1, -1], &dynamic).unwrap();
    assert_eq!(layout.preprocess().input_width, 640);
    // Outputs of a 320x320 run do not fit a 640x640 grid: the error names the output.
    let err = layout.decode(&out.views(), 0.5).unwrap_err();
    assert!(
        matches!(&err, DetectError::OutputShape { name, .. } if name == "cls_8"),
        "{err}"
    );
}

// ---------------------------------------------------------------- SCRFD

/// SCRFD outputs for a `w` x `h` input (strides 8/16/32, 2 anchors), in insightface's order,
/// with numeric names as the common exports have them.
fn scrfd_outputs(
    w: usize,
    h: usize,
    batched: bool,
    kps: bool,
    faces: &[(usize, usize, Planted)],
) -> (Vec<String>, Vec<Vec<usize>>, Vec<Vec<f32>>) {
    let strides = [8usize, 16, 32];
    let mut names = Vec::new();
    let mut shapes = Vec::new();
    let mut data = Vec::new();
    let groups: &[usize] = if kps { &[1, 4, 10] } else { &[1, 4] };
    for &c in groups {
        for s in strides {
            let n = (w / s) * (h / s) * 2;
            names.push(format!("{}", 400 + names.len() * 23));
            shapes.push(if batched { vec![1, n, c] } else { vec![n, c] });
            data.push(vec![0.0; n * c]);
        }
    }
    for &(si, anchor, p) in faces {
        let s = strides[si];
        let sf = s as f32;
        let cols = w / s;
        let cell = anchor / 2;
        let (cx, cy) = ((cell % cols) as f32 * sf, (cell / cols) as f32 * sf);
        data[si][anchor] = p.score;
        let d = [
            (cx - p.bbox[0]) / sf,
            (cy - p.bbox[1]) / sf,
            (p.bbox[2] - cx) / sf,
            (p.bbox[3] - cy) / sf,
        ];
        data[3 + si][anchor * 4..anchor * 4 + 4].copy_from_slice(&d);
        if kps {
            let k: Vec<f32> = p
                .landmarks
                .iter()
                .flat_map(|l| [(l[0] - cx) / sf, (l[1] - cy) / sf])
                .collect();
            data[6 + si][anchor * 10..anchor * 10 + 10].copy_from_slice(&k);
        }
    }
    (names, shapes, data)
}

fn infos(names: &[String], shapes: &[Vec<usize>]) -> Vec<OutputInfo> {
    names
        .iter()
        .zip(shapes)
        .map(|(n, s)| OutputInfo::new(n.clone(), &s.iter().map(|&d| d as i64).collect::<Vec<_>>()))
        .collect()
}

fn views<'a>(
    names: &'a [String],
    shapes: &'a [Vec<usize>],
    data: &'a [Vec<f32>],
) -> Vec<TensorView<'a>> {
    (0..names.len())
        .map(|i| TensorView::new(&names[i], &shapes[i], &data[i]))
        .collect()
}

#[test]
fn scrfd_decodes_planted_faces_with_and_without_landmarks() {
    // Stride 8 on a 640x640 input: 80 columns, anchor 2 * (row * 80 + col) + a.
    let faces = [
        (
            0,
            2 * (12 * 80 + 30) + 1,
            planted(241.0, 97.0, 40.0, 48.0, 0.88),
        ),
        (
            1,
            2 * (20 * 40 + 9),
            planted(150.0, 322.0, 90.0, 110.0, 0.72),
        ),
        (
            2,
            2 * (10 * 20 + 15) + 1,
            planted(480.0, 320.0, 220.0, 260.0, 0.95),
        ),
    ];
    let planted: Vec<Planted> = faces.iter().map(|f| f.2).collect();
    for batched in [false, true] {
        for kps in [true, false] {
            let (n, s, d) = scrfd_outputs(640, 640, batched, kps, &faces);
            let layout = DetectorLayout::recognize(&[1, 3, 640, 640], &infos(&n, &s)).unwrap();
            let DetectorLayout::Scrfd(l) = &layout else {
                panic!("recognised {layout}")
            };
            assert_eq!(l.has_landmarks, kps);
            let found = layout.decode(&views(&n, &s, &d), 0.5).unwrap();
            assert_found(&found, &planted, kps);
        }
    }
}

#[test]
fn scrfd_named_outputs_are_taken_by_name_in_any_order() {
    let faces = [(1, 2 * (3 * 40 + 4), planted(70.0, 50.0, 60.0, 60.0, 0.9))];
    let (mut n, mut s, mut d) = scrfd_outputs(640, 640, true, true, &faces);
    for (i, name) in n.iter_mut().enumerate() {
        let prefix = ["score", "bbox", "kps"][i / 3];
        *name = format!("{prefix}_{}", [8, 16, 32][i % 3]);
    }
    // Reverse the output order: positions no longer say which is which, names do.
    n.reverse();
    s.reverse();
    d.reverse();
    let layout = DetectorLayout::recognize(&[1, 3, 640, 640], &infos(&n, &s)).unwrap();
    assert_eq!(layout.name(), "SCRFD");
    let found = layout.decode(&views(&n, &s, &d), 0.5).unwrap();
    assert_found(&found, &[faces[0].2], true);
}

// ---------------------------------------------------------------- UltraFace

#[test]
fn ultraface_decodes_exported_corners_and_center_variance_boxes() {
    let (w, h) = (320.0f32, 240.0f32);
    let faces = [
        (17usize, planted(60.0, 50.0, 30.0, 40.0, 0.97)),
        (4000, planted(200.0, 120.0, 150.0, 170.0, 0.8)),
    ];
    let names = ["scores".to_string(), "boxes".to_string()];
    let shapes = [vec![1, 4420, 2], vec![1, 4420, 4]];
    let layout = DetectorLayout::recognize(&[1, 3, 240, 320], &infos(&names, &shapes)).unwrap();
    let DetectorLayout::UltraFace(uf) = &layout else {
        panic!("recognised {layout}")
    };
    assert_eq!(uf.boxes, UltraFaceBoxes::Corners);
    assert_eq!(uf.priors().len(), 4420);
    let pre = layout.preprocess();
    assert_eq!(
        (pre.input_width, pre.input_height, pre.resize),
        (320, 240, ResizeMode::Stretch)
    );
    assert_eq!((pre.mean[0], pre.scale[0]), (127.0, 1.0 / 128.0));

    let mut scores = vec![0.0f32; 4420 * 2];
    for p in scores.chunks_exact_mut(2) {
        p[0] = 1.0;
    }
    let mut corners = vec![0.0f32; 4420 * 4];
    let mut offsets = vec![0.0f32; 4420 * 4];
    for &(i, p) in &faces {
        scores[i * 2] = 1.0 - p.score;
        scores[i * 2 + 1] = p.score;
        corners[i * 4..i * 4 + 4].copy_from_slice(&[
            p.bbox[0] / w,
            p.bbox[1] / h,
            p.bbox[2] / w,
            p.bbox[3] / h,
        ]);
        // The SSD encoding against prior i, computed from the published prior recipe by hand:
        // prior 17 is cell (i=5, j=0) of the stride-8 map, min box 24; prior 4000 is in the
        // stride-16 map: (4000 - 3600) / 2 = cell 200 = (row 10, col 0), min box 32.
        let prior = match i {
            17 => [(5.0 + 0.5) * 8.0 / w, 0.5 * 8.0 / h, 24.0 / w, 24.0 / h],
            4000 => [0.5 * 16.0 / w, 10.5 * 16.0 / h, 32.0 / w, 32.0 / h],
            _ => unreachable!(),
        };
        assert_eq!(
            uf.priors()[i].map(|v| (v * 1e5).round()),
            prior.map(|v| (v * 1e5).round())
        );
        let (bw, bh) = ((p.bbox[2] - p.bbox[0]) / w, (p.bbox[3] - p.bbox[1]) / h);
        let (cx, cy) = (p.bbox[0] / w + bw / 2.0, p.bbox[1] / h + bh / 2.0);
        offsets[i * 4..i * 4 + 4].copy_from_slice(&[
            (cx - prior[0]) / prior[2] / 0.1,
            (cy - prior[1]) / prior[3] / 0.1,
            (bw / prior[2]).ln() / 0.2,
            (bh / prior[3]).ln() / 0.2,
        ]);
    }
    let planted: Vec<Planted> = faces.iter().map(|f| f.1).collect();
    let data = [scores.clone(), corners];
    let found = layout.decode(&views(&names, &shapes, &data), 0.5).unwrap();
    assert_found(&found, &planted, false);

    let raw = DetectorLayout::UltraFace(uf.clone().with_boxes(UltraFaceBoxes::CenterVariance));
    let data = [scores, offsets];
    let found = raw.decode(&views(&names, &shapes, &data), 0.5).unwrap();
    assert_found(&found, &planted, false);
}

#[test]
fn ultraface_640_is_told_apart_by_its_anchor_count() {
    let outputs = [
        OutputInfo::new("boxes", &[-1, 17640, 4]),
        OutputInfo::new("scores", &[-1, 17640, 2]),
    ];
    let layout = DetectorLayout::recognize(&[-1, 3, -1, -1], &outputs).unwrap();
    let DetectorLayout::UltraFace(uf) = &layout else {
        panic!("recognised {layout}")
    };
    assert_eq!((uf.input_width, uf.input_height), (640, 480));
    assert_eq!((uf.scores_output, uf.boxes_output), (1, 0));
}

// ---------------------------------------------------------------- recognition and the pipeline

#[test]
fn unknown_layouts_fail_naming_every_output_and_shape() {
    let outputs = [
        OutputInfo::new("logits", &[1, 1000]),
        OutputInfo::new("features", &[-1, 512, 7, 7]),
    ];
    let err = DetectorLayout::recognize(&[1, 3, 224, 224], &outputs).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the detector's outputs match no known face detector layout (BlazeFace, YuNet, SCRFD, \
         UltraFace); it has 2 output(s): 'logits' [1, 1000], 'features' [?, 512, 7, 7]"
    );
    // Nine outputs like SCRFD's, but with the wrong channel counts, are not SCRFD.
    let mut nine: Vec<OutputInfo> = (0..9)
        .map(|i| OutputInfo::new(format!("o{i}"), &[12800 >> (2 * (i % 3)), 1]))
        .collect();
    assert!(DetectorLayout::recognize(&[1, 3, 640, 640], &nine).is_err());
    for (i, o) in nine.iter_mut().enumerate() {
        o.shape[1] = [1, 4, 10][i / 3];
    }
    assert_eq!(
        DetectorLayout::recognize(&[1, 3, 640, 640], &nine)
            .unwrap()
            .name(),
        "SCRFD"
    );
    // UltraFace-like outputs whose anchor count fits no input size.
    let odd = [
        OutputInfo::new("scores", &[1, 4000, 2]),
        OutputInfo::new("boxes", &[1, 4000, 4]),
    ];
    let err = DetectorLayout::recognize(&[1, 3, 240, 320], &odd).unwrap_err();
    assert!(err.to_string().contains("'scores' [1, 4000, 2]"), "{err}");
}

#[test]
fn decoders_reject_tensors_that_break_their_shapes_without_panicking() {
    let names = ["scores".to_string(), "boxes".to_string()];
    let shapes = [vec![1, 4420, 2], vec![1, 4420, 4]];
    let layout = DetectorLayout::recognize(&[1, 3, 240, 320], &infos(&names, &shapes)).unwrap();
    let short = [vec![0.0; 4420 * 2], vec![0.0; 17]];
    let err = layout
        .decode(&views(&names, &shapes, &short), 0.5)
        .unwrap_err();
    assert!(
        matches!(&err, DetectError::TensorLength { name, got: 17, expected: 17680, .. } if name == "boxes"),
        "{err}"
    );
    let err = layout
        .decode(&views(&names[..1], &shapes[..1], &short[..1]), 0.5)
        .unwrap_err();
    assert!(
        matches!(err, DetectError::OutputCount { got: 1, .. }),
        "{err}"
    );
}

#[test]
fn detect_maps_planted_faces_to_frame_pixels_and_suppresses_duplicates() {
    // A 1280x720 frame letterboxed into SCRFD's 640x640: scale 1/2, no padding at top-left.
    let frame_face = planted(500.0, 300.0, 160.0, 200.0, 0.9);
    let model_face = Planted {
        bbox: frame_face.bbox.map(|v| v / 2.0),
        landmarks: frame_face.landmarks.map(|p| p.map(|v| v / 2.0)),
        score: 0.9,
    };
    // The same face seen by two neighbouring anchors with a slightly lower score, and a face
    // too small to keep (8x8 frame pixels).
    let near = Planted {
        score: 0.85,
        ..model_face
    };
    let tiny = planted(40.0, 40.0, 4.0, 4.0, 0.99);
    let faces = [
        (1, 2 * (9 * 40 + 15), model_face),
        (1, 2 * (9 * 40 + 15) + 1, near),
        (0, 2 * (5 * 80 + 5), tiny),
    ];
    let (n, s, d) = scrfd_outputs(640, 640, false, true, &faces);
    let layout = DetectorLayout::recognize(&[1, 3, 640, 640], &infos(&n, &s)).unwrap();
    let lb = layout.preprocess().letterbox(1280, 720).unwrap();
    assert_eq!(
        lb,
        Letterbox::new(1280, 720, 640, 640, ResizeMode::LetterboxTopLeft).unwrap()
    );
    let params = DetectParams {
        score_threshold: 0.5,
        nms_iou: 0.4,
        max_faces: 10,
        min_face_size: 20.0,
    };
    let found = layout.detect(&views(&n, &s, &d), &lb, &params).unwrap();
    assert_found(&found, &[frame_face], true);
    // Suppression alone (no size filter) keeps the tiny face and still one of the pair.
    let all = layout.decode(&views(&n, &s, &d), 0.5).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(nms(all, 0.4, 10).len(), 2);
}
