// SPDX-License-Identifier: MPL-2.0
//! `affect bench` runs every benchmark and reports each against its baseline.

use std::process::Command;

#[test]
fn bench_reports_every_element_against_its_baseline() {
    let out = Command::new(env!("CARGO_BIN_EXE_affect"))
        .arg("bench")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    for section in [
        "log-mel spectrogram",
        "face crops",
        "affectoverlay",
        "affectsink",
        "affectinfer vs the bare shared ONNX Runtime session",
        "live end-to-end latency",
    ] {
        assert!(stdout.contains(section), "the bench reports {section}");
    }
    assert!(stdout.matches("(baseline)").count() >= 4);
    assert_eq!(stdout.matches("element/bare").count(), 3);
}

#[test]
fn archive_bench_reports_analyze_and_shards_against_gst_launch_per_clip() {
    let out = Command::new(env!("CARGO_BIN_EXE_affect"))
        .args(["bench", "--archive", "--clips", "2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    for row in [
        "gst-launch-1.0, a process per clip (baseline)",
        "affect analyze --jobs 1",
        "affect analyze --jobs 2",
        "two shards side by side",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.contains(row))
            .unwrap_or_else(|| panic!("no {row} row in {stdout}"));
        let rate: f64 = line
            .split_whitespace()
            .zip(line.split_whitespace().skip(1))
            .find(|(_, unit)| *unit == "clips/s")
            .map(|(v, _)| v.parse().unwrap())
            .unwrap();
        assert!(rate > 0.0 && rate.is_finite(), "{line}");
    }
}
