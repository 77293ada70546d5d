//! The configuration reference and `.env.example` name every declared setting.

use super::settings::SETTINGS;

#[test]
fn configuration_doc_and_env_example_document_every_variable() {
    let reference = include_str!("../../docs/configuration.md");
    let example = include_str!("../../.env.example");
    for setting in SETTINGS {
        let name = setting.name;
        assert!(
            reference.contains(&format!("| `{name}` |")),
            "docs/configuration.md lacks {name}"
        );
        assert!(example.contains(name), ".env.example lacks {name}");
    }
}
