// SPDX-License-Identifier: MPL-2.0
//! The Slurm job array on a real Slurm: Debian's slurmctld, slurmd and munge started on this
//! machine as a one-node cluster (`pipelines/slurm/local-cluster.sh`, on free ports, its state
//! in a scratch folder), `pipelines/slurm/analyze.sbatch` submitted over a manifest of
//! synthetic clips in 3 shards, one task stopped with SIGTERM in the middle of a clip. The
//! stopped task requeues itself and finishes; every clip is analysed exactly once, nothing
//! partial is left, and the merged Parquet file has the rows of every table.
//!
//! Needs root (the daemons run as root) and the packages `./setup.sh` installs.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use affect_core::testutil::{run_python, scratch_dir};
use affect_synth::{self as synth, SynthConfig};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The one-node cluster, stopped when dropped.
struct Cluster {
    state: PathBuf,
    ports: [(&'static str, String); 2],
}

impl Cluster {
    fn script(&self, command: &str) -> Output {
        Command::new(repo().join("pipelines/slurm/local-cluster.sh"))
            .arg(command)
            .arg(&self.state)
            .envs(self.ports.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap()
    }

    fn start(state: PathBuf) -> Cluster {
        let cluster = Cluster {
            state,
            ports: [
                ("SLURMCTLD_PORT", free_port().to_string()),
                ("SLURMD_PORT", free_port().to_string()),
            ],
        };
        let output = cluster.script("start");
        assert!(
            output.status.success(),
            "the one-node Slurm does not start (root and ./setup.sh's slurmctld, slurmd and \
             munge are needed):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        cluster
    }

    /// A Slurm client command talking to this cluster.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", self.state.join("slurm.conf"));
        c
    }

    fn run(&self, program: &str, args: &[&str]) -> String {
        let output = self.command(program).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.script("stop");
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn a_job_array_analyses_every_clip_once_and_a_sigtermed_task_requeues_and_completes() {
    let dir = scratch_dir("slurm-array");
    let cluster = Cluster::start(dir.join("slurm"));

    // 9 clips, 3 per shard, long enough (300 frames) that a task is mid-clip when stopped.
    let clips = 9;
    synth::generate(&SynthConfig {
        out: dir.join("world"),
        videos: clips,
        seconds: 20.0,
        seed: 41,
        faces_per_frame: 1,
        fps: 15,
        width: 320,
        height: 240,
        ..SynthConfig::default()
    })
    .unwrap();
    let videos: Vec<PathBuf> = (0..clips)
        .map(|i| dir.join(format!("world/videos/synth-{i:03}.mkv")))
        .collect();
    let manifest = dir.join("manifest.txt");
    std::fs::write(
        &manifest,
        videos
            .iter()
            .map(|v| format!("{}\n", v.display()))
            .collect::<String>(),
    )
    .unwrap();
    let out = dir.join("out");
    let submitted = cluster
        .command("sbatch")
        .current_dir(&dir)
        .args(["--parsable", "--array=0-2", "--export=ALL"])
        .arg(repo().join("pipelines/slurm/analyze.sbatch"))
        .env("MANIFEST", &manifest)
        .env("OUT", &out)
        .env("SHARDS", "3")
        .env("AFFECT", env!("CARGO_BIN_EXE_affect"))
        .env("AFFECT_ARGS", "--detector full-frame")
        .output()
        .unwrap();
    assert!(
        submitted.status.success(),
        "sbatch: {}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    let job = String::from_utf8_lossy(&submitted.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let log = |k: usize| dir.join(format!("affect-analyze-{job}_{k}.log"));

    // Stop a task once it has finished its first clip: it is then in the middle of the next.
    let started = Instant::now();
    let stopped = loop {
        if let Some(k) = (0..3).find(|&k| read(&log(k)).lines().any(|l| l.starts_with("done "))) {
            break k;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "no task finished a clip: {}",
            cluster.run("squeue", &[])
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    cluster.run(
        "scancel",
        &["--batch", "--signal=TERM", &format!("{job}_{stopped}")],
    );

    // Wait for the whole array, the requeued task included.
    loop {
        let queue = cluster.run("squeue", &["-h", "-j", &job, "-o", "%i %T"]);
        if queue.trim().is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(420),
            "the array did not finish: {queue}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for k in 0..3 {
        let show = cluster.run("scontrol", &["show", "job", &format!("{job}_{k}")]);
        println!("== task {k}\n{show}\n{}", read(&log(k)));
        assert!(show.contains("JobState=COMPLETED"), "task {k}: {show}");
        assert!(show.contains("ExitCode=0:0"), "task {k}: {show}");
    }

    // The stopped task: affect exited for requeue, the task ran again and finished.
    let stopped_log = read(&log(stopped));
    assert!(
        stopped_log.contains("affect exited with status 75"),
        "{stopped_log}"
    );
    assert!(stopped_log.contains("requeueing task"), "{stopped_log}");
    // The signal may find a clip just finishing (it is kept) or halfway (it is discarded):
    // either way some were left, or affect would not have asked for the requeue.
    assert!(
        stopped_log.contains("stopped by SIGTERM: ") && stopped_log.contains(" left; run the same"),
        "{stopped_log}"
    );
    assert!(stopped_log.contains(", run 2: "), "{stopped_log}");
    assert!(
        stopped_log.contains("affect exited with status 0"),
        "{stopped_log}"
    );

    // Every clip analysed to the end exactly once over all runs of all tasks; nothing partial.
    let logs: String = (0..3).map(|k| read(&log(k))).collect();
    for video in &videos {
        let done = logs
            .lines()
            .filter(|l| l.starts_with("done ") && l.contains(&video.display().to_string()))
            .count();
        assert_eq!(done, 1, "{} analysed {done} times", video.display());
    }
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.contains("partial")),
        "partial files left: {names:?}"
    );
    let tables: Vec<&String> = names.iter().filter(|n| n.ends_with(".csv")).collect();
    assert_eq!(tables.len(), clips, "{names:?}");

    // The merged dataset holds every table's face rows.
    let face_rows: usize = tables
        .iter()
        .map(|t| {
            read(&out.join(t))
                .lines()
                .skip(1)
                .filter(|l| !l.split(',').nth(1).unwrap_or_default().is_empty())
                .count()
        })
        .sum();
    assert!(face_rows >= clips * 250, "{face_rows} face rows");
    let parquet = dir.join("archive.parquet");
    let merged = Command::new(env!("CARGO_BIN_EXE_affect"))
        .args(["merge"])
        .arg(&out)
        .arg("--parquet")
        .arg(&parquet)
        .output()
        .unwrap();
    assert!(merged.status.success());
    let counted = run_python(
        "import sys, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); \
         print(t.num_rows, len(set(t.column('video_id').to_pylist())))",
        &[parquet.to_str().unwrap()],
    );
    assert_eq!(counted.trim(), format!("{face_rows} {clips}"));
    drop(cluster);
    let _ = std::fs::remove_dir_all(dir);
}
