// SPDX-License-Identifier: MPL-2.0
//! The per-video tables `affectsink` writes (CSV or JSON lines), read back as typed columns:
//! the summary of a video is computed from the rows that were really written, whatever the
//! model's labels, and `affect merge` gathers them into one dataset.
//!
//! Both formats come out with the CSV's column names: the JSON lines' label arrays become
//! `expr_<label>`, `<AU>_p` and `<AU>_c` columns, the landmarks `lmk_x_i`/`lmk_y_i`.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use affect_core::labels::au_column;
use serde_json::Value;

use crate::pipeline::Format;

/// One value of a table.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
}

impl Cell {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Cell::Float(v) => Some(*v),
            Cell::Int(v) => Some(*v as f64),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Cell::Int(v) => Some(*v),
            _ => None,
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            Cell::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// The type of a column, known from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int,
    Float,
    Text,
}

/// The type of the column `name` of an `affectsink` table.
pub fn kind_of(name: &str) -> Kind {
    match name {
        "frame" | "face_id" | "success" => Kind::Int,
        "expression" | "model" => Kind::Text,
        _ if name.ends_with("_c") && !name.starts_with("expr_") => Kind::Int,
        _ => Kind::Float,
    }
}

/// A table: column names and rows of cells in that order.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Reads the table at `path`.
    pub fn read(path: &Path, format: Format) -> Result<Table, String> {
        match format {
            Format::Csv => read_csv(path),
            Format::Jsonl => read_jsonl(path),
        }
        .map_err(|e| format!("cannot read the table {}: {e}", path.display()))
    }
}

fn parse_cell(text: &str, kind: Kind) -> Result<Cell, String> {
    if text.is_empty() {
        return Ok(Cell::Null);
    }
    match kind {
        Kind::Int => text
            .parse()
            .map(Cell::Int)
            .map_err(|_| format!("{text:?} is not a whole number")),
        Kind::Float => text
            .parse()
            .map(Cell::Float)
            .map_err(|_| format!("{text:?} is not a number")),
        Kind::Text => Ok(Cell::Text(text.to_string())),
    }
}

fn read_csv(path: &Path) -> Result<Table, String> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| e.to_string())?;
    let columns: Vec<String> = reader
        .headers()
        .map_err(|e| e.to_string())?
        .iter()
        .map(str::to_string)
        .collect();
    let kinds: Vec<Kind> = columns.iter().map(|c| kind_of(c)).collect();
    let mut rows = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("row {}: {e}", n + 1))?;
        let row = record
            .iter()
            .zip(&kinds)
            .zip(&columns)
            .map(|((text, kind), name)| {
                parse_cell(text, *kind).map_err(|e| format!("row {} column {name}: {e}", n + 1))
            })
            .collect::<Result<Vec<_>, _>>()?;
        rows.push(row);
    }
    Ok(Table { columns, rows })
}

fn json_cell(value: &Value, kind: Kind) -> Cell {
    match (value, kind) {
        (Value::Null, _) => Cell::Null,
        (Value::Number(n), Kind::Int) => n.as_i64().map_or(Cell::Null, Cell::Int),
        (Value::Number(n), _) => n.as_f64().map_or(Cell::Null, Cell::Float),
        (Value::String(s), _) => Cell::Text(s.clone()),
        (Value::Bool(b), _) => Cell::Int(i64::from(*b)),
        _ => Cell::Null,
    }
}

fn labels(object: &serde_json::Map<String, Value>, key: &str) -> Vec<String> {
    object
        .get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|l| l.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn read_jsonl(path: &Path) -> Result<Table, String> {
    let text = fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut table = Table::default();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value =
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        let object = value
            .as_object()
            .ok_or_else(|| format!("line {} is not a JSON object", n + 1))?;
        let mut cells: Vec<(String, Cell)> = Vec::new();
        for (key, v) in object {
            match key.as_str() {
                "expression_labels" | "au_labels" => {}
                "expression_probs" => {
                    let names = labels(object, "expression_labels");
                    for (label, p) in names.iter().zip(v.as_array().into_iter().flatten()) {
                        cells.push((format!("expr_{label}"), json_cell(p, Kind::Float)));
                    }
                }
                "au_probs" | "au_occurrence" => {
                    let (suffix, kind) = if key == "au_probs" {
                        ("_p", Kind::Float)
                    } else {
                        ("_c", Kind::Int)
                    };
                    for (label, p) in labels(object, "au_labels")
                        .iter()
                        .zip(v.as_array().into_iter().flatten())
                    {
                        cells.push((format!("{}{suffix}", au_column(label)), json_cell(p, kind)));
                    }
                }
                "landmarks" => {
                    let points: Vec<&Value> = v.as_array().into_iter().flatten().collect();
                    for (axis, name) in ["lmk_x", "lmk_y"].iter().enumerate() {
                        for (i, p) in points.iter().enumerate() {
                            let c = p
                                .get(axis)
                                .map_or(Cell::Null, |c| json_cell(c, Kind::Float));
                            cells.push((format!("{name}_{i}"), c));
                        }
                    }
                }
                _ => cells.push((key.clone(), json_cell(v, kind_of(key)))),
            }
        }
        let mut row = vec![Cell::Null; table.columns.len()];
        for (name, cell) in cells {
            let k = *index.entry(name.clone()).or_insert_with(|| {
                table.columns.push(name);
                table.columns.len() - 1
            });
            if k >= row.len() {
                row.resize(k + 1, Cell::Null);
            }
            row[k] = cell;
        }
        table.rows.push(row);
    }
    let width = table.columns.len();
    for row in &mut table.rows {
        row.resize(width, Cell::Null);
    }
    Ok(table)
}

/// What the written rows say about a video.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RowStats {
    /// Rows of faces with results (`success` 1).
    pub face_rows: usize,
    pub tracks: usize,
    pub mean_valence: Option<f64>,
    pub mean_arousal: Option<f64>,
    /// The expression label written most often, in the model's own labels.
    pub dominant_expression: Option<String>,
    /// The same per track (person), in track order.
    pub per_track: Vec<TrackStats>,
}

/// What the written rows say about one track (a person, as long as the tracker kept them).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrackStats {
    /// The table's `face_id`.
    pub track: i64,
    /// Timestamps (seconds) of its first and last row.
    pub first: Option<f64>,
    pub last: Option<f64>,
    /// Rows of the track with results.
    pub frames: usize,
    pub mean_valence: Option<f64>,
    pub mean_arousal: Option<f64>,
    pub dominant_expression: Option<String>,
}

/// Means of valence and arousal and the most written expression of `rows`.
struct Aggregate {
    mean_valence: Option<f64>,
    mean_arousal: Option<f64>,
    dominant_expression: Option<String>,
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

impl Table {
    /// The statistics of the rows of faces with results.
    pub fn stats(&self) -> RowStats {
        let col = |name: &str| self.column(name);
        let (success, face, valence, arousal, expression) = (
            col("success"),
            col("face_id"),
            col("valence"),
            col("arousal"),
            col("expression"),
        );
        let with_result: Vec<&Vec<Cell>> = self
            .rows
            .iter()
            .filter(|r| success.and_then(|k| r[k].as_i64()) == Some(1))
            .collect();
        let aggregate = |rows: &[&Vec<Cell>]| {
            let values = |k: Option<usize>| {
                rows.iter()
                    .filter_map(move |r| k.and_then(|k| r[k].as_f64()))
                    .filter(|v| v.is_finite())
            };
            // Counted in the order labels first appear, so ties go to the earlier one.
            let mut counts: Vec<(String, usize)> = Vec::new();
            for label in rows
                .iter()
                .filter_map(|r| expression.and_then(|k| r[k].as_text()))
            {
                match counts.iter_mut().find(|(l, _)| l == label) {
                    Some((_, c)) => *c += 1,
                    None => counts.push((label.to_string(), 1)),
                }
            }
            let top = counts.iter().map(|(_, c)| *c).max().unwrap_or(0);
            Aggregate {
                mean_valence: mean(values(valence)),
                mean_arousal: mean(values(arousal)),
                dominant_expression: counts.into_iter().find(|(_, c)| *c == top).map(|(l, _)| l),
            }
        };
        let mut by_track: std::collections::BTreeMap<i64, Vec<&Vec<Cell>>> = Default::default();
        for row in &with_result {
            if let Some(id) = face.and_then(|k| row[k].as_i64()) {
                by_track.entry(id).or_default().push(row);
            }
        }
        let timestamp = col("timestamp");
        let per_track = by_track
            .iter()
            .map(|(&track, rows)| {
                let times: Vec<f64> = rows
                    .iter()
                    .filter_map(|r| timestamp.and_then(|k| r[k].as_f64()))
                    .collect();
                let a = aggregate(rows);
                TrackStats {
                    track,
                    first: times.iter().copied().reduce(f64::min),
                    last: times.iter().copied().reduce(f64::max),
                    frames: rows.len(),
                    mean_valence: a.mean_valence,
                    mean_arousal: a.mean_arousal,
                    dominant_expression: a.dominant_expression,
                }
            })
            .collect();
        let all = aggregate(&with_result);
        RowStats {
            face_rows: with_result.len(),
            tracks: by_track.len(),
            mean_valence: all.mean_valence,
            mean_arousal: all.mean_arousal,
            dominant_expression: all.dominant_expression,
            per_track,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use affect_core::testutil::scratch_dir;

    #[test]
    fn csv_and_jsonl_of_the_same_rows_read_alike() {
        let dir = scratch_dir("table-read");
        let csv = dir.join("t.csv");
        fs::write(
            &csv,
            "frame,face_id,timestamp,confidence,success,x,y,width,height,valence,arousal,expression,\
             expr_calm,\"expr_a,b\",AU01_p,AU01_c,lmk_x_0,lmk_y_0\n\
             0,,0,,0,,,,,,,,,,,,,\n\
             1,7,0.04,0.9,1,10,20,30,40,0.5,-0.25,calm,0.75,0.25,0.8,1,11,21\n\
             2,7,0.08,0.9,1,10,20,30,40,0.25,-0.5,\"a,b\",0.25,0.75,0.1,0,11,21\n\
             2,8,0.08,0.8,1,50,20,30,40,,,calm,0.6,0.4,,,,\n",
        )
        .unwrap();
        let jsonl = dir.join("t.jsonl");
        fs::write(
            &jsonl,
            "{\"frame\":0,\"face_id\":null,\"timestamp\":0,\"success\":0}\n\
             {\"frame\":1,\"face_id\":7,\"timestamp\":0.04,\"confidence\":0.9,\"success\":1,\"valence\":0.5,\"arousal\":-0.25,\"expression\":\"calm\",\"expression_labels\":[\"calm\",\"a,b\"],\"expression_probs\":[0.75,0.25],\"au_labels\":[\"AU1\"],\"au_probs\":[0.8],\"au_occurrence\":[1],\"landmarks\":[[11,21]]}\n\
             {\"frame\":2,\"face_id\":7,\"timestamp\":0.08,\"confidence\":0.9,\"success\":1,\"valence\":0.25,\"arousal\":-0.5,\"expression\":\"a,b\",\"expression_labels\":[\"calm\",\"a,b\"],\"expression_probs\":[0.25,0.75],\"au_labels\":[\"AU1\"],\"au_probs\":[0.1],\"au_occurrence\":[0]}\n\
             {\"frame\":2,\"face_id\":8,\"timestamp\":0.08,\"confidence\":0.8,\"success\":1,\"expression\":\"calm\",\"expression_labels\":[\"calm\",\"a,b\"],\"expression_probs\":[0.6,0.4]}\n",
        )
        .unwrap();
        let a = Table::read(&csv, Format::Csv).unwrap();
        let b = Table::read(&jsonl, Format::Jsonl).unwrap();
        for t in [&a, &b] {
            assert_eq!(t.rows.len(), 4);
            let stats = t.stats();
            assert_eq!(stats.face_rows, 3);
            assert_eq!(stats.tracks, 2);
            assert_eq!(stats.mean_valence, Some(0.375));
            assert_eq!(stats.mean_arousal, Some(-0.375));
            assert_eq!(stats.dominant_expression.as_deref(), Some("calm"));
            // Per person: track 7's two rows (a tie of labels goes to the first written),
            // track 8's one row without valence.
            assert_eq!(
                stats.per_track,
                vec![
                    TrackStats {
                        track: 7,
                        first: Some(0.04),
                        last: Some(0.08),
                        frames: 2,
                        mean_valence: Some(0.375),
                        mean_arousal: Some(-0.375),
                        dominant_expression: Some("calm".into()),
                    },
                    TrackStats {
                        track: 8,
                        first: Some(0.08),
                        last: Some(0.08),
                        frames: 1,
                        mean_valence: None,
                        mean_arousal: None,
                        dominant_expression: Some("calm".into()),
                    },
                ]
            );
            let k = t.column("expr_a,b").unwrap();
            assert_eq!(t.rows[2][k], Cell::Float(0.75));
            let c = t.column("AU01_c").unwrap();
            assert_eq!(t.rows[1][c], Cell::Int(1));
            assert_eq!(t.rows[3][c], Cell::Null);
            let l = t.column("lmk_y_0").unwrap();
            assert_eq!(t.rows[1][l], Cell::Float(21.0));
        }
        fs::write(&csv, "frame,face_id,success\n1,x,1\n").unwrap();
        let e = Table::read(&csv, Format::Csv).unwrap_err();
        assert!(e.contains("row 1 column face_id"), "{e}");
    }
}
