// SPDX-License-Identifier: MPL-2.0
//! The inputs of a batch as archives name them: files, folders, manifests of paths and URIs,
//! the stable id each input's outputs are keyed by, and the shard of a job array.
//!
//! - A **manifest** holds one path or URI per line; blank lines and lines starting with `#`
//!   are skipped, relative paths are taken from the manifest's folder, `file://` URIs are
//!   files, and other URIs (`http://`, `rtsp://`, ...) are read by GStreamer's `urisourcebin`.
//! - The **id** of an input is `<stem>-<10 hex digits>`, the hash being SHA-256 of the input's
//!   absolute, symlink-free path (or of its URI). Two archives that both hold `talk.mp4` give
//!   two ids, and every machine that mounts the archive at the same place computes the same
//!   ones, so the shards of a job array never write over each other.
//! - **Shard** `K/N` takes the inputs at positions `K, K+N, K+2N, ...` of the batch's order
//!   (the manifest's order, folders walked in name order, repeats dropped): every input is in
//!   exactly one shard whatever `N`, and appending to a manifest moves no input to another
//!   shard.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// Extensions of the videos taken from folders (files named on the command line or in a
/// manifest are taken whatever their name).
pub const VIDEO_EXTENSIONS: &[&str] = &[
    "mkv", "mp4", "m4v", "mov", "webm", "avi", "mpg", "mpeg", "ts", "mts", "flv", "wmv", "ogv",
    "3gp",
];

/// Photographs taken from folders: each is analysed as a one-frame video, one row per face.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png"];

/// Where a video comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    File(PathBuf),
    /// A URI of a scheme other than `file`, read by `urisourcebin`.
    Uri(String),
}

impl Source {
    /// A manifest line or command-line argument: a URI when it starts with `scheme://`
    /// (`file://` URIs become files), else a path.
    pub fn parse(text: &str) -> Result<Source, String> {
        match uri_scheme(text) {
            Some(scheme) if scheme.eq_ignore_ascii_case("file") => {
                gst::glib::filename_from_uri(text)
                    .map(|(path, _)| Source::File(path))
                    .map_err(|e| format!("{text:?} is not a file URI GStreamer can read: {e}"))
            }
            Some(_) => Ok(Source::Uri(text.to_string())),
            None => Ok(Source::File(PathBuf::from(text))),
        }
    }

    /// The file name's stem, for the id and the summary table.
    pub fn stem(&self) -> String {
        let name = match self {
            Source::File(p) => p.file_stem().map(|s| s.to_string_lossy().into_owned()),
            Source::Uri(u) => u
                .split(['?', '#'])
                .next()
                .and_then(|u| u.rsplit('/').find(|s| !s.is_empty()))
                .map(|s| s.rsplit_once('.').map_or(s, |(stem, _)| stem).to_string()),
        };
        name.filter(|s| !s.is_empty())
            .unwrap_or_else(|| "video".into())
    }

    /// The file name (or the last part of a URI's path), for the summary table.
    pub fn file_name(&self) -> String {
        match self {
            Source::File(p) => p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            Source::Uri(u) => u
                .split(['?', '#'])
                .next()
                .and_then(|u| u.rsplit('/').find(|s| !s.is_empty()))
                .unwrap_or(u)
                .to_string(),
        }
    }

    /// What the id hashes: the absolute, symlink-free path, or the URI as written.
    fn identity(&self) -> String {
        match self {
            Source::File(p) => fs::canonicalize(p)
                .or_else(|_| std::path::absolute(p))
                .unwrap_or_else(|_| p.clone())
                .to_string_lossy()
                .into_owned(),
            Source::Uri(u) => u.clone(),
        }
    }

    /// The stable id the outputs of this input are named by.
    pub fn id(&self) -> String {
        let digest = Sha256::digest(self.identity().as_bytes());
        let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
        let stem: String = self
            .stem()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        format!("{stem}-{hex}")
    }

    /// Whether the name says it is a photograph.
    pub fn is_image(&self) -> bool {
        match self {
            Source::File(p) => has_extension(p, IMAGE_EXTENSIONS),
            Source::Uri(u) => {
                has_extension(Path::new(&self.file_name()), IMAGE_EXTENSIONS) && !u.is_empty()
            }
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Uri(u) => write!(f, "{u}"),
        }
    }
}

impl From<PathBuf> for Source {
    fn from(path: PathBuf) -> Source {
        Source::File(path)
    }
}

/// `scheme` of `scheme://...` (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`).
fn uri_scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.contains(&e.to_ascii_lowercase().as_str()))
}

/// Whether `path` names a photograph (by its extension).
pub fn is_image(path: &Path) -> bool {
    has_extension(path, IMAGE_EXTENSIONS)
}

fn walk(dir: &Path, found: &mut Vec<Source>) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            walk(&path, found)?;
        } else if has_extension(&path, VIDEO_EXTENSIONS) || is_image(&path) {
            found.push(Source::File(path));
        }
    }
    Ok(())
}

/// The entries of a manifest file, in its order.
pub fn read_manifest(path: &Path) -> Result<Vec<Source>, String> {
    let text = fs::read_to_string(path)
        .map_err(|e| format!("cannot read the manifest {}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let source = Source::parse(line)
            .map_err(|e| format!("manifest {} line {}: {e}", path.display(), n + 1))?;
        entries.push(match source {
            Source::File(p) if p.is_relative() => Source::File(base.join(p)),
            other => other,
        });
    }
    Ok(entries)
}

/// One input of the batch and the id its outputs are named by.
#[derive(Clone, Debug)]
pub struct Task {
    pub input: Source,
    pub id: String,
}

/// The batch: the inputs (folders walked) in a stable order, each once, with their ids.
pub fn collect(inputs: &[Source]) -> Result<Vec<Task>, String> {
    let mut sources = Vec::new();
    for input in inputs {
        match input {
            Source::File(p) if p.is_dir() => walk(p, &mut sources)?,
            // A missing or unreadable file is reported by its own task, not here, so the
            // rest of the batch still runs.
            other => sources.push(other.clone()),
        }
    }
    let mut seen = HashSet::new();
    let mut tasks = Vec::new();
    for input in sources {
        let id = input.id();
        if seen.insert(id.clone()) {
            tasks.push(Task { input, id });
        }
    }
    Ok(tasks)
}

/// `--shard K/N`, or `--shard N` with `K` from the job array's environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardSpec {
    pub index: Option<usize>,
    pub count: usize,
}

impl FromStr for ShardSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<ShardSpec, String> {
        let number = |t: &str, what: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| format!("--shard {s:?}: {what} {t:?} is not a whole number"))
        };
        let (index, count) = match s.split_once('/') {
            Some((k, n)) if k.trim().is_empty() => (None, number(n, "the shard count")?),
            Some((k, n)) => (
                Some(number(k, "the shard index")?),
                number(n, "the shard count")?,
            ),
            None => (None, number(s, "the shard count")?),
        };
        if count == 0 {
            return Err(format!("--shard {s:?}: the shard count must be at least 1"));
        }
        if let Some(k) = index
            && k >= count
        {
            return Err(format!(
                "--shard {s:?}: shards are numbered 0 to {}, so {k} is out of range",
                count - 1
            ));
        }
        Ok(ShardSpec { index, count })
    }
}

/// The variables job arrays give each task its index in: Slurm's, then Kubernetes'.
pub const SHARD_INDEX_VARIABLES: &[&str] = &["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"];

/// A resolved shard: this process takes the inputs at positions `index + k * count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl ShardSpec {
    /// Fills a missing index from `env` (a lookup of environment variables).
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Result<Shard, String> {
        let index = match self.index {
            Some(k) => k,
            None => {
                let (var, value) = SHARD_INDEX_VARIABLES
                    .iter()
                    .find_map(|v| env(v).map(|value| (*v, value)))
                    .ok_or_else(|| {
                        format!(
                            "--shard {} needs the shard index: write --shard K/{}, or run as a \
                             task of a Slurm job array (SLURM_ARRAY_TASK_ID) or of a Kubernetes \
                             Indexed Job (JOB_COMPLETION_INDEX)",
                            self.count, self.count
                        )
                    })?;
                value
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| format!("{var}={value:?} is not a shard index (a whole number)"))?
            }
        };
        if index >= self.count {
            return Err(format!(
                "shard index {index} is not below the shard count {}: a job array of {} \
                 shards has indices 0 to {}",
                self.count,
                self.count,
                self.count - 1
            ));
        }
        Ok(Shard {
            index,
            count: self.count,
        })
    }
}

impl Shard {
    /// The tasks of this shard, in the batch's order.
    pub fn select(&self, tasks: Vec<Task>) -> Vec<Task> {
        tasks
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % self.count == self.index)
            .map(|(_, t)| t)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn tasks(n: usize) -> Vec<Task> {
        (0..n)
            .map(|i| {
                let input = Source::File(PathBuf::from(format!("/archive/{i}/talk.mp4")));
                Task {
                    id: input.id(),
                    input,
                }
            })
            .collect()
    }

    #[test]
    fn every_input_is_in_exactly_one_shard_whatever_the_count() {
        for n_tasks in [0, 1, 7, 100] {
            for count in [1, 2, 3, 8, 101] {
                let mut seen: HashMap<String, usize> = HashMap::new();
                for index in 0..count {
                    for t in (Shard { index, count }).select(tasks(n_tasks)) {
                        *seen.entry(t.id).or_default() += 1;
                    }
                }
                assert_eq!(seen.len(), n_tasks, "{n_tasks} inputs in {count} shards");
                assert!(seen.values().all(|&c| c == 1));
            }
        }
    }

    #[test]
    fn appending_to_the_manifest_moves_no_input() {
        let shard = Shard { index: 1, count: 3 };
        let before: Vec<String> = shard.select(tasks(10)).into_iter().map(|t| t.id).collect();
        let after: Vec<String> = shard.select(tasks(20)).into_iter().map(|t| t.id).collect();
        assert_eq!(&after[..before.len()], &before[..]);
    }

    #[test]
    fn same_file_name_in_two_archives_gets_two_ids() {
        let a = Source::File("/archive-a/talk.mp4".into()).id();
        let b = Source::File("/archive-b/talk.mp4".into()).id();
        assert_ne!(a, b);
        assert!(
            a.starts_with("talk-") && a.len() == "talk-".len() + 10,
            "{a}"
        );
        // The same input always gives the same id.
        assert_eq!(a, Source::File("/archive-a/talk.mp4".into()).id());
        let odd = Source::File("/x/a talk: ä?.mp4".into()).id();
        assert!(odd.starts_with("a_talk____-"), "{odd}");
    }

    #[test]
    fn shard_specs_parse_and_resolve() {
        assert_eq!(
            "2/5".parse::<ShardSpec>().unwrap(),
            ShardSpec {
                index: Some(2),
                count: 5
            }
        );
        assert_eq!(
            "5".parse::<ShardSpec>().unwrap(),
            ShardSpec {
                index: None,
                count: 5
            }
        );
        for bad in ["5/5", "0/0", "x/3", "1/y", "", "-1/3"] {
            assert!(bad.parse::<ShardSpec>().is_err(), "{bad:?} parsed");
        }
        let spec: ShardSpec = "4".parse().unwrap();
        let slurm = |v: &str| (v == "SLURM_ARRAY_TASK_ID").then(|| "3".to_string());
        assert_eq!(spec.resolve(slurm).unwrap(), Shard { index: 3, count: 4 });
        let k8s = |v: &str| (v == "JOB_COMPLETION_INDEX").then(|| "1".to_string());
        assert_eq!(spec.resolve(k8s).unwrap(), Shard { index: 1, count: 4 });
        let none = |_: &str| None;
        let e = spec.resolve(none).unwrap_err();
        assert!(
            e.contains("SLURM_ARRAY_TASK_ID") && e.contains("JOB_COMPLETION_INDEX"),
            "{e}"
        );
        let too_big = |_: &str| Some("4".to_string());
        assert!(spec.resolve(too_big).unwrap_err().contains("0 to 3"));
        let junk = |_: &str| Some("one".to_string());
        assert!(spec.resolve(junk).is_err());
    }

    #[test]
    fn manifests_take_paths_and_uris() {
        let dir = affect_core::testutil::scratch_dir("manifest-parse");
        let manifest = dir.join("list.txt");
        fs::write(
            &manifest,
            "# archive of 2026\n\nclips/a.mp4\n  /abs/b.mkv  \nfile:///abs/c%20d.mp4\nhttp://host/v/e.webm?x=1\n",
        )
        .unwrap();
        let entries = read_manifest(&manifest).unwrap();
        assert_eq!(
            entries,
            vec![
                Source::File(dir.join("clips/a.mp4")),
                Source::File("/abs/b.mkv".into()),
                Source::File("/abs/c d.mp4".into()),
                Source::Uri("http://host/v/e.webm?x=1".into()),
            ]
        );
        assert_eq!(entries[3].stem(), "e");
        assert_eq!(entries[3].file_name(), "e.webm");
        let e = read_manifest(&dir.join("none.txt")).unwrap_err();
        assert!(e.contains("cannot read the manifest"), "{e}");
    }
}
