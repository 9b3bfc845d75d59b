//! The configuration corpus (`tests/config_corpus/`) through the filter's own
//! parser. The same files go through Kong's JSON Schema
//! (`kong/jwt_jwks.meta.json`) in `tests/kong/test_schema.py`; the two must
//! classify them the same way, except for the two documented directories:
//!
//! - `valid/`: accepted by both;
//! - `invalid/`: refused by both;
//! - `cross_field/`: accepted by the schema, refused here (rules JSON Schema
//!   cannot express; listed in kong/README.md);
//! - `schema_stricter/`: refused by the schema, accepted here (deliberate).
//!
//! Every JSON configuration in the README and in docs/ must parse too.

use std::fs;
use std::path::{Path, PathBuf};

use jwt_jwks::config::Config;

fn corpus(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/config_corpus")
        .join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", root.display());
    files
}

fn classify(dir: &str, accept: bool) {
    let mut wrong = Vec::new();
    for f in corpus(dir) {
        let r = Config::parse(&fs::read(&f).unwrap());
        if r.is_ok() != accept {
            wrong.push(format!("{}: {:?}", f.display(), r.err()));
        }
    }
    assert!(
        wrong.is_empty(),
        "{dir}: {} misclassified:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn valid_configurations_load() {
    classify("valid", true);
}

#[test]
fn invalid_configurations_are_refused_naming_a_field() {
    classify("invalid", false);
    for f in corpus("invalid") {
        let e = Config::parse(&fs::read(&f).unwrap()).unwrap_err();
        assert!(!e.field.is_empty(), "{}", f.display());
    }
}

#[test]
fn cross_field_rules_are_enforced_by_the_parser() {
    classify("cross_field", false);
}

#[test]
fn what_the_schema_refuses_on_purpose_still_parses() {
    classify("schema_stricter", true);
}

#[test]
fn every_json_configuration_in_the_docs_loads() {
    // The README and the reference pages it links to.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<_> = fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    let mut blocks = 0;
    for page in &pages {
        let text = fs::read_to_string(page).unwrap();
        for (i, chunk) in text.split("```json\n").skip(1).enumerate() {
            let block = chunk.split("```").next().unwrap();
            if let Err(e) = Config::parse(block.as_bytes()) {
                panic!("{} json block {i}: {e}\n{block}", page.display());
            }
            blocks += 1;
        }
    }
    assert!(blocks >= 5, "{blocks}");
}

#[test]
fn the_revocation_entries_example_in_the_docs_parses() {
    let text =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"))
            .unwrap();
    let block = text
        .split("```json entries\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("docs/configuration.md has a ```json entries block");
    let entries = jwt_jwks::revoke::entry::parse_document(block.as_bytes(), 100).unwrap();
    assert_eq!(entries.len(), 6);
}
