//! Result summaries: what the executor reports about one job, small enough for a chat thread.
//!
//! The executor streams a statement's rows, keeps the first few (already masked) in a
//! [`ResultTable`], counts the rest up to a cap, and sends a [`ResultSummary`] to the thread. This
//! module holds those types and their plain-text rendering ([`ResultSummary::render_text`]); chat
//! adapters may render the same fields in their own format.

use serde::{Deserialize, Serialize};

/// Longest text kept for one cell; longer values are cut with an ellipsis.
pub const MAX_CELL_CHARS: usize = 120;

/// What masked cells show.
pub const MASKED_CELL: &str = "***";

/// One cell of a kept row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "text")]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// The value as text, cut to [`MAX_CELL_CHARS`].
    Text(String),
    /// A masked value; its content never left the executor.
    Masked,
    /// A value whose type the executor does not render (named).
    Unrendered(String),
}

impl Cell {
    /// A text cell, cut to [`MAX_CELL_CHARS`] characters.
    pub fn text(value: &str) -> Cell {
        Cell::Text(truncate_chars(value, MAX_CELL_CHARS))
    }

    /// How the cell reads in a table.
    pub fn display(&self) -> String {
        match self {
            Cell::Null => "NULL".to_string(),
            Cell::Text(text) => text.replace(['\n', '\r', '\t'], " "),
            Cell::Masked => MASKED_CELL.to_string(),
            Cell::Unrendered(type_name) => format!("<{type_name}>"),
        }
    }
}

/// The first rows of a result, and how many there were in all.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResultTable {
    /// Column names, in result order.
    pub columns: Vec<String>,
    /// Which columns were masked (same length as `columns`).
    pub masked: Vec<bool>,
    /// The kept rows.
    pub rows: Vec<Vec<Cell>>,
    /// Rows counted in all (kept or not), up to the cap.
    pub total_rows: u64,
    /// Whether counting stopped at the cap, so `total_rows` is a lower bound.
    pub total_capped: bool,
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The statement ran and, for a write, was committed.
    Succeeded,
    /// The statement failed; nothing was committed.
    Failed,
    /// The write touched more rows than approved and was rolled back.
    RolledBack,
    /// The executor refused the job before running it.
    Refused,
    /// The executor stopped mid-write; whether it committed cannot be known.
    Unknown,
}

impl Outcome {
    /// The outcome's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled_back",
            Outcome::Refused => "refused",
            Outcome::Unknown => "unknown",
        }
    }
}

/// What the executor reports for one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultSummary {
    /// The request the job belongs to.
    pub request_id: String,
    /// The target it ran on.
    pub target: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Rows affected by a write (None for reads and for statements that never ran).
    pub rows_affected: Option<u64>,
    /// The rows a read (or a write with RETURNING) produced, when it produced any columns.
    pub table: Option<ResultTable>,
    /// How long the statement took, in milliseconds.
    pub duration_ms: u64,
    /// A short, user-facing reason for a failure, refusal or roll-back.
    pub reason: Option<String>,
    /// The audit entry that records the outcome: `#<seq> <hash prefix>`.
    pub audit_ref: Option<String>,
}

impl ResultSummary {
    /// The first line: outcome, rows and duration.
    pub fn headline(&self) -> String {
        let rows = match (&self.table, self.rows_affected) {
            (Some(table), _) => {
                let plus = if table.total_capped { "+" } else { "" };
                format!(
                    "{}{plus} {}",
                    table.total_rows,
                    plural(table.total_rows, "row")
                )
            }
            (None, Some(affected)) => format!("{affected} {} affected", plural(affected, "row")),
            (None, None) => String::new(),
        };
        let mut line = match self.outcome {
            Outcome::Succeeded => "Succeeded".to_string(),
            Outcome::Failed => "Failed".to_string(),
            Outcome::RolledBack => "Rolled back".to_string(),
            Outcome::Refused => "Refused".to_string(),
            Outcome::Unknown => "Outcome unknown".to_string(),
        };
        line.push_str(&format!(" on {}", self.target));
        if !rows.is_empty() && self.outcome != Outcome::Refused {
            line.push_str(&format!(": {rows}"));
        }
        if !matches!(self.outcome, Outcome::Refused | Outcome::Unknown) {
            line.push_str(&format!(" in {} ms", self.duration_ms));
        }
        line
    }

    /// The summary as plain text with a fenced table, for a chat thread.
    pub fn render_text(&self) -> String {
        let mut out = self.headline();
        if let Some(reason) = &self.reason {
            out.push_str(&format!("\n{reason}"));
        }
        if let Some(table) = &self.table {
            if !table.columns.is_empty() {
                out.push_str("\n```\n");
                out.push_str(&render_table(table));
                out.push_str("```");
                let shown = table.rows.len() as u64;
                if table.total_rows > shown {
                    out.push_str(&format!(
                        "\nFirst {shown} of {}{} rows shown.",
                        table.total_rows,
                        if table.total_capped { "+" } else { "" }
                    ));
                }
                let masked: Vec<&str> = table
                    .columns
                    .iter()
                    .zip(&table.masked)
                    .filter(|(_, masked)| **masked)
                    .map(|(name, _)| name.as_str())
                    .collect();
                if !masked.is_empty() {
                    out.push_str(&format!("\nMasked by policy: {}.", masked.join(", ")));
                }
            }
        }
        if let Some(audit) = &self.audit_ref {
            out.push_str(&format!("\nAudit {audit}"));
        }
        out
    }
}

/// Renders a table with aligned columns, one line per row.
pub fn render_table(table: &ResultTable) -> String {
    let cells: Vec<Vec<String>> = table
        .rows
        .iter()
        .map(|row| row.iter().map(Cell::display).collect())
        .collect();
    let mut widths: Vec<usize> = table.columns.iter().map(|c| c.chars().count()).collect();
    for row in &cells {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let line = |values: &mut dyn Iterator<Item = &str>| {
        let mut text = values
            .zip(&widths)
            .map(|(value, width)| format!("{value:<width$}"))
            .collect::<Vec<_>>()
            .join(" | ");
        text.truncate(text.trim_end().len());
        text.push('\n');
        text
    };
    let mut out = line(&mut table.columns.iter().map(String::as_str));
    let separator: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&separator.join("-+-"));
    out.push('\n');
    for row in &cells {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// `1234567` → `1,234,567`.
pub fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn plural(count: u64, word: &str) -> String {
    if count == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

/// Cuts `text` to at most `max` characters, ending with `…` when it was cut.
pub fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some(_) => {
            let keep: String = text.chars().take(max.saturating_sub(1)).collect();
            format!("{keep}…")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(table: Option<ResultTable>) -> ResultSummary {
        ResultSummary {
            request_id: "r1".into(),
            target: "prod".into(),
            outcome: Outcome::Succeeded,
            rows_affected: None,
            table,
            duration_ms: 12,
            reason: None,
            audit_ref: Some("#42 3f9a1c2b".into()),
        }
    }

    #[test]
    fn a_read_renders_a_table_with_masked_cells_and_the_audit_line() {
        let table = ResultTable {
            columns: vec!["id".into(), "email".into()],
            masked: vec![false, true],
            rows: vec![
                vec![Cell::text("1"), Cell::Masked],
                vec![Cell::text("22"), Cell::Null],
            ],
            total_rows: 5,
            total_capped: false,
        };
        let text = summary(Some(table)).render_text();
        assert_eq!(
            text,
            "Succeeded on prod: 5 rows in 12 ms\n```\nid | email\n---+------\n1  | ***\n22 | NULL\n```\nFirst 2 of 5 rows shown.\nMasked by policy: email.\nAudit #42 3f9a1c2b"
        );
    }

    #[test]
    fn a_write_reports_rows_affected_and_a_roll_back_its_reason() {
        let mut s = summary(None);
        s.rows_affected = Some(1);
        assert_eq!(s.headline(), "Succeeded on prod: 1 row affected in 12 ms");
        s.outcome = Outcome::RolledBack;
        s.rows_affected = Some(500);
        s.reason = Some("500 rows exceed the approved limit of 100; nothing was changed.".into());
        assert_eq!(
            s.render_text(),
            "Rolled back on prod: 500 rows affected in 12 ms\n500 rows exceed the approved limit of 100; nothing was changed.\nAudit #42 3f9a1c2b"
        );
    }

    #[test]
    fn long_cells_are_cut_and_capped_totals_say_so() {
        let long = "x".repeat(500);
        assert_eq!(Cell::text(&long).display().chars().count(), MAX_CELL_CHARS);
        let table = ResultTable {
            columns: vec!["n".into()],
            masked: vec![false],
            rows: vec![vec![Cell::text("1")]],
            total_rows: 1000,
            total_capped: true,
        };
        assert!(summary(Some(table))
            .render_text()
            .contains("First 1 of 1000+ rows shown."));
    }
}
