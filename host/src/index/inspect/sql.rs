//! The `wharf sql` guard: runs one statement on the read-only connection
//! and refuses, before running it, anything that would write (SQLite's own
//! read-only flag, plus ATTACH, DETACH, VACUUM and setting or acting pragmas).

use rusqlite::ErrorCode;
use rusqlite::types::ValueRef;

use super::ReadOnlyIndex;

/// One value of a result row, as SQLite stores it.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Real(f64),
    /// Text that is not valid UTF-8 has its invalid bytes replaced.
    Text(String),
    Blob(Vec<u8>),
}

impl SqlValue {
    fn from_ref(value: ValueRef<'_>) -> SqlValue {
        match value {
            ValueRef::Null => SqlValue::Null,
            ValueRef::Integer(n) => SqlValue::Integer(n),
            ValueRef::Real(x) => SqlValue::Real(x),
            ValueRef::Text(bytes) => SqlValue::Text(String::from_utf8_lossy(bytes).into_owned()),
            ValueRef::Blob(bytes) => SqlValue::Blob(bytes.to_vec()),
        }
    }
}

/// Receives the result of a statement while it is read, so a large result
/// streams instead of being held in memory.
pub trait RowSink {
    /// The column names, once, before any row.
    fn columns(&mut self, names: &[String]) -> anyhow::Result<()>;
    /// One row, with a value per column.
    fn row(&mut self, values: &[SqlValue]) -> anyhow::Result<()>;
}

/// Statements that SQLite counts as read-only but that open, detach or
/// write other database files.
const REFUSED_KEYWORDS: &[&str] = &["ATTACH", "DETACH", "VACUUM"];

/// Pragmas that take an argument only to say what to read. Any other pragma
/// given a value (`= v` or `(v)`) sets something, and so do
/// [`ACTING_PRAGMAS`] without one.
const READING_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_info",
    "index_xinfo",
    "index_list",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
];

/// Pragmas that do something (checkpoint, vacuum, analyze) when merely named.
const ACTING_PRAGMAS: &[&str] = &[
    "wal_checkpoint",
    "incremental_vacuum",
    "optimize",
    "shrink_memory",
];
impl ReadOnlyIndex {
    /// Runs one read-only statement and hands its result to `sink`; returns
    /// the number of rows. A statement that would write anything fails with
    /// a message saying so, before it runs. An error of `sink` is returned
    /// as it is, so a closed pipe stays recognizable.
    pub fn run_sql(&self, sql: &str, sink: &mut dyn RowSink) -> anyhow::Result<u64> {
        if sql.trim().is_empty() {
            anyhow::bail!(
                "no SQL statement given; for example: wharf sql \"SELECT * FROM disk_usage\""
            );
        }
        let mut statement = self
            .connection
            .prepare(sql)
            .map_err(|error| statement_error(error, sql))?;
        let refused = match first_word(sql) {
            Some((word, _)) if REFUSED_KEYWORDS.contains(&word.as_str()) => true,
            // SQLite calls some reading pragmas (`PRAGMA journal_mode`)
            // writes; pragmas are judged by name and form instead, and the
            // read-only connection still stops any write.
            Some((word, rest)) if word == "PRAGMA" => pragma_acts(rest),
            _ => !statement.readonly() && statement.is_explain() == 0,
        };
        if refused {
            return Err(read_only_error(sql));
        }
        if statement.parameter_count() > 0 {
            anyhow::bail!(
                "the statement has parameters (`?`, `:name`); wharf sql takes none: write the values into it"
            );
        }
        let names: Vec<String> = statement
            .column_names()
            .into_iter()
            .map(str::to_owned)
            .collect();
        sink.columns(&names)?;
        let mut rows = statement
            .query([])
            .map_err(|error| statement_error(error, sql))?;
        let mut values = Vec::with_capacity(names.len());
        let mut count = 0;
        while let Some(row) = rows.next().map_err(|error| statement_error(error, sql))? {
            values.clear();
            for column in 0..names.len() {
                values.push(SqlValue::from_ref(row.get_ref(column)?));
            }
            sink.row(&values)?;
            count += 1;
        }
        Ok(count)
    }
}

/// The first word of `sql` after blanks and comments, upper-cased, and
/// what follows it.
fn first_word(sql: &str) -> Option<(String, &str)> {
    let rest = skip_blanks(sql);
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    (end > 0).then(|| (rest[..end].to_ascii_uppercase(), &rest[end..]))
}

fn skip_blanks(sql: &str) -> &str {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(comment) = rest.strip_prefix("--") {
            rest = comment.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(comment) = rest.strip_prefix("/*") {
            rest = comment.split_once("*/").map_or("", |(_, after)| after);
        } else {
            return rest;
        }
    }
}

/// Whether a pragma (the text after `PRAGMA`) sets or does something rather
/// than reads. SQLite reports some of those as read-only statements: they
/// would fail or change only this connection, but a refusal is clearer.
fn pragma_acts(after_pragma: &str) -> bool {
    let Some((mut name, mut rest)) = first_word(after_pragma) else {
        return false;
    };
    // `PRAGMA schema.name`
    if let Some(after_dot) = skip_blanks(rest).strip_prefix('.') {
        match first_word(after_dot) {
            Some((word, after)) => (name, rest) = (word, after),
            None => return true,
        }
    }
    let name = name.to_ascii_lowercase();
    let has_value = skip_blanks(rest).starts_with(['=', '(']);
    ACTING_PRAGMAS.contains(&name.as_str())
        || (has_value && !READING_PRAGMAS.contains(&name.as_str()))
}

fn read_only_error(sql: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "wharf sql is read-only: `{}` would change the index or open another database; nothing was changed. \
         Use the wharf commands to change state (see `wharf --help`)",
        abbreviate(sql)
    )
}

/// A failed statement: a write the read-only connection stopped (the same
/// message as a refused one), or an SQL error with SQLite's own words.
fn statement_error(error: rusqlite::Error, sql: &str) -> anyhow::Error {
    match error.sqlite_error_code() {
        Some(ErrorCode::ReadOnly) => read_only_error(sql),
        _ if matches!(error, rusqlite::Error::MultipleStatement) => anyhow::anyhow!(
            "wharf sql runs one statement at a time; run the others with separate `wharf sql` commands"
        ),
        _ => anyhow::anyhow!(
            "the statement failed: {error} (the views and tables are documented in schema.sql)"
        ),
    }
}

/// The statement on one line, cut to a length fit for a message.
fn abbreviate(sql: &str) -> String {
    let line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}
