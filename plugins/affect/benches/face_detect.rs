// SPDX-License-Identifier: MPL-2.0
//! Face detectors on real photographs at 640x480, 1280x720 and 1920x1080, one core each:
//! the Haar cascade, MTCNN on the full frame and MTCNN on the element's default copy (a quarter
//! of the width, at least 320, for frames wider than 640), BlazeFace on the whole frame and with
//! the element's tiles, against OpenCV's `detectMultiScale` and facenet-pytorch's
//! `MTCNN.detect` on the same frames in the same run (a Python process started by the
//! benchmark), with the recall and false faces of each against the peer MTCNN's faces; how far
//! BlazeFace's aligned crops lie from MTCNN's; then `affectfacecrop` on a 1280x720 25 frames/s
//! stream of four faces on all cores, as frames per second.
//!
//! `cargo bench -p gst-plugin-affect --bench face_detect`. `AFFECT_BENCH_REPEAT` (timed runs
//! per detector and size, median reported, default 5) and `AFFECT_BENCH_FRAMES` (frames of the
//! element run, default 150) change the run. Needs the set-up's `.venv` with
//! facenet-pytorch (`./setup.sh --train`).

use std::path::Path;
use std::time::Instant;

use affect_core::align::Similarity;
use affect_core::detect::blazeface::five_points;
use affect_core::detect::haar::{DEBIAN_FRONTAL_FACE, HaarCascade, HaarDetector, HaarParams};
use affect_core::detect::mtcnn::{Mtcnn, MtcnnParams, RgbFrame};
use affect_core::detect::{DetectParams, Detection};
use affect_core::testutil::{GROUP_PHOTOGRAPH, run_python, scratch_dir};
use gst::prelude::*;
use gstaffect::detector::OrtDetector;
use gstaffect::mtcnn::OrtMtcnn;
use gstaffect::session::{Provider, SessionOptions};

const SIZES: [(usize, usize); 3] = [(640, 480), (1280, 720), (1920, 1080)];

/// Makes the frames (a group photograph of six real faces, tilted, of several sizes, and a
/// four-face one for the stream) and times the peers on them with one thread.
const PEERS: &str = r#"
import sys, time, json, cv2
import torch
torch.set_num_threads(1)
cv2.setNumThreads(1)
from facenet_pytorch import MTCNN
out, repeat = sys.argv[1], int(sys.argv[2])
# Six faces of 90-260 px at 1280x720 and three small ones (60, 44 and 32 px wide heads).
six = [(40, 60, 220, 0, 0), (330, 80, 150, 18, 1), (560, 240, 110, -25, 0),
       (760, 60, 260, 8, 1), (1080, 330, 90, 30, 0), (140, 420, 170, -12, 1),
       (1100, 40, 60, 0, 1), (480, 560, 44, 10, 0), (900, 620, 32, 0, 1)]
four = [(80, 120, 200, 0, 0), (400, 100, 180, 12, 1), (700, 300, 160, -15, 0), (1000, 150, 170, 5, 1)]
mtcnn = MTCNN(keep_all=True, min_face_size=20, device='cpu')
cascade = cv2.CascadeClassifier('/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml')
result = {}
for w, h in [(640, 480), (1280, 720), (1920, 1080)]:
    img = group(w, h, six)
    img.tofile(os.path.join(out, f'group-{w}x{h}.rgb'))
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    def timed(f):
        f()
        times = []
        for _ in range(repeat):
            t = time.perf_counter(); r = f(); times.append(time.perf_counter() - t)
        return float(np.median(times)) * 1e3, r
    ms_cv, faces_cv = timed(lambda: cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=4, minSize=(32, 32)))
    ms_mt, (boxes, probs) = timed(lambda: mtcnn.detect(img))
    result[f'{w}x{h}'] = {
        'opencv_ms': ms_cv, 'opencv': [[float(x), float(y), float(x + fw), float(y + fh)] for x, y, fw, fh in faces_cv],
        'facenet_ms': ms_mt, 'facenet': [] if boxes is None else [list(map(float, b)) for b in boxes],
    }
group(1280, 720, four).tofile(os.path.join(out, 'four-1280x720.rgb'))
print(json.dumps(result))
"#;

fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
}

/// Share of `reference` faces that some box of `found` overlaps by IoU >= `at` (Haar, MTCNN and
/// BlazeFace frame a face differently; 0.4 still never pairs two different faces here).
fn recall(found: &[[f32; 4]], reference: &[[f32; 4]], at: f32) -> f64 {
    if reference.is_empty() {
        return f64::NAN;
    }
    let hit = reference
        .iter()
        .filter(|r| found.iter().any(|f| iou(*f, **r) >= at))
        .count();
    hit as f64 / reference.len() as f64
}

/// Boxes of `found` on no reference face (IoU below 0.3 with each).
fn false_faces(found: &[[f32; 4]], reference: &[[f32; 4]]) -> usize {
    found
        .iter()
        .filter(|f| reference.iter().all(|r| iou(**f, *r) < 0.3))
        .count()
}

/// How far apart two aligned 112x112 crops of one face are: the mean distance, in crop pixels,
/// between where the crop's corners and centre fall under the two landmark sets' transforms.
fn crop_shift(a: &[[f32; 2]; 5], b: &[[f32; 2]; 5]) -> f64 {
    let ta = Similarity::to_arcface(a, 112).unwrap();
    let tb = Similarity::to_arcface(b, 112).unwrap();
    let back = ta.inverse().unwrap();
    let points = [
        [0.0, 0.0],
        [112.0, 0.0],
        [0.0, 112.0],
        [112.0, 112.0],
        [56.0, 56.0],
    ];
    points
        .iter()
        .map(|&c| {
            let q = tb.apply(back.apply(c));
            f64::from((q[0] - c[0]).hypot(q[1] - c[1]))
        })
        .sum::<f64>()
        / points.len() as f64
}

/// The four points BlazeFace gives (eyes, nose, mouth centre) taken from five, completed again.
fn four_point_landmarks(l: &[[f32; 2]; 5]) -> [[f32; 2]; 5] {
    let mouth = [(l[3][0] + l[4][0]) / 2.0, (l[3][1] + l[4][1]) / 2.0];
    five_points(&[l[0], l[1], l[2], mouth, [0.0; 2], [0.0; 2]])
}

fn median_ms(repeat: usize, mut f: impl FnMut() -> Vec<[f32; 4]>) -> (f64, Vec<[f32; 4]>) {
    let first = f();
    let mut times: Vec<f64> = (0..repeat)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], first)
}

fn boxes(v: &serde_json::Value) -> Vec<[f32; 4]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| std::array::from_fn(|i| b[i].as_f64().unwrap() as f32))
        .collect()
}

/// `affectfacecrop` with its defaults over `frames` copies of `frame`, as fast as it goes.
fn element_fps(frame: &[u8], width: usize, height: usize, frames: usize, properties: &str) -> f64 {
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time caps=video/x-raw,format=RGB,width={width},height={height},framerate=25/1 \
         ! affectfacecrop {properties} ! fakesink sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    src.set_max_bytes((frame.len() * 4) as u64);
    src.set_block(true);
    pipeline.set_state(gst::State::Playing).unwrap();
    let started = Instant::now();
    for i in 0..frames {
        let mut b = gst::Buffer::from_slice(frame.to_vec());
        b.get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(40 * i as u64));
        src.push_buffer(b).unwrap();
    }
    src.end_of_stream().unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(600),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .unwrap();
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
    let seconds = started.elapsed().as_secs_f64();
    pipeline.set_state(gst::State::Null).unwrap();
    frames as f64 / seconds
}

fn main() {
    gst::init().unwrap();
    gstaffect::plugin_register_static().unwrap();
    let repeat: usize = std::env::var("AFFECT_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let frames: usize = std::env::var("AFFECT_BENCH_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let dir = scratch_dir("face-detect-bench");
    let peers: serde_json::Value = serde_json::from_str(
        run_python(
            &format!("{GROUP_PHOTOGRAPH}{PEERS}"),
            &[dir.to_str().unwrap(), &repeat.to_string()],
        )
        .trim(),
    )
    .expect("the peers' timings");
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let one_core = SessionOptions {
        provider: Provider::Cpu,
        intra_op_threads: 1,
        fallback_to_cpu: false,
    };
    let mut nets = OrtMtcnn::open(&models, &one_core).expect("the MTCNN files");
    let mut blazeface =
        OrtDetector::open(&models.join(gstaffect::detector::BLAZEFACE_FILE), &one_core)
            .expect("the BlazeFace file");
    let blaze_params = DetectParams {
        score_threshold: 0.6,
        nms_iou: 0.4,
        max_faces: 16,
        min_face_size: 0.0,
    };
    // The peer's settings (smallest face 20), and the element's defaults (32, on a copy).
    let mut mtcnn = Mtcnn::new(MtcnnParams::default()).unwrap();
    let mut element_mtcnn = Mtcnn::new(MtcnnParams {
        min_face_size: 32.0,
        ..MtcnnParams::default()
    })
    .unwrap();
    let mut haar = HaarDetector::new(
        HaarCascade::from_file(Path::new(DEBIAN_FRONTAL_FACE)).expect("opencv-data's cascade"),
        HaarParams {
            scale_factor: 1.1,
            min_neighbors: 4,
            min_size: (32, 32),
            max_size: None,
        },
    )
    .unwrap();

    println!(
        "Face detection, one core, median of {repeat} runs; recall = share of facenet-pytorch \
         MTCNN's faces found at IoU >= 0.4 and >= 0.5; false = boxes on none of its faces"
    );
    println!(
        "{:<11} {:<40} {:>9} {:>6} {:>6} {:>6} {:>6}",
        "frame", "detector", "ms/frame", "faces", "r@0.4", "r@0.5", "false"
    );
    let mut shifts: Vec<(f64, f64)> = Vec::new();
    for (w, h) in SIZES {
        let key = format!("{w}x{h}");
        let rgb = std::fs::read(dir.join(format!("group-{key}.rgb"))).unwrap();
        let grey: Vec<u8> = rgb
            .chunks_exact(3)
            .map(|p| affect_core::detect::haar::grey_of(p[0], p[1], p[2]))
            .collect();
        let p = &peers[&key];
        let reference = boxes(&p["facenet"]);
        let frame = RgbFrame::new(&rgb, w, h, w * 3).unwrap();
        // The element's smallest searched face: min-face-size 32, or 12 px of MTCNN's copy.
        let copy = (w > 640).then(|| (w / 4).max(320));
        let searched = copy.map_or(32.0, |c| (12.0 * w as f32 / c as f32).max(32.0));
        let mut blaze_faces: Vec<Detection> = Vec::new();
        let rows: Vec<(String, f64, Vec<[f32; 4]>)> = vec![
            {
                let (ms, b) = median_ms(repeat, || {
                    haar.detect_grey(&grey, w, h, w)
                        .unwrap()
                        .iter()
                        .map(|f| f.to_detection().bbox)
                        .collect()
                });
                ("affect Haar".into(), ms, b)
            },
            (
                "OpenCV detectMultiScale".into(),
                p["opencv_ms"].as_f64().unwrap(),
                boxes(&p["opencv"]),
            ),
            {
                let (ms, b) = median_ms(repeat, || {
                    mtcnn
                        .detect(&mut nets, frame, None)
                        .unwrap()
                        .iter()
                        .map(|d| d.bbox)
                        .collect()
                });
                ("affect MTCNN, full frame, min 20".into(), ms, b)
            },
            {
                // The element's automatic copy.
                let copy = (w > 640).then(|| (w / 4).max(320));
                let (ms, b) = median_ms(repeat, || {
                    element_mtcnn
                        .detect(&mut nets, frame, copy)
                        .unwrap()
                        .iter()
                        .map(|d| d.bbox)
                        .collect()
                });
                (
                    format!("affect MTCNN, defaults ({} wide)", copy.unwrap_or(w)),
                    ms,
                    b,
                )
            },
            (
                "facenet-pytorch MTCNN.detect".into(),
                p["facenet_ms"].as_f64().unwrap(),
                reference.clone(),
            ),
        ];
        let mut rows = rows;
        {
            let (ms, b) = median_ms(repeat, || {
                blazeface
                    .detect(&rgb, w * 3, w, h, &blaze_params, f32::MAX)
                    .unwrap()
                    .iter()
                    .map(|d| d.bbox)
                    .collect()
            });
            rows.push(("affect BlazeFace, whole frame (1 run)".into(), ms, b));
            let (ms, b) = median_ms(repeat, || {
                blaze_faces = blazeface
                    .detect(&rgb, w * 3, w, h, &blaze_params, searched)
                    .unwrap();
                blaze_faces.iter().map(|d| d.bbox).collect()
            });
            rows.push((
                format!("affect BlazeFace, defaults ({} runs)", blazeface.runs),
                ms,
                b,
            ));
        }
        // Crop accuracy: BlazeFace's landmarks against our MTCNN's on the faces both find, and
        // MTCNN's own five points reduced to BlazeFace's four.
        let full = mtcnn.detect(&mut nets, frame, None).unwrap();
        for m in &full {
            let ml = m.landmarks.unwrap();
            if let Some(b) = blaze_faces.iter().find(|b| iou(b.bbox, m.bbox) >= 0.4) {
                shifts.push((
                    crop_shift(&ml, &b.landmarks.unwrap()),
                    crop_shift(&ml, &four_point_landmarks(&ml)),
                ));
            }
        }
        let st = *element_mtcnn.stats();
        for (name, ms, found) in rows {
            println!(
                "{key:<11} {name:<40} {ms:>9.1} {:>6} {:>6.2} {:>6.2} {:>6}",
                found.len(),
                recall(&found, &reference, 0.4),
                recall(&found, &reference, 0.5),
                false_faces(&found, &reference)
            );
        }
        println!(
            "{:<11}   (the copy: resample {:.1} ms, P-Net {:.1}, R-Net {:.1} on {}, O-Net {:.1} on {})",
            "",
            st.resample.as_secs_f64() * 1e3,
            st.pnet.as_secs_f64() * 1e3,
            st.rnet.as_secs_f64() * 1e3,
            st.proposals,
            st.onet.as_secs_f64() * 1e3,
            st.refined
        );
    }

    let mean = |f: fn(&(f64, f64)) -> f64| shifts.iter().map(f).sum::<f64>() / shifts.len() as f64;
    let max = |f: fn(&(f64, f64)) -> f64| shifts.iter().map(f).fold(0.0, f64::max);
    println!(
        "\nAligned 112x112 crops, {} faces found by both: BlazeFace's landmarks vs our MTCNN's, \
         mean {:.2} px (max {:.2}); MTCNN's own points reduced to eyes, nose and mouth centre, \
         mean {:.2} px (max {:.2})",
        shifts.len(),
        mean(|s| s.0),
        max(|s| s.0),
        mean(|s| s.1),
        max(|s| s.1)
    );

    let four = std::fs::read(dir.join("four-1280x720.rgb")).unwrap();
    println!(
        "\naffectfacecrop, 1280x720 at 25 frames/s, 4 faces, all cores (defaults: BlazeFace, \
         every 3rd frame):"
    );
    for properties in [
        "",
        "detect-interval=1",
        "detector=mtcnn",
        "detector=mtcnn detect-interval=1",
        "detector=mtcnn detect-width=1280 detect-interval=1",
    ] {
        let fps = element_fps(&four, 1280, 720, frames, properties);
        println!(
            "  {:<22} {fps:>6.1} frames/s",
            if properties.is_empty() {
                "(defaults)"
            } else {
                properties
            }
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
