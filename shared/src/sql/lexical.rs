//! Checks on the raw text and its tokens, before anything is parsed.
//!
//! The text is tokenized once here; the parser then works from these tokens, so the checks and
//! the parse always see the same input.

use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::{ClassifyError, ClassifyOptions, Dialect};

/// Stack reserved for the parser, the walk and dropping the tree, whatever the input.
const BASE_STACK: usize = 512 * 1024;
/// Stack reserved per significant token: an upper bound on what one level of a left-deep
/// expression chain costs across parsing, walking and dropping, in an unoptimised build.
const STACK_PER_TOKEN: usize = 8 * 1024;

/// Tokens ready for the parser, with what the checks learned about them.
pub(crate) struct Prepared {
    /// The tokens, whitespace and comments included.
    pub tokens: Vec<TokenWithSpan>,
    /// Tokens that are not whitespace or comments.
    pub significant: usize,
    /// Non-empty stretches of tokens between top-level semicolons.
    pub statement_count: usize,
}

/// Applies the size cap, refuses executable comments and tokenizes.
pub(crate) fn prepare(
    sql: &str,
    dialect: Dialect,
    options: &ClassifyOptions,
) -> Result<Prepared, ClassifyError> {
    if sql.len() > options.max_input_bytes {
        return Err(ClassifyError::TooLarge {
            len: sql.len(),
            max: options.max_input_bytes,
        });
    }
    // MySQL runs the text of `/*! ... */` and MariaDB that of `/*M! ... */`; other dialects treat
    // both as comments, and sqlparser's MySQL tokenizer splices them in. Refuse them anywhere,
    // even inside a string literal: a false refusal costs a retype, a miss could hide a statement.
    if contains_executable_comment(sql) {
        return Err(ClassifyError::ExecutableComment);
    }
    let tokens = Tokenizer::new(dialect.parser_dialect(), sql)
        .tokenize_with_location()
        .map_err(|e| ClassifyError::Tokenize(e.message))?;

    let mut significant = 0;
    let mut statement_count = 0;
    let mut in_statement = false;
    for token in &tokens {
        match &token.token {
            Token::Whitespace(_) | Token::EOF => {}
            Token::SemiColon => in_statement = false,
            _ => {
                significant += 1;
                if !in_statement {
                    in_statement = true;
                    statement_count += 1;
                }
            }
        }
    }
    if significant == 0 {
        return Err(ClassifyError::Empty);
    }
    Ok(Prepared {
        tokens,
        significant,
        statement_count,
    })
}

/// Bytes of stack that classifying an input of `significant_tokens` tokens may need.
pub(crate) fn stack_needed(significant_tokens: usize) -> usize {
    BASE_STACK.saturating_add(significant_tokens.saturating_mul(STACK_PER_TOKEN))
}

fn contains_executable_comment(sql: &str) -> bool {
    let bytes = sql.as_bytes();
    memchr::memmem::find_iter(bytes, b"/*").any(|at| match bytes.get(at + 2) {
        Some(b'!') => true,
        Some(b'm' | b'M') => bytes.get(at + 3) == Some(&b'!'),
        _ => false,
    })
}
