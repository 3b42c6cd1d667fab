// SPDX-License-Identifier: MPL-2.0
//! `affect analyze` as archives run it: truncated files are incomplete (never done), summaries
//! come from the rows written whatever the model's labels, failures say why on one line,
//! SIGTERM stops a batch cleanly with the requeue status, manifests are sharded with every
//! input analysed once under a stable id, and `affect merge` gathers the tables into one
//! Parquet file that pandas, pyarrow and polars read.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use affect_core::testutil::{run_python, scratch_dir};
use affect_synth::{self as synth, SynthConfig};
use support::{EXIT_REQUEUE, affect, files};

/// `n` synthetic clips of `seconds` (one face, 15 fps, 320x240), named `clip-<i>.mkv`.
fn clips(dir: &Path, n: usize, seconds: f32, seed: u64) -> Vec<PathBuf> {
    let world = dir.join(format!("world-{seed}"));
    synth::generate(&SynthConfig {
        out: world.clone(),
        videos: n,
        seconds,
        seed,
        faces_per_frame: 1,
        fps: 15,
        width: 320,
        height: 240,
        ..SynthConfig::default()
    })
    .unwrap();
    let clips = dir.join("clips");
    std::fs::create_dir_all(&clips).unwrap();
    (0..n)
        .map(|i| {
            let to = clips.join(format!("clip-{seed}-{i}.mkv"));
            std::fs::rename(world.join(format!("videos/synth-{i:03}.mkv")), &to).unwrap();
            to
        })
        .collect()
}

fn tables(out: &Path) -> Vec<String> {
    files(out)
        .into_iter()
        .filter(|n| n.ends_with(".csv") && !n.starts_with('.'))
        .collect()
}

fn partials(out: &Path) -> Vec<String> {
    files(out)
        .into_iter()
        .filter(|n| n.contains("partial"))
        .collect()
}

/// Rows of a CSV table with `success` 1, and the table's column index.
fn result_rows(path: &Path) -> (Vec<Vec<String>>, BTreeMap<String, usize>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: BTreeMap<String, usize> = lines
        .next()
        .unwrap()
        .split(',')
        .enumerate()
        .map(|(i, c)| (c.to_string(), i))
        .collect();
    let success = header["success"];
    let rows = lines
        .map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>())
        .filter(|r| r[success] == "1")
        .collect();
    (rows, header)
}

fn summary(out: &Path, table: &str) -> serde_json::Value {
    let path = out.join(table.replace(".csv", ".summary.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_truncated_clip_is_incomplete_with_both_durations_and_is_retried() {
    let dir = scratch_dir("archive-truncated");
    let good = clips(&dir, 1, 4.0, 21).remove(0);
    // The first half of a good file, as an interrupted copy leaves it.
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.join("clips/truncated.mkv");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let out = dir.join("out");
    let args = [
        "analyze",
        truncated.to_str().unwrap(),
        good.to_str().unwrap(),
        "--detector",
        "full-frame",
        "-o",
        out.to_str().unwrap(),
    ];
    for run in 0..2 {
        let output = affect(&args, &[]);
        assert_eq!(
            output.status.code(),
            Some(1),
            "an incomplete file fails the batch"
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .find(|l| l.starts_with("truncated.mkv"))
            .expect("a table line for the truncated clip");
        assert!(line.contains("INCOMPLETE"), "{line}");
        // Both durations: what was decoded (about half of 4 s) and what the container says.
        let numbers: Vec<f64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        assert!(
            numbers
                .windows(2)
                .any(|w| w[0] > 1.0 && w[0] < 3.5 && (w[1] - 4.0).abs() < 0.2),
            "decoded and container durations in {line:?}"
        );
        assert!(stdout.contains("1 incomplete"), "{stdout}");
        // Only the good clip is done; the truncated one keeps no outputs, so the next run
        // tries it again instead of skipping it.
        let done = tables(&out);
        assert_eq!(done.len(), 1, "{done:?}");
        assert!(done[0].starts_with("clip-21-0-"), "{done:?}");
        assert!(partials(&out).is_empty(), "{:?}", files(&out));
        assert!(!files(&out).iter().any(|f| f.starts_with("truncated-")));
        if run == 1 {
            assert!(
                stdout
                    .lines()
                    .any(|l| l.starts_with("skipped") && l.contains("clip-21-0"))
            );
            assert!(
                !stdout
                    .lines()
                    .any(|l| l.starts_with("skipped") && l.contains("truncated.mkv"))
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn summaries_come_from_the_rows_written_whatever_the_labels() {
    let dir = scratch_dir("archive-labels");
    let clip = clips(&dir, 1, 2.0, 22).remove(0);
    // The default model with other names for its expressions and AUs.
    let model = dir.join("relabelled.onnx");
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/affect-default.onnx");
    run_python(
        r#"
import sys, onnx
m = onnx.load(sys.argv[1])
for p in m.metadata_props:
    if p.key == 'affect.labels.expression':
        p.value = 'calm,irate,repelled,afraid,joyful,low,startled,else'
    if p.key == 'affect.labels.au':
        p.value = ','.join('unit%d' % i for i in range(12))
    if p.key == 'affect.model.name':
        p.value = 'relabelled'
onnx.save(m, sys.argv[2])
"#,
        &[default.to_str().unwrap(), model.to_str().unwrap()],
    );
    let out = dir.join("out");
    let output = affect(
        &[
            "analyze",
            clip.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--detector",
            "full-frame",
            "-o",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(output.status.success());
    let table = tables(&out).remove(0);
    let (rows, header) = result_rows(&out.join(&table));
    assert!(rows.len() >= 25, "{} result rows", rows.len());
    assert!(header.contains_key("expr_repelled") && header.contains_key("unit3_p"));
    let s = summary(&out, &table);
    assert_eq!(s["face_rows"].as_u64().unwrap() as usize, rows.len());
    let valence: Vec<f64> = rows
        .iter()
        .map(|r| r[header["valence"]].parse().unwrap())
        .collect();
    let mean = valence.iter().sum::<f64>() / valence.len() as f64;
    assert!((s["mean_valence"].as_f64().unwrap() - mean).abs() < 1e-9);
    // The dominant expression is the label written most often, in the model's labels.
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &rows {
        *counts.entry(r[header["expression"]].as_str()).or_default() += 1;
    }
    let top = counts.values().max().unwrap();
    let dominant = s["dominant_expression"].as_str().unwrap();
    assert_eq!(counts.get(dominant), Some(top), "{dominant} of {counts:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("1 videos, 0 images, {} face rows", rows.len())),
        "{stdout}"
    );
    assert_eq!(s["models"][0]["name"], "relabelled");
    assert_eq!(s["models"][0]["sha256"].as_str().unwrap().len(), 64);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_failed_file_is_one_line_with_the_reason_first() {
    let dir = scratch_dir("archive-reason");
    let clip = clips(&dir, 1, 1.0, 23).remove(0);
    // A P-Net is an ONNX file, but no face detector of a layout affectfacecrop knows.
    let pnet = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/mtcnn-pnet.onnx");
    let out = dir.join("out");
    let output = affect(
        &[
            "analyze",
            clip.to_str().unwrap(),
            "--detector",
            &format!("onnx:{}", pnet.display()),
            "-o",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("clip-23-0.mkv"))
        .expect("a table line");
    let reason = line
        .split("FAILED")
        .nth(1)
        .unwrap()
        .trim_start_matches([' ', '-'])
        .trim();
    assert!(
        reason.starts_with("Face detector") && reason.contains("no known face detector layout"),
        "the reason comes first: {reason:?}"
    );
    assert!(!stdout.contains(".rs("), "no source location: {stdout}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sigterm_discards_the_current_video_exits_for_requeue_and_a_rerun_completes() {
    let dir = scratch_dir("archive-sigterm");
    let inputs = clips(&dir, 3, 16.0, 24);
    let out = dir.join("out");
    let mut args: Vec<String> = vec!["analyze".into()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    args.extend(["--detector", "mtcnn", "-j", "1", "-o"].map(String::from));
    args.push(out.display().to_string());
    let mut child = Command::new(env!("CARGO_BIN_EXE_affect"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the first clip is done the second is being analysed: stop the batch then.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let started = Instant::now();
    loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "ended early: {seen}"
        );
        seen += &line;
        if line.starts_with("done") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300));
    }
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    let stopped_in = signalled.elapsed();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    println!("{seen}{rest}\n{stderr}");
    assert_eq!(status.code(), Some(EXIT_REQUEUE), "{stderr}");
    assert!(
        stopped_in < Duration::from_secs(5),
        "stopped in {stopped_in:?}"
    );
    assert!(
        stderr.contains("stopped by SIGTERM: 1 of 3 inputs done, 2 left"),
        "{stderr}"
    );
    assert!(rest.contains("discarded"), "{rest}");
    // Nothing half-written: one done clip, no partial file.
    assert_eq!(tables(&out).len(), 1, "{:?}", files(&out));
    assert!(partials(&out).is_empty(), "{:?}", files(&out));
    let first = tables(&out).remove(0);
    let first_mtime = std::fs::metadata(out.join(&first))
        .unwrap()
        .modified()
        .unwrap();

    // The requeued task runs the same command: the done clip is skipped, the rest done.
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let rerun = affect(&args, &[]);
    assert!(rerun.status.success());
    let done = tables(&out);
    assert_eq!(done.len(), 3, "{done:?}");
    assert_eq!(
        std::fs::metadata(out.join(&first))
            .unwrap()
            .modified()
            .unwrap(),
        first_mtime,
        "the done clip is not redone"
    );
    let text = String::from_utf8_lossy(&rerun.stdout);
    assert_eq!(text.lines().filter(|l| l.starts_with("skipped")).count(), 1);
    assert_eq!(text.lines().filter(|l| l.starts_with("done")).count(), 2);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn shards_of_a_manifest_analyse_every_input_once_under_stable_ids_and_merge_to_parquet() {
    let dir = scratch_dir("archive-shards");
    let mut inputs = clips(&dir, 4, 1.0, 25);
    // Two archives that both hold talk.mkv.
    for archive in ["a", "b"] {
        let to = dir.join(format!("archive-{archive}/talk.mkv"));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&inputs[0], &to).unwrap();
        inputs.push(to);
    }
    let manifest = dir.join("manifest.txt");
    let mut text = String::from("# the archive\n\n");
    for (i, p) in inputs.iter().enumerate() {
        // Paths relative to the manifest, absolute paths and file URIs alike.
        text += &match i % 3 {
            0 => p.strip_prefix(&dir).unwrap().display().to_string(),
            1 => p.display().to_string(),
            _ => format!("file://{}", p.display()),
        };
        text += "\n";
    }
    std::fs::write(&manifest, text).unwrap();
    let out = dir.join("out");
    let run = |shard: &str, envs: &[(&str, &str)]| {
        affect(
            &[
                "analyze",
                "--manifest",
                manifest.to_str().unwrap(),
                "--shard",
                shard,
                "--detector",
                "full-frame",
                "--format",
                if shard.starts_with('1') {
                    "jsonl"
                } else {
                    "csv"
                },
                "-o",
                out.to_str().unwrap(),
            ],
            envs,
        )
    };
    // Shard 0 by its index, shard 1 as a Slurm array task, shard 2 as a Kubernetes index.
    let outputs = [
        run("0/3", &[]),
        run("3", &[("SLURM_ARRAY_TASK_ID", "1")]),
        run("3", &[("JOB_COMPLETION_INDEX", "2")]),
    ];
    let mut per_shard = Vec::new();
    for (k, o) in outputs.iter().enumerate() {
        assert!(o.status.success(), "shard {k}");
        let text = String::from_utf8_lossy(&o.stdout);
        let n = text.lines().filter(|l| l.starts_with("done")).count();
        assert!(
            text.contains(&format!("shard {k}/3: {n} of the batch's 6 inputs")),
            "{text}"
        );
        per_shard.push(n);
    }
    assert_eq!(per_shard, vec![2, 2, 2]);
    let summaries: Vec<String> = files(&out)
        .into_iter()
        .filter(|n| n.ends_with(".summary.json"))
        .collect();
    assert_eq!(summaries.len(), 6, "every input once: {summaries:?}");
    let talks = summaries.iter().filter(|n| n.starts_with("talk-")).count();
    assert_eq!(talks, 2, "two talk.mkv, two ids: {summaries:?}");

    // Out of range and missing indices are refused, naming what to do.
    let bad = run("3", &[]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("SLURM_ARRAY_TASK_ID"));
    let bad = run("3", &[("JOB_COMPLETION_INDEX", "3")]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not below the shard count"));

    // The merged dataset: one row per face per frame of every table, read as users read it.
    let parquet = dir.join("dataset.parquet");
    let merged = affect(
        &[
            "merge",
            out.to_str().unwrap(),
            "--parquet",
            parquet.to_str().unwrap(),
        ],
        &[],
    );
    assert!(merged.status.success());
    let mut expected = 0usize;
    let mut per_video = BTreeMap::new();
    for s in &summaries {
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join(s)).unwrap()).unwrap();
        let table = out.join(summary["table"].as_str().unwrap());
        // Rows with a face, counted from the file itself.
        let text = std::fs::read_to_string(&table).unwrap();
        let rows = if table.extension().unwrap() == "csv" {
            let (rows, header) = result_rows(&table);
            assert!(rows.iter().all(|r| !r[header["face_id"]].is_empty()));
            rows.len()
        } else {
            text.lines()
                .filter(|l| !l.contains("\"face_id\":null"))
                .count()
        };
        expected += rows;
        per_video.insert(summary["id"].as_str().unwrap().to_string(), rows);
    }
    let read = run_python(
        r#"
import sys, json, pandas, pyarrow.parquet as pq, polars
path = sys.argv[1]
df = pandas.read_parquet(path)
pl = polars.read_parquet(path)
table = pq.read_table(path)
print(json.dumps({
    'rows': len(df), 'polars_rows': pl.height, 'arrow_rows': table.num_rows,
    'per_video': {k: int(v) for k, v in df.groupby('video_id').size().items()},
    'types': {c: str(t) for c, t in zip(table.schema.names, table.schema.types)},
    'models': sorted(df['model'].unique().tolist()),
    'sha': sorted(df['model_sha256'].unique().tolist()),
    'versions': sorted(df['software_version'].unique().tolist()),
    'valence_nan': int(df['valence'].isna().sum()),
    'frame_min': int(df['frame'].min()),
}))
"#,
        &[parquet.to_str().unwrap()],
    );
    let read: serde_json::Value =
        serde_json::from_str(read.lines().last().expect("python printed JSON")).unwrap();
    assert_eq!(read["rows"].as_u64().unwrap() as usize, expected);
    assert_eq!(read["polars_rows"], read["rows"]);
    assert_eq!(read["arrow_rows"], read["rows"]);
    for (id, rows) in &per_video {
        assert_eq!(
            read["per_video"][id].as_u64().unwrap() as usize,
            *rows,
            "{id}"
        );
    }
    let types = &read["types"];
    assert_eq!(types["frame"], "int64");
    assert_eq!(types["face_id"], "int64");
    assert_eq!(types["valence"], "double");
    assert_eq!(types["expression"], "string");
    assert_eq!(types["video_id"], "string");
    assert_eq!(types["AU12_c"], "int64");
    assert_eq!(read["models"], serde_json::json!(["affect-default"]));
    assert_eq!(read["sha"][0].as_str().unwrap().len(), 64);
    assert_eq!(
        read["versions"],
        serde_json::json!([env!("CARGO_PKG_VERSION")])
    );
    assert_eq!(read["valence_nan"], 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_manifest_may_name_http_uris() {
    let dir = scratch_dir("archive-http");
    let clip = clips(&dir, 1, 2.0, 26).remove(0);
    let mut server = Command::new(affect_core::testutil::python())
        .args([
            "-u",
            "-m",
            "http.server",
            "0",
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(clip.parent().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
    let port: u16 = line
        .split_whitespace()
        .skip_while(|w| *w != "port")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    let uri = format!(
        "http://127.0.0.1:{port}/{}",
        clip.file_name().unwrap().to_string_lossy()
    );
    let manifest = dir.join("manifest.txt");
    std::fs::write(&manifest, format!("{uri}\n")).unwrap();
    let out = dir.join("out");
    let output = affect(
        &[
            "analyze",
            "--manifest",
            manifest.to_str().unwrap(),
            "--detector",
            "full-frame",
            "-o",
            out.to_str().unwrap(),
        ],
        &[],
    );
    let _ = server.kill();
    let _ = server.wait();
    assert!(output.status.success());
    let done = tables(&out);
    assert_eq!(done.len(), 1);
    let id = affect_cli::archive::Source::Uri(uri.clone()).id();
    assert_eq!(done[0], format!("{id}.csv"));
    let s = summary(&out, &done[0]);
    assert_eq!(s["input"], uri);
    let (rows, _) = result_rows(&out.join(&done[0]));
    assert_eq!(rows.len(), s["face_rows"].as_u64().unwrap() as usize);
    assert!(rows.len() >= 25, "{} rows", rows.len());
    let _ = std::fs::remove_dir_all(dir);
}
