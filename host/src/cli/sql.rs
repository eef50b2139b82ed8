//! `wharf sql`: one read-only statement on the index, printed as an aligned
//! table for people or as CSV or JSON for scripts. Rows stream: a table
//! aligns its columns on the first rows, so a large result never has to fit
//! in memory. A write error (a closed pipe) is returned as it is, and
//! `cli::main` treats a broken pipe as success.

use std::io::Write;
use std::process::ExitCode;

use crate::index::{ReadOnlyIndex, RowSink, SqlValue};
use crate::store::DataDir;

use super::SqlFormat;

/// A table aligns its columns on this many rows; longer values in later rows
/// widen their cell without moving the others.
const ALIGN_ON_ROWS: usize = 1000;
/// A column is never padded wider than this; longer values overflow.
const MAX_WIDTH: usize = 60;
/// BLOBs up to this size are shown in hex in a table, longer ones as a size.
const TABLE_BLOB_BYTES: usize = 32;

pub(super) fn sql(data_dir: &DataDir, query: &str, format: SqlFormat) -> anyhow::Result<ExitCode> {
    let index = ReadOnlyIndex::open(&data_dir.index_path())?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match format {
        SqlFormat::Table => {
            let mut table = Table::new(&mut out);
            let rows = index.run_sql(query, &mut table)?;
            table.finish(rows)?;
        }
        SqlFormat::Csv => {
            index.run_sql(query, &mut Csv { out: &mut out })?;
        }
        SqlFormat::Json => {
            let mut json = Json {
                out: &mut out,
                names: Vec::new(),
                rows: 0,
            };
            index.run_sql(query, &mut json)?;
            json.finish()?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// An aligned table: header, rule, rows, and a row count.
struct Table<W: Write> {
    out: W,
    names: Vec<String>,
    /// Rows held until the widths are known: (text, right-aligned).
    pending: Vec<Vec<(String, bool)>>,
    widths: Option<Vec<usize>>,
}

impl<W: Write> Table<W> {
    fn new(out: W) -> Table<W> {
        Table {
            out,
            names: Vec::new(),
            pending: Vec::new(),
            widths: None,
        }
    }

    /// Fixes the widths on the rows seen so far and prints them.
    fn flush_pending(&mut self) -> std::io::Result<()> {
        let widths = match &self.widths {
            Some(widths) => widths.clone(),
            None => {
                let mut widths: Vec<usize> = self.names.iter().map(|name| width(name)).collect();
                for row in &self.pending {
                    for (column, (text, _)) in row.iter().enumerate() {
                        widths[column] = widths[column].max(width(text).min(MAX_WIDTH));
                    }
                }
                let header: Vec<(String, bool)> = self
                    .names
                    .iter()
                    .map(|name| (name.clone(), false))
                    .collect();
                write_line(&mut self.out, &header, &widths)?;
                let rule: Vec<(String, bool)> =
                    widths.iter().map(|&w| ("-".repeat(w), false)).collect();
                write_line(&mut self.out, &rule, &widths)?;
                self.widths = Some(widths.clone());
                widths
            }
        };
        for row in std::mem::take(&mut self.pending) {
            write_line(&mut self.out, &row, &widths)?;
        }
        Ok(())
    }

    fn finish(&mut self, rows: u64) -> std::io::Result<()> {
        if self.names.is_empty() {
            return Ok(());
        }
        self.flush_pending()?;
        let plural = if rows == 1 { "" } else { "s" };
        writeln!(self.out, "({rows} row{plural})")
    }
}

impl<W: Write> RowSink for Table<W> {
    fn columns(&mut self, names: &[String]) -> anyhow::Result<()> {
        self.names = names.iter().map(|name| escape(name)).collect();
        Ok(())
    }

    fn row(&mut self, values: &[SqlValue]) -> anyhow::Result<()> {
        let row = values
            .iter()
            .map(|value| (table_cell(value), is_number(value)))
            .collect();
        self.pending.push(row);
        if self.widths.is_some() || self.pending.len() >= ALIGN_ON_ROWS {
            self.flush_pending()?;
        }
        Ok(())
    }
}

fn write_line(
    out: &mut impl Write,
    cells: &[(String, bool)],
    widths: &[usize],
) -> std::io::Result<()> {
    let mut line = String::new();
    for (column, (text, right)) in cells.iter().enumerate() {
        let last = column + 1 == cells.len();
        let pad = widths
            .get(column)
            .copied()
            .unwrap_or(0)
            .saturating_sub(width(text));
        if column > 0 {
            line.push_str("  ");
        }
        if *right {
            line.extend(std::iter::repeat_n(' ', pad));
            line.push_str(text);
        } else {
            line.push_str(text);
            if !last {
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
    }
    writeln!(out, "{}", line.trim_end())
}

fn width(text: &str) -> usize {
    text.chars().count()
}

fn is_number(value: &SqlValue) -> bool {
    matches!(value, SqlValue::Integer(_) | SqlValue::Real(_))
}

fn table_cell(value: &SqlValue) -> String {
    match value {
        SqlValue::Null => String::new(),
        SqlValue::Integer(n) => n.to_string(),
        SqlValue::Real(x) => real(*x),
        SqlValue::Text(text) => escape(text),
        SqlValue::Blob(bytes) if bytes.len() <= TABLE_BLOB_BYTES => {
            format!("x'{}'", hex::encode(bytes))
        }
        SqlValue::Blob(bytes) => format!("<{} bytes>", bytes.len()),
    }
}

/// Control characters would break the alignment; show them escaped.
fn escape(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            c if c.is_control() => escaped.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A REAL as SQLite's shell shows it: always with a fraction or exponent.
fn real(x: f64) -> String {
    format!("{x:?}")
}

/// RFC 4180: a header line, fields quoted when they hold a comma, a quote or
/// a line break, quotes doubled. Lines end in `\n`.
struct Csv<W: Write> {
    out: W,
}

impl<W: Write> Csv<W> {
    fn write_record<'a>(
        &mut self,
        fields: impl Iterator<Item = std::borrow::Cow<'a, str>>,
    ) -> std::io::Result<()> {
        let mut line = String::new();
        for (column, field) in fields.enumerate() {
            if column > 0 {
                line.push(',');
            }
            if field.contains([',', '"', '\n', '\r']) {
                line.push('"');
                line.push_str(&field.replace('"', "\"\""));
                line.push('"');
            } else {
                line.push_str(&field);
            }
        }
        line.push('\n');
        self.out.write_all(line.as_bytes())
    }
}

impl<W: Write> RowSink for Csv<W> {
    fn columns(&mut self, names: &[String]) -> anyhow::Result<()> {
        if !names.is_empty() {
            self.write_record(names.iter().map(|name| name.as_str().into()))?;
        }
        Ok(())
    }

    fn row(&mut self, values: &[SqlValue]) -> anyhow::Result<()> {
        self.write_record(values.iter().map(|value| match value {
            SqlValue::Null => "".into(),
            SqlValue::Integer(n) => n.to_string().into(),
            SqlValue::Real(x) => real(*x).into(),
            SqlValue::Text(text) => text.as_str().into(),
            SqlValue::Blob(bytes) => hex::encode(bytes).into(),
        }))?;
        Ok(())
    }
}

/// An array with an object per row, keys in column order, one row a line.
struct Json<W: Write> {
    out: W,
    names: Vec<String>,
    rows: u64,
}

impl<W: Write> Json<W> {
    fn finish(&mut self) -> std::io::Result<()> {
        let end = if self.rows == 0 { "[]\n" } else { "\n]\n" };
        self.out.write_all(end.as_bytes())
    }
}

impl<W: Write> RowSink for Json<W> {
    fn columns(&mut self, names: &[String]) -> anyhow::Result<()> {
        // Keys are written once, escaped; rows only add the values.
        self.names = names
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<_, _>>()?;
        Ok(())
    }

    fn row(&mut self, values: &[SqlValue]) -> anyhow::Result<()> {
        let mut line = String::from(if self.rows == 0 { "[\n{" } else { ",\n{" });
        for (column, (name, value)) in self.names.iter().zip(values).enumerate() {
            if column > 0 {
                line.push(',');
            }
            line.push_str(name);
            line.push(':');
            let value = match value {
                SqlValue::Null => serde_json::Value::Null,
                SqlValue::Integer(n) => (*n).into(),
                // Infinity has no JSON form: null, as serde_json writes it.
                SqlValue::Real(x) => {
                    serde_json::Number::from_f64(*x).map_or(serde_json::Value::Null, Into::into)
                }
                SqlValue::Text(text) => text.as_str().into(),
                SqlValue::Blob(bytes) => hex::encode(bytes).into(),
            };
            line.push_str(&value.to_string());
        }
        line.push('}');
        self.out.write_all(line.as_bytes())?;
        self.rows += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Vec<SqlValue> {
        vec![
            SqlValue::Integer(42),
            SqlValue::Text("a,b \"q\"\nline".into()),
            SqlValue::Null,
            SqlValue::Real(2.0),
            SqlValue::Blob(vec![0, 255]),
        ]
    }

    fn names() -> Vec<String> {
        ["n", "text", "nothing", "real", "blob"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn csv_quotes_only_what_needs_it() {
        let mut out = Vec::new();
        let mut csv = Csv { out: &mut out };
        csv.columns(&names()).unwrap();
        csv.row(&values()).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "n,text,nothing,real,blob\n42,\"a,b \"\"q\"\"\nline\",,2.0,00ff\n"
        );
    }

    #[test]
    fn json_is_an_array_of_objects() {
        let mut out = Vec::new();
        let mut json = Json {
            out: &mut out,
            names: Vec::new(),
            rows: 0,
        };
        json.columns(&names()).unwrap();
        json.row(&values()).unwrap();
        json.row(&[SqlValue::Real(f64::INFINITY)]).unwrap();
        json.finish().unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "[\n{\"n\":42,\"text\":\"a,b \\\"q\\\"\\nline\",\"nothing\":null,\"real\":2.0,\"blob\":\"00ff\"},\n{\"n\":null}\n]\n"
        );
        let mut empty = Json {
            out: Vec::new(),
            names: Vec::new(),
            rows: 0,
        };
        empty.finish().unwrap();
        assert_eq!(empty.out, b"[]\n");
    }

    #[test]
    fn a_table_aligns_columns_and_counts_rows() {
        let mut out = Vec::new();
        let mut table = Table::new(&mut out);
        table.columns(&names()).unwrap();
        table.row(&values()).unwrap();
        table
            .row(&[
                SqlValue::Integer(7),
                SqlValue::Text("x".into()),
                SqlValue::Null,
                SqlValue::Null,
                SqlValue::Blob(vec![1; 40]),
            ])
            .unwrap();
        table.finish(2).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "n   text           nothing  real  blob\n\
             --  -------------  -------  ----  ----------\n\
             42  a,b \"q\"\\nline            2.0  x'00ff'\n \
             7  x                             <40 bytes>\n\
             (2 rows)\n"
        );
    }
}
