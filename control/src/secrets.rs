//! Secrets for the binaries: from the environment (`NAME`) or from the file a `NAME_FILE`
//! variable names (a mounted Kubernetes Secret). Surrounding whitespace is dropped (files and
//! secrets often end with a newline). Never logged.

/// Why a secret could not be read. The text names the variables, never a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Neither variable is set.
    #[error("set {name} (or {name}_FILE to a file holding it)")]
    Missing {
        /// The variable's name.
        name: String,
    },
    /// `NAME_FILE` names a file that cannot be read.
    #[error("reading {name}_FILE ({path}): {source}")]
    Unreadable {
        /// The variable's name.
        name: String,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The secret `name`, or `None` when neither `name` nor `name_FILE` is set.
pub fn optional(name: &str) -> Result<Option<String>, SecretError> {
    if let Ok(value) = std::env::var(name) {
        return Ok(Some(value.trim().to_string()));
    }
    let Ok(path) = std::env::var(format!("{name}_FILE")) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path).map_err(|source| SecretError::Unreadable {
        name: name.to_string(),
        path: path.clone(),
        source,
    })?;
    Ok(Some(text.trim().to_string()))
}

/// The secret `name`; missing is an error.
pub fn required(name: &str) -> Result<String, SecretError> {
    optional(name)?.ok_or_else(|| SecretError::Missing {
        name: name.to_string(),
    })
}
