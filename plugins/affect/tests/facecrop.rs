// SPDX-License-Identifier: MPL-2.0
//! `affectfacecrop` against OpenCV and scikit-image, and under the stream events users meet.

mod common;

use common::{collect, init, iou};
use std::path::{Path, PathBuf};

use affect_core::landmark_prior::BoxLandmarkPrior;
use affect_core::testutil::{run_python, scratch_dir};
use gst_check::Harness;
use gstaffect::meta::{self, Face};

/// scikit-image's photograph of Eileen Collins, the face test image OpenCV users know.
fn astronaut() -> PathBuf {
    let out = run_python(
        "import skimage, os; print(os.path.join(os.path.dirname(skimage.__file__), 'data', 'astronaut.png'))",
        &[],
    );
    PathBuf::from(out.trim())
}

#[test]
fn haar_finds_the_astronaut_where_opencv_does() {
    let image = astronaut();
    let cv = run_python(
        r#"
import sys, cv2
img = cv2.imread(sys.argv[1])
grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
c = cv2.CascadeClassifier('/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml')
faces = c.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=4, minSize=(32, 32))
x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
print(x, y, x + w, y + h)
"#,
        &[image.to_str().unwrap()],
    );
    let v: Vec<f32> = cv.split_whitespace().map(|s| s.parse().unwrap()).collect();
    let opencv_box = [v[0], v[1], v[2], v[3]];

    let samples = collect(&format!(
        "filesrc location={} ! pngdec ! videoconvert ! video/x-raw,format=I420 \
         ! imagefreeze num-buffers=3 ! affectfacecrop detector=haar ! appsink name=sink",
        image.display()
    ))
    .unwrap();
    assert_eq!(samples.len(), 3, "annotate mode passes every frame");
    // A face of the stream's first frame is reported on it, and keeps its track after.
    for s in &samples {
        let faces = meta::faces(s.buffer().unwrap());
        assert_eq!(faces.len(), 1, "{faces:?}");
        assert_eq!(faces[0].track_id, 1);
        let overlap = iou(faces[0].bbox, opencv_box);
        assert!(
            overlap >= 0.7,
            "face {:?} vs OpenCV {:?}: IoU {overlap}",
            faces[0].bbox,
            opencv_box
        );
    }
}

/// A frame of `width` x `height` RGB with a smooth, textured pattern so warps are testable.
fn pattern(width: usize, height: usize, seed: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            let (xf, yf) = (x as f32, y as f32);
            v.push((128.0 + 100.0 * ((xf * 0.05 + seed as f32).sin() * (yf * 0.031).cos())) as u8);
            v.push(((x * 3 + y * 5 + seed as usize) % 256) as u8);
            v.push((128.0 + 120.0 * ((xf + yf) * 0.02).sin()) as u8);
        }
    }
    v
}

fn rgb_buffer(data: &[u8], pts_ms: u64) -> gst::Buffer {
    let mut buf = gst::Buffer::from_mut_slice(data.to_vec());
    buf.get_mut()
        .unwrap()
        .set_pts(gst::ClockTime::from_mseconds(pts_ms));
    buf
}

#[test]
fn crops_from_upstream_landmarks_match_opencv() {
    init();
    let (w, h) = (320usize, 240usize);
    let frame = pattern(w, h, 3);
    let landmarks = [
        [131.5f32, 101.2],
        [181.0, 97.4],
        [158.3, 130.9],
        [137.2, 160.1],
        [178.8, 157.6],
    ];
    let mut h_crop = Harness::new_parse("affectfacecrop mode=crop detector=upstream crop-size=112");
    h_crop.set_src_caps_str(&format!(
        "video/x-raw,format=RGB,width={w},height={h},framerate=30/1"
    ));
    let mut buf = rgb_buffer(&frame, 0);
    Face {
        bbox: [110.0, 70.0, 200.0, 190.0],
        track_id: 0,
        score: 0.9,
        landmarks: Some(landmarks),
    }
    .attach(buf.get_mut().unwrap(), w as u32, h as u32);
    h_crop.push(buf).unwrap();
    let out = h_crop.pull().unwrap();
    let crop = out.map_readable().unwrap().to_vec();
    assert_eq!(crop.len(), 112 * 112 * 3);
    let crop_face = meta::faces(&out);
    assert_eq!(crop_face.len(), 1, "the crop carries its face");
    assert_eq!(crop_face[0].bbox, [0.0, 0.0, 112.0, 112.0]);

    let dir = scratch_dir("facecrop-opencv");
    let reference = common::reference_arcface_crop(&dir, &frame, 320, 240, &landmarks);
    let mean_abs = common::mean_abs_diff(&crop, &reference);
    assert!(
        mean_abs <= 1.0,
        "mean |element - cv2.warpAffine| = {mean_abs}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn yuv_input_crops_like_rgb_input() {
    let image = astronaut();
    let crop_of = |format: &str| -> Vec<u8> {
        let samples = collect(&format!(
            "filesrc location={} ! pngdec ! videoconvert ! video/x-raw,format={format} \
             ! imagefreeze num-buffers=2 \
             ! affectfacecrop mode=crop detector=full-frame region=150,40,160,180 \
             ! appsink name=sink",
            image.display()
        ))
        .unwrap();
        assert_eq!(samples.len(), 2);
        samples[1]
            .buffer()
            .unwrap()
            .map_readable()
            .unwrap()
            .to_vec()
    };
    let rgb = crop_of("RGB");
    for format in ["I420", "NV12", "BGRx"] {
        let other = crop_of(format);
        assert_eq!(other.len(), rgb.len());
        let mean_abs: f64 = rgb
            .iter()
            .zip(&other)
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .sum::<f64>()
            / rgb.len() as f64;
        // 4:2:0 chroma loses detail; the same region stays within a few grey levels.
        let limit = if format == "BGRx" { 0.0 } else { 3.0 };
        assert!(mean_abs <= limit, "{format}: mean difference {mean_abs}");
    }
}

#[test]
fn track_ids_survive_short_misses_and_reset_on_resolution_change() {
    init();
    let (w, h) = (320usize, 240usize);
    let frame = pattern(w, h, 1);
    let mut harness = Harness::new_parse("affectfacecrop detector=upstream");
    harness.set_src_caps_str(&format!(
        "video/x-raw,format=RGB,width={w},height={h},framerate=30/1"
    ));
    // A face moving right; frames 3 and 4 lose it; a second face appears at frame 6.
    let mut seen = Vec::new();
    for i in 0..8u64 {
        let mut buf = rgb_buffer(&frame, i * 33);
        let x = 40.0 + 6.0 * i as f32;
        if i != 3 && i != 4 {
            Face {
                bbox: [x, 60.0, x + 80.0, 160.0],
                track_id: 0,
                score: 1.0,
                landmarks: None,
            }
            .attach(buf.get_mut().unwrap(), w as u32, h as u32);
        }
        if i >= 6 {
            Face {
                bbox: [220.0, 100.0, 300.0, 200.0],
                track_id: 0,
                score: 1.0,
                landmarks: None,
            }
            .attach(buf.get_mut().unwrap(), w as u32, h as u32);
        }
        harness.push(buf).unwrap();
        let out = harness.pull().unwrap();
        let mut ids: Vec<u64> = meta::faces(&out).iter().map(|f| f.track_id).collect();
        ids.sort();
        seen.push(ids);
    }
    assert_eq!(
        seen,
        vec![
            vec![1],
            vec![1],
            vec![1],
            vec![],
            vec![],
            vec![1],
            vec![1, 2],
            vec![1, 2]
        ]
    );

    // New resolution: the old boxes mean nothing, so the same place starts a new track.
    let (w2, h2) = (640usize, 480usize);
    harness.set_src_caps_str(&format!(
        "video/x-raw,format=RGB,width={w2},height={h2},framerate=30/1"
    ));
    let mut buf = rgb_buffer(&pattern(w2, h2, 2), 300);
    Face {
        bbox: [220.0, 100.0, 300.0, 200.0],
        track_id: 0,
        score: 1.0,
        landmarks: None,
    }
    .attach(buf.get_mut().unwrap(), w2 as u32, h2 as u32);
    harness.push(buf).unwrap();
    let out = harness.pull().unwrap();
    let ids: Vec<u64> = meta::faces(&out).iter().map(|f| f.track_id).collect();
    assert_eq!(ids, vec![3]);
}

/// Writes an ONNX face detector in the YuNet output layout whose outputs are constants with
/// one planted face (the input only feeds a zero, so the graph is a valid detector file).
fn yunet_like_model(path: &Path, unknown_layout: bool) {
    run_python(
        r#"
import sys, numpy as np, onnx
from onnx import helper, numpy_helper, TensorProto
out, unknown = sys.argv[1], sys.argv[2] == '1'
H = W = 640
nodes = [helper.make_node('ReduceMean', ['input'], ['m'], keepdims=0),
         helper.make_node('Mul', ['m', 'zero'], ['z'])]
inits = [numpy_helper.from_array(np.array(0, np.float32), 'zero')]
outputs = []
def const_output(name, arr):
    inits.append(numpy_helper.from_array(arr, 'c_' + name))
    nodes.append(helper.make_node('Add', ['c_' + name, 'z'], [name]))
    outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(arr.shape)))
if unknown:
    const_output('boxes', np.zeros((1, 10, 3), np.float32))
    const_output('conf', np.zeros((1, 10), np.float32))
else:
    for s in (8, 16, 32):
        rows, cols = H // s, W // s
        n = rows * cols
        arrs = {'cls': np.zeros((1, n, 1), np.float32), 'obj': np.zeros((1, n, 1), np.float32),
                'bbox': np.zeros((1, n, 4), np.float32), 'kps': np.zeros((1, n, 10), np.float32)}
        if s == 32:
            r, c = 5, 7
            i = r * cols + c
            arrs['cls'][0, i, 0] = 0.9
            arrs['obj'][0, i, 0] = 0.9
            # Centre (240, 176), 160 x 200.
            arrs['bbox'][0, i] = [0.5, 0.5, np.log(160 / 32), np.log(200 / 32)]
            pts = np.array([[200, 150], [280, 150], [240, 180], [210, 220], [270, 220]], np.float32)
            arrs['kps'][0, i] = (pts / 32 - np.array([c, r], np.float32)).reshape(-1)
        for name in ('cls', 'obj', 'bbox', 'kps'):
            const_output(f'{name}_{s}', arrs[name])
inp = helper.make_tensor_value_info('input', TensorProto.FLOAT, [1, 3, H, W])
graph = helper.make_graph(nodes, 'face_detector', [inp], outputs, inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, out)
"#,
        &[
            path.to_str().unwrap(),
            if unknown_layout { "1" } else { "0" },
        ],
    );
}

#[test]
fn onnx_detector_runs_through_onnx_runtime() {
    let dir = scratch_dir("facecrop-onnx");
    let model = dir.join("yunet-like.onnx");
    yunet_like_model(&model, false);
    let samples = collect(&format!(
        "videotestsrc num-buffers=3 ! video/x-raw,width=640,height=640,format=RGB \
         ! affectfacecrop detector=onnx detector-model={} track-min-hits=1 ! appsink name=sink",
        model.display()
    ))
    .unwrap();
    assert_eq!(samples.len(), 3);
    for s in &samples {
        let faces = meta::faces(s.buffer().unwrap());
        assert_eq!(faces.len(), 1);
        assert_eq!(faces[0].bbox, [160.0, 76.0, 320.0, 276.0]);
        let l = faces[0].landmarks.expect("YuNet gives landmarks");
        for (got, want) in l.iter().zip([
            [200.0, 150.0],
            [280.0, 150.0],
            [240.0, 180.0],
            [210.0, 220.0],
            [270.0, 220.0],
        ]) {
            assert!((got[0] - want[0]).abs() < 1e-3 && (got[1] - want[1]).abs() < 1e-3);
        }
        assert!((faces[0].score - 0.9).abs() < 1e-5);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_detectors_fail_at_start_naming_the_problem() {
    let dir = scratch_dir("facecrop-bad");
    let missing = dir.join("no-such-model.onnx");
    let err = collect(&format!(
        "videotestsrc num-buffers=1 ! affectfacecrop detector=onnx detector-model={} ! appsink name=sink",
        missing.display()
    ))
    .unwrap_err();
    assert!(err.contains("no-such-model.onnx"), "{err}");

    let err =
        collect("videotestsrc num-buffers=1 ! affectfacecrop detector=onnx ! appsink name=sink")
            .unwrap_err();
    assert!(err.contains("detector-model"), "{err}");

    let garbage = dir.join("garbage.onnx");
    std::fs::write(&garbage, b"this is not a protobuf").unwrap();
    let err = collect(&format!(
        "videotestsrc num-buffers=1 ! affectfacecrop detector=onnx detector-model={} ! appsink name=sink",
        garbage.display()
    ))
    .unwrap_err();
    assert!(err.contains("garbage.onnx"), "{err}");

    let unknown = dir.join("unknown.onnx");
    yunet_like_model(&unknown, true);
    let err = collect(&format!(
        "videotestsrc num-buffers=1 ! affectfacecrop detector=onnx detector-model={} ! appsink name=sink",
        unknown.display()
    ))
    .unwrap_err();
    assert!(
        err.contains("'boxes' [1, 10, 3]") && err.contains("'conf' [1, 10]"),
        "{err}"
    );

    let err = collect(
        "videotestsrc num-buffers=1 ! affectfacecrop detector=haar haar-cascade=/nonexistent/cascade.xml ! appsink name=sink",
    )
    .unwrap_err();
    assert!(err.contains("/nonexistent/cascade.xml"), "{err}");

    let err = collect(
        "videotestsrc num-buffers=1 ! affectfacecrop detector=full-frame region=1,2,3 ! appsink name=sink",
    )
    .unwrap_err();
    assert!(err.contains("x,y,w,h"), "{err}");

    // Non-finite or absurd regions are refused naming the property.
    for (properties, needle) in [
        ("region=0,0,inf,10", "region"),
        ("region=nan,0,10,10", "region"),
        ("region=0,0,1e30,10", "region"),
    ] {
        let err = collect(&format!(
            "videotestsrc num-buffers=1 ! affectfacecrop detector=full-frame {properties} ! appsink name=sink"
        ))
        .unwrap_err();
        assert!(err.contains(needle), "{properties}: {err}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A region reaching past the frame is cut to the frame.
#[test]
fn a_region_past_the_frame_is_cut_to_it() {
    let samples = collect(
        "videotestsrc num-buffers=1 ! video/x-raw,width=320,height=240,format=RGB \
         ! affectfacecrop detector=full-frame region=300,200,100,120 ! appsink name=sink",
    )
    .unwrap();
    let faces = meta::faces(samples[0].buffer().unwrap());
    assert_eq!(faces.len(), 1);
    assert_eq!(faces[0].bbox, [300.0, 200.0, 320.0, 240.0]);
}

#[test]
fn full_frame_region_and_no_face_policies() {
    let samples = collect(
        "videotestsrc num-buffers=2 ! video/x-raw,width=320,height=240,format=RGB \
         ! affectfacecrop detector=full-frame region=10,20,100,120 ! appsink name=sink",
    )
    .unwrap();
    for s in &samples {
        let faces = meta::faces(s.buffer().unwrap());
        assert_eq!(faces.len(), 1);
        assert_eq!(faces[0].bbox, [10.0, 20.0, 110.0, 140.0]);
    }
    // A test pattern holds no face: drop gives no crops, black gives black frames.
    let dropped = collect(
        "videotestsrc num-buffers=3 ! video/x-raw,width=320,height=240 \
         ! affectfacecrop mode=crop ! appsink name=sink",
    )
    .unwrap();
    assert!(dropped.is_empty());
    let black = collect(
        "videotestsrc num-buffers=3 ! video/x-raw,width=320,height=240 \
         ! affectfacecrop mode=crop no-face=black crop-size=64 ! appsink name=sink",
    )
    .unwrap();
    assert_eq!(black.len(), 3);
    let caps = black[0].caps().unwrap().structure(0).unwrap().to_owned();
    assert_eq!(caps.get::<i32>("width").unwrap(), 64);
    assert_eq!(caps.get::<&str>("format").unwrap(), "RGB");
    assert!(
        black[0]
            .buffer()
            .unwrap()
            .map_readable()
            .unwrap()
            .iter()
            .all(|&v| v == 0)
    );
}

/// Each face of `buffer` with whether its landmarks are flagged as estimated.
fn faces_with_flags(buffer: &gst::BufferRef) -> Vec<(Face, bool)> {
    buffer
        .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
        .filter_map(|m| Some((Face::from_meta(&m)?, meta::landmarks_estimated(&m))))
        .collect()
}

#[test]
fn box_only_faces_get_estimated_landmarks_flagged_as_such() {
    init();
    let (w, h) = (320usize, 240usize);
    let frame = pattern(w, h, 3);
    let found = [
        [200.0, 40.0],
        [240.0, 40.0],
        [220.0, 60.0],
        [205.0, 80.0],
        [235.0, 80.0],
    ];
    let faces_of = |description: &str| {
        let mut harness = Harness::new_parse(description);
        harness.set_src_caps_str(&format!(
            "video/x-raw,format=RGB,width={w},height={h},framerate=30/1"
        ));
        let mut buf = rgb_buffer(&frame, 0);
        for (bbox, landmarks) in [
            ([40.0, 60.0, 120.0, 140.0], None),
            ([180.0, 10.0, 260.0, 100.0], Some(found)),
        ] {
            Face {
                bbox,
                track_id: 0,
                score: 1.0,
                landmarks,
            }
            .attach(buf.get_mut().unwrap(), w as u32, h as u32);
        }
        harness.push(buf).unwrap();
        let mut faces = faces_with_flags(&harness.pull().unwrap());
        faces.sort_by(|a, b| a.0.bbox[0].total_cmp(&b.0.bbox[0]));
        faces
    };
    let faces = faces_of("affectfacecrop detector=upstream");
    assert_eq!(faces.len(), 2);
    // The box-only face: the mean shape placed in its 80-pixel box.
    let (boxed, estimated) = faces[0];
    assert!(estimated, "box-only landmarks must be flagged");
    let l = boxed.landmarks.expect("estimated landmarks");
    for (p, f) in l.iter().zip(&BoxLandmarkPrior::GENERIC.points) {
        assert!((p[0] - (40.0 + 80.0 * f[0])).abs() < 1e-3, "{l:?}");
        assert!((p[1] - (60.0 + 80.0 * f[1])).abs() < 1e-3, "{l:?}");
    }
    // The face with a detector's landmarks keeps them, unflagged.
    assert_eq!(faces[1].0.landmarks, Some(found));
    assert!(!faces[1].1);

    let off = faces_of("affectfacecrop detector=upstream estimate-landmarks=false");
    assert_eq!(off[0].0.landmarks, None);
    assert!(!off[0].1);
    assert_eq!(off[1].0.landmarks, Some(found));
}

#[test]
fn haar_faces_get_the_haar_prior() {
    let samples = collect(&format!(
        "filesrc location={} ! pngdec ! videoconvert ! video/x-raw,format=RGB \
         ! imagefreeze num-buffers=2 ! affectfacecrop detector=haar ! appsink name=sink",
        astronaut().display()
    ))
    .unwrap();
    let faces = faces_with_flags(samples[1].buffer().unwrap());
    assert_eq!(faces.len(), 1);
    let (face, estimated) = faces[0];
    assert!(estimated);
    let [x1, y1, x2, y2] = face.bbox;
    let l = face.landmarks.expect("estimated landmarks");
    for (p, f) in l.iter().zip(&BoxLandmarkPrior::HAAR_FRONTAL_DEFAULT.points) {
        // The meta's box is the tracked box rounded to pixels.
        assert!((p[0] - (x1 + (x2 - x1) * f[0])).abs() < 0.6, "{l:?}");
        assert!((p[1] - (y1 + (y2 - y1) * f[1])).abs() < 0.6, "{l:?}");
    }
    // The eyes lie inside the box, left of right, above the mouth.
    assert!(x1 < l[0][0] && l[0][0] < l[1][0] && l[1][0] < x2);
    assert!(y1 < l[0][1] && l[0][1] < l[3][1] && l[3][1] < y2);
}

#[test]
fn a_full_frame_aligned_crop_is_cut_as_it_is() {
    init();
    let size = 112usize;
    let frame = pattern(size, size, 5);
    let crop_of = |properties: &str| {
        let mut harness = Harness::new_parse(&format!(
            "affectfacecrop mode=crop detector=full-frame crop-size={size} {properties}"
        ));
        harness.set_src_caps_str(&format!(
            "video/x-raw,format=RGB,width={size},height={size},framerate=30/1"
        ));
        harness.push(rgb_buffer(&frame, 0)).unwrap();
        harness.pull().unwrap()
    };
    // A whole frame is taken as framed like an ArcFace crop: its estimated landmarks are the
    // template, and the crop is the frame itself.
    let out = crop_of("");
    let data = out.map_readable().unwrap();
    let worst = data
        .iter()
        .zip(&frame)
        .map(|(a, b)| (*a as i32 - *b as i32).abs())
        .max()
        .unwrap();
    assert!(
        worst <= 1,
        "the aligned crop moved: worst difference {worst}"
    );
    let faces = faces_with_flags(&out);
    assert_eq!(faces.len(), 1);
    assert!(faces[0].1);
    let l = faces[0].0.landmarks.expect("landmarks in the crop");
    for (p, t) in l.iter().zip(&affect_core::align::ARCFACE_112) {
        assert!(
            (p[0] - t[0]).abs() < 1e-2 && (p[1] - t[1]).abs() < 1e-2,
            "{l:?}"
        );
    }
    // Without the estimate it is a box crop: a box of the crop's size, without margin, is the
    // frame pixel for pixel too.
    let plain = crop_of("estimate-landmarks=false box-margin=0");
    let plain = plain.map_readable().unwrap();
    assert_eq!(plain.as_slice(), frame.as_slice());
    assert!(!faces_with_flags(&crop_of("estimate-landmarks=false"))[0].1);
}
