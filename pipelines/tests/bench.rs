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
