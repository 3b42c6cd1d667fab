// SPDX-License-Identifier: MPL-2.0
//! What the `affect` command's tests share: running the command and listing its outputs.

use std::path::Path;
use std::process::{Command, Output};

/// Exit status of a batch to be run again (`EX_TEMPFAIL`).
pub const EXIT_REQUEUE: i32 = 75;

/// Runs `affect ARGS` with the environment `envs` added, printing what it said.
pub fn affect(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_affect"))
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    println!(
        "$ affect {}\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Every file of `out`, by name (none when `out` does not exist).
pub fn files(out: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(out)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
