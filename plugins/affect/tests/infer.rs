// SPDX-License-Identifier: MPL-2.0
//! `affectinfer` against Python's onnxruntime on independently cut crops, audio-visual
//! synchronisation, recurrent state, sharing one session, and every way a model can be wrong.

mod common;

use common::{build_model, init};
use std::path::Path;

use affect_core::bench::rss_kb;
use affect_core::testutil::{read_f32, run_python, scratch_dir};
use affect_synth::testutil;
use gst::prelude::*;
use gst_check::Harness;
use gst_video::VideoRegionOfInterestMeta;
use gstaffect::meta::Face;

const W: usize = 96;
const H: usize = 72;

fn pattern(seed: u32) -> Vec<u8> {
    (0..W * H * 3)
        .map(|i| {
            let (p, c) = (i / 3, i % 3);
            let (x, y) = ((p % W) as f32, (p / W) as f32);
            (128.0 + 100.0 * ((x * 0.11 + c as f32 + seed as f32 * 0.7).sin() * (y * 0.07).cos()))
                as u8
        })
        .collect()
}

/// Two faces per frame: one with landmarks, one known only by its box.
fn faces_of(frame: u64) -> Vec<Face> {
    let dx = frame as f32 * 1.5;
    vec![
        Face {
            bbox: [10.0 + dx, 8.0, 50.0 + dx, 56.0],
            track_id: 1,
            score: 0.9,
            landmarks: Some([
                [21.0 + dx, 24.0],
                [39.5 + dx, 23.2],
                [30.1 + dx, 34.0],
                [23.4 + dx, 45.3],
                [37.9 + dx, 44.8],
            ]),
        },
        Face {
            bbox: [58.0, 20.0 - dx * 0.5, 88.0, 58.0 - dx * 0.5],
            track_id: 2,
            score: 0.8,
            landmarks: None,
        },
    ]
}

fn video_buffer(frame: u64) -> gst::Buffer {
    let mut buf = gst::Buffer::from_mut_slice(pattern(frame as u32));
    {
        let b = buf.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(40 * frame));
        b.set_duration(gst::ClockTime::from_mseconds(40));
        for f in faces_of(frame) {
            f.attach(b, W as u32, H as u32);
        }
    }
    buf
}

/// The `affect` results of each face of a buffer, in meta order: va, au, expression probs.
fn results(buf: &gst::BufferRef) -> Vec<(u64, Vec<f64>)> {
    buf.iter_meta::<VideoRegionOfInterestMeta>()
        .filter_map(|m| {
            let id = m.id() as u64;
            let p = m.param("affect")?;
            let mut v = vec![
                p.get::<f64>("valence").unwrap(),
                p.get::<f64>("arousal").unwrap(),
            ];
            for field in ["au-probs", "expression-probs"] {
                v.extend(
                    p.get::<gst::Array>(field)
                        .unwrap()
                        .iter()
                        .map(|x| x.get::<f64>().unwrap()),
                );
            }
            Some((id, v))
        })
        .collect()
}

/// Crops every face with OpenCV and scikit-image (ArcFace similarity for faces with
/// landmarks, the box square with margin 0.2 otherwise), normalises them with numpy and runs
/// them through Python's onnxruntime frame by frame, carrying each track's state.
const PYTHON_REFERENCE: &str = r#"
import sys, json, numpy as np, cv2, onnxruntime as ort
from skimage.transform import SimilarityTransform
model, frames_dir, out = sys.argv[1], sys.argv[2], sys.argv[3]
spec = json.load(open(frames_dir + '/faces.json'))
sess = ort.InferenceSession(model, providers=['CPUExecutionProvider'])
names = [i.name for i in sess.get_inputs()]
size = spec['size']
mean = np.array([0.5, 0.4, 0.3], np.float32); std = np.array([0.25, 0.2, 0.3], np.float32)
tmpl = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                 [41.5493, 92.3655], [70.7299, 92.2041]]) * size / 112.0
state = {}
rows = []
for f in spec['frames']:
    img = np.fromfile(frames_dir + '/%d.rgb' % f['index'], np.uint8).reshape(spec['h'], spec['w'], 3)
    for face in f['faces']:
        if face['landmarks'] is not None:
            t = SimilarityTransform(); t.estimate(np.array(face['landmarks']).reshape(5, 2), tmpl)
            m = t.params[:2]
        else:
            x1, y1, x2, y2 = face['bbox']
            side = max(x2 - x1, y2 - y1) * 1.2
            s = size / side; c = (size - 1) / 2
            # The box covers x1 .. x2 (pixel edges); in OpenCV's pixel-centre coordinates its
            # centre is half a pixel less, and it lands on the crop's centre.
            cx, cy = (x1 + x2) / 2 - 0.5, (y1 + y2) / 2 - 0.5
            m = np.array([[s, 0, c - s * cx], [0, s, c - s * cy]])
        crop = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR)
        x = ((crop.astype(np.float32) / 255 - mean) / std).transpose(2, 0, 1)[None]
        feed = {'face': x}
        if 'state_in' in names:
            feed['state_in'] = state.get(face['track'], np.zeros((1, spec['state']), np.float32))
        if 'audio' in names:
            feed['audio'] = np.full((1, 1, spec['audio_frames'], 64), np.log(1e-6), np.float32)
        outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))
        if 'state_out' in outs:
            state[face['track']] = outs['state_out']
        rows.append(np.concatenate([outs['valence_arousal'][0], outs['au'][0], outs['expression'][0]]))
np.array(rows, np.float32).tofile(out)
"#;

/// Pushes `n` frames (two faces each) through `affectinfer` on `model` and compares every
/// face's outputs with the Python reference.
fn compare_with_python(model: &Path, dir: &Path, n: u64, state: usize, audio_frames: usize) {
    init();
    let mut h = Harness::new_parse(&format!(
        "affectinfer model={} batch-size=3 max-latency=5",
        model.display()
    ));
    h.set_src_caps_str(&format!(
        "video/x-raw,format=RGB,width={W},height={H},framerate=25/1"
    ));
    let mut got = Vec::new();
    for i in 0..n {
        h.push(video_buffer(i)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    for _ in 0..n {
        let out = h.pull().unwrap();
        let r = results(&out);
        assert_eq!(r.len(), 2, "every face gets results");
        assert_eq!(r.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![1, 2]);
        got.extend(r.into_iter().flat_map(|(_, v)| v));
    }

    let mut frames_json = Vec::new();
    for i in 0..n {
        std::fs::write(dir.join(format!("{i}.rgb")), pattern(i as u32)).unwrap();
        let faces: Vec<String> = faces_of(i)
            .iter()
            .map(|f| {
                let l = f.landmarks.map(|l| {
                    format!(
                        "{:?}",
                        l.iter().flat_map(|p| [p[0], p[1]]).collect::<Vec<_>>()
                    )
                });
                // The box as the meta carries it: whole pixels.
                let (x, y, w, h) = f.roi_rect(W as u32, H as u32);
                format!(
                    r#"{{"track": {}, "bbox": [{x}, {y}, {}, {}], "landmarks": {}}}"#,
                    f.track_id,
                    x + w,
                    y + h,
                    l.unwrap_or_else(|| "null".into())
                )
            })
            .collect();
        frames_json.push(format!(
            r#"{{"index": {i}, "faces": [{}]}}"#,
            faces.join(",")
        ));
    }
    std::fs::write(
        dir.join("faces.json"),
        format!(
            r#"{{"size": 32, "w": {W}, "h": {H}, "state": {state}, "audio_frames": {audio_frames}, "frames": [{}]}}"#,
            frames_json.join(",")
        ),
    )
    .unwrap();
    let out = dir.join("reference.f32");
    run_python(
        PYTHON_REFERENCE,
        &[
            model.to_str().unwrap(),
            dir.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
    let reference = read_f32(&out);
    assert_eq!(got.len(), reference.len());

    // Crops may differ by a rounding step of OpenCV's fixed-point warp on a pixel or two;
    // through a pooled network that is far below 1e-3.
    let worst = got
        .iter()
        .zip(&reference)
        .map(|(a, b)| (*a - *b as f64).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-3, "max |element - python onnxruntime| = {worst}");
}

#[test]
fn results_equal_python_onnxruntime_on_independent_crops() {
    let dir = scratch_dir("infer-parity");
    let model = build_model(&dir, "mt.onnx", r#"{"size": 32}"#);
    compare_with_python(&model, &dir, 4, 0, 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn recurrent_state_is_carried_per_track() {
    let dir = scratch_dir("infer-state");
    let model = build_model(&dir, "rnn.onnx", r#"{"size": 32, "state": 6, "seed": 2}"#);
    compare_with_python(&model, &dir, 5, 6, 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn audio_visual_model_without_audio_pad_gets_silence() {
    let dir = scratch_dir("infer-av-silence");
    let model = build_model(
        &dir,
        "av.onnx",
        r#"{"size": 32, "audio_frames": 20, "seed": 3}"#,
    );
    compare_with_python(&model, &dir, 3, 0, 20);
    let _ = std::fs::remove_dir_all(dir);
}

/// Spectrogram buffers whose frame `k` holds `value(k)` in every mel band.
fn melspec_buffer(
    first: u64,
    count: u64,
    start: gst::ClockTime,
    value: impl Fn(u64) -> f32,
) -> gst::Buffer {
    let mut bytes = Vec::new();
    for k in first..first + count {
        for _ in 0..64 {
            bytes.extend(value(k).to_le_bytes());
        }
    }
    let mut buf = gst::Buffer::from_mut_slice(bytes);
    {
        let b = buf.get_mut().unwrap();
        b.set_pts(start + gst::ClockTime::from_mseconds(10 * first));
        b.set_duration(gst::ClockTime::from_mseconds(10 * count));
    }
    buf
}

const MELSPEC_CAPS: &str =
    "audio/x-affect-melspec,format=F32LE,rate=16000,n-mels=64,hop=160,win=400,n-fft=512";

/// Runs 6 frames at 40 ms with audio whose frame k carries k / 100, starting `offset`
/// later than the video; returns the (last slot, first slot) values the model saw per frame.
fn slots_seen(model: &Path, offset_ms: u64) -> Vec<(f64, f64)> {
    init();
    let element = gst::ElementFactory::make("affectinfer")
        .property("model", model.to_str().unwrap())
        .property("batch-size", 1u32)
        .property("max-latency", 0u32)
        // Room on each sink pad for the whole test stream: the test thread pushes all the
        // audio before the video.
        .property("latency", 1_000_000_000u64)
        .build()
        .unwrap();
    let mut video = Harness::with_element(&element, Some("video_sink"), Some("src"));
    let mut audio = Harness::with_element(&element, Some("audio_sink"), None);
    video.set_src_caps_str(&format!(
        "video/x-raw,format=RGB,width={W},height={H},framerate=25/1"
    ));
    audio.set_src_caps_str(MELSPEC_CAPS);
    let start = gst::ClockTime::from_mseconds(offset_ms);
    // 0.4 s of audio in 4 buffers, then EOS.
    for b in 0..4 {
        audio
            .push(melspec_buffer(b * 10, 10, start, |k| k as f32 / 100.0))
            .unwrap();
    }
    audio.push_event(gst::event::Eos::new());
    for i in 0..6 {
        video.push(video_buffer(i)).unwrap();
    }
    video.push_event(gst::event::Eos::new());
    (0..6)
        .map(|_| {
            let out = video.pull().unwrap();
            let r = results(&out);
            (r[0].1[0].atanh() / 0.05, r[0].1[1].atanh() / 0.05)
        })
        .collect()
}

#[test]
fn audio_window_ends_at_the_frame_time() {
    let dir = scratch_dir("infer-av-sync");
    let model = build_model(
        &dir,
        "sync.onnx",
        r#"{"size": 32, "audio_frames": 8, "va_from_audio_slots": true}"#,
    );
    let silence = (1e-6f64).ln();
    for offset_ms in [0u64, 70] {
        let seen = slots_seen(&model, offset_ms);
        for (i, (last, first)) in seen.iter().enumerate() {
            // Frame at t: the newest spectrogram frame ending by t starts at t - 32 ms or
            // earlier on the 10 ms grid: k = floor((t - offset - 32 ms) / 10 ms).
            let t = 40 * i as i64 - offset_ms as i64;
            let k_last = (t - 32).div_euclid(10);
            let expect_last = if k_last >= 0 {
                k_last as f64 / 100.0
            } else {
                silence
            };
            let k_first = k_last - 7;
            let expect_first = if k_first >= 0 {
                k_first as f64 / 100.0
            } else {
                silence
            };
            assert!(
                (last - expect_last).abs() < 1e-3 && (first - expect_first).abs() < 1e-3,
                "offset {offset_ms} ms, frame {i}: slots ({last}, {first}), expected ({expect_last}, {expect_first})"
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn audio_features_that_differ_from_the_model_are_refused() {
    init();
    let dir = scratch_dir("infer-audio-caps");
    let model = build_model(&dir, "av.onnx", r#"{"size": 32, "audio_frames": 8}"#);
    let pipeline = gst::parse::launch(&format!(
        "audiotestsrc num-buffers=5 ! audioconvert ! audioresample ! affectspectro hop-length=80 \
         ! infer.audio_sink videotestsrc num-buffers=5 ! video/x-raw,width=64,height=48 \
         ! affectinfer name=infer model={} ! fakesink",
        model.display()
    ))
    .unwrap();
    let _ = pipeline.set_state(gst::State::Playing);
    let bus = pipeline.bus().unwrap();
    let err = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(20), &[gst::MessageType::Error])
        .map(|m| match m.view() {
            gst::MessageView::Error(e) => e.error().to_string(),
            _ => unreachable!(),
        })
        .expect("an error");
    let _ = pipeline.set_state(gst::State::Null);
    assert!(err.contains("hop is 80, the model needs 160"), "{err}");
    assert!(err.contains("hop-length=160"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn eight_pipelines_share_one_session_and_lose_no_frame() {
    init();
    let dir = scratch_dir("infer-sharing");
    let model = build_model(&dir, "shared.onnx", r#"{"size": 32, "state": 4}"#);
    let frames = 30;
    let pipelines: Vec<(gst::Pipeline, gst_app::AppSink)> = (0..8)
        .map(|i| {
            let live = if i % 2 == 0 { "is-live=true" } else { "" };
            let p = gst::parse::launch(&format!(
                "videotestsrc {live} num-buffers={frames} pattern={i} ! video/x-raw,width=64,height=48,framerate=30/1 \
                 ! affectfacecrop detector=full-frame ! affectinfer model={} batch-size=8 \
                 ! appsink name=sink sync=false",
                model.display()
            ))
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
            let sink = testutil::appsink(&p);
            (p, sink)
        })
        .collect();
    for (p, _) in &pipelines {
        p.set_state(gst::State::Playing).unwrap();
    }
    let mut counts = Vec::new();
    for (p, sink) in &pipelines {
        let mut with_results = 0;
        let mut total = 0;
        for sample in testutil::samples(sink, gst::ClockTime::from_seconds(30)) {
            total += 1;
            if !results(sample.buffer().unwrap()).is_empty() {
                with_results += 1;
            }
        }
        assert!(sink.is_eos(), "pipeline did not finish");
        p.set_state(gst::State::Null).unwrap();
        counts.push((total, with_results));
    }
    assert_eq!(counts, vec![(frames, frames); 8]);
    assert_eq!(gstaffect::session::sessions_opened(&model), 1);
    let _ = std::fs::remove_dir_all(dir);
}

/// Starts `affectinfer` with `properties` and returns the error it posts.
fn start_error(properties: &str) -> String {
    init();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=2 ! video/x-raw,width=64,height=48 ! affectinfer {properties} ! fakesink"
    ))
    .unwrap();
    let _ = pipeline.set_state(gst::State::Playing);
    let bus = pipeline.bus().unwrap();
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(20),
        &[gst::MessageType::Error, gst::MessageType::Eos],
    );
    let _ = pipeline.set_state(gst::State::Null);
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Error(e)) => format!("{} | {:?}", e.error(), e.debug()),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn every_bad_model_is_refused_naming_the_problem() {
    let dir = scratch_dir("infer-bad");
    assert!(start_error("").contains("set the model property"));

    let missing = dir.join("missing.onnx");
    let err = start_error(&format!("model={}", missing.display()));
    assert!(err.contains("missing.onnx"), "{err}");

    let garbage = dir.join("garbage.onnx");
    std::fs::write(&garbage, b"not a model").unwrap();
    let err = start_error(&format!("model={}", garbage.display()));
    assert!(
        err.contains("garbage.onnx") && err.contains("cannot load model"),
        "{err}"
    );

    let no_key = build_model(
        &dir,
        "nokey.onnx",
        r#"{"size": 32, "break": "no_contract_key"}"#,
    );
    let err = start_error(&format!("model={}", no_key.display()));
    assert!(
        err.contains("metadata key 'affect.contract' is missing"),
        "{err}"
    );

    let narrow = build_model(&dir, "narrow.onnx", r#"{"size": 32, "break": "au_width"}"#);
    let err = start_error(&format!("model={}", narrow.display()));
    assert!(
        err.contains("output 'au' has shape [?,10], the contract needs [N,12]"),
        "{err}"
    );

    let good = build_model(&dir, "good.onnx", r#"{"size": 32}"#);
    let err = start_error(&format!("model={} execution-provider=cuda", good.display()));
    assert!(err.contains("CUDA"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn cuda_fallback_runs_on_the_cpu_with_a_warning() {
    init();
    let dir = scratch_dir("infer-fallback");
    let model = build_model(&dir, "fb.onnx", r#"{"size": 32}"#);
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=3 ! video/x-raw,width=64,height=48 \
         ! affectfacecrop detector=full-frame ! affectinfer model={} execution-provider=cuda \
         fallback-to-cpu=true post-messages=true ! fakesink",
        model.display()
    ))
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let (mut warnings, mut messages) = (0, 0);
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(20)) {
        match msg.view() {
            gst::MessageView::Warning(_) => warnings += 1,
            gst::MessageView::Element(e) if e.structure().is_some_and(|s| s.name() == "affect") => {
                let s = e.structure().unwrap();
                let faces = s.get::<gst::Array>("faces").unwrap();
                assert_eq!(faces.len(), 1);
                let face = faces.as_slice()[0].get::<gst::Structure>().unwrap();
                assert_eq!(face.get::<u64>("track-id").unwrap(), 1);
                assert!(face.get::<f64>("valence").unwrap().abs() <= 1.0);
                messages += 1;
            }
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{}", e.error()),
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(warnings, 1);
    assert_eq!(messages, 3);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn frames_without_faces_pass_untouched() {
    init();
    let dir = scratch_dir("infer-noface");
    let model = build_model(&dir, "nf.onnx", r#"{"size": 32}"#);
    let mut h = Harness::new_parse(&format!("affectinfer model={}", model.display()));
    h.set_src_caps_str(&format!(
        "video/x-raw,format=RGB,width={W},height={H},framerate=25/1"
    ));
    let mut buf = gst::Buffer::from_mut_slice(pattern(0));
    buf.get_mut()
        .unwrap()
        .set_pts(gst::ClockTime::from_mseconds(80));
    h.push(buf).unwrap();
    h.push_event(gst::event::Eos::new());
    let out = h.pull().unwrap();
    assert_eq!(out.pts(), Some(gst::ClockTime::from_mseconds(80)));
    assert_eq!(
        out.map_readable().unwrap().as_slice(),
        pattern(0).as_slice()
    );
    assert!(
        out.iter_meta::<VideoRegionOfInterestMeta>()
            .next()
            .is_none()
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs `description` (with an appsink named `sink`) to EOS; the buffers that came out, or
/// the first error's text.
fn run_to_eos(pipeline: &gst::Pipeline) -> Result<Vec<gst::Buffer>, String> {
    let sink = testutil::play(pipeline);
    let out = testutil::samples(&sink, gst::ClockTime::from_seconds(20))
        .map(|s| s.buffer_owned().unwrap())
        .collect();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(5),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .ok_or("neither EOS nor an error")?;
    pipeline.set_state(gst::State::Null).unwrap();
    match msg.view() {
        gst::MessageView::Error(e) => Err(e.error().to_string()),
        _ => Ok(out),
    }
}

#[test]
fn eos_with_nothing_seen_ends_cleanly() {
    init();
    let dir = scratch_dir("infer-empty-eos");
    let model = build_model(&dir, "av.onnx", r#"{"size": 32, "audio_frames": 8}"#);
    // Both pads end before any buffer: the element has neither caps nor audio.
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=v format=time caps=video/x-raw,format=RGB,width={W},height={H},framerate=25/1 \
         ! infer.video_sink \
         appsrc name=a format=time caps=audio/x-affect-melspec,format=F32LE,rate=16000,n-mels=64,hop=160,win=400 \
         ! infer.audio_sink \
         affectinfer name=infer model={} ! appsink name=sink sync=false",
        model.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    for name in ["v", "a"] {
        let src = pipeline
            .by_name(name)
            .unwrap()
            .downcast::<gst_app::AppSrc>()
            .unwrap();
        src.end_of_stream().unwrap();
    }
    let out = run_to_eos(&pipeline).expect("EOS, no error");
    assert!(out.is_empty(), "{} buffers out of nothing", out.len());
    let _ = std::fs::remove_dir_all(dir);
}

/// A frame of `w` x `h` with one face known by its landmarks.
fn small_frame(w: usize, h: usize, frame: u64) -> gst::Buffer {
    let data: Vec<u8> = (0..w * h * 3)
        .map(|i| ((i * 7 + frame as usize * 11 + (i / (w * 3)) * 5) % 251) as u8)
        .collect();
    let mut buf = gst::Buffer::from_mut_slice(data);
    {
        let b = buf.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(40 * frame));
        b.set_duration(gst::ClockTime::from_mseconds(40));
        Face {
            bbox: [6.0, 4.0, 40.0, 44.0],
            track_id: 7,
            score: 1.0,
            landmarks: Some([
                [15.0, 18.0],
                [31.0, 17.5],
                [23.0, 27.0],
                [17.0, 35.0],
                [30.0, 35.5],
            ]),
        }
        .attach(b, w as u32, h as u32);
    }
    buf
}

#[test]
fn a_resolution_change_mid_stream_keeps_working() {
    init();
    let dir = scratch_dir("infer-caps-change");
    let model = build_model(&dir, "caps.onnx", r#"{"size": 32}"#);
    let caps =
        |w: usize, h: usize| format!("video/x-raw,format=RGB,width={w},height={h},framerate=25/1");
    let mut h = Harness::new_parse(&format!("affectinfer model={}", model.display()));
    h.set_src_caps_str(&caps(W, H));
    for i in 0..3 {
        h.push(small_frame(W, H, i)).unwrap();
    }
    h.set_src_caps_str(&caps(48, 56));
    for i in 3..6 {
        h.push(small_frame(48, 56, i)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out: Vec<gst::Buffer> = (0..6).map(|_| h.pull().unwrap()).collect();
    assert_eq!(
        h.srcpad()
            .unwrap()
            .current_caps()
            .unwrap()
            .structure(0)
            .unwrap()
            .get::<i32>("width"),
        Ok(48),
        "the new caps went downstream"
    );

    // Reference: a fresh element that only ever saw the new resolution (the model has no
    // state, so the frames before the change do not matter).
    let mut fresh = Harness::new_parse(&format!("affectinfer model={}", model.display()));
    fresh.set_src_caps_str(&caps(48, 56));
    for i in 3..6 {
        fresh.push(small_frame(48, 56, i)).unwrap();
    }
    fresh.push_event(gst::event::Eos::new());
    for (i, b) in out.iter().enumerate() {
        let r = results(b);
        assert_eq!(r.len(), 1, "frame {i}: one face, one result");
        assert_eq!(b.size(), if i < 3 { W * H * 3 } else { 48 * 56 * 3 });
        if i >= 3 {
            let expected = results(&fresh.pull().unwrap());
            let worst = r[0]
                .1
                .iter()
                .zip(&expected[0].1)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(
                worst < 1e-6,
                "frame {i}: differs from a fresh element by {worst}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_flushing_seek_in_a_file_restarts_at_the_new_position() {
    init();
    let dir = scratch_dir("infer-seek");
    let model = build_model(&dir, "seek.onnx", r#"{"size": 32, "state": 4}"#);
    let file = dir.join("clip.mkv");
    let writer = gst::parse::launch(&format!(
        "videotestsrc num-buffers=60 pattern=ball ! video/x-raw,width={W},height={H},framerate=30/1 \
         ! jpegenc ! matroskamux ! filesink location={}",
        file.display()
    ))
    .unwrap();
    writer.set_state(gst::State::Playing).unwrap();
    let bus = writer.bus().unwrap();
    bus.timed_pop_filtered(gst::ClockTime::from_seconds(20), &[gst::MessageType::Eos])
        .expect("the clip is written");
    writer.set_state(gst::State::Null).unwrap();

    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! matroskademux ! jpegdec ! videoconvert ! video/x-raw,format=RGB \
         ! affectinfer name=infer model={} ! appsink name=sink sync=false",
        file.display(),
        model.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline
        .by_name("infer")
        .unwrap()
        .static_pad("video_sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, |_, info| {
            if let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() {
                let b = buffer.make_mut();
                for f in faces_of(0) {
                    f.attach(b, W as u32, H as u32);
                }
            }
            gst::PadProbeReturn::Ok
        });
    let sink = testutil::play(&pipeline);
    for _ in 0..10 {
        let s = sink.pull_sample().expect("a frame before the seek");
        assert_eq!(results(s.buffer().unwrap()).len(), 2);
    }
    pipeline
        .seek_simple(
            gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
            gst::ClockTime::from_seconds(1),
        )
        .expect("seek");
    let after: Vec<_> = testutil::samples(&sink, gst::ClockTime::from_seconds(20))
        .map(|s| s.buffer_owned().unwrap())
        .collect();
    assert!(
        sink.is_eos(),
        "the pipeline did not reach EOS after the seek"
    );
    let bus = pipeline.bus().unwrap();
    assert!(
        bus.pop_filtered(&[gst::MessageType::Error]).is_none(),
        "an error after the seek"
    );
    pipeline.set_state(gst::State::Null).unwrap();
    // Frames 30..59 of the clip, each with both faces' results.
    assert_eq!(after.len(), 30, "frames from 1 s to the end");
    let first = after[0].pts().unwrap();
    assert!(
        first >= gst::ClockTime::from_mseconds(999) && first <= gst::ClockTime::from_mseconds(1001),
        "first frame after the seek at {first}"
    );
    for b in &after {
        assert_eq!(
            results(b).len(),
            2,
            "a frame at {:?} without results",
            b.pts()
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Parses `description`, whose source is an appsrc named `v`.
fn appsrc_pipeline(description: &str) -> (gst::Pipeline, gst_app::AppSrc) {
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let src = pipeline
        .by_name("v")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    (pipeline, src)
}

/// Video frames of `w` x `h` with one face each, pushed from an appsrc whose caps change.
fn push_frames(src: &gst_app::AppSrc, w: usize, h: usize, frames: std::ops::Range<u64>) {
    src.set_caps(Some(
        &format!("video/x-raw,format=RGB,width={w},height={h},framerate=25/1")
            .parse::<gst::Caps>()
            .unwrap(),
    ));
    for i in frames {
        src.push_buffer(small_frame(w, h, i)).unwrap();
    }
}

/// Frames in flight inside affectinfer when the resolution changes leave under the caps they
/// were decoded with: the encoders, the overlay and the sinks users put downstream keep
/// working and no frame is lost.
#[test]
fn frames_leave_under_their_own_caps_across_a_resolution_change() {
    init();
    let dir = scratch_dir("infer-caps-encoders");
    let model = build_model(&dir, "caps.onnx", r#"{"size": 32}"#);
    let jpegs = dir.join("jpeg");
    std::fs::create_dir_all(&jpegs).unwrap();
    let webm = dir.join("out.webm");
    let (pipeline, src) = appsrc_pipeline(&format!(
        "appsrc name=v format=time ! affectinfer model={} batch-size=8 max-latency=50 ! tee name=t \
         t. ! queue ! videoconvert ! vp8enc deadline=1 ! webmmux ! filesink location={} \
         t. ! queue ! jpegenc ! multifilesink location={}/%05d.jpg \
         t. ! queue ! affectoverlay ! videoconvert ! avenc_mpeg4 ! fakesink \
         t. ! queue ! appsink name=sink sync=false",
        model.display(),
        webm.display(),
        jpegs.display()
    ));
    let sink = testutil::play(&pipeline);
    push_frames(&src, W, H, 0..12);
    push_frames(&src, 48, 56, 12..24);
    push_frames(&src, W, H, 24..30);
    src.end_of_stream().unwrap();
    let mut sizes = Vec::new();
    for sample in testutil::samples(&sink, gst::ClockTime::from_seconds(20)) {
        let buf = sample.buffer().unwrap();
        let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
        assert_eq!(
            buf.size(),
            info.size(),
            "frame at {:?} under caps {}x{}",
            buf.pts(),
            info.width(),
            info.height()
        );
        assert_eq!(
            results(buf).len(),
            1,
            "frame at {:?} lost its result",
            buf.pts()
        );
        sizes.push((info.width(), info.height()));
    }
    let bus = pipeline.bus().unwrap();
    let end = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(20),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("EOS or an error");
    if let gst::MessageView::Error(e) = end.view() {
        panic!("{} {:?}", e.error(), e.debug());
    }
    pipeline.set_state(gst::State::Null).unwrap();
    let expected: Vec<(u32, u32)> = (0..30)
        .map(|i| {
            if (12..24).contains(&i) {
                (48, 56)
            } else {
                (W as u32, H as u32)
            }
        })
        .collect();
    assert_eq!(sizes, expected, "frames and their caps, in order");
    assert_eq!(std::fs::read_dir(&jpegs).unwrap().count(), 30, "JPEG files");
    // The VP8 file decodes to every frame.
    let decode = gst::parse::launch(&format!(
        "filesrc location={} ! matroskademux ! vp8dec ! appsink name=sink sync=false",
        webm.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let decoded =
        testutil::samples(&testutil::play(&decode), gst::ClockTime::from_seconds(20)).count();
    decode.set_state(gst::State::Null).unwrap();
    assert_eq!(decoded, 30, "frames in the VP8 file");
    let _ = std::fs::remove_dir_all(dir);
}

/// A non-live stream in which every track lasts one frame: what affectinfer keeps per track
/// goes with the track, so memory stays flat however many tracks come and go.
#[test]
fn memory_stays_flat_over_many_short_tracks() {
    // The resident size is the process's: the other tests of this file, running beside this
    // one, would count in it. The measurement runs in a process of its own.
    const ALONE: &str = "AFFECT_CHURN_TEST_ALONE";
    if std::env::var_os(ALONE).is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "memory_stays_flat_over_many_short_tracks",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(ALONE, "1")
            .output()
            .unwrap();
        println!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "the churn run alone failed");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "the churn run did not run"
        );
        return;
    }
    init();
    let dir = scratch_dir("infer-churn");
    let model = build_model(&dir, "churn.onnx", r#"{"size": 16, "state": 8}"#);
    let (w, h) = (24usize, 24usize);
    let (pipeline, src) = appsrc_pipeline(&format!(
        "appsrc name=v format=time block=true max-buffers=8 \
         caps=video/x-raw,format=RGB,width={w},height={h},framerate=25/1 \
         ! affectinfer model={} batch-size=16 smoothing=0.5 ! appsink name=sink sync=false",
        model.display()
    ));
    let sink = testutil::play(&pipeline);
    const WARM_UP: u64 = 5_000;
    const TRACKS: u64 = 45_000;
    let feeder = std::thread::spawn(move || {
        let pixels = vec![100u8; w * h * 3];
        for i in 0..TRACKS {
            let mut buf = gst::Buffer::from_mut_slice(pixels.clone());
            {
                let b = buf.get_mut().unwrap();
                b.set_pts(gst::ClockTime::from_mseconds(40 * i));
                Face {
                    bbox: [2.0, 2.0, 20.0, 22.0],
                    track_id: i + 1,
                    score: 1.0,
                    landmarks: None,
                }
                .attach(b, w as u32, h as u32);
            }
            src.push_buffer(buf).unwrap();
        }
        src.end_of_stream().unwrap();
    });
    let mut before = 0;
    let mut pulled = 0u64;
    for sample in testutil::samples(&sink, gst::ClockTime::from_seconds(30)) {
        assert_eq!(results(sample.buffer().unwrap()).len(), 1);
        pulled += 1;
        if pulled == WARM_UP {
            before = rss_kb().expect("VmRSS in /proc/self/status");
        }
    }
    let after = rss_kb().expect("VmRSS in /proc/self/status");
    feeder.join().unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(pulled, TRACKS, "frames out");
    // Had every track's smoothing state held on, 40 000 tracks at about 180 bytes would be
    // 7 MB.
    let growth = after.saturating_sub(before);
    assert!(
        growth < 2_500,
        "RSS grew by {growth} kB over 40 000 short tracks ({before} -> {after} kB)"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs `frames` through `affectinfer model=...` from an appsrc; the buffers out and the bus
/// warnings.
fn run_frames(model: &Path, frames: Vec<gst::Buffer>) -> (Vec<gst::Buffer>, Vec<String>) {
    init();
    let (pipeline, src) = appsrc_pipeline(&format!(
        "appsrc name=v format=time caps=video/x-raw,format=RGB,width={W},height={H},framerate=25/1 \
         ! affectinfer model={} ! appsink name=sink sync=false",
        model.display()
    ));
    let sink = testutil::play(&pipeline);
    for f in frames {
        src.push_buffer(f).unwrap();
    }
    src.end_of_stream().unwrap();
    let out: Vec<gst::Buffer> = testutil::samples(&sink, gst::ClockTime::from_seconds(20))
        .map(|s| s.buffer_owned().unwrap())
        .collect();
    assert!(sink.is_eos(), "no EOS");
    let bus = pipeline.bus().unwrap();
    let mut warnings = Vec::new();
    while let Some(m) = bus.pop() {
        match m.view() {
            gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
            gst::MessageView::Error(e) => panic!("{}", e.error()),
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    (out, warnings)
}

/// A model that answers NaN gives its faces no result (success 0 in the sink's rows), with one
/// warning, never a silent number.
#[test]
fn nan_outputs_give_no_result_and_one_warning() {
    let dir = scratch_dir("infer-nan");
    let model = build_model(&dir, "nan.onnx", r#"{"size": 32, "break": "nan"}"#);
    let (out, warnings) = run_frames(&model, (0..5).map(video_buffer).collect());
    assert_eq!(out.len(), 5);
    for b in &out {
        let faces = gstaffect::meta::analysed_faces(b);
        assert_eq!(faces.len(), 2, "the faces stay");
        assert!(
            faces.iter().all(|f| f.affect.is_none()),
            "a NaN result was written"
        );
    }
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("NaN"), "{}", warnings[0]);
    let _ = std::fs::remove_dir_all(dir);
}

/// Upstream boxes past the frame's edge or wrapped around 2^32 are cut to the frame and get
/// no result, with one warning; a box inside the frame on the same frames is analysed.
#[test]
fn boxes_outside_the_frame_are_clipped_and_get_no_result() {
    let dir = scratch_dir("infer-outside");
    let model = build_model(&dir, "outside.onnx", r#"{"size": 32}"#);
    let frames = (0..4)
        .map(|i| {
            let mut buf = video_buffer(i);
            {
                let b = buf.get_mut().unwrap();
                // Past the right edge, and x wrapped to just below 2^32 (a box at x = -10).
                VideoRegionOfInterestMeta::add(b, "face", (80, 10, 40, 30)).set_id(10);
                VideoRegionOfInterestMeta::add(b, "face", (u32::MAX - 9, 5, 30, 30)).set_id(11);
            }
            buf
        })
        .collect();
    let (out, warnings) = run_frames(&model, frames);
    assert_eq!(out.len(), 4);
    for b in &out {
        let faces = gstaffect::meta::analysed_faces(b);
        assert_eq!(faces.len(), 4, "every face stays");
        for f in &faces {
            let [x1, y1, x2, y2] = f.face.bbox;
            assert!(
                x1 >= 0.0 && y1 >= 0.0 && x2 <= W as f32 && y2 <= H as f32 && x2 >= x1 && y2 >= y1,
                "face {} box {:?} is not inside the {W}x{H} frame",
                f.face.track_id,
                f.face.bbox
            );
            let inside = f.face.track_id < 10;
            assert_eq!(f.affect.is_some(), inside, "face {}", f.face.track_id);
        }
    }
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("outside"), "{}", warnings[0]);
    let _ = std::fs::remove_dir_all(dir);
}

/// A model that claims an absurd face size is refused at start naming the key, before anything
/// is allocated for it.
#[test]
fn an_absurd_face_size_is_refused_naming_the_key() {
    let dir = scratch_dir("infer-hostile");
    let huge = build_model(&dir, "huge.onnx", r#"{"size": 32, "meta_size": 100000}"#);
    let err = start_error(&format!("model={}", huge.display()));
    assert!(
        err.contains("affect.face.height") && err.contains("at most"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
