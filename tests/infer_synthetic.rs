// SPDX-License-Identifier: MPL-2.0
//! `affectinfer` end to end on the synthetic world with the default model: each video through
//! `filesrc ! decodebin` -> `affectfacecrop detector=upstream` (the ground-truth boxes and
//! landmarks put on the frames as upstream face meta, as a detector would) -> `affectinfer`
//! (+ `affectspectro` audio) -> results, mapped to the ground-truth people and scored the
//! ABAW way; compared with the training crate's ONNX Runtime reference on the same videos
//! (the data set's `cropped_aligned` crops and the reader's audio windows, state carried along
//! each track), and with chance.

use std::path::Path;

use affect_core::detect::iou;
use affect_core::labels::{EXPRESSION_LABELS, N_AUS, N_EXPRESSIONS};
use affect_core::testutil::scratch_dir;
use affect_e2e::{attach_truth, init, run_to_eos, synthetic_set};
use affect_synth::data::{AffWild2, Split};
use affect_synth::eval::EvalReport;
use affect_synth::{self as synth, FrameTruth};
use affect_train::onnx_predict::{self, FramePrediction, OnnxModel, Predictions};
use gst::prelude::*;
use gstaffect::meta;

const SPLITS: [Split; 2] = [Split::Train, Split::Validation];

fn model() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/affect-default.onnx")
}

/// Runs one video through the pipeline; every output buffer's analysed faces.
fn run_pipeline(video: &Path, truth: Vec<FrameTruth>) -> Vec<Vec<meta::AnalysedFace>> {
    init();
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! decodebin name=d \
         d. ! queue ! videoconvert ! video/x-raw,format=RGB \
            ! affectfacecrop name=faces detector=upstream ! infer.video_sink \
         d. ! queue ! audioconvert ! audioresample ! affectspectro ! infer.audio_sink \
         affectinfer name=infer model={} ! appsink name=sink sync=false",
        video.display(),
        model().display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    attach_truth(&pipeline.by_name("faces").unwrap(), truth);
    run_to_eos(&pipeline, gst::ClockTime::from_seconds(60), |s| {
        meta::analysed_faces(s.buffer().unwrap())
    })
}

/// The element's predictions over every video of the set, keyed by the ground-truth person
/// (annotation name) each result's face overlaps most; and which track ids each person got.
fn element_predictions(
    root: &Path,
    videos: usize,
) -> (Predictions, std::collections::BTreeMap<String, Vec<u64>>) {
    let mut preds = Predictions::new();
    let mut tracks: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for v in 0..videos {
        let video = format!("synth-{v:03}");
        let truth =
            synth::read_ground_truth(&root.join(format!("ground_truth/{video}.jsonl"))).unwrap();
        let frames = run_pipeline(&root.join(format!("videos/{video}.mkv")), truth.clone());
        assert_eq!(
            frames.len(),
            truth.len(),
            "{video}: one output frame per input frame"
        );
        for (faces, t) in frames.iter().zip(&truth) {
            for f in faces {
                let Some(a) = &f.affect else { continue };
                assert_eq!(a.expression_labels, EXPRESSION_LABELS, "ABAW label order");
                let Some((person, overlap)) = t
                    .faces
                    .iter()
                    .map(|g| {
                        let [x, y, w, h] = g.bbox;
                        (g, iou(&f.face.bbox, &[x, y, x + w, y + h]))
                    })
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                else {
                    continue;
                };
                assert!(
                    overlap > 0.8,
                    "{video} frame {}: a result on no known face",
                    t.frame
                );
                let ids = tracks.entry(person.name.clone()).or_default();
                if !ids.contains(&f.face.track_id) {
                    ids.push(f.face.track_id);
                }
                let mut p = FramePrediction {
                    va: [
                        a.valence.expect("VA head") as f32,
                        a.arousal.expect("VA head") as f32,
                    ],
                    expression: [0.0; N_EXPRESSIONS],
                    au: [0.0; N_AUS],
                };
                for (d, s) in p.expression.iter_mut().zip(&a.expression_probs) {
                    *d = *s as f32;
                }
                for (d, s) in p.au.iter_mut().zip(&a.au_probs) {
                    *d = *s as f32;
                }
                preds.insert((person.name.clone(), t.frame), p);
            }
        }
    }
    (preds, tracks)
}

/// Uniformly random answers for every annotated frame: what chance scores.
fn chance_predictions(data: &AffWild2) -> Predictions {
    let mut rng = affect_synth::rng::Rng::new(12345);
    let mut preds = Predictions::new();
    for split in SPLITS {
        for name in data.names(split).unwrap() {
            for frame in 1..=data.labels(split, &name).unwrap().len() as u32 {
                let mut p = FramePrediction {
                    va: [rng.range(-1.0, 1.0), rng.range(-1.0, 1.0)],
                    expression: [0.0; N_EXPRESSIONS],
                    au: [0.0; N_AUS],
                };
                p.expression[rng.below(N_EXPRESSIONS)] = 1.0;
                for a in &mut p.au {
                    *a = rng.uniform();
                }
                preds.insert((name.clone(), frame), p);
            }
        }
    }
    preds
}

fn scores(r: &EvalReport) -> [f64; 3] {
    [
        r.va.as_ref().unwrap().p_va,
        r.expr.as_ref().unwrap().macro_f1,
        r.au.as_ref().unwrap().mean_f1,
    ]
}

#[test]
fn element_scores_match_the_onnx_reference_on_the_synthetic_world() {
    let dir = scratch_dir("e2e-infer");
    // Three 4 s videos at 30 fps (one or two people each), a world the model never saw.
    let videos = 3;
    let root = synthetic_set(&dir, videos, 4.0, 30, 101);
    let data = AffWild2::open(&root).unwrap();

    let (element, tracks) = element_predictions(&root, videos);
    for (person, ids) in &tracks {
        assert_eq!(ids.len(), 1, "{person} had several tracks: {ids:?}");
    }

    // The reference opens its own session in the process's one ONNX Runtime environment,
    // which the elements made.
    let mut model = OnnxModel::open(&model()).unwrap();
    let mut reference = Predictions::new();
    for split in SPLITS {
        reference.extend(onnx_predict::predict_split(&mut model, &data, split).unwrap());
    }

    // The same frames, face by face.
    let common: Vec<_> = reference
        .keys()
        .filter(|k| element.contains_key(*k))
        .collect();
    assert!(
        common.len() >= 300,
        "only {} frames in common",
        common.len()
    );
    let mean_abs = |f: &dyn Fn(&FramePrediction) -> f32| {
        common
            .iter()
            .map(|k| (f(&element[*k]) - f(&reference[*k])).abs() as f64)
            .sum::<f64>()
            / common.len() as f64
    };
    let dv = mean_abs(&|p| p.va[0]);
    let da = mean_abs(&|p| p.va[1]);
    let dau: Vec<f64> = (0..N_AUS)
        .map(|k| mean_abs(&|p: &FramePrediction| p.au[k]))
        .collect();
    // AU decisions (probability >= 0.5, as P_AU counts them) that the two paths share.
    let same_au = common
        .iter()
        .map(|k| {
            (0..N_AUS)
                .filter(|&a| (element[*k].au[a] >= 0.5) == (reference[*k].au[a] >= 0.5))
                .count()
        })
        .sum::<usize>() as f64
        / (common.len() * N_AUS) as f64;
    let same_expression = common
        .iter()
        .filter(|k| element[**k].expression_class() == reference[**k].expression_class())
        .count() as f64
        / common.len() as f64;

    let e = onnx_predict::score(&data, &SPLITS, &element).unwrap();
    let r = onnx_predict::score(&data, &SPLITS, &reference).unwrap();
    let c = onnx_predict::score(&data, &SPLITS, &chance_predictions(&data)).unwrap();
    let (es, rs, cs) = (scores(&e), scores(&r), scores(&c));
    println!(
        "{} videos, {} annotated VA frames, {} frames predicted by both",
        videos,
        e.frames[0],
        common.len()
    );
    println!(
        "pipeline (filesrc ! decodebin ! affectfacecrop detector=upstream ! affectinfer + affectspectro): P_VA {:.3}  P_EXPR {:.3}  P_AU {:.3}",
        es[0], es[1], es[2]
    );
    println!(
        "training crate, ONNX Runtime on cropped_aligned + reader audio:                             P_VA {:.3}  P_EXPR {:.3}  P_AU {:.3}",
        rs[0], rs[1], rs[2]
    );
    println!(
        "chance (uniform random answers):                                                            P_VA {:.3}  P_EXPR {:.3}  P_AU {:.3}",
        cs[0], cs[1], cs[2]
    );
    println!(
        "per frame: mean |dvalence| {dv:.4}, mean |darousal| {da:.4}, same expression {:.1} %, same AU decisions {:.1} %",
        same_expression * 100.0,
        same_au * 100.0
    );
    let f1 = |r: &EvalReport| -> Vec<String> {
        r.au.as_ref()
            .unwrap()
            .per_au_f1
            .iter()
            .map(|v| format!("{v:.2}"))
            .collect()
    };
    println!("AU F1, pipeline:  {}", f1(&e).join(" "));
    println!("AU F1, reference: {}", f1(&r).join(" "));
    println!(
        "per frame mean |dAU probability|: {}",
        dau.iter()
            .map(|v| format!("{v:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    );

    // The two paths differ only in how the model's 64x64 input is made: the pipeline warps
    // the decoded MJPEG frame straight to 64x64, the reference resamples the data set's
    // 112x112 JPEG crop (cut from the uncompressed render). A few grey levels and a fraction
    // of a pixel of framing move each answer a little (per frame |dVA| ~ 0.03); over a few
    // hundred frames P_VA and P_EXPR move by a few hundredths: 0.05. P_AU is the mean of 12
    // per-AU F1 over thresholded probabilities: an AU the model puts near 0.5 on its few
    // positive frames can flip from F1 ~0.9 to 0 on either path, which moves P_AU by up to
    // 1/12; it gets 0.05 + 1/12, and the decisions themselves must agree on >= 95 %.
    let tolerance = [0.05, 0.05, 0.05 + 1.0 / 12.0];
    assert!(same_au >= 0.95, "AU decisions agree on {same_au}");
    for (k, task) in ["P_VA", "P_EXPR", "P_AU"].iter().enumerate() {
        assert!(
            (es[k] - rs[k]).abs() <= tolerance[k],
            "{task}: pipeline {:.3} vs reference {:.3}",
            es[k],
            rs[k]
        );
        assert!(
            es[k] > cs[k] + 0.2,
            "{task}: pipeline {:.3} is not above chance {:.3}",
            es[k],
            cs[k]
        );
    }
    assert!(dv < 0.05 && da < 0.05, "per-frame VA differs: {dv} {da}");
    assert!(
        same_expression > 0.9,
        "expressions agree on {same_expression}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
