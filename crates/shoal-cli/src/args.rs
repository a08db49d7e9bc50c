//! Values more than one command reads from its command line: `key=value`
//! labels and `key=amount` resources (`shoal node` offers them, `shoal
//! submit` requires them), JavaScript files (`--script`) and JSON values
//! given inline, as `@FILE` or as `-` (standard input).

use anyhow::Context;
use serde_json::Value;
use shoal_node::Script;
use std::io::Read;
use std::path::Path;

/// How much of a bad JSON text an error message quotes.
const QUOTED_CHARS: usize = 200;

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

/// A duration: a number with a unit (`500ms`, `30s`, `2m`), or a bare
/// number of seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("expected a duration like 30s, 500ms or 2m, got {text:?}"))?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}: use ms, s, m or h"
            ));
        }
    };
    std::time::Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// A JSON value from the command line: the text itself, `@FILE` for a
/// file's contents, or `-` for standard input, so arguments larger than
/// the command line allows still get through. `what` names it in errors.
pub fn json_input(text: &str, what: &str) -> anyhow::Result<Value> {
    let (source, json) = if text == "-" {
        let mut json = String::new();
        std::io::stdin()
            .read_to_string(&mut json)
            .with_context(|| format!("cannot read {what} from standard input"))?;
        ("standard input".to_string(), json)
    } else if let Some(path) = text.strip_prefix('@') {
        let json = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {what} from {path}"))?;
        (path.to_string(), json)
    } else {
        (String::new(), text.to_string())
    };
    serde_json::from_str(&json).map_err(|error| {
        let shown: String = json.chars().take(QUOTED_CHARS).collect();
        let cut = if shown.len() < json.len() { "…" } else { "" };
        let from = if source.is_empty() {
            String::new()
        } else {
            format!(" (from {source})")
        };
        anyhow::anyhow!("{what}{from} is not valid JSON: {error}: {shown}{cut}")
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_comes_inline_or_from_a_file() {
        assert_eq!(json_input(r#"{"n": 1}"#, "x").unwrap(), json!({"n": 1}));
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "[1, 2, 3]").unwrap();
        let at = format!("@{}", file.path().display());
        assert_eq!(json_input(&at, "x").unwrap(), json!([1, 2, 3]));
    }

    #[test]
    fn durations_take_a_unit_or_mean_seconds() {
        use std::time::Duration;
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").unwrap_err().contains("like 30s"));
        assert!(
            parse_duration("3 weeks")
                .unwrap_err()
                .contains("unknown unit")
        );
    }

    #[test]
    fn bad_json_is_named_and_quoted_briefly() {
        let long = format!("{{\"a\": {}", "1".repeat(10_000));
        let error = json_input(&long, "the arguments").unwrap_err().to_string();
        assert!(
            error.starts_with("the arguments is not valid JSON"),
            "{error}"
        );
        assert!(
            error.len() < 400,
            "the message quotes only the start: {error}"
        );
        let error = json_input("@/no/such/file.json", "the document")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("cannot read the document from /no/such/file.json"),
            "{error}"
        );
    }
}
