// SPDX-License-Identifier: MPL-2.0
//! A generic CSV manifest for data sets not laid out as Aff-Wild2.
//!
//! The first line names the columns; `path` is required, the others optional and in any
//! order: `valence`, `arousal`, `expression` (class index or name, e.g. `Happiness`) and AU
//! columns (`AU1`, `AU01`, ... any of the 12). Empty cells, -5 (valence/arousal) and -1
//! (expression, AU) mean "not annotated"; a frame's AUs count only if every AU column of the
//! manifest is annotated. Relative paths are resolved against the manifest's folder. Fields
//! are plain comma-separated values (no quoting).

use std::path::{Path, PathBuf};

use affect_core::labels::{N_AUS, N_EXPRESSIONS, au_index, expression_index};

use super::{DataError, Labels};

/// One row of a manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct ManifestSample {
    pub path: PathBuf,
    pub labels: Labels,
}

fn parse_error(path: &Path, line: usize, message: impl Into<String>) -> DataError {
    DataError::Parse {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// Reads a manifest.
pub fn read_manifest(path: &Path) -> Result<Vec<ManifestSample>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(parse_error(
            path,
            1,
            "empty manifest: a header line with a `path` column is required",
        ));
    };
    let columns: Vec<String> = header.split(',').map(|c| c.trim().to_string()).collect();
    let find = |name: &str| columns.iter().position(|c| c.eq_ignore_ascii_case(name));
    let path_col = find("path").ok_or_else(|| parse_error(path, 1, "no `path` column"))?;
    let (v_col, a_col, e_col) = (find("valence"), find("arousal"), find("expression"));
    if v_col.is_some() != a_col.is_some() {
        return Err(parse_error(
            path,
            1,
            "`valence` and `arousal` come together",
        ));
    }
    let au_cols: Vec<(usize, usize)> = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.to_ascii_uppercase().starts_with("AU"))
        .map(|(i, c)| {
            au_index(&c.to_ascii_uppercase())
                .map(|k| (i, k))
                .ok_or_else(|| parse_error(path, 1, format!("unknown AU column {c:?}")))
        })
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != columns.len() {
            return Err(parse_error(
                path,
                n,
                format!("{} fields, the header has {}", fields.len(), columns.len()),
            ));
        }
        let number = |col: usize| -> Result<Option<f32>, DataError> {
            let f = fields[col];
            if f.is_empty() {
                return Ok(None);
            }
            f.parse::<f32>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Some)
                .ok_or_else(|| {
                    parse_error(
                        path,
                        n,
                        format!("{:?} in column {:?} is not a number", f, columns[col]),
                    )
                })
        };
        let mut labels = Labels::default();
        if let (Some(vc), Some(ac)) = (v_col, a_col)
            && let (Some(v), Some(a)) = (number(vc)?, number(ac)?)
            && v != -5.0
            && a != -5.0
        {
            labels.va = Some([v, a]);
        }
        if let Some(ec) = e_col {
            let f = fields[ec];
            labels.expression = match f.parse::<i64>() {
                Ok(-1) => None,
                Ok(k) if (0..N_EXPRESSIONS as i64).contains(&k) => Some(k as usize),
                Ok(k) => {
                    return Err(parse_error(
                        path,
                        n,
                        format!("expression {k} outside 0..{N_EXPRESSIONS}"),
                    ));
                }
                Err(_) if f.is_empty() => None,
                Err(_) => Some(
                    expression_index(f)
                        .ok_or_else(|| parse_error(path, n, format!("unknown expression {f:?}")))?,
                ),
            };
        }
        if !au_cols.is_empty() {
            let mut au = [0u8; N_AUS];
            let mut complete = true;
            for &(col, k) in &au_cols {
                match number(col)? {
                    None => complete = false,
                    Some(-1.0) => complete = false,
                    Some(v) if v == 0.0 || v == 1.0 => au[k] = v as u8,
                    Some(v) => {
                        return Err(parse_error(
                            path,
                            n,
                            format!("AU value {v} is not 0, 1 or -1"),
                        ));
                    }
                }
            }
            if complete {
                labels.au = Some(au);
            }
        }
        let p = PathBuf::from(fields[path_col]);
        out.push(ManifestSample {
            path: if p.is_absolute() { p } else { base.join(p) },
            labels,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_columns_in_any_order() {
        let dir = affect_core::testutil::scratch_dir("manifest");
        let p = dir.join("m.csv");
        std::fs::write(
            &p,
            "AU12,path,expression,valence,arousal,AU01\n1,a.jpg,Happiness,0.5,0.25,0\n,b.jpg,-1,-5,-5,1\n0,/x/c.jpg,2,0.1,0.2,1\n",
        )
        .unwrap();
        let m = read_manifest(&p).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].path, dir.join("a.jpg"));
        assert_eq!(m[0].labels.expression, Some(4));
        assert_eq!(m[0].labels.va, Some([0.5, 0.25]));
        let au = m[0].labels.au.unwrap();
        assert_eq!((au[0], au[6]), (0, 1));
        assert_eq!(m[1].labels, Labels::default());
        assert_eq!(m[2].path, PathBuf::from("/x/c.jpg"));
        assert_eq!(m[2].labels.expression, Some(2));

        std::fs::write(&p, "path,valence,arousal\na.jpg,0.1,zero\n").unwrap();
        let e = read_manifest(&p).unwrap_err().to_string();
        assert!(e.contains("m.csv:2:") && e.contains("zero"), "{e}");
        std::fs::write(&p, "file,valence\n").unwrap();
        assert!(
            read_manifest(&p)
                .unwrap_err()
                .to_string()
                .contains("m.csv:1:")
        );
    }
}
