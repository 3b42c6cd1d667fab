// SPDX-License-Identifier: MPL-2.0
//! `affect analyze` on a folder of synthetic videos, a video without audio and a corrupt
//! file: outputs and their row counts, failure reporting and exit status, resumption.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use affect_core::testutil::scratch_dir;
use affect_synth::{self as synth, SynthConfig};

fn analyze(args: &[&str], inputs: &[&Path], out: &Path) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_affect"))
        .arg("analyze")
        .args(inputs)
        .arg("-o")
        .arg(out)
        .args(["--detector", "full-frame"])
        .args(args)
        .output()
        .unwrap();
    println!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The output `<stem>-<10 hex digits>.<ext>` of the input named `<stem>.*` (the one such
/// file in `out`; the path it would have when there is none).
fn output_of(out: &Path, stem: &str, ext: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(out)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.strip_prefix(&format!("{stem}-"))
                .and_then(|rest| rest.strip_suffix(&format!(".{ext}")))
                .is_some_and(|hash| hash.len() == 10 && hash.chars().all(|c| c.is_ascii_hexdigit()))
        })
        .collect();
    assert!(found.len() <= 1, "several outputs of {stem}: {found:?}");
    found
        .into_iter()
        .next()
        .unwrap_or_else(|| out.join(format!("{stem}-missing.{ext}")))
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().expect("a header");
    assert!(header.starts_with("frame,face_id,timestamp,confidence,success"));
    lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// Two synthetic talking-face videos (one in a subfolder), a video without audio and a
/// file that is not a video; returns the folder and each good video's frame count.
fn batch_folder(dir: &Path) -> (PathBuf, Vec<(&'static str, usize)>) {
    let world = dir.join("world");
    synth::generate(&SynthConfig {
        out: world.clone(),
        videos: 2,
        seconds: 2.0,
        seed: 5,
        faces_per_frame: 1,
        fps: 15,
        width: 320,
        height: 240,
        ..SynthConfig::default()
    })
    .unwrap();
    let input = dir.join("input");
    std::fs::create_dir_all(input.join("sub")).unwrap();
    std::fs::copy(world.join("videos/synth-000.mkv"), input.join("talk.mkv")).unwrap();
    std::fs::copy(
        world.join("videos/synth-001.mkv"),
        input.join("sub/interview.mkv"),
    )
    .unwrap();
    let truth = |name: &str| {
        synth::read_ground_truth(&world.join(format!("ground_truth/{name}.jsonl")))
            .unwrap()
            .len()
    };
    let status = Command::new("gst-launch-1.0")
        .args([
            "-q",
            "videotestsrc",
            "num-buffers=25",
            "!",
            "video/x-raw,width=160,height=120,framerate=25/1",
            "!",
            "jpegenc",
            "!",
            "matroskamux",
            "!",
            "filesink",
        ])
        .arg(format!("location={}", input.join("silent.mkv").display()))
        .status()
        .unwrap();
    assert!(status.success());
    // Matroska's magic number followed by garbage: found as a video, unreadable as one.
    let mut broken = vec![0x1a, 0x45, 0xdf, 0xa3];
    broken.extend((0..50_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    std::fs::write(input.join("broken.mkv"), broken).unwrap();
    std::fs::write(
        input.join("notes.txt"),
        "not a video, not taken from a folder",
    )
    .unwrap();
    (
        input,
        vec![
            ("talk", truth("synth-000")),
            ("interview", truth("synth-001")),
            ("silent", 25),
        ],
    )
}

#[test]
fn a_batch_reports_the_corrupt_file_completes_the_rest_and_resumes() {
    let dir = scratch_dir("cli-analyze");
    let (input, videos) = batch_folder(&dir);
    let out = dir.join("out");

    let first = analyze(&["--jobs", "2"], &[&input], &out);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        !first.status.success(),
        "a failed video makes the exit status nonzero"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("broken.mkv") && l.contains("FAILED")),
        "the corrupt file is reported"
    );
    assert!(!stdout.contains("notes.txt"), "folders give only videos");
    for (name, frames) in &videos {
        // The full-frame detector gives one face per frame: one row per frame.
        let rows = csv_rows(&output_of(&out, name, "csv"));
        assert_eq!(rows.len(), *frames, "{name}: rows = frames x 1 face");
        let numbers: Vec<u64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
        assert_eq!(numbers, (1..=*frames as u64).collect::<Vec<_>>());
        assert!(output_of(&out, name, "png").is_file());
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(output_of(&out, name, "summary.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(summary["frames"].as_u64().unwrap() as usize, *frames);
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("{name}.mkv")) && l.contains("done")),
            "{name} has a summary line"
        );
    }
    assert!(
        !output_of(&out, "broken", "csv").exists(),
        "no outputs for the corrupt file"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");

    // Run again: every finished video is skipped, its outputs untouched.
    let before: Vec<SystemTime> = videos
        .iter()
        .map(|(n, _)| mtime(&output_of(&out, n, "csv")))
        .collect();
    let second = analyze(&[], &[&input], &out);
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(!second.status.success(), "the corrupt file still fails");
    for ((name, _), t) in videos.iter().zip(&before) {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("skipped") && l.contains(&format!("{name}.mkv"))),
            "{name} is skipped"
        );
        assert_eq!(mtime(&output_of(&out, name, "csv")), *t, "{name} untouched");
    }

    // A video whose table is gone (an interrupted run leaves only partial files) is redone,
    // and only it.
    let interview = output_of(&out, "interview", "csv");
    let id = interview
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let partial = out.join(format!(".{id}.partial.csv"));
    std::fs::remove_file(&interview).unwrap();
    std::fs::write(&partial, "frame,face_id\n1,").unwrap();
    let third = analyze(&[], &[&input.join("talk.mkv"), &input.join("sub")], &out);
    let stdout = String::from_utf8_lossy(&third.stdout);
    assert!(third.status.success(), "no corrupt file among these inputs");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("done") && l.contains("interview.mkv"))
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("skipped") && l.contains("talk.mkv"))
    );
    assert_eq!(mtime(&output_of(&out, "talk", "csv")), before[0]);
    assert_eq!(
        csv_rows(&output_of(&out, "interview", "csv")).len(),
        videos[1].1
    );
    assert!(!partial.exists());
}

#[test]
fn bad_arguments_are_named() {
    let dir = scratch_dir("cli-analyze-args");
    let out = dir.join("out");
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_affect"))
            .arg("analyze")
            .args(args)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{args:?} must fail");
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(run(&[empty.to_str().unwrap()]).contains("no video"));
    assert!(run(&["x.mkv", "--detector", "yolo"]).contains("unknown detector"));
    assert!(run(&["x.mkv", "--model", "/nonexistent/m.onnx"]).contains("/nonexistent/m.onnx"));
    let missing = run(&[dir.join("missing.mkv").to_str().unwrap()]);
    assert!(missing.contains("1 of 1 inputs failed"), "{missing}");
}

#[test]
fn photographs_and_folders_of_them_give_one_row_per_face() {
    let dir = scratch_dir("analyze-photos");
    let photos = dir.join("photos");
    std::fs::create_dir_all(photos.join("more")).unwrap();
    // Real photographs from packages on the index: scikit-image's astronaut (PNG) and
    // matplotlib's Grace Hopper (JPEG, as shipped), and a PNG holding both side by side.
    affect_core::testutil::run_python(
        r#"
import sys, os, shutil, numpy as np, skimage.data, skimage.io, skimage.transform, matplotlib, PIL.Image
out = sys.argv[1]
astronaut = skimage.data.astronaut()
skimage.io.imsave(os.path.join(out, 'astronaut.png'), astronaut)
grace = os.path.join(matplotlib.get_data_path(), 'sample_data', 'grace_hopper.jpg')
shutil.copy(grace, os.path.join(out, 'more', 'grace.jpg'))
g = np.asarray(PIL.Image.open(grace).convert('RGB'))
g = (skimage.transform.resize(g, (512, 437), anti_aliasing=True) * 255).round().astype(np.uint8)
skimage.io.imsave(os.path.join(out, 'pair.png'), np.concatenate([astronaut, g], axis=1))
"#,
        &[photos.to_str().unwrap()],
    );
    let out = dir.join("out");
    let output = Command::new(env!("CARGO_BIN_EXE_affect"))
        .args(["analyze"])
        .arg(&photos)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success());
    for (name, faces) in [("astronaut", 1), ("grace", 1), ("pair", 2)] {
        let rows = csv_rows(&output_of(&out, name, "csv"));
        assert_eq!(rows.len(), faces, "{name}: {rows:?}");
        // One frame, every face with its results, distinct track ids.
        assert!(rows.iter().all(|r| r[0] == "1" && r[4] == "1"), "{rows:?}");
        let mut ids: Vec<&String> = rows.iter().map(|r| &r[1]).collect();
        ids.dedup();
        assert_eq!(ids.len(), faces);
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(output_of(&out, name, "summary.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(summary["image"], true);
        assert_eq!(summary["face_rows"], faces);
        // A photograph has no timeline.
        assert!(!output_of(&out, name, "png").exists());
    }
    assert!(
        stdout.contains("0 videos, 3 images, 4 face rows"),
        "the summary counts the photographs: {stdout}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn several_models_chain_with_each_head_from_the_last_model_that_has_it() {
    let dir = scratch_dir("analyze-chain");
    let (input, _) = batch_folder(&dir);
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let out = dir.join("out");
    let video = input.join("talk.mkv");
    let output = analyze(
        &[
            "--model",
            models.join("affect-default.onnx").to_str().unwrap(),
            "--model",
            models.join("fer2013-mini-xception.onnx").to_str().unwrap(),
        ],
        &[&video],
        &out,
    );
    assert!(output.status.success());
    let text = std::fs::read_to_string(output_of(&out, "talk", "csv")).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let expr: Vec<&&str> = header.iter().filter(|c| c.starts_with("expr_")).collect();
    // FER2013's seven expressions (no Other), the default model's AUs and valence.
    assert_eq!(expr.len(), 7, "{header:?}");
    assert!(!header.contains(&"expr_Other"));
    assert!(header.contains(&"AU12_p"));
    let rows = csv_rows(&output_of(&out, "talk", "csv"));
    assert!(!rows.is_empty());
    let valence = header.iter().position(|c| *c == "valence").unwrap();
    assert!(
        rows.iter().all(|r| r[valence].parse::<f64>().is_ok()),
        "valence from the first model"
    );

    // A model whose every head a later one gives is refused up front.
    let output = analyze(
        &[
            "--model",
            models.join("fer2013-mini-xception.onnx").to_str().unwrap(),
            "--model",
            models.join("affect-default.onnx").to_str().unwrap(),
        ],
        &[&video],
        &dir.join("out2"),
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("adds nothing"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn models_describes_contract_heads_input_and_provenance() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let output = Command::new(env!("CARGO_BIN_EXE_affect"))
        .arg("models")
        .arg(&models)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    println!("{text}");
    assert!(output.status.success());
    let fer = text
        .split("\n\n")
        .find(|b| b.contains("fer2013-mini-xception.onnx"))
        .expect("the FER model is listed");
    for needle in [
        "contract        version 2",
        "heads           expression",
        "grey",
        "FER2013",
        "MIT",
        "59534287fdfb125e",
    ] {
        assert!(fer.contains(needle), "{needle} missing in\n{fer}");
    }
    let mtcnn = text
        .split("\n\n")
        .find(|b| b.contains("mtcnn-pnet.onnx"))
        .unwrap();
    assert!(mtcnn.contains("stage           pnet") && mtcnn.contains("facenet-pytorch"));
    // A file that is no model says why.
    let dir = scratch_dir("models-broken");
    std::fs::write(dir.join("broken.onnx"), b"junk").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_affect"))
        .arg("models")
        .arg(dir.join("broken.onnx"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("problem"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn element_settings_reach_the_elements_and_cuda_without_a_gpu_is_named() {
    let dir = scratch_dir("analyze-elements");
    let (input, _) = batch_folder(&dir);
    let video = input.join("talk.mkv");
    let out = dir.join("out");
    let output = analyze(
        &["--detect-interval", "2", "--batch-size", "4"],
        &[&video],
        &out,
    );
    assert!(output.status.success());
    assert!(!csv_rows(&output_of(&out, "talk", "csv")).is_empty());
    // This machine's ONNX Runtime is the CPU build: the file fails with the reason.
    let output = analyze(
        &["--provider", "cuda", "--device", "0"],
        &[&video],
        &dir.join("gpu"),
    );
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("CUDA"), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}
