//! JSON Schemas of plimsoll's file formats and outputs, generated from the
//! Rust types. `schemas/` holds the same text; a test keeps them equal.

use clap::ValueEnum;

/// Which schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    /// `plimsoll.yaml`.
    Plimsoll,
    /// A stack in canonical form (what `render` prints), with `x-plimsoll`.
    Stack,
    /// The JSON plan (`reconcile --dry-run --format json`).
    Plan,
    /// What a commit range changes (`diff --format json`).
    Diff,
}

impl SchemaKind {
    /// The file under `schemas/` holding this schema.
    pub fn file_name(self) -> &'static str {
        match self {
            SchemaKind::Plimsoll => "plimsoll.json",
            SchemaKind::Stack => "stack.json",
            SchemaKind::Plan => "plan.json",
            SchemaKind::Diff => "diff.json",
        }
    }
}

/// The schema as pretty JSON text, ending in a newline.
pub fn generate(kind: SchemaKind) -> String {
    let schema = match kind {
        SchemaKind::Plimsoll => schemars::schema_for!(crate::spec::config::Config),
        SchemaKind::Stack => schemars::schema_for!(crate::spec::model::Stack),
        SchemaKind::Plan => schemars::schema_for!(crate::plan::Plan),
        SchemaKind::Diff => schemars::schema_for!(crate::range::RangeDiff),
    };
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_schemas_match_the_types() {
        for kind in SchemaKind::value_variants() {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("schemas")
                .join(kind.file_name());
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                on_disk == generate(*kind),
                "{} differs from the Rust types: run `cargo run -- schema {} > {}`",
                path.display(),
                kind.to_possible_value().unwrap().get_name(),
                path.display()
            );
        }
    }
}
