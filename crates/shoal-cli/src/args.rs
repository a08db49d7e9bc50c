//! Values more than one command reads from its command line: `key=value`
//! labels and `key=amount` resources (`shoal node` offers them, `shoal
//! submit` requires them) and JavaScript files (`--script`).

use anyhow::Context;
use shoal_node::Script;
use std::path::Path;

/// Parses `key=value`.
fn key_value(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected key=value, got {text:?}"))?;
    Ok((key.to_string(), value.to_string()))
}

/// Parses `key=amount`.
fn key_amount(text: &str) -> Result<(String, u64), String> {
    let (key, value) = key_value(text)?;
    let amount = value
        .parse()
        .map_err(|_| format!("expected key=<whole number>, got {text:?}"))?;
    Ok((key, amount))
}

/// `--label key=value`.
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    key_value(text)
}

/// `--resource key=amount`.
pub fn parse_resource(text: &str) -> Result<(String, u64), String> {
    key_amount(text)
}

/// Reads a script file for `--script`; the script is named after the file.
pub fn read_script(path: &Path) -> anyhow::Result<Script> {
    let source = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the script {}", path.display()))?;
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(Script::new(name, source))
}
