//! Reading fields of a JSON object: `null` is "not set", every error names
//! the field (with the prefix of the object it is in).
#![forbid(unsafe_code)]

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::config::error::ConfigError;

/// Reads fields from the JSON object, turning `null` into "not set" (Kong
/// sends `null` for unset optional fields) and naming the field on errors.
pub(crate) struct Fields<'a> {
    map: &'a Map<String, Value>,
    /// Prepended to field names in errors (`providers[1].`, `rules[0].`).
    prefix: String,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(map: &'a Map<String, Value>, prefix: String) -> Self {
        Fields { map, prefix }
    }

    /// Reads a nested object's fields, refusing names not in `known`.
    pub(crate) fn object(
        v: &'a Value,
        prefix: String,
        known: &[&str],
    ) -> Result<Self, ConfigError> {
        let Value::Object(map) = v else {
            return Err(ConfigError::new(
                prefix.trim_end_matches('.'),
                format!("expected an object, got {}", describe(v)),
            ));
        };
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                return Err(ConfigError::new(&format!("{prefix}{key}"), "unknown field"));
            }
        }
        Ok(Fields { map, prefix })
    }

    /// The object in field `name` (None when not set), its own fields
    /// limited to `known`.
    pub(crate) fn nested(
        &self,
        name: &str,
        known: &[&str],
    ) -> Result<Option<Fields<'a>>, ConfigError> {
        match self.raw(name) {
            None => Ok(None),
            Some(v) => Fields::object(v, format!("{}{name}.", self.prefix), known).map(Some),
        }
    }

    pub(crate) fn err(&self, name: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::new(&format!("{}{name}", self.prefix), message)
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        !matches!(self.map.get(name), None | Some(Value::Null))
    }

    pub(crate) fn raw(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    pub(crate) fn get<T: DeserializeOwned>(
        &self,
        name: &str,
        expected: &str,
    ) -> Result<Option<T>, ConfigError> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|_| self.err(name, format!("expected {expected}, got {}", describe(v)))),
        }
    }

    pub(crate) fn bool_or(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        Ok(self.get::<bool>(name, "true or false")?.unwrap_or(default))
    }

    /// A non-negative whole number (JSON numbers like `3600.0` are accepted).
    pub(crate) fn count(&self, name: &str) -> Result<Option<u64>, ConfigError> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let n = v.as_f64().ok_or_else(|| {
                    self.err(name, format!("expected a number, got {}", describe(v)))
                })?;
                if !n.is_finite() || n < 0.0 || n.fract() != 0.0 || n > 1e15 {
                    return Err(self.err(
                        name,
                        format!("expected a non-negative whole number, got {n}"),
                    ));
                }
                Ok(Some(n as u64))
            }
        }
    }

    pub(crate) fn count_in(
        &self,
        name: &str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let n = self.count(name)?.unwrap_or(default);
        if n < min || n > max {
            return Err(self.err(name, format!("must be between {min} and {max}, got {n}")));
        }
        Ok(n)
    }

    pub(crate) fn string(&self, name: &str) -> Result<Option<String>, ConfigError> {
        self.get::<String>(name, "a string")
    }

    pub(crate) fn strings(&self, name: &str) -> Result<Option<Vec<String>>, ConfigError> {
        self.get::<Vec<String>>(name, "an array of strings")
    }
}

pub(crate) fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
