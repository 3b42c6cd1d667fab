// SPDX-License-Identifier: MPL-2.0
//! `affectfacecrop` on the synthetic world: given the ground-truth landmarks as upstream face
//! meta, its crops equal the data set's `cropped_aligned` images, and tracks keep their ids
//! through a two-person video.

use std::path::Path;

use affect_core::testutil::scratch_dir;
use affect_e2e::{attach_truth, init, run_to_eos, synthetic_set};
use affect_synth::{self as synth, FrameTruth};
use gst::prelude::*;
use gstaffect::meta::{self, Face};

/// Decodes `video`, puts each frame's ground-truth faces on it as upstream meta, runs
/// `element` (an `affectfacecrop` description) and returns every output buffer.
fn run_with_truth(video: &Path, truth: Vec<FrameTruth>, element: &str) -> Vec<gst::Sample> {
    init();
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! video/x-raw,format=RGB \
         ! {element} name=faces ! appsink name=sink sync=false",
        video.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    attach_truth(&pipeline.by_name("faces").unwrap(), truth);
    run_to_eos(&pipeline, gst::ClockTime::from_seconds(30), |s| s)
}

#[test]
fn crops_equal_the_data_sets_cropped_aligned_images() {
    let dir = scratch_dir("e2e-crops");
    let root = synthetic_set(&dir, 1, 2.0, 10, 21);
    let truth = synth::read_ground_truth(&root.join("ground_truth/synth-000.jsonl")).unwrap();
    let samples = run_with_truth(
        &root.join("videos/synth-000.mkv"),
        truth.clone(),
        "affectfacecrop mode=crop detector=upstream no-face=black",
    );
    assert_eq!(samples.len(), truth.len(), "one crop per frame");
    let mut diffs = Vec::new();
    for (sample, t) in samples.iter().zip(&truth) {
        if !t.faces[0].crop {
            continue;
        }
        let expected = image::open(synth::crop_path(&root, &t.faces[0].name, t.frame))
            .unwrap()
            .to_rgb8();
        let got = sample.buffer().unwrap().map_readable().unwrap();
        assert_eq!(got.len(), expected.as_raw().len());
        let mean = got
            .iter()
            .zip(expected.as_raw())
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .sum::<f64>()
            / got.len() as f64;
        diffs.push(mean);
    }
    assert!(diffs.len() >= 10, "too few crops to compare");
    let worst = diffs.iter().cloned().fold(0.0, f64::max);
    let average = diffs.iter().sum::<f64>() / diffs.len() as f64;
    eprintln!(
        "{} crops: mean |element - cropped_aligned| {average:.2} grey levels, worst frame {worst:.2}",
        diffs.len()
    );
    // Both sides went through JPEG (the video's MJPEG and the crop files): a few levels.
    assert!(
        average <= 3.0 && worst <= 6.0,
        "average {average}, worst {worst}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn two_people_keep_their_track_ids_through_a_video() {
    let dir = scratch_dir("e2e-tracks");
    // Video 1 of a set holds two people.
    let root = synthetic_set(&dir, 2, 3.0, 10, 8);
    let truth = synth::read_ground_truth(&root.join("ground_truth/synth-001.jsonl")).unwrap();
    assert!(truth.iter().all(|t| t.faces.len() == 2));
    let samples = run_with_truth(
        &root.join("videos/synth-001.mkv"),
        truth.clone(),
        "affectfacecrop detector=upstream",
    );
    assert_eq!(samples.len(), truth.len());
    let mut ids_of: [std::collections::BTreeSet<u64>; 2] = Default::default();
    for (sample, t) in samples.iter().zip(&truth) {
        let faces = meta::faces(sample.buffer().unwrap());
        assert_eq!(faces.len(), 2);
        for (person, f) in t.faces.iter().enumerate() {
            let cx = f.bbox[0] + f.bbox[2] / 2.0;
            let nearest = faces
                .iter()
                .min_by(|a, b| {
                    let d = |g: &Face| ((g.bbox[0] + g.bbox[2]) / 2.0 - cx).abs();
                    d(a).total_cmp(&d(b))
                })
                .unwrap();
            ids_of[person].insert(nearest.track_id);
        }
    }
    assert_eq!(ids_of[0].len(), 1, "person 0 changed ids: {:?}", ids_of[0]);
    assert_eq!(ids_of[1].len(), 1, "person 1 changed ids: {:?}", ids_of[1]);
    assert_ne!(ids_of[0], ids_of[1]);
    let _ = std::fs::remove_dir_all(dir);
}
