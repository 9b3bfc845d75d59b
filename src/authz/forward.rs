//! What goes upstream of a claim: one header value, flat and clean.
#![forbid(unsafe_code)]

use serde_json::Value;

/// Longest header value forwarded; longer claims are not forwarded.
pub const MAX_HEADER_VALUE: usize = 8192;

/// A claim as a header value: strings as-is, arrays joined with `,`,
/// numbers and booleans as JSON text, objects as compact JSON. Control
/// characters are removed so a claim can never inject a header. An array
/// with an element that holds a comma is not forwarded: `["a,b"]` and
/// `["a","b"]` would reach the upstream as the same value.
pub fn header_value(v: &Value) -> Option<String> {
    let text = match v {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            let items: Vec<String> = a
                .iter()
                .map(|e| match e {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            if items.iter().any(|i| i.contains(',')) {
                return None;
            }
            items.join(",")
        }
        other => other.to_string(),
    };
    let clean: String = text.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim().to_string();
    (!clean.is_empty() && clean.len() <= MAX_HEADER_VALUE).then_some(clean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn header_values_are_flat_and_clean() {
        assert_eq!(header_value(&json!("alice")).as_deref(), Some("alice"));
        assert_eq!(
            header_value(&json!(["a", "b", 3])).as_deref(),
            Some("a,b,3")
        );
        assert_eq!(header_value(&json!(42)).as_deref(), Some("42"));
        assert_eq!(header_value(&json!(true)).as_deref(), Some("true"));
        assert_eq!(header_value(&json!({"k": 1})).as_deref(), Some("{\"k\":1}"));
        assert_eq!(
            header_value(&json!("a\r\nx-evil: 1")).as_deref(),
            Some("ax-evil: 1")
        );
        assert_eq!(header_value(&json!("\u{0}\n")), None);
        assert_eq!(header_value(&json!(null)), None);
        assert_eq!(header_value(&json!("x".repeat(MAX_HEADER_VALUE + 1))), None);
    }

    /// Issue 19, item 4: joined arrays stay unambiguous.
    #[test]
    fn arrays_with_a_comma_in_an_element_are_not_forwarded() {
        assert_eq!(header_value(&json!(["a,b"])), None);
        assert_eq!(header_value(&json!(["a", "b"])).as_deref(), Some("a,b"));
        assert_eq!(header_value(&json!([{"x": 1, "y": 2}])), None);
        assert_eq!(header_value(&json!([[1, 2]])), None);
        assert_eq!(
            header_value(&json!("a,b")).as_deref(),
            Some("a,b"),
            "a string is one value"
        );
    }
}
