// SPDX-License-Identifier: MPL-2.0
//! The Kubernetes Indexed Job as far as one machine can check it: the manifest checked as the
//! API server would (offline, with the Kubernetes JSON schema when kubernetes-validate is
//! installed), then every index's container command run here with `JOB_COMPLETION_INDEX` set,
//! `/data` mapped to a scratch folder.

use std::path::{Path, PathBuf};
use std::process::Command;

use affect_core::testutil::{python, scratch_dir};
use affect_synth::{self as synth, SynthConfig};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn check(manifest: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(python())
        .arg(repo().join("pipelines/kubernetes/check_manifest.py"))
        .arg(manifest)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn every_index_of_the_job_runs_its_shard_and_together_they_cover_the_manifest() {
    let dir = scratch_dir("k8s-indexed-job");
    let data = dir.join("data");
    synth::generate(&SynthConfig {
        out: dir.join("world"),
        videos: 5,
        seconds: 1.0,
        seed: 31,
        faces_per_frame: 1,
        fps: 15,
        width: 320,
        height: 240,
        ..SynthConfig::default()
    })
    .unwrap();
    std::fs::create_dir_all(&data).unwrap();
    let manifest: String = (0..5)
        .map(|i| {
            format!(
                "{}\n",
                dir.join(format!("world/videos/synth-{i:03}.mkv")).display()
            )
        })
        .collect();
    std::fs::write(data.join("manifest.txt"), manifest).unwrap();

    let job = repo().join("pipelines/kubernetes/analyze-job.yaml");
    let output = check(
        &job,
        &[
            "--program",
            env!("CARGO_BIN_EXE_affect"),
            "--map",
            &format!("/data={}", data.display()),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the manifest is refused: {stderr}");
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let completions = plan["completions"].as_u64().unwrap() as usize;
    let commands = plan["commands"].as_array().unwrap();
    assert_eq!(commands.len(), completions);
    assert!(completions >= 2);

    for (index, command) in commands.iter().enumerate() {
        let argv: Vec<&str> = command
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(
            argv.windows(2)
                .any(|w| w[0] == "--shard" && w[1] == format!("{index}/{completions}")),
            "{argv:?}"
        );
        let out = Command::new(argv[0])
            .args(&argv[1..])
            .env("JOB_COMPLETION_INDEX", index.to_string())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!(
            "index {index}: {argv:?}\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "index {index}");
        assert!(stdout.contains(&format!("shard {index}/{completions}: ")));
    }
    // Every input once, whatever the index that took it.
    let summaries: Vec<String> = std::fs::read_dir(data.join("out"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".summary.json"))
        .collect();
    assert_eq!(summaries.len(), 5, "{summaries:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_manifest_that_breaks_the_shard_contract_is_refused() {
    let dir = scratch_dir("k8s-broken");
    let text =
        std::fs::read_to_string(repo().join("pipelines/kubernetes/analyze-job.yaml")).unwrap();
    for (what, from, to, needle) in [
        (
            "N of --shard",
            "$(JOB_COMPLETION_INDEX)/3",
            "$(JOB_COMPLETION_INDEX)/4",
            "N is 4 but completions is 3",
        ),
        (
            "requeue status",
            "values: [75]",
            "values: [76]",
            "exit status 75 (stopped by SIGTERM) must be Ignore",
        ),
        (
            "restart policy",
            "restartPolicy: Never",
            "restartPolicy: OnFailure",
            "must be Never with a podFailurePolicy",
        ),
        (
            "volume",
            "- name: data\n          persistentVolumeClaim",
            "- name: other\n          persistentVolumeClaim",
            "'data' is none of the volumes",
        ),
    ] {
        assert!(text.contains(from), "{what}: the manifest has no {from:?}");
        let broken = dir.join("job.yaml");
        std::fs::write(&broken, text.replacen(from, to, 1)).unwrap();
        let output = check(&broken, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{what} accepted");
        assert!(stderr.contains(needle), "{what}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
