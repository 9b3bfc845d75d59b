//! A configuration refused at configure time, naming the field.
#![forbid(unsafe_code)]

use std::fmt;

/// A configuration refused at configure time. `field` names the offending
/// field (dotted for nested values) so the operator knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(field: &str, message: impl Into<String>) -> Self {
        ConfigError {
            // An empty JSON key must still be named (found by fuzzing).
            field: if field.is_empty() {
                "\"\"".to_string()
            } else {
                field.to_string()
            },
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration: field `{}`: {}",
            self.field, self.message
        )
    }
}

impl std::error::Error for ConfigError {}
