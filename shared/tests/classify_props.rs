//! Properties of `classify` over generated input: it never panics, a refusal is never a read,
//! and a write wrapped in any of the shapes that make it look like a read is still not a read.

use countersign_shared::sql::{classify, Category, ClassifyOptions, Dialect, Flag};
use proptest::prelude::*;

fn dialect() -> impl Strategy<Value = Dialect> {
    prop::sample::select(Dialect::ALL.to_vec())
}

/// Words and punctuation that SQL is made of, to build token soup that gets past the tokenizer.
const VOCABULARY: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "WITH",
    "AS",
    "DELETE",
    "UPDATE",
    "INSERT",
    "INTO",
    "VALUES",
    "SET",
    "EXPLAIN",
    "ANALYZE",
    "PREPARE",
    "EXECUTE",
    "FOR",
    "SHARE",
    "ONLY",
    "TABLE",
    "DROP",
    "CREATE",
    "GRANT",
    "COPY",
    "STDIN",
    "RETURNING",
    "UNION",
    "JOIN",
    "ON",
    "AND",
    "OR",
    "NOT",
    "(",
    ")",
    ",",
    ";",
    "*",
    "=",
    "+",
    "-",
    "1",
    "'x'",
    "t",
    "u",
    "\"Q\"",
    "`b`",
    "--",
    "/*",
    "*/",
    "\n",
    "pg_sleep",
    "nextval",
    "lower",
    "count",
    "$$",
    "$1",
    "::",
    "[",
    "]",
    "@x",
    ":=",
    "/*!",
    "#",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(VOCABULARY.to_vec()), 0..40)
        .prop_map(|words| words.join(" "))
}

fn writes() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "DELETE FROM orders",
        "DELETE FROM orders WHERE id = 1",
        "UPDATE orders SET total = 0",
        "UPDATE orders SET total = 0 WHERE id = 2",
        "INSERT INTO orders (id) VALUES (3)",
    ])
    .prop_map(str::to_string)
}

/// Shapes that wrap a write so that it starts like a read.
fn disguised_write() -> impl Strategy<Value = String> {
    (writes(), 0..6usize, any::<bool>()).prop_map(|(write, shape, lower)| {
        let sql = match shape {
            0 => format!("WITH d AS ({write} RETURNING 1) SELECT * FROM d"),
            1 => format!("EXPLAIN ANALYZE {write}"),
            2 => format!("PREPARE p AS {write}"),
            3 => format!("WITH x AS (SELECT 1) {write}"),
            4 => format!("SELECT * FROM (WITH d AS ({write} RETURNING 1) SELECT 1) s"),
            _ => format!("EXPLAIN (ANALYZE, COSTS OFF) {write}"),
        };
        if lower {
            sql.to_lowercase()
        } else {
            sql
        }
    })
}

/// Comments and whitespace that may stand between any two tokens.
fn filler() -> impl Strategy<Value = String> {
    prop::sample::select(vec![" ", "\n", "\t", " /* c */ ", " -- c\n", "  "])
        .prop_map(str::to_string)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics_and_refusals_are_unknown(sql in ".{0,300}", d in dialect()) {
        let c = classify(&sql, d, &ClassifyOptions::default());
        if !c.is_ok() {
            prop_assert_eq!(c.category, Category::Unknown);
            prop_assert!(c.statements.is_empty());
        }
    }

    #[test]
    fn a_read_is_consistent_in_every_part(sql in token_soup(), d in dialect()) {
        let c = classify(&sql, d, &ClassifyOptions::default());
        if c.category == Category::Read {
            prop_assert!(c.is_ok());
            for s in &c.statements {
                prop_assert_eq!(s.category, Category::Read);
                prop_assert!(s.tables_written.is_empty(), "read writes {:?}", s.tables_written);
                for flag in [Flag::WritableCte, Flag::SelectInto, Flag::LockingClause,
                             Flag::SideEffectFunction, Flag::UnknownFunction, Flag::MissingWhere,
                             Flag::VariableAssignment] {
                    prop_assert!(!s.flags.contains(&flag), "read has {:?}: {}", flag, sql);
                }
            }
        }
        // The summary is the most dangerous statement.
        if let Some(worst) = c.statements.iter().map(|s| s.category).max() {
            prop_assert_eq!(c.category, worst);
        }
    }

    #[test]
    fn a_disguised_write_is_never_a_read(sql in disguised_write()) {
        for d in [Dialect::Postgres, Dialect::Generic] {
            let c = classify(&sql, d, &ClassifyOptions::default());
            prop_assert_ne!(c.category, Category::Read, "{} ({})", sql, d);
        }
    }

    #[test]
    fn comments_and_whitespace_between_tokens_change_nothing(
        write in disguised_write(),
        fillers in prop::collection::vec(filler(), 64),
    ) {
        let plain = classify(&write, Dialect::Postgres, &ClassifyOptions::default());
        let mut spaced = String::new();
        for (i, word) in write.split(' ').enumerate() {
            if i > 0 {
                spaced.push_str(&fillers[i % fillers.len()]);
            }
            spaced.push_str(word);
        }
        let padded = classify(&spaced, Dialect::Postgres, &ClassifyOptions::default());
        prop_assert_eq!(plain.category, padded.category, "{:?} vs {:?}", write, spaced);
        let tables = |c: &countersign_shared::sql::Classification| {
            c.statements.iter().map(|s| (s.tables_read.clone(), s.tables_written.clone())).collect::<Vec<_>>()
        };
        prop_assert_eq!(tables(&plain), tables(&padded));
    }

    #[test]
    fn a_write_appended_after_any_read_makes_the_whole_input_not_a_read(
        write in writes(), sep in prop::sample::select(vec![";", ";\n", " ; ", ";/* x */"]),
    ) {
        let sql = format!("SELECT 1{sep}{write}");
        let c = classify(&sql, Dialect::Postgres, &ClassifyOptions::default());
        prop_assert_eq!(c.category, Category::Write);
        prop_assert!(c.statements.iter().all(|s| s.flags.contains(&Flag::MultiStatement)));
    }
}
