// SPDX-License-Identifier: MPL-2.0
//! `affectsink`: the rows it writes against the results attached to the buffers (parsed back
//! with an RFC 4180 reader, serde_json and Python's csv module), and how it treats existing
//! files, full disks, label changes and streams without faces.

mod common;

use common::init;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use affect_core::labels::{AU_LABELS, EXPRESSION_LABELS};
use affect_core::testutil::{CSV_LEADING_COLUMNS, run_python, scratch_dir};
use gst::prelude::*;
use gst_video::VideoRegionOfInterestMeta;
use gstaffect::meta::{AffectResult, Face};
use serde_json::Value;

const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;
const FRAME_NS: u64 = 40_000_000;
/// Values go through a decimal text form: they must come back this close.
const TOL: f64 = 1e-6;

/// OpenFace's names of the 12 action units, spelled out as its documentation does.
const OPENFACE_AUS: [&str; 12] = [
    "AU01", "AU02", "AU04", "AU06", "AU07", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26",
];

/// A face of the test video and what the model said of it (`None`: no result).
#[derive(Clone)]
struct TestFace {
    face: Face,
    result: Option<AffectResult>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Well-spread values in [0, 1) with many significant digits (golden-ratio sequence).
fn value(seed: u64) -> f64 {
    (seed as f64 * 0.618_033_988_749_894_9 + 0.123_456_789).fract()
}

fn test_result(seed: u64, au_labels: &[&str]) -> AffectResult {
    let raw: Vec<f64> = (0..8).map(|i| value(seed * 37 + i) + 0.01).collect();
    let sum: f64 = raw.iter().sum();
    let expression_probs: Vec<f64> = raw.iter().map(|p| p / sum).collect();
    let best = (0..8)
        .max_by(|&a, &b| expression_probs[a].total_cmp(&expression_probs[b]))
        .unwrap();
    AffectResult {
        valence: Some(2.0 * value(seed * 37 + 100) - 1.0),
        arousal: Some(2.0 * value(seed * 37 + 101) - 1.0),
        expression: Some(EXPRESSION_LABELS[best].to_string()),
        expression_probs,
        expression_labels: strings(&EXPRESSION_LABELS),
        au_probs: (0..au_labels.len() as u64)
            .map(|i| value(seed * 37 + 200 + i))
            .collect(),
        au_labels: strings(au_labels),
        model: "test-model".into(),
    }
}

/// Face `k` of frame `frame`: integer boxes (the meta stores integers), landmarks on even
/// faces, results unless `with_result` is false.
fn test_face(frame: usize, k: usize, with_result: bool) -> TestFace {
    let x = 20.0 + 200.0 * k as f32;
    let y = 30.0 + frame as f32;
    let landmarks = k.is_multiple_of(2).then_some([
        [x + 30.25, y + 40.5],
        [x + 70.75, y + 40.5],
        [x + 50.0, y + 60.125],
        [x + 35.5, y + 85.0],
        [x + 65.5, y + 85.0],
    ]);
    TestFace {
        face: Face {
            bbox: [x, y, x + 100.0 + k as f32, y + 120.0],
            track_id: 10 + k as u64,
            score: 0.9 - 0.1 * k as f32,
            landmarks,
        },
        result: with_result.then(|| test_result((frame * 10 + k) as u64 + 1, &AU_LABELS)),
    }
}

/// Six frames with 2, 3, 0, 1, 2 and 3 faces; the second face of frame 2 has no result.
fn test_video() -> Vec<Vec<TestFace>> {
    [2, 3, 0, 1, 2, 3]
        .iter()
        .enumerate()
        .map(|(frame, &n)| {
            (0..n)
                .map(|k| test_face(frame, k, !(frame == 1 && k == 1)))
                .collect()
        })
        .collect()
}

fn pts_seconds(frame: usize) -> f64 {
    (frame as u64 * FRAME_NS) as f64 / 1e9
}

/// A frame carrying `faces` as affectfacecrop and affectinfer leave them: ROI meta with the
/// `affect-face` parameters, plus the `affect` results on the same meta.
fn make_buffer(frame: usize, faces: &[TestFace]) -> gst::Buffer {
    let mut buffer = gst::Buffer::with_size(16).unwrap();
    {
        let buf = buffer.get_mut().unwrap();
        buf.set_pts(gst::ClockTime::from_nseconds(frame as u64 * FRAME_NS));
        buf.set_duration(gst::ClockTime::from_nseconds(FRAME_NS));
        for f in faces {
            f.face.attach(buf, WIDTH, HEIGHT);
        }
        for mut meta in buf.iter_meta_mut::<VideoRegionOfInterestMeta>() {
            let face = faces
                .iter()
                .find(|f| f.face.track_id == meta.id() as u64)
                .expect("each meta is one of the faces");
            if let Some(r) = &face.result {
                meta.add_param(r.to_structure());
            }
        }
    }
    buffer
}

/// Runs `appsrc ! affectsink` over `frames`; the error the pipeline ended with, if any
/// (message and debug text together).
fn run_sink(props: &[(&str, &str)], frames: &[Vec<TestFace>]) -> Option<String> {
    init();
    let pipeline = gst::Pipeline::new();
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", "RGB")
        .field("width", WIDTH as i32)
        .field("height", HEIGHT as i32)
        .field("framerate", gst::Fraction::new(25, 1))
        .build();
    let src = gst_app::AppSrc::builder()
        .caps(&caps)
        .format(gst::Format::Time)
        .build();
    let sink = gst::ElementFactory::make("affectsink").build().unwrap();
    for (name, value) in props {
        sink.set_property_from_str(name, value);
    }
    pipeline.add_many([src.upcast_ref(), &sink]).unwrap();
    src.link(&sink).unwrap();
    let bus = pipeline.bus().unwrap();
    if pipeline.set_state(gst::State::Playing).is_ok() {
        for (i, faces) in frames.iter().enumerate() {
            // Refused once the sink has failed; the bus says why.
            let _ = src.push_buffer(make_buffer(i, faces));
        }
        let _ = src.end_of_stream();
    }
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("EOS or an error within 30 s");
    let location = props
        .iter()
        .find(|(k, _)| *k == "location")
        .map(|(_, v)| *v);
    let error = match msg.view() {
        gst::MessageView::Error(e) => Some(format!(
            "{} | {}",
            e.error(),
            e.debug().map(|d| d.to_string()).unwrap_or_default()
        )),
        _ => None,
    };
    // At EOS every row is already in the file: stopping adds nothing.
    let at_eos = location
        .filter(|_| error.is_none())
        .map(|l| std::fs::read(l).unwrap());
    pipeline.set_state(gst::State::Null).unwrap();
    if let (Some(at_eos), Some(l)) = (at_eos, location) {
        assert_eq!(std::fs::read(l).unwrap(), at_eos, "{l} complete at EOS");
    }
    error
}

/// An RFC 4180 reader: quoted fields, doubled quotes, line breaks inside quotes.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
        } else {
            match c {
                '"' => quoted = true,
                ',' => row.push(std::mem::take(&mut field)),
                '\n' => {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                '\r' => {}
                _ => field.push(c),
            }
        }
    }
    assert!(
        field.is_empty() && row.is_empty(),
        "the last row has no line end"
    );
    rows
}

/// The header the CSV must have for the contract's labels, written out from OpenFace's
/// conventions.
fn expected_header() -> Vec<String> {
    let mut h = strings(&CSV_LEADING_COLUMNS);
    h.extend(EXPRESSION_LABELS.iter().map(|l| format!("expr_{l}")));
    h.extend(OPENFACE_AUS.iter().map(|a| format!("{a}_p")));
    h.extend(OPENFACE_AUS.iter().map(|a| format!("{a}_c")));
    h.extend((0..5).map(|i| format!("lmk_x_{i}")));
    h.extend((0..5).map(|i| format!("lmk_y_{i}")));
    h
}

/// A CSV parsed into a header and rows of cells by column name.
struct Table {
    header: Vec<String>,
    rows: Vec<HashMap<String, String>>,
}

fn read_table(path: &Path) -> Table {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = parse_csv(&text);
    assert!(!lines.is_empty(), "{} has no header", path.display());
    let header = lines.remove(0);
    let rows = lines
        .into_iter()
        .map(|cells| {
            assert_eq!(cells.len(), header.len(), "a row as wide as the header");
            header.iter().cloned().zip(cells).collect()
        })
        .collect();
    Table { header, rows }
}

fn cell_f64(row: &HashMap<String, String>, col: &str) -> f64 {
    row[col]
        .parse()
        .unwrap_or_else(|_| panic!("{col} = {:?} is a number", row[col]))
}

fn assert_close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= TOL,
        "{what}: {got} written, {want} attached"
    );
}

/// The faces of `frames` by (1-based frame, track id), as the rows must show them.
fn expected_rows(frames: &[Vec<TestFace>]) -> HashMap<(u64, u64), (usize, TestFace)> {
    let mut map = HashMap::new();
    for (i, faces) in frames.iter().enumerate() {
        for f in faces {
            map.insert((i as u64 + 1, f.face.track_id), (i, f.clone()));
        }
    }
    map
}

/// Checks a parsed CSV against `frames`, AU occurrence at `threshold`.
fn check_csv_rows(table: &Table, frames: &[Vec<TestFace>], threshold: f64) {
    let expected = expected_rows(frames);
    let face_rows: Vec<_> = table
        .rows
        .iter()
        .filter(|r| !r["face_id"].is_empty())
        .collect();
    assert_eq!(
        face_rows.len(),
        expected.len(),
        "one row per face per frame"
    );
    let mut seen = std::collections::HashSet::new();
    let mut last_frame = 0;
    for row in face_rows {
        let frame: u64 = row["frame"].parse().unwrap();
        let id: u64 = row["face_id"].parse().unwrap();
        assert!(frame >= last_frame, "rows in frame order");
        last_frame = frame;
        assert!(
            seen.insert((frame, id)),
            "frame {frame} face {id} written once"
        );
        let (index, tf) = &expected[&(frame, id)];
        let f = &tf.face;
        let what = |c: &str| format!("frame {frame} face {id} {c}");
        assert_close(cell_f64(row, "timestamp"), pts_seconds(*index), &what("t"));
        assert_close(cell_f64(row, "confidence"), f.score as f64, &what("score"));
        assert_close(cell_f64(row, "x"), f.bbox[0] as f64, &what("x"));
        assert_close(cell_f64(row, "y"), f.bbox[1] as f64, &what("y"));
        let (w, h) = (f.bbox[2] - f.bbox[0], f.bbox[3] - f.bbox[1]);
        assert_close(cell_f64(row, "width"), w as f64, &what("width"));
        assert_close(cell_f64(row, "height"), h as f64, &what("height"));
        match &f.landmarks {
            Some(l) => {
                for (i, p) in l.iter().enumerate() {
                    assert_close(cell_f64(row, &format!("lmk_x_{i}")), p[0] as f64, "lx");
                    assert_close(cell_f64(row, &format!("lmk_y_{i}")), p[1] as f64, "ly");
                }
            }
            None => assert!((0..5).all(|i| row[&format!("lmk_x_{i}")].is_empty())),
        }
        match &tf.result {
            Some(r) => {
                assert_eq!(row["success"], "1", "{}", what("success"));
                assert_close(
                    cell_f64(row, "valence"),
                    r.valence.unwrap(),
                    &what("valence"),
                );
                assert_close(
                    cell_f64(row, "arousal"),
                    r.arousal.unwrap(),
                    &what("arousal"),
                );
                assert_eq!(Some(row["expression"].as_str()), r.expression.as_deref());
                for (label, p) in EXPRESSION_LABELS.iter().zip(&r.expression_probs) {
                    assert_close(cell_f64(row, &format!("expr_{label}")), *p, label);
                }
                for (au, p) in OPENFACE_AUS.iter().zip(&r.au_probs) {
                    assert_close(cell_f64(row, &format!("{au}_p")), *p, au);
                    let present = if *p >= threshold { "1" } else { "0" };
                    assert_eq!(row[&format!("{au}_c")], present, "{} at {p}", what(au));
                }
            }
            None => {
                assert_eq!(row["success"], "0", "{}", what("success"));
                for col in ["valence", "arousal", "expression", "expr_Anger", "AU12_p"] {
                    assert!(row[col].is_empty(), "{} empty", what(col));
                }
            }
        }
    }
}

fn loc(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

#[test]
fn csv_has_openface_columns_and_one_row_per_face_per_frame() {
    let dir = scratch_dir("sink-csv");
    let path = dir.join("faces.csv");
    let frames = test_video();
    let error = run_sink(&[("location", &loc(&path))], &frames);
    assert_eq!(error, None);
    let table = read_table(&path);
    assert_eq!(table.header, expected_header());
    let n_faces: usize = frames.iter().map(Vec::len).sum();
    assert_eq!(n_faces, 11);
    assert_eq!(
        table.rows.len(),
        n_faces,
        "no row for the frame without faces"
    );
    check_csv_rows(&table, &frames, 0.5);
    // The video's probabilities fall on both sides of the threshold.
    let ones = table.rows.iter().filter(|r| r["AU01_c"] == "1").count();
    assert!(ones > 0 && ones < 10, "{ones} faces with AU01");
}

#[test]
fn au_occurrence_follows_the_threshold() {
    let dir = scratch_dir("sink-threshold");
    let frames = test_video();
    let mut counts = Vec::new();
    for threshold in ["0.3", "0.8"] {
        let path = dir.join(format!("t{threshold}.csv"));
        let error = run_sink(
            &[("location", &loc(&path)), ("au-threshold", threshold)],
            &frames,
        );
        assert_eq!(error, None);
        let table = read_table(&path);
        check_csv_rows(&table, &frames, threshold.parse().unwrap());
        counts.push(
            table
                .rows
                .iter()
                .flat_map(|r| OPENFACE_AUS.iter().map(move |a| &r[&format!("{a}_c")]))
                .filter(|c| *c == "1")
                .count(),
        );
    }
    assert!(
        counts[0] > counts[1],
        "fewer AUs present at 0.8: {counts:?}"
    );
}

#[test]
fn empty_frames_adds_a_row_for_each_frame_without_faces() {
    let dir = scratch_dir("sink-empty-frames");
    let path = dir.join("faces.csv");
    let frames = test_video();
    let error = run_sink(
        &[("location", &loc(&path)), ("empty-frames", "true")],
        &frames,
    );
    assert_eq!(error, None);
    let table = read_table(&path);
    let n_faces: usize = frames.iter().map(Vec::len).sum();
    let n_empty = frames.iter().filter(|f| f.is_empty()).count();
    assert_eq!(table.rows.len(), n_faces + n_empty);
    check_csv_rows(&table, &frames, 0.5);
    let empty: Vec<_> = table
        .rows
        .iter()
        .filter(|r| r["face_id"].is_empty())
        .collect();
    assert_eq!(empty.len(), 1);
    assert_eq!(empty[0]["frame"], "3");
    assert_eq!(empty[0]["success"], "0");
    assert_close(cell_f64(empty[0], "timestamp"), pts_seconds(2), "t");
    assert!(empty[0]["valence"].is_empty() && empty[0]["x"].is_empty());
}

#[test]
fn jsonl_round_trips_the_results() {
    let dir = scratch_dir("sink-jsonl");
    let path = dir.join("faces.jsonl");
    let frames = test_video();
    // The extension chooses JSON lines.
    let error = run_sink(&[("location", &loc(&path))], &frames);
    assert_eq!(error, None);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let expected = expected_rows(&frames);
    assert_eq!(lines.len(), expected.len());
    let f64s = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    for line in &lines {
        let frame = line["frame"].as_u64().unwrap();
        let id = line["face_id"].as_u64().unwrap();
        let (index, tf) = &expected[&(frame, id)];
        let f = &tf.face;
        assert_close(
            line["timestamp"].as_f64().unwrap(),
            pts_seconds(*index),
            "t",
        );
        assert_close(
            line["confidence"].as_f64().unwrap(),
            f.score as f64,
            "score",
        );
        assert_close(line["x"].as_f64().unwrap(), f.bbox[0] as f64, "x");
        assert_close(
            line["height"].as_f64().unwrap(),
            (f.bbox[3] - f.bbox[1]) as f64,
            "h",
        );
        match &f.landmarks {
            Some(l) => {
                let got: Vec<Vec<f64>> = line["landmarks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(f64s)
                    .collect();
                assert_eq!(got.len(), 5);
                for (g, p) in got.iter().zip(l) {
                    assert_close(g[0], p[0] as f64, "lx");
                    assert_close(g[1], p[1] as f64, "ly");
                }
            }
            None => assert!(line["landmarks"].is_null()),
        }
        match &tf.result {
            Some(r) => {
                assert_eq!(line["success"], 1);
                assert_close(
                    line["valence"].as_f64().unwrap(),
                    r.valence.unwrap(),
                    "valence",
                );
                assert_close(
                    line["arousal"].as_f64().unwrap(),
                    r.arousal.unwrap(),
                    "arousal",
                );
                assert_eq!(line["expression"].as_str(), r.expression.as_deref());
                assert_eq!(line["model"], "test-model");
                assert_eq!(strs(&line["expression_labels"]), r.expression_labels);
                assert_eq!(strs(&line["au_labels"]), r.au_labels);
                let probs = f64s(&line["expression_probs"]);
                let aus = f64s(&line["au_probs"]);
                assert_eq!((probs.len(), aus.len()), (8, 12));
                for (g, w) in probs.iter().zip(&r.expression_probs) {
                    assert_close(*g, *w, "expression prob");
                }
                for (g, w) in aus.iter().zip(&r.au_probs) {
                    assert_close(*g, *w, "AU prob");
                }
                let occurrence: Vec<u64> = line["au_occurrence"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
                    .collect();
                let want: Vec<u64> = r.au_probs.iter().map(|&p| (p >= 0.5) as u64).collect();
                assert_eq!(occurrence, want);
            }
            None => {
                assert_eq!(line["success"], 0);
                for key in ["valence", "expression", "au_probs", "au_labels", "model"] {
                    assert!(line[key].is_null(), "{key} is null without results");
                }
            }
        }
    }
}

#[test]
fn format_property_overrides_the_extension() {
    let dir = scratch_dir("sink-format");
    let frames = test_video();
    let csv_path = dir.join("really-csv.jsonl");
    let error = run_sink(&[("location", &loc(&csv_path)), ("format", "csv")], &frames);
    assert_eq!(error, None);
    assert_eq!(read_table(&csv_path).header, expected_header());
    let json_path = dir.join("really-json.csv");
    let error = run_sink(
        &[("location", &loc(&json_path)), ("format", "jsonl")],
        &frames,
    );
    assert_eq!(error, None);
    let text = std::fs::read_to_string(&json_path).unwrap();
    assert_eq!(text.lines().count(), 11);
    for l in text.lines() {
        serde_json::from_str::<Value>(l).unwrap();
    }
}

#[test]
fn an_existing_file_is_kept_unless_overwrite_is_set() {
    let dir = scratch_dir("sink-overwrite");
    let path = dir.join("old.csv");
    let old = "precious,data\n1,2\n";
    std::fs::write(&path, old).unwrap();
    let frames = test_video();
    let error = run_sink(&[("location", &loc(&path))], &frames).expect("an error");
    assert!(error.contains(&loc(&path)), "names the file: {error}");
    assert!(
        error.contains("overwrite=true"),
        "says how to replace: {error}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), old, "left intact");

    let error = run_sink(&[("location", &loc(&path)), ("overwrite", "true")], &frames);
    assert_eq!(error, None);
    let table = read_table(&path);
    assert_eq!(table.header, expected_header());
    assert_eq!(table.rows.len(), 11);
}

#[test]
fn a_missing_location_is_an_error_naming_the_property() {
    let error = run_sink(&[], &test_video()).expect("an error");
    assert!(error.contains("location"), "{error}");
}

#[test]
fn a_full_disk_is_an_error_naming_the_file() {
    let full = Path::new("/dev/full");
    assert!(full.exists(), "this test needs Linux's /dev/full");
    // A few rows fail when EOS flushes them; many fail while streaming, once the write buffer
    // spills.
    let long: Vec<Vec<TestFace>> = (0..200)
        .map(|i| (0..3).map(|k| test_face(i, k, true)).collect())
        .collect();
    for frames in [test_video(), long] {
        let error = run_sink(&[("location", "/dev/full"), ("overwrite", "true")], &frames)
            .expect("an error, not EOS");
        assert!(error.contains("/dev/full"), "names the file: {error}");
        let enospc = std::io::Error::from_raw_os_error(28).to_string();
        assert!(error.contains(&enospc), "gives the OS error: {error}");
    }
}

#[test]
fn nothing_seen_writes_only_the_header_or_nothing() {
    let dir = scratch_dir("sink-nothing");
    let csv = dir.join("none.csv");
    assert_eq!(run_sink(&[("location", &loc(&csv))], &[]), None);
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines = parse_csv(&text);
    assert_eq!(lines, vec![expected_header()]);

    let jsonl = dir.join("none.jsonl");
    assert_eq!(run_sink(&[("location", &loc(&jsonl))], &[]), None);
    assert_eq!(std::fs::read_to_string(&jsonl).unwrap(), "");

    // Frames without faces: nothing but the header either, unless empty-frames asks for rows.
    let empty = vec![Vec::new(); 4];
    let csv = dir.join("no-faces.csv");
    assert_eq!(run_sink(&[("location", &loc(&csv))], &empty), None);
    assert_eq!(read_table(&csv).rows.len(), 0);
    let csv = dir.join("no-faces-rows.csv");
    let props = [("location", loc(&csv)), ("empty-frames", "true".into())];
    let props: Vec<(&str, &str)> = props.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(run_sink(&props, &empty), None);
    let table = read_table(&csv);
    let frames: Vec<&str> = table.rows.iter().map(|r| r["frame"].as_str()).collect();
    assert_eq!(frames, ["1", "2", "3", "4"]);
    assert!(table.rows.iter().all(|r| r["success"] == "0"));
}

#[test]
fn faces_without_results_have_success_0() {
    let dir = scratch_dir("sink-no-results");
    let path = dir.join("faces.csv");
    // No face ever gets results: the header uses the contract's labels.
    let frames: Vec<Vec<TestFace>> = (0..3)
        .map(|i| (0..2).map(|k| test_face(i, k, false)).collect())
        .collect();
    assert_eq!(run_sink(&[("location", &loc(&path))], &frames), None);
    let table = read_table(&path);
    assert_eq!(table.header, expected_header());
    assert_eq!(table.rows.len(), 6);
    assert!(table.rows.iter().all(|r| r["success"] == "0"));
    check_csv_rows(&table, &frames, 0.5);
}

#[test]
fn changed_labels_are_an_error_naming_the_difference() {
    let dir = scratch_dir("sink-labels");
    let path = dir.join("faces.csv");
    let mut frames = test_video();
    // Frame 5's first face comes from a model without AU26 and with AU9.
    let mut other_aus = AU_LABELS[..11].to_vec();
    other_aus.push("AU9");
    frames[4][0].result = Some(test_result(99, &other_aus));
    let error = run_sink(&[("location", &loc(&path))], &frames).expect("an error");
    assert!(error.contains("AU26") && error.contains("AU9"), "{error}");
    assert!(error.contains("frame 5"), "{error}");
    // The rows before it are in the file.
    let table = read_table(&path);
    check_csv_rows(&table, &frames[..4], 0.5);
}

#[test]
fn flush_every_makes_rows_readable_before_eos() {
    init();
    let dir = scratch_dir("sink-flush");
    let path = dir.join("live.csv");
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time caps=video/x-raw,format=RGB,width=640,height=480 \
         ! affectsink location={} flush-every=1",
        loc(&path)
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let frames = test_video();
    for (i, faces) in frames.iter().take(2).enumerate() {
        src.push_buffer(make_buffer(i, faces)).unwrap();
    }
    // Header and 5 rows, without EOS.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut lines = 0;
    while Instant::now() < deadline {
        lines = std::fs::read_to_string(&path).map_or(0, |t| t.lines().count());
        if lines == 6 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(lines, 6);
    src.end_of_stream().unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(20), &[gst::MessageType::Eos])
        .expect("EOS");
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)));
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn timestamps_are_stream_time() {
    init();
    let dir = scratch_dir("sink-stream-time");
    let path = dir.join("faces.csv");
    let pipeline = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder()
        .format(gst::Format::Time)
        .handle_segment_change(true)
        .build();
    let sink = gst::ElementFactory::make("affectsink")
        .property("location", loc(&path))
        .build()
        .unwrap();
    pipeline.add_many([src.upcast_ref(), &sink]).unwrap();
    src.link(&sink).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    // A segment that starts at 10 s of PTS and at 100 s of stream time (a seek into a file
    // does this): stream time = PTS - 10 s + 100 s.
    let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
    segment.set_start(gst::ClockTime::from_seconds(10));
    segment.set_time(gst::ClockTime::from_seconds(100));
    let caps = gst::Caps::builder("video/x-raw").build();
    let pts_ns = [10_000_000_000u64, 10_040_000_000, 10_500_000_000];
    for &ns in &pts_ns {
        let mut buffer = make_buffer(0, &[test_face(0, 0, true)]);
        buffer
            .get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_nseconds(ns));
        let sample = gst::Sample::builder()
            .buffer(&buffer)
            .caps(&caps)
            .segment(&segment)
            .build();
        src.push_sample(&sample).unwrap();
    }
    src.end_of_stream().unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(20),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("EOS");
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
    pipeline.set_state(gst::State::Null).unwrap();
    let table = read_table(&path);
    let got: Vec<f64> = table
        .rows
        .iter()
        .map(|r| cell_f64(r, "timestamp"))
        .collect();
    assert_eq!(got.len(), 3);
    for (g, ns) in got.iter().zip(pts_ns) {
        assert_close(*g, ns as f64 / 1e9 - 10.0 + 100.0, "stream time");
    }
    let frames: Vec<&str> = table.rows.iter().map(|r| r["frame"].as_str()).collect();
    assert_eq!(frames, ["1", "2", "3"]);
}

/// Python's csv module, an independent reader, sees the same rectangular table.
const PY_CSV: &str = r#"
import csv, json, sys
with open(sys.argv[1], newline='') as f:
    rows = list(csv.reader(f))
print(json.dumps(rows))
"#;

#[test]
fn python_csv_reads_the_same_rectangular_table() {
    let dir = scratch_dir("sink-python");
    let path = dir.join("faces.csv");
    let mut frames = test_video();
    // Labels that need quoting.
    let mut odd = test_result(7, &AU_LABELS);
    odd.expression_labels[7] = "Other, \"mixed\"".into();
    odd.expression = Some(odd.expression_labels[7].clone());
    for faces in frames.iter_mut() {
        for f in faces.iter_mut() {
            f.result = f.result.as_ref().map(|_| odd.clone());
        }
    }
    let error = run_sink(
        &[("location", &loc(&path)), ("empty-frames", "true")],
        &frames,
    );
    assert_eq!(error, None);
    let out = run_python(PY_CSV, &[&loc(&path)]);
    let python: Vec<Vec<String>> = serde_json::from_str(&out).unwrap();
    let ours = parse_csv(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(python, ours);
    assert_eq!(python.len(), 1 + 11 + 1);
    assert!(python.iter().all(|r| r.len() == python[0].len()));
    assert!(python[0].contains(&"expr_Other, \"mixed\"".to_string()));
    let expression = python[0].iter().position(|c| c == "expression").unwrap();
    assert!(
        python[1..]
            .iter()
            .any(|r| r[expression] == "Other, \"mixed\"")
    );
}
