// SPDX-License-Identifier: MPL-2.0
//! A generated data set reads back through the Aff-Wild2 reader exactly as the side file's
//! ground truth says (masks, missing crops, two-person suffixes), crops are the aligned faces
//! of the video frames, the audio decodes sample-exactly and its windows end at the frame
//! times, and perfect predictions score 1 on every ABAW measure.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use affect_core::align::{RgbImage, crop_aligned};
use affect_core::melspec::{MelConfig, MelSpectrogram};
use affect_train::data::audio::{AudioFeatures, decode};
use affect_train::data::{AffWild2, Split, load_crop, video_name};
use affect_train::synth::raster::Canvas;
use affect_train::synth::{self, FrameTruth, SynthConfig, audio, read_ground_truth};

fn config(out: PathBuf) -> SynthConfig {
    SynthConfig {
        out,
        videos: 2,
        seconds: 2.0,
        fps: 15,
        width: 320,
        height: 240,
        seed: 11,
        ..SynthConfig::default()
    }
}

/// One data set for all tests of this file.
fn dataset() -> &'static (SynthConfig, HashMap<String, Vec<FrameTruth>>) {
    static SET: OnceLock<(SynthConfig, HashMap<String, Vec<FrameTruth>>)> = OnceLock::new();
    SET.get_or_init(|| {
        let cfg = config(affect_core::testutil::scratch_dir("dataset"));
        synth::generate(&cfg).unwrap();
        let mut truth = HashMap::new();
        for i in 0..cfg.videos {
            let name = cfg.plan(i).name;
            let t = read_ground_truth(&cfg.out.join("ground_truth").join(format!("{name}.jsonl")))
                .unwrap();
            truth.insert(name, t);
        }
        (cfg, truth)
    })
}

#[test]
fn reader_round_trip_with_masks_missing_crops_and_suffixes() {
    let (cfg, truth) = dataset();
    let data = AffWild2::open(&cfg.out).unwrap();
    let mut expected_samples = 0;
    let mut expected_missing = 0;
    let mut masked = [0usize; 3];
    let mut seen_names = Vec::new();
    for split in [Split::Train, Split::Validation] {
        let (samples, stats) = data.samples(split).unwrap();
        let by_key: HashMap<(String, u32), _> = samples
            .iter()
            .map(|s| ((s.name.clone(), s.frame), s))
            .collect();
        let mut split_missing = 0;
        let mut split_samples = 0;
        for frames in truth.values() {
            for f in frames {
                for face in &f.faces {
                    let video = video_name(&face.name);
                    let in_split =
                        (0..cfg.videos).any(|i| cfg.plan(i).name == video && cfg.split(i) == split);
                    if !in_split {
                        continue;
                    }
                    let any = face.annotated.iter().any(|&a| a);
                    for (k, &a) in face.annotated.iter().enumerate() {
                        masked[k] += !a as usize;
                    }
                    let key = (face.name.clone(), f.frame);
                    match (any, face.crop) {
                        (true, true) => {
                            let s = by_key
                                .get(&key)
                                .unwrap_or_else(|| panic!("{key:?} not read"));
                            split_samples += 1;
                            assert_eq!(s.video, video);
                            let l = &s.labels;
                            assert_eq!(l.va.is_some(), face.annotated[0], "{key:?} VA mask");
                            assert_eq!(
                                l.expression.is_some(),
                                face.annotated[1],
                                "{key:?} EXPR mask"
                            );
                            assert_eq!(l.au.is_some(), face.annotated[2], "{key:?} AU mask");
                            if let Some([v, a]) = l.va {
                                assert!(
                                    (v - face.valence).abs() < 1e-5
                                        && (a - face.arousal).abs() < 1e-5
                                );
                            }
                            if let Some(e) = l.expression {
                                assert_eq!(e, face.expression);
                            }
                            if let Some(au) = l.au {
                                assert_eq!(au, face.au);
                            }
                        }
                        (true, false) => {
                            assert!(
                                !by_key.contains_key(&key),
                                "{key:?} has no crop but was read"
                            );
                            split_missing += 1;
                        }
                        (false, _) => assert!(!by_key.contains_key(&key)),
                    }
                    if !seen_names.contains(&face.name) {
                        seen_names.push(face.name.clone());
                    }
                }
            }
        }
        assert_eq!(samples.len(), split_samples);
        assert_eq!(stats.missing_crops, split_missing);
        expected_samples += split_samples;
        expected_missing += split_missing;
    }
    assert!(expected_samples > 50, "{expected_samples}");
    assert!(
        expected_missing >= 3,
        "every person has a missing crop: {expected_missing}"
    );
    assert!(
        masked.iter().all(|&m| m > 0),
        "every task has unannotated frames: {masked:?}"
    );
    seen_names.sort();
    assert_eq!(
        seen_names,
        ["synth-000", "synth-001_left", "synth-001_right"]
    );
    for name in &seen_names {
        let video = data.video_path(name).unwrap();
        assert_eq!(
            video.file_name().unwrap().to_str().unwrap(),
            format!("{}.mkv", video_name(name))
        );
    }
}

#[test]
fn crops_are_the_aligned_faces_of_the_frames() {
    let (cfg, truth) = dataset();
    let plan = cfg.plan(1);
    let frames = &truth[&plan.name];
    let mut canvas = Canvas::new(cfg.width, cfg.height);
    let mut checked = 0;
    let mut crop = vec![0u8; 112 * 112 * 3];
    for f in frames.iter().step_by(7) {
        let faces = plan.render(f.frame - 1, &mut canvas);
        let image =
            RgbImage::new(&canvas.data, cfg.width, cfg.height, cfg.width as usize * 3).unwrap();
        for (face, t) in faces.iter().zip(&f.faces) {
            assert_eq!(face.geometry.landmarks, t.landmarks);
            if !t.crop {
                continue;
            }
            crop_aligned(&image, &t.landmarks, 112, &mut crop).unwrap();
            let (jpg, w, h) = load_crop(&synth::crop_path(&cfg.out, &t.name, f.frame)).unwrap();
            assert_eq!((w, h), (112, 112));
            let mad = jpg
                .iter()
                .zip(&crop)
                .map(|(&a, &b)| (a as f64 - b as f64).abs())
                .sum::<f64>()
                / jpg.len() as f64;
            assert!(
                mad < 4.0,
                "{} frame {}: crop differs from the frame by {mad}",
                t.name,
                f.frame
            );
            checked += 1;
        }
    }
    assert!(checked >= 6);
}

#[test]
fn audio_decodes_exactly_and_windows_end_at_frame_times() {
    let (cfg, _) = dataset();
    let plan = cfg.plan(0);
    let data = AffWild2::open(&cfg.out).unwrap();
    let path = data.video_path(&plan.name).unwrap();
    let media = decode(&path, 16_000).unwrap();
    assert_eq!(media.fps, Some(cfg.fps as f64));
    // What was written: the synthesized voice as S16; audioconvert maps s16 to s / 32768.
    let written: Vec<f32> = audio::to_s16(&audio::synthesize(&plan))
        .iter()
        .map(|&s| s as f32 / 32768.0)
        .collect();
    assert_eq!(media.samples.len(), written.len());
    assert_eq!(
        media.samples, written,
        "decoded audio differs from the written samples"
    );

    let cfg_mel = MelConfig::default();
    let features = AudioFeatures::new(&media.samples, cfg_mel.clone()).unwrap();
    let mut mel = MelSpectrogram::new(cfg_mel.clone()).unwrap();
    let mut frame = vec![0f32; cfg_mel.n_mels];
    let frames = 20;
    let mut window = Vec::new();
    for video_frame in [0u32, 1, 7, 16, 29] {
        let t = video_frame as f64 / cfg.fps as f64;
        let end_sample = (t * 16_000.0).round() as usize;
        features.window(t, frames, &mut window);
        assert_eq!(window.len(), frames * cfg_mel.n_mels);
        // Slot `frames - 1 - j` holds the j-th latest spectrogram frame wholly before t.
        let latest: Vec<usize> = (0..)
            .map(|k: usize| k)
            .take_while(|k| k * 160 + 512 <= end_sample)
            .collect();
        for j in 0..frames {
            let slot = &window[(frames - 1 - j) * 64..(frames - j) * 64];
            match latest.len().checked_sub(1 + j) {
                Some(k) => {
                    mel.compute_frame(&written[k * 160..k * 160 + 512], &mut frame)
                        .unwrap();
                    for (a, b) in slot.iter().zip(&frame) {
                        assert!(
                            (a - b).abs() < 1e-4,
                            "frame {video_frame} slot {j}: {a} vs {b}"
                        );
                    }
                    // The frame after it would reach past the frame time.
                    if j == 0 {
                        assert!((k + 1) * 160 + 512 > end_sample);
                    }
                }
                None => assert!(
                    slot.iter().all(|&v| v == (1e-6f64).ln() as f32),
                    "padding before the start"
                ),
            }
        }
    }
}

#[test]
fn perfect_predictions_score_one_and_the_cli_prints_them() {
    let (cfg, truth) = dataset();
    let mut csv = affect_train::eval::prediction_header() + "\n";
    for frames in truth.values() {
        for f in frames {
            for face in &f.faces {
                let aus: Vec<String> = face.au.iter().map(|a| format!("{}.0", a)).collect();
                csv += &format!(
                    "{},{},{},{},{},{}\n",
                    face.name,
                    f.frame,
                    face.valence,
                    face.arousal,
                    face.expression,
                    aus.join(",")
                );
            }
        }
    }
    let pred = cfg.out.join("perfect.csv");
    std::fs::write(&pred, csv).unwrap();
    let data = AffWild2::open(&cfg.out).unwrap();
    let report = affect_train::eval::evaluate(&data, Split::Train, &pred).unwrap();
    assert!((report.va.as_ref().unwrap().p_va - 1.0).abs() < 1e-6);
    let e = report.expr.as_ref().unwrap();
    assert_eq!(e.accuracy, 1.0);
    let a = report.au.as_ref().unwrap();
    assert_eq!(a.accuracy, 1.0);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_affect-train"))
        .args([
            "eval",
            "--data",
            cfg.out.to_str().unwrap(),
            "--pred",
            pred.to_str().unwrap(),
            "--split",
            "train",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("P_VA 1.0000") && stdout.contains("MTL"),
        "{stdout}"
    );

    // A prediction file lacking frames is an error that names it.
    let partial = cfg.out.join("partial.csv");
    std::fs::write(&partial, affect_train::eval::prediction_header() + "\n").unwrap();
    let e = affect_train::eval::evaluate(&data, Split::Train, &partial)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("partial.csv") && e.contains("no prediction"),
        "{e}"
    );
}
