// SPDX-License-Identifier: MPL-2.0
//! `affect merge`: the per-video tables of `affect analyze` output folders gathered into one
//! Apache Parquet file, one row per face per frame, that pandas, pyarrow and polars read as
//! it is.
//!
//! Columns: `video_id`, `input`, `model` (the models' names joined by `+`, as the results
//! name them), `model_sha256` (the SHA-256 of each model file, joined by `+`) and
//! `software_version`, then every column of the tables with its type (`frame`, `face_id`,
//! `success` and the AU occurrences as 64-bit integers, `expression` as text, the rest as
//! doubles). Tables of models with other label sets add their own columns, null elsewhere.
//! Only videos that are done (their table committed) are merged; the file is written under a
//! temporary name and renamed when complete.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::{Compression, ConvertedType, LogicalType, Repetition, Type as Physical};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;

use crate::analyze::VideoSummary;
use crate::table::{Cell, Kind, Table, kind_of};

/// Options of `affect merge`.
#[derive(clap::Args)]
pub struct MergeOptions {
    /// Output folders of `affect analyze` (the folder the shards share, or one per shard).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// The Parquet file to write.
    #[arg(long, value_name = "FILE")]
    pub parquet: PathBuf,
}

/// Rows kept in memory before they are written as one row group.
const ROW_GROUP_ROWS: usize = 65_536;

/// The columns every row has, before those of the tables.
const VIDEO_COLUMNS: [&str; 5] = [
    "video_id",
    "input",
    "model",
    "model_sha256",
    "software_version",
];

/// A done video of an output folder.
struct Video {
    summary: VideoSummary,
    table: PathBuf,
    format: crate::pipeline::Format,
}

impl Video {
    fn read(&self) -> Result<Table, String> {
        Table::read(&self.table, self.format)
    }

    /// The values of the [`VIDEO_COLUMNS`].
    fn video_values(&self) -> [String; 5] {
        let s = &self.summary;
        let join = |f: fn(&crate::pipeline::ModelInfo) -> &str| {
            s.models.iter().map(f).collect::<Vec<_>>().join("+")
        };
        [
            s.id.clone(),
            s.input.clone(),
            join(|m| &m.name),
            join(|m| &m.sha256),
            s.software_version.clone(),
        ]
    }
}

/// The done videos of `dirs`, in name order, each once.
fn videos(dirs: &[PathBuf]) -> Result<(Vec<Video>, usize), String> {
    let mut videos = Vec::new();
    let mut seen = HashSet::new();
    let mut not_done = 0;
    for dir in dirs {
        let entries =
            fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".summary.json") && !n.starts_with('.'))
            .collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let text = fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let mut summary: VideoSummary = serde_json::from_str(&text)
                .map_err(|e| format!("{} is not a video summary: {e}", path.display()))?;
            let id = name.trim_end_matches(".summary.json").to_string();
            if summary.id.is_empty() {
                summary.id = id.clone();
            }
            let table = [
                summary.table.clone(),
                format!("{id}.csv"),
                format!("{id}.jsonl"),
            ]
            .into_iter()
            .filter(|t| !t.is_empty())
            .map(|t| dir.join(t))
            .find(|t| t.is_file());
            let Some(table) = table else {
                // The summary is committed before the table: a run stopped between the two.
                not_done += 1;
                continue;
            };
            let format = if table.extension().is_some_and(|e| e == "jsonl") {
                crate::pipeline::Format::Jsonl
            } else {
                crate::pipeline::Format::Csv
            };
            if !seen.insert(summary.id.clone()) {
                eprintln!(
                    "warning: {} is in more than one folder; merged once",
                    summary.id
                );
                continue;
            }
            videos.push(Video {
                summary,
                table,
                format,
            });
        }
    }
    Ok((videos, not_done))
}

/// One column's values of the rows not yet written, with their definition levels (1: a
/// value, 0: null).
enum Buffer {
    Int(Vec<i64>, Vec<i16>),
    Float(Vec<f64>, Vec<i16>),
    Text(Vec<ByteArray>, Vec<i16>),
}

impl Buffer {
    fn new(kind: Kind) -> Buffer {
        match kind {
            Kind::Int => Buffer::Int(Vec::new(), Vec::new()),
            Kind::Float => Buffer::Float(Vec::new(), Vec::new()),
            Kind::Text => Buffer::Text(Vec::new(), Vec::new()),
        }
    }

    fn push(&mut self, cell: &Cell) {
        match (self, cell) {
            (Buffer::Int(v, d), Cell::Int(x)) => {
                v.push(*x);
                d.push(1);
            }
            (Buffer::Float(v, d), c) if c.as_f64().is_some_and(f64::is_finite) => {
                v.push(c.as_f64().unwrap_or_default());
                d.push(1);
            }
            (Buffer::Text(v, d), Cell::Text(t)) => {
                v.push(ByteArray::from(t.as_str()));
                d.push(1);
            }
            (Buffer::Int(_, d) | Buffer::Float(_, d) | Buffer::Text(_, d), _) => d.push(0),
        }
    }

    fn clear(&mut self) {
        match self {
            Buffer::Int(v, d) => {
                v.clear();
                d.clear()
            }
            Buffer::Float(v, d) => {
                v.clear();
                d.clear()
            }
            Buffer::Text(v, d) => {
                v.clear();
                d.clear()
            }
        }
    }
}

fn field(name: &str, kind: Kind, repetition: Repetition) -> Result<Arc<Type>, String> {
    let builder = match kind {
        Kind::Int => Type::primitive_type_builder(name, Physical::INT64),
        Kind::Float => Type::primitive_type_builder(name, Physical::DOUBLE),
        Kind::Text => Type::primitive_type_builder(name, Physical::BYTE_ARRAY)
            .with_logical_type(Some(LogicalType::String))
            .with_converted_type(ConvertedType::UTF8),
    };
    builder
        .with_repetition(repetition)
        .build()
        .map(Arc::new)
        .map_err(|e| format!("column {name}: {e}"))
}

/// What [`merge`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merged {
    pub videos: usize,
    pub rows: usize,
    pub columns: usize,
    /// Summaries without their table (runs stopped between the two renames), left out.
    pub not_done: usize,
}

/// Merges the done videos of `dirs` into the Parquet file `out`.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Merged, String> {
    let (videos, not_done) = videos(dirs)?;
    if videos.is_empty() {
        return Err(format!(
            "no analysed video in {}: each done video has a <id>.summary.json and its table",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    // First pass: the union of the tables' columns, in the order they first appear.
    let mut columns: Vec<String> = Vec::new();
    let mut known: HashSet<String> = VIDEO_COLUMNS.iter().map(|c| c.to_string()).collect();
    for video in &videos {
        for c in video.read()?.columns {
            if known.insert(c.clone()) {
                columns.push(c);
            }
        }
    }
    let mut fields = Vec::new();
    for name in VIDEO_COLUMNS {
        fields.push(field(name, Kind::Text, Repetition::REQUIRED)?);
    }
    for name in &columns {
        fields.push(field(name, kind_of(name), Repetition::OPTIONAL)?);
    }
    let schema = Arc::new(
        Type::group_type_builder("affect")
            .with_fields(fields)
            .build()
            .map_err(|e| e.to_string())?,
    );
    let properties = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("affect {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(vec![KeyValue::new(
                "affect.software_version".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            )]))
            .build(),
    );
    let partial = out.with_file_name(format!(
        ".{}.partial",
        out.file_name().map_or("merged.parquet".into(), |n| n
            .to_string_lossy()
            .into_owned())
    ));
    let file = fs::File::create(&partial)
        .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    let result = (|| {
        let mut writer = SerializedFileWriter::new(file, schema, properties)
            .map_err(|e| format!("cannot write Parquet: {e}"))?;
        let mut fixed: Vec<Vec<ByteArray>> = vec![Vec::new(); VIDEO_COLUMNS.len()];
        let mut buffers: Vec<Buffer> = columns.iter().map(|c| Buffer::new(kind_of(c))).collect();
        let mut buffered = 0usize;
        let mut rows = 0usize;
        let mut flush = |fixed: &mut Vec<Vec<ByteArray>>,
                         buffers: &mut Vec<Buffer>,
                         buffered: &mut usize|
         -> Result<(), String> {
            if *buffered == 0 {
                return Ok(());
            }
            let error = |e: parquet::errors::ParquetError| format!("cannot write Parquet: {e}");
            let mut group = writer.next_row_group().map_err(error)?;
            for values in fixed.iter_mut() {
                let mut column = group.next_column().map_err(error)?.ok_or("schema ended")?;
                column
                    .typed::<ByteArrayType>()
                    .write_batch(values, None, None)
                    .map_err(error)?;
                column.close().map_err(error)?;
                values.clear();
            }
            for buffer in buffers.iter_mut() {
                let mut column = group.next_column().map_err(error)?.ok_or("schema ended")?;
                match buffer {
                    Buffer::Int(v, d) => column
                        .typed::<Int64Type>()
                        .write_batch(v, Some(d), None)
                        .map(|_| ()),
                    Buffer::Float(v, d) => column
                        .typed::<DoubleType>()
                        .write_batch(v, Some(d), None)
                        .map(|_| ()),
                    Buffer::Text(v, d) => column
                        .typed::<ByteArrayType>()
                        .write_batch(v, Some(d), None)
                        .map(|_| ()),
                }
                .map_err(error)?;
                column.close().map_err(error)?;
                buffer.clear();
            }
            group.close().map_err(error)?;
            *buffered = 0;
            Ok(())
        };
        for video in &videos {
            let table = video.read()?;
            let face = table.column("face_id");
            let positions: Vec<Option<usize>> = columns.iter().map(|c| table.column(c)).collect();
            let values = video.video_values();
            for row in &table.rows {
                // Rows of frames without any face are not face rows.
                if face.is_none_or(|k| row[k] == Cell::Null) {
                    continue;
                }
                for (k, v) in values.iter().enumerate() {
                    fixed[k].push(ByteArray::from(v.as_str()));
                }
                for (buffer, position) in buffers.iter_mut().zip(&positions) {
                    buffer.push(position.map_or(&Cell::Null, |p| &row[p]));
                }
                buffered += 1;
                rows += 1;
                if buffered >= ROW_GROUP_ROWS {
                    flush(&mut fixed, &mut buffers, &mut buffered)?;
                }
            }
        }
        flush(&mut fixed, &mut buffers, &mut buffered)?;
        writer
            .close()
            .map_err(|e| format!("cannot finish the Parquet file: {e}"))?;
        Ok(rows)
    })();
    let rows = match result {
        Ok(rows) => rows,
        Err(e) => {
            let _ = fs::remove_file(&partial);
            return Err(e);
        }
    };
    fs::rename(&partial, out).map_err(|e| {
        let _ = fs::remove_file(&partial);
        format!(
            "cannot rename {} to {}: {e}",
            partial.display(),
            out.display()
        )
    })?;
    Ok(Merged {
        videos: videos.len(),
        rows,
        columns: VIDEO_COLUMNS.len() + columns.len(),
        not_done,
    })
}

pub fn run(options: &MergeOptions) -> Result<(), String> {
    let merged = merge(&options.dirs, &options.parquet)?;
    println!(
        "merged {} videos: {} face rows, {} columns into {}",
        merged.videos,
        merged.rows,
        merged.columns,
        options.parquet.display()
    );
    if merged.not_done > 0 {
        println!(
            "left out {} videos whose summary has no table (not done: run affect analyze again)",
            merged.not_done
        );
    }
    Ok(())
}
