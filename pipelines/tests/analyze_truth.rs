// SPDX-License-Identifier: MPL-2.0
//! `affect analyze` on the files real archives hold, through `affectanalysisbin`: streams of
//! different lengths are complete (a cut file is not), phone videos and EXIF photographs are
//! analysed upright, two processes share an output folder, a model that gives NaN and a full
//! output disk say so with the right exit status, and the command's tables are those of
//! `gst-launch-1.0 ... ! affectanalysisbin ! affectsink`.

#[path = "../../plugins/affect/tests/common/mod.rs"]
#[allow(dead_code)]
mod common;
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use affect_core::testutil::{run_python, scratch_dir};
use support::{EXIT_REQUEUE, files};

/// Runs a `gst-launch-1.0` line that writes a file.
fn launch(description: &str) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("exec gst-launch-1.0 -q {description}"))
        .env("GST_PLUGIN_PATH", plugin_dir())
        .status()
        .unwrap();
    assert!(status.success(), "{description}");
}

/// The one output of `out` whose name starts with `<stem>-` and ends with `suffix`.
fn output_of(out: &Path, stem: &str, suffix: &str) -> PathBuf {
    let found: Vec<String> = files(out)
        .into_iter()
        .filter(|n| n.starts_with(&format!("{stem}-")) && n.ends_with(suffix))
        .collect();
    assert_eq!(found.len(), 1, "{stem}*{suffix} in {:?}", files(out));
    out.join(&found[0])
}

fn summary(out: &Path, stem: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(output_of(out, stem, ".summary.json")).unwrap())
        .unwrap()
}

/// The rows of a CSV table by column name.
fn rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(str::to_string))
                .collect()
        })
        .collect()
}

fn number(row: &BTreeMap<String, String>, column: &str) -> f64 {
    row[column].parse().unwrap()
}

/// 16 kHz audio of `seconds`, into the muxer `mux`.
fn audio(seconds: u32, encoder: &str) -> String {
    format!(
        "audiotestsrc num-buffers={} samplesperbuffer=1600 wave=sine freq=300 \
         ! audio/x-raw,rate=16000,channels=1 ! audioconvert ! {encoder} ! queue ! mux.",
        seconds * 10
    )
}

/// Video of `frames` at 10 frames/s starting at `offset_s`, into the muxer `mux`.
fn video(frames: u32, offset_s: u32, encoder: &str) -> String {
    format!(
        "videotestsrc num-buffers={frames} pattern=ball timestamp-offset={} \
         ! video/x-raw,width=160,height=120,framerate=10/1 ! videoconvert ! {encoder} \
         ! queue ! mux.",
        offset_s as u64 * 1_000_000_000
    )
}

fn seconds(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

#[test]
fn streams_of_different_lengths_are_complete_and_a_cut_file_is_not() {
    let dir = scratch_dir("truth-streams");
    // A phone or screen recording (QuickTime, as phones write it, with its index first):
    // the audio runs 2 s past the video.
    let long_audio = dir.join("long-audio.mov");
    launch(&format!(
        "{} {} qtmux name=mux faststart=true ! filesink location={}",
        video(20, 0, "jpegenc"),
        audio(4, "avenc_aac"),
        long_audio.display()
    ));
    // An edited clip: the video starts 1 s after the audio and ends 1 s before it.
    let late_video = dir.join("late-video.mkv");
    launch(&format!(
        "{} {} matroskamux name=mux ! filesink location={}",
        video(20, 1, "jpegenc"),
        audio(4, "identity"),
        late_video.display()
    ));
    // The first file cut in its middle: every stream stops short.
    let bytes = std::fs::read(&long_audio).unwrap();
    let cut = dir.join("cut.mov");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();

    let out = dir.join("out");
    let o = out.to_str().unwrap();
    let output = support::affect(
        &[
            "analyze",
            long_audio.to_str().unwrap(),
            late_video.to_str().unwrap(),
            cut.to_str().unwrap(),
            "--detector",
            "full-frame",
            "-o",
            o,
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "the cut file is incomplete");
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.contains(name) && !l.starts_with(name))
            .unwrap_or_else(|| panic!("no line for {name}: {stdout}"))
            .to_string()
    };
    assert!(line("long-audio.mov").starts_with("done"), "{stdout}");
    assert!(line("late-video.mkv").starts_with("done"), "{stdout}");
    assert!(line("cut.mov").starts_with("INCOMPLETE"), "{stdout}");
    assert!(files(&out).iter().all(|n| !n.starts_with("cut-")));

    // Both durations, each stream's own, in the summary and on the done line.
    let s = summary(&out, "long-audio");
    assert_eq!(s["frames"], 20);
    assert!((seconds(&s["video"]["end"]) - 2.0).abs() < 0.15, "{s}");
    assert!((seconds(&s["audio"]["end"]) - 4.0).abs() < 0.15, "{s}");
    assert!((seconds(&s["container_seconds"]) - 4.0).abs() < 0.15, "{s}");
    assert!(
        line("long-audio.mov").contains("audio 0.00-4.0"),
        "{stdout}"
    );
    let s = summary(&out, "late-video");
    assert_eq!(s["frames"], 20);
    assert!((seconds(&s["video"]["start"]) - 1.0).abs() < 0.05, "{s}");
    assert!((seconds(&s["video"]["end"]) - 3.0).abs() < 0.05, "{s}");
    assert!((seconds(&s["audio"]["end"]) - 4.0).abs() < 0.05, "{s}");
    assert_eq!(
        rows(&output_of(&out, "late-video", ".csv")).len(),
        20,
        "every frame has its row"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A real photograph (matplotlib's Grace Hopper) as the upright reference `grace.jpg`, and
/// `exif-<v>.jpg` files that store it turned, with the EXIF orientation `v` that turns it
/// back; all at JPEG quality 100 without chroma subsampling, so that the codec's losses on
/// the turned pixels stay small.
fn photographs(dir: &Path) -> PathBuf {
    let grace = dir.join("grace.jpg");
    run_python(
        r#"
import sys, os, shutil, matplotlib, PIL.Image
out = sys.argv[1]
grace = os.path.join(matplotlib.get_data_path(), 'sample_data', 'grace_hopper.jpg')
image = PIL.Image.open(grace).convert('RGB')
image.save(os.path.join(out, 'grace.jpg'), quality=100, subsampling=0)
# EXIF orientation v: the stored pixels are the upright image turned so that the
# transform v names brings it back (PIL's ROTATE_90 turns counter-clockwise).
turns = {6: PIL.Image.Transpose.ROTATE_90, 3: PIL.Image.Transpose.ROTATE_180,
         8: PIL.Image.Transpose.ROTATE_270}
for v, t in turns.items():
    exif = PIL.Image.Exif()
    exif[0x0112] = v
    image.transpose(t).save(os.path.join(out, f'exif-{v}.jpg'), exif=exif.tobytes(), quality=100,
                            subsampling=0)
"#,
        &[dir.to_str().unwrap()],
    );
    grace
}

/// A 1 s clip of the photograph `photo`, its frames stored turned by `flip` (a videoflip
/// video-direction), tagged with the rotation `degrees` that displays it upright. The frames
/// are JPEG at quality 100 without chroma subsampling: turned frames lose the same little.
fn phone_video(photo: &Path, out: &Path, flip: &str, degrees: u32) {
    launch(&format!(
        "filesrc location={} ! jpegdec ! videoconvert ! videoscale \
         ! video/x-raw,width=320,height=376 ! imagefreeze num-buffers=10 \
         ! video/x-raw,framerate=10/1 ! videoflip video-direction={flip} ! videoconvert \
         ! video/x-raw,format=Y444 ! jpegenc quality=100 ! qtmux ! filesink location={}",
        photo.display(),
        out.display()
    ));
    affect_core::testutil::set_quicktime_rotation(out, degrees);
}

/// One face of a table's row: box (x, y, width, height), valence/arousal and the five
/// landmarks.
#[derive(Debug)]
struct Face {
    bbox: [f64; 4],
    valence_arousal: [f64; 2],
    landmarks: [[f64; 2]; 5],
}

fn faces(path: &Path) -> Vec<Face> {
    rows(path)
        .iter()
        .filter(|r| r["success"] == "1")
        .map(|r| Face {
            bbox: ["x", "y", "width", "height"].map(|c| number(r, c)),
            valence_arousal: [number(r, "valence"), number(r, "arousal")],
            landmarks: std::array::from_fn(|k| {
                [
                    number(r, &format!("lmk_x_{k}")),
                    number(r, &format!("lmk_y_{k}")),
                ]
            }),
        })
        .collect()
}

fn iou(a: &Face, b: &Face) -> f64 {
    let corners = |f: &Face| {
        let [x, y, w, h] = f.bbox.map(|v| v as f32);
        [x, y, x + w, y + h]
    };
    common::iou(corners(a), corners(b)) as f64
}

/// Every frame of `got` has the one face of `want`'s frames in displayed pixels: the same box
/// (IoU >= 0.8) and the same five points, each within 6 % of the face's width (a frame left
/// turned, or turned the wrong way or mirrored, moves eyes and mouth corners by far more).
/// Valence and arousal within 0.25: the files are encoded apart and MTCNN's boxes move by a
/// pixel or two on turned pixels, which the synthetic-world model answers with changes of up
/// to 0.15 (measured on these files).
fn assert_same_faces(name: &str, got: &[Face], want: &[Face]) {
    assert_eq!(got.len(), want.len(), "{name}: {got:?} against {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(iou(g, w) >= 0.8, "{name}: box {g:?} against {w:?}");
        let tolerance = 0.06 * w.bbox[2];
        for (p, q) in g.landmarks.iter().zip(&w.landmarks) {
            assert!(
                (p[0] - q[0]).hypot(p[1] - q[1]) <= tolerance,
                "{name}: landmarks {g:?} against {w:?}"
            );
        }
        for (a, b) in g.valence_arousal.iter().zip(&w.valence_arousal) {
            assert!(
                (a - b).abs() < 0.25,
                "{name}: valence/arousal {g:?} against {w:?}"
            );
        }
    }
}

#[test]
fn phone_videos_and_exif_photographs_are_analysed_upright() {
    let dir = scratch_dir("truth-orientation");
    let grace = photographs(&dir);
    let upright = dir.join("upright.mov");
    phone_video(&grace, &upright, "identity", 0);
    let mut inputs = vec![upright.clone(), grace.clone()];
    // The coded frames turned one way, the tag turning them back.
    for (flip, degrees) in [("90l", 90), ("180", 180), ("90r", 270)] {
        let path = dir.join(format!("rotate-{degrees}.mov"));
        phone_video(&grace, &path, flip, degrees);
        inputs.push(path);
    }
    for v in [6, 3, 8] {
        inputs.push(dir.join(format!("exif-{v}.jpg")));
    }
    let out = dir.join("out");
    let mut args = vec!["analyze".to_string()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    args.extend(["-o".into(), out.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = support::affect(&args, &[]);
    assert!(output.status.success());

    let video = faces(&output_of(&out, "upright", ".csv"));
    assert_eq!(
        video.len(),
        10,
        "one face on each frame of the upright clip"
    );
    for degrees in [90, 180, 270] {
        let name = format!("rotate-{degrees}");
        assert_same_faces(&name, &faces(&output_of(&out, &name, ".csv")), &video);
        let s = summary(&out, &name);
        assert_eq!(s["orientation"], format!("rotate-{degrees}"), "{s}");
        assert_eq!(s["orientation_applied"], true);
    }
    let photo = faces(&output_of(&out, "grace", ".csv"));
    assert_eq!(photo.len(), 1);
    for v in [6, 3, 8] {
        let name = format!("exif-{v}");
        assert_same_faces(&name, &faces(&output_of(&out, &name, ".csv")), &photo);
    }

    // Turned off, the stored frames are analysed as they are: the face is found lying on its
    // side (a detector may still find it, as BlazeFace does), its eyes one above the other.
    let raw = dir.join("raw");
    let output = support::affect(
        &[
            "analyze",
            inputs[2].to_str().unwrap(),
            "--ignore-orientation",
            "-o",
            raw.to_str().unwrap(),
        ],
        &[],
    );
    assert!(output.status.success());
    let s = summary(&raw, "rotate-90");
    assert_eq!(s["orientation_applied"], false);
    let coded = faces(&output_of(&raw, "rotate-90", ".csv"));
    let level = |f: &Face| {
        let [l, r] = [f.landmarks[0], f.landmarks[1]];
        (r[0] - l[0]).abs() > (r[1] - l[1]).abs()
    };
    assert!(
        video.iter().all(level),
        "upright eyes side by side: {video:?}"
    );
    assert!(
        coded
            .iter()
            .zip(&video)
            .all(|(c, v)| iou(c, v) < 0.5 || !level(c)),
        "not turned upright: {coded:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// `n` clips of `frames` frames (320x240 at 10 frames/s, with audio), named `clip-<i>.mkv`.
fn clips(dir: &Path, n: usize, frames: u32) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let path = dir.join(format!("clip-{i}.mkv"));
            launch(&format!(
                "videotestsrc num-buffers={frames} pattern={i} \
                 ! video/x-raw,width=320,height=240,framerate=10/1 ! jpegenc ! queue ! mux. \
                 {} matroskamux name=mux ! filesink location={}",
                audio(frames.div_ceil(10), "identity"),
                path.display()
            ));
            path
        })
        .collect()
}

#[test]
fn two_processes_share_an_output_folder_and_a_killed_one_blocks_nothing() {
    let dir = scratch_dir("truth-concurrent");
    let inputs = clips(&dir, 6, 40);
    let out = dir.join("out");
    let mut args: Vec<String> = vec!["analyze".into()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    args.extend(["--detector", "mtcnn", "-o"].map(String::from));
    args.push(out.display().to_string());
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_affect"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let outputs = [
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    ];
    let texts: Vec<String> = outputs
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .collect();
    for (o, t) in outputs.iter().zip(&texts) {
        println!("{t}\n{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            matches!(o.status.code(), Some(0) | Some(EXIT_REQUEUE)),
            "{:?}",
            o.status
        );
    }
    for (i, input) in inputs.iter().enumerate() {
        let name = input.display().to_string();
        let done: Vec<usize> = texts
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                t.lines()
                    .any(|l| l.starts_with("done") && l.contains(&name))
            })
            .map(|(k, _)| k)
            .collect();
        assert_eq!(done.len(), 1, "clip {i} is done by exactly one process");
        // The other process said why it did not analyse it.
        let other = &texts[1 - done[0]];
        assert!(
            other
                .lines()
                .any(|l| l.contains(&name)
                    && (l.starts_with("elsewhere") || l.starts_with("skipped"))),
            "clip {i}: {other}"
        );
        // Every summary agrees with its table.
        let stem = format!("clip-{i}");
        let table = rows(&output_of(&out, &stem, ".csv"));
        let s = summary(&out, &stem);
        assert_eq!(s["frames"], 40);
        assert_eq!(
            s["face_rows"].as_u64().unwrap() as usize,
            table.iter().filter(|r| r["success"] == "1").count()
        );
    }
    assert!(
        texts
            .iter()
            .any(|t| t.lines().any(|l| l.starts_with("elsewhere"))),
        "the processes ran side by side: {texts:?}"
    );
    // Nothing left behind: no partial file, no claim.
    assert!(
        files(&out)
            .iter()
            .all(|n| !n.contains("partial") && !n.ends_with(".lock")),
        "{:?}",
        files(&out)
    );

    // A process killed while it holds an input blocks no later run. The clip is long (30 s)
    // so that the claim is seen while it is held.
    let long_dir = dir.join("long");
    std::fs::create_dir_all(&long_dir).unwrap();
    let long = clips(&long_dir, 1, 300).remove(0);
    let killed_out = dir.join("killed");
    let analyse_long = |out: &Path| -> Vec<String> {
        [
            "analyze",
            long.to_str().unwrap(),
            "--detector",
            "mtcnn",
            "-o",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([out.display().to_string()])
        .collect()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_affect"))
        .args(analyse_long(&killed_out))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !files(&killed_out).iter().any(|n| n.ends_with(".lock")) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no claim taken"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !files(&killed_out)
            .iter()
            .any(|n| n.ends_with(".csv") && !n.starts_with('.')),
        "killed before it was done: {:?}",
        files(&killed_out)
    );
    let args = analyse_long(&killed_out);
    let rerun = support::affect(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(rerun.status.success());
    assert!(
        String::from_utf8_lossy(&rerun.stdout)
            .lines()
            .any(|l| l.starts_with("done"))
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_model_without_results_fails_and_says_why() {
    let dir = scratch_dir("truth-nan");
    let inputs = clips(&dir, 1, 10);
    let model = common::build_model(&dir, "nan.onnx", r#"{"size": 32, "break": "nan"}"#);
    let out = dir.join("out");
    let output = support::affect(
        &[
            "analyze",
            inputs[0].to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--detector",
            "full-frame",
            "-o",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("FAILED"))
        .unwrap_or_else(|| panic!("no FAILED line: {stdout}"));
    assert!(
        line.contains("no model result for any of the 10 faces") && line.contains("NaN"),
        "{line}"
    );
    assert!(files(&out).iter().all(|n| !n.ends_with(".csv")));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_full_output_disk_stops_the_batch_for_requeue_and_blames_no_input() {
    let dir = scratch_dir("truth-full");
    let inputs = clips(&dir, 2, 30);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    // A 16 KiB file system of its own for the outputs, in a mount namespace of the command's
    // own (unshare works for root and, through a user namespace, for anyone).
    let script = format!(
        "mount -t tmpfs -o size=16k tmpfs {out} && exec {affect} analyze {a} {b} \
         --detector full-frame -o {out}",
        out = out.display(),
        affect = env!("CARGO_BIN_EXE_affect"),
        a = inputs[0].display(),
        b = inputs[1].display(),
    );
    let output = Command::new("unshare")
        .args(["-rm", "sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    assert_eq!(output.status.code(), Some(EXIT_REQUEUE), "{stderr}");
    assert!(
        stderr.contains("the outputs cannot be written")
            && stderr.contains("No space left on device")
            && stderr.contains(out.to_str().unwrap()),
        "{stderr}"
    );
    assert!(
        !stdout.contains("FAILED") && !stdout.contains("INCOMPLETE"),
        "no input is blamed: {stdout}"
    );
    assert!(
        stdout.contains("0 videos, 0 images, 0 face rows"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn analyze_and_gst_launch_with_the_bin_write_the_same_table() {
    let dir = scratch_dir("truth-same");
    let clip = dir.join("grace.mov");
    phone_video(&photographs(&dir), &clip, "identity", 0);
    let out = dir.join("out");
    let output = support::affect(
        &[
            "analyze",
            clip.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(output.status.success());
    let by_launch = dir.join("launch.csv");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/affect-default.onnx");
    launch(&format!(
        "filesrc location={} ! affectanalysisbin model={} ! affectsink location={}",
        clip.display(),
        model.display(),
        by_launch.display()
    ));
    let analysed = std::fs::read_to_string(output_of(&out, "grace", ".csv")).unwrap();
    let launched = std::fs::read_to_string(&by_launch).unwrap();
    assert_eq!(
        faces(&output_of(&out, "grace", ".csv")).len(),
        10,
        "{analysed}"
    );
    assert_eq!(analysed, launched);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_bins_properties_are_typed_with_their_childrens_defaults() {
    let output = Command::new("gst-inspect-1.0")
        .arg("affectanalysisbin")
        .env("GST_PLUGIN_PATH", plugin_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    let property = |name: &str| {
        let start = text
            .find(&format!("  {name} "))
            .unwrap_or_else(|| panic!("no {name}: {text}"));
        text[start..].lines().take(5).collect::<Vec<_>>().join("\n")
    };
    let detector = property("detector");
    assert!(
        detector.contains("Enum \"GstAffectFaceDetector\" Default: 5, \"auto\""),
        "{detector}"
    );
    let rest = &text[text.find("  detector ").unwrap()..];
    assert!(
        rest.contains("(4): mtcnn") && rest.contains("(5): auto"),
        "{rest}"
    );
    assert!(
        property("execution-provider").contains("Enum \"GstAffectExecutionProvider\""),
        "{text}"
    );
    assert!(
        property("audio-missing")
            .contains("Enum \"GstAffectAudioMissing\" Default: 0, \"silence\""),
        "{text}"
    );
    assert!(
        property("apply-orientation").contains("Default: true"),
        "{text}"
    );
}

/// The folder of the built plugin (`target/<profile>/`, beside the test's binary).
fn plugin_dir() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_affect"));
    let dir = exe.parent().unwrap().to_path_buf();
    assert!(
        dir.join("libgstaffect.so").exists(),
        "no libgstaffect.so in {}",
        dir.display()
    );
    dir
}
