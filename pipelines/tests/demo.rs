// SPDX-License-Identifier: MPL-2.0
//! `affect demo` end to end: runs the binary and checks every output against the clip's
//! ground truth, read independently of the demo's own scoring.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use affect_cli::demo::{MIN_COVERAGE, SCORE_MINIMA};
use affect_core::labels::EXPRESSION_LABELS;
use affect_core::metrics;
use affect_core::testutil::{CSV_LEADING_COLUMNS, scratch_dir};
use affect_synth::{self as synth, testutil};
use gst::prelude::*;

/// Decodes a video file and returns (frames, width, height).
fn decode(path: &Path) -> (usize, u32, u32) {
    gst::init().unwrap();
    let pipeline = gst::parse::launch(&format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! video/x-raw,format=RGB \
         ! appsink name=sink sync=false",
        path.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = testutil::play(&pipeline);
    let (mut frames, mut size) = (0, (0, 0));
    for sample in testutil::samples(&sink, gst::ClockTime::from_seconds(30)) {
        let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
        size = (info.width(), info.height());
        frames += 1;
    }
    assert!(
        sink.is_eos(),
        "{} did not decode to the end",
        path.display()
    );
    pipeline.set_state(gst::State::Null).unwrap();
    (frames, size.0, size.1)
}

fn parse_csv(path: &Path) -> (Vec<String>, Vec<HashMap<String, String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .expect("CSV header")
        .split(',')
        .map(str::to_string)
        .collect();
    let rows = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            assert_eq!(
                cells.len(),
                header.len(),
                "row {l:?} has the header's width"
            );
            header
                .iter()
                .cloned()
                .zip(cells.iter().map(|c| c.to_string()))
                .collect()
        })
        .collect();
    (header, rows)
}

#[test]
fn demo_writes_every_output_and_meets_the_thresholds() {
    let dir = scratch_dir("cli-demo");
    let out = dir.join("demo");
    let run = Command::new(env!("CARGO_BIN_EXE_affect"))
        .args(["demo", "--seconds", "10", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    println!("{stdout}\n{stderr}");
    assert!(run.status.success(), "affect demo failed: {stderr}");

    let truth = synth::read_ground_truth(&out.join("synth/ground_truth/synth-000.jsonl")).unwrap();
    assert_eq!(truth.len(), 300, "10 s at 30 fps");
    assert!(truth.iter().all(|f| f.faces.len() == 1), "one person");

    // CSV: OpenFace-style columns, one row per face with results per frame.
    let (header, rows) = parse_csv(&out.join("affect.csv"));
    let mut expected: Vec<String> = CSV_LEADING_COLUMNS.iter().map(|c| c.to_string()).collect();
    expected.extend(EXPRESSION_LABELS.iter().map(|l| format!("expr_{l}")));
    for column in &expected {
        assert!(
            header.contains(column),
            "CSV has column {column}: {header:?}"
        );
    }
    for number in affect_core::labels::AU_NUMBERS {
        for suffix in ["c", "p"] {
            let column = format!("AU{number:02}_{suffix}");
            assert!(header.contains(&column), "CSV has column {column}");
        }
    }
    let scores: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("scores.json")).unwrap()).unwrap();
    let face_rows = scores["face_rows"].as_u64().unwrap() as usize;
    assert_eq!(rows.len(), face_rows, "CSV rows = faces with results");
    let mut per_frame: HashMap<u32, usize> = HashMap::new();
    for row in &rows {
        let frame: u32 = row["frame"].parse().unwrap();
        assert!(
            (1..=300).contains(&frame),
            "frame {frame} is one of the clip's"
        );
        *per_frame.entry(frame).or_default() += 1;
    }
    assert!(
        per_frame.len() as f64 >= MIN_COVERAGE * 300.0,
        "rows cover {} of 300 frames",
        per_frame.len()
    );
    assert!(
        per_frame.values().all(|&n| n <= 2),
        "at most one false face per frame besides the person"
    );

    // JSONL: the same rows, values equal to the CSV's.
    let jsonl = std::fs::read_to_string(out.join("affect.jsonl")).unwrap();
    let objects: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("each JSONL line parses"))
        .collect();
    assert_eq!(objects.len(), rows.len(), "JSONL lines = CSV rows");
    for (o, row) in objects.iter().zip(&rows) {
        assert_eq!(o["frame"].as_u64().unwrap().to_string(), row["frame"]);
        let csv_valence: f64 = row["valence"].parse().unwrap();
        assert!((o["valence"].as_f64().unwrap() - csv_valence).abs() < 1e-6);
        assert_eq!(o["expression"].as_str().unwrap(), row["expression"]);
    }

    // The CCC of the CSV's valence/arousal against the ground truth, computed here, agrees
    // with the demo's scores (which fill the few frames without a face).
    let (mut pv, mut pa, mut gv, mut ga) = (vec![], vec![], vec![], vec![]);
    for row in &rows {
        let frame: usize = row["frame"].parse().unwrap();
        let person = &truth[frame - 1].faces[0];
        let [x, y, w, h] = person.bbox;
        let cx: f32 = row["x"].parse::<f32>().unwrap() + row["width"].parse::<f32>().unwrap() / 2.0;
        let cy: f32 =
            row["y"].parse::<f32>().unwrap() + row["height"].parse::<f32>().unwrap() / 2.0;
        let inside = cx > x && cx < x + w && cy > y && cy < y + h;
        if person.annotated[0] && inside {
            pv.push(row["valence"].parse::<f32>().unwrap());
            pa.push(row["arousal"].parse::<f32>().unwrap());
            gv.push(person.valence);
            ga.push(person.arousal);
        }
    }
    let ccc_v = metrics::ccc(&pv, &gv).unwrap();
    let ccc_a = metrics::ccc(&pa, &ga).unwrap();
    let demo_v = scores["ccc_valence"].as_f64().unwrap();
    let demo_a = scores["ccc_arousal"].as_f64().unwrap();
    assert!(
        (ccc_v - demo_v).abs() < 0.03 && (ccc_a - demo_a).abs() < 0.03,
        "CCC from the CSV {ccc_v:.4}/{ccc_a:.4} vs the demo's {demo_v:.4}/{demo_a:.4}"
    );

    // The scores meet the thresholds.
    for (name, minimum) in SCORE_MINIMA {
        let key = name.to_ascii_lowercase();
        let value = scores[key.as_str()].as_f64().unwrap();
        assert!(value >= minimum, "{name} {value:.4} below {minimum}");
        assert!(stdout.contains(name), "the demo prints {name}");
    }
    assert!(scores["coverage"].as_f64().unwrap() >= MIN_COVERAGE);
    assert!(scores["passed"].as_bool().unwrap());

    // The plot: the right size, and drawn (many colours, much of it not background).
    let png = image::open(out.join("timeline.png")).unwrap().to_rgb8();
    assert_eq!(
        (png.width(), png.height()),
        (
            affect_cli::plot::WIDTH as u32,
            affect_cli::plot::HEIGHT as u32
        )
    );
    let colours: std::collections::HashSet<[u8; 3]> = png.pixels().map(|p| p.0).collect();
    let drawn = png.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    assert!(colours.len() > 100, "{} colours in the plot", colours.len());
    assert!(
        drawn as f64 > 0.2 * (png.width() * png.height()) as f64,
        "{drawn} drawn pixels"
    );

    // The annotated video decodes to every frame of the clip, at its size.
    let (frames, width, height) = decode(&out.join("annotated.webm"));
    assert_eq!((frames, width, height), (300, 640, 480));
}

#[test]
fn demo_refuses_a_bad_length_and_a_missing_model() {
    let dir = scratch_dir("cli-demo-bad");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_affect"))
            .arg("demo")
            .args(args)
            .arg("--out")
            .arg(dir.join("out"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} must fail");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    assert!(run(&["--seconds", "0.2"]).contains("--seconds"));
    let missing = dir.join("nowhere.onnx");
    let message = run(&["--model", missing.to_str().unwrap()]);
    assert!(message.contains("nowhere.onnx"), "{message}");
}
