//! `--config FILE` (or `SHOAL_CONFIG`): the settings of `shoal node` in a
//! TOML file, and `shoal config print`, which writes them out again.
//!
//! A key is a flag's long name: `slots = 4`, `heartbeat-ms = 200`,
//! `secret-file = "/etc/shoal/secret"`, `mdns = true`. A flag that repeats
//! takes a list (`join = ["/ip4/…"]`, `label = ["gpu=a100"]`), and a
//! `key=value` flag also a table (`label = { gpu = "a100" }`). A key no flag
//! has, or a value its flag would refuse, is an error naming the key and the
//! file.
//!
//! The file's values become clap's defaults for their arguments, so clap's
//! own order gives the precedence: command line > environment > file >
//! built-in default. That needs the file before the real parse:
//!
//! ```text
//!  argv, env ──first pass, errors ignored──▶ which command, which file,
//!                                           what flags and env already set
//!  file ──keys and values checked──▶ defaults of that command's arguments
//!  argv, env ──the real parse──▶ ArgMatches ──▶ Cli
//! ```
//!
//! clap checks `conflicts_with` and `requires` only among values given, not
//! defaults. So here a flag or variable also displaces the file's value of
//! a setting it conflicts with (`--secret` wins over the file's
//! `secret-file`), two conflicting keys in one file are an error, and a
//! command checks its `requires`-like rules itself after parsing.

use anyhow::{Context, anyhow, bail};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use std::any::TypeId;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The id (and long name) of `--config`.
const CONFIG_ID: &str = "config";

/// What `config print` shows instead of a secret.
const REDACTED: &str = "<redacted>";

/// How `config print` starts.
const HEADER: &str = "\
# The settings `shoal node` runs with, given the same flags, environment
# and config file: every key, defaults filled in. A valid --config file;
# secrets and unset keys are comments.
";

/// `--config FILE`, flattened into the commands that read a config file.
#[derive(Args)]
pub struct ConfigFileArg {
    /// A TOML file of settings, keys named like these flags (`shoal config
    /// print` writes one); flags and environment variables override it.
    #[arg(id = CONFIG_ID, long = CONFIG_ID, env = "SHOAL_CONFIG", value_name = "FILE")]
    path: Option<PathBuf>,
}

/// A parsed command line and the command that parsed it, whose argument
/// defaults include the config file's values.
pub struct CommandLine {
    /// Built, so the global arguments appear in every subcommand.
    command: Command,
    matches: ArgMatches,
}

impl CommandLine {
    /// Parses the process's arguments. A bad command line exits with clap's
    /// message, as `Parser::parse` does; a bad config file is an error.
    pub fn parse(command: Command) -> anyhow::Result<CommandLine> {
        Self::parse_from(command, std::env::args_os()).map_err(|error| {
            match error.downcast::<clap::Error>() {
                Ok(clap_error) => clap_error.exit(),
                Err(error) => error,
            }
        })
    }

    pub fn parse_from<T: Into<OsString>>(
        command: Command,
        argv: impl IntoIterator<Item = T>,
    ) -> anyhow::Result<CommandLine> {
        let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
        let mut command = with_config_file(command, &argv)?;
        let matches = command.try_get_matches_from_mut(&argv)?;
        Ok(CommandLine { command, matches })
    }

    pub fn matches(&self) -> &ArgMatches {
        &self.matches
    }

    /// The settings of the chosen subcommand as a config file it accepts:
    /// every key, defaults filled in. Unset keys, and secrets (the arguments
    /// whose environment values `--help` hides: `secret`, `api-token`), are
    /// comments, so the text still works as a file and leaks nothing.
    pub fn settings_toml(&self) -> String {
        let (_, command, matches) = leaf(&self.command, &self.matches);
        let mut text = String::from(HEADER);
        // In `--help`'s order: installing a default moves an argument last.
        let mut args: Vec<&Arg> = settings(command).collect();
        args.sort_by_key(|arg| arg.get_display_order());
        for arg in args {
            let key = arg.get_long().expect("a setting has a long name");
            let mut values: Vec<String> = matches
                .get_raw(arg.get_id().as_str())
                .into_iter()
                .flatten()
                .map(|value| value.to_string_lossy().into_owned())
                .collect();
            let line = if arg.is_hide_env_values_set() && !values.is_empty() {
                format!("# {key} = \"{REDACTED}\"")
            } else if takes_many(arg) {
                let list = values.into_iter().map(|value| typed(arg, value));
                format!("{key} = {}", toml::Value::Array(list.collect()))
            } else if let Some(value) = values.pop() {
                format!("{key} = {}", typed(arg, value))
            } else {
                format!("# {key} is not set")
            };
            text.push_str(&line);
            text.push('\n');
        }
        text
    }
}

/// `command` with the config file's values as defaults of the arguments
/// they set; unchanged when the chosen subcommand takes no `--config` or
/// none was given.
fn with_config_file(command: Command, argv: &[OsString]) -> anyhow::Result<Command> {
    // The real parse reports a bad command line (and shows `--help`, with
    // the built-in defaults); this one only looks.
    let Ok(given) = command
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(argv)
    else {
        return Ok(command);
    };
    let mut built = command.clone();
    built.build();
    let (path, leaf_command, leaf_matches) = leaf(&built, &given);
    if !leaf_command
        .get_arguments()
        .any(|arg| arg.get_id() == CONFIG_ID)
    {
        return Ok(command);
    }
    let Some(file) = ConfigFileArg::from_arg_matches(leaf_matches)
        .ok()
        .and_then(|arg| arg.path)
    else {
        return Ok(command);
    };
    let table = read(&file)?;
    let defaults = defaults_from(&table, leaf_command, leaf_matches, &file)?;
    Ok(defaults.into_iter().fold(command, |command, default| {
        // A global argument lives on the root; clap copies it down.
        let at = if default.global { &[][..] } else { &path[..] };
        mut_arg_at(command, at, &default.id, |arg| {
            arg.default_values(default.values)
        })
    }))
}

fn read(path: &Path) -> anyhow::Result<toml::Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    text.parse()
        .with_context(|| format!("the config file {} is not valid TOML", path.display()))
}

/// One key of the file, as the default of its argument.
struct FileDefault {
    id: String,
    values: Vec<String>,
    /// Defined on the root command (`--log-format`), not the subcommand.
    global: bool,
}

/// Checks every key of `file` against `command`'s arguments and turns the
/// values into defaults, leaving out those the command line or the
/// environment set, or displace through a conflict.
fn defaults_from(
    file: &toml::Table,
    command: &Command,
    given: &ArgMatches,
    path: &Path,
) -> anyhow::Result<Vec<FileDefault>> {
    let file_name = path.display();
    let known: Vec<&Arg> = settings(command).collect();
    let mut keyed = Vec::new();
    for (key, value) in file {
        let Some(arg) = known.iter().find(|arg| arg.get_long() == Some(key)) else {
            return Err(unknown_key(key, &known, path));
        };
        let values = values_of(arg, value)
            .map_err(|reason| anyhow!("invalid value for \"{key}\" in {file_name}: {reason}"))?;
        keyed.push((*arg, key, values));
    }
    for (index, (arg, key, _)) in keyed.iter().enumerate() {
        if let Some((_, other, _)) = keyed[index + 1..]
            .iter()
            .find(|(other, _, _)| conflict(command, arg, other))
        {
            bail!(
                "{file_name} sets both \"{key}\" and \"{other}\", which exclude each other; keep one"
            );
        }
    }
    let displaced = |arg: &Arg| {
        is_given(given, arg)
            || known
                .iter()
                .any(|other| is_given(given, other) && conflict(command, arg, other))
    };
    Ok(keyed
        .into_iter()
        .filter(|(arg, _, _)| !displaced(arg))
        .map(|(arg, _, values)| FileDefault {
            id: arg.get_id().to_string(),
            values,
            global: arg.is_global_set(),
        })
        .collect())
}

fn unknown_key(key: &str, known: &[&Arg], path: &Path) -> anyhow::Error {
    let file_name = path.display();
    let closest = known
        .iter()
        .filter_map(|arg| arg.get_long())
        .map(|long| (strsim::jaro_winkler(key, long), long))
        .filter(|(similarity, _)| *similarity > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match closest {
        Some((_, long)) => {
            anyhow!("unknown key \"{key}\" in {file_name} (did you mean \"{long}\"?)")
        }
        None => anyhow!(
            "unknown key \"{key}\" in {file_name}; the keys are the flags' long names (`shoal config print` lists them)"
        ),
    }
}

/// A key's value as the strings the flag would get, each checked by the
/// flag's own parser.
fn values_of(arg: &Arg, value: &toml::Value) -> Result<Vec<String>, String> {
    use toml::Value;
    let values = match value {
        Value::Array(items) if takes_many(arg) => {
            items.iter().map(scalar).collect::<Result<_, _>>()?
        }
        Value::Table(entries) if takes_many(arg) => entries
            .iter()
            .map(|(key, value)| Ok(format!("{key}={}", scalar(value)?)))
            .collect::<Result<_, String>>()?,
        Value::Array(_) | Value::Table(_) => {
            return Err(format!("expected one value, got {}", value.type_str()));
        }
        one => vec![scalar(one)?],
    };
    for value in &values {
        check(arg, value)?;
    }
    Ok(values)
}

fn scalar(value: &toml::Value) -> Result<String, String> {
    use toml::Value;
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Integer(number) => Ok(number.to_string()),
        Value::Float(number) => Ok(number.to_string()),
        Value::Boolean(yes) => Ok(yes.to_string()),
        other => Err(format!(
            "expected a string, number or boolean, got {}",
            other.type_str()
        )),
    }
}

/// Runs `value` through `arg`'s parser, as the command line would.
fn check(arg: &Arg, value: &str) -> Result<(), String> {
    let probe = Command::new("check").no_binary_name(true).arg(
        Arg::new("value")
            .value_parser(arg.get_value_parser().clone())
            .allow_hyphen_values(true),
    );
    let Err(error) = probe.try_get_matches_from([value]) else {
        return Ok(());
    };
    let why = match (
        std::error::Error::source(&error),
        error.get(clap::error::ContextKind::ValidValue),
    ) {
        (Some(source), _) => source.to_string(),
        (None, Some(valid)) => format!("expected one of {valid}"),
        (None, None) => error.kind().to_string(),
    };
    Err(format!("{value:?} ({why})"))
}

/// A raw value as TOML of its flag's type: a number or boolean where the
/// flag parses one, a string otherwise.
fn typed(arg: &Arg, raw: String) -> toml::Value {
    use toml::Value;
    let parses = arg.get_value_parser().type_id();
    let integers = [
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<usize>(),
    ];
    let value = if parses == TypeId::of::<bool>() {
        raw.parse().ok().map(Value::Boolean)
    } else if parses == TypeId::of::<f64>() {
        raw.parse().ok().map(Value::Float)
    } else if integers.iter().any(|id| parses == *id) {
        raw.parse().ok().map(Value::Integer)
    } else {
        None
    };
    value.unwrap_or(Value::String(raw))
}

/// The arguments a config file may set: every flag with a long name but
/// `--config`, `--help`, `--version` and hidden ones (for tests only).
fn settings(command: &Command) -> impl Iterator<Item = &Arg> {
    command.get_arguments().filter(|arg| {
        arg.get_long().is_some()
            && !arg.is_hide_set()
            && arg.get_id() != CONFIG_ID
            && !matches!(
                arg.get_action(),
                ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
            )
    })
}

/// A repeatable flag: a list in the file.
fn takes_many(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append)
}

/// Whether the command line or the environment set `arg`.
fn is_given(matches: &ArgMatches, arg: &Arg) -> bool {
    matches!(
        matches.value_source(arg.get_id().as_str()),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// Whether either argument names the other in `conflicts_with`.
fn conflict(command: &Command, a: &Arg, b: &Arg) -> bool {
    let names = |one: &Arg, other: &Arg| {
        command
            .get_arg_conflicts_with(one)
            .iter()
            .any(|arg| arg.get_id() == other.get_id())
    };
    names(a, b) || names(b, a)
}

/// The chosen subcommand (the root if none), its path of names and its
/// matches.
fn leaf<'a>(
    command: &'a Command,
    matches: &'a ArgMatches,
) -> (Vec<String>, &'a Command, &'a ArgMatches) {
    let (mut command, mut matches, mut path) = (command, matches, Vec::new());
    while let Some((name, sub_matches)) = matches.subcommand() {
        let Some(sub_command) = command.find_subcommand(name) else {
            break;
        };
        path.push(name.to_string());
        (command, matches) = (sub_command, sub_matches);
    }
    (path, command, matches)
}

/// Changes the argument `id` of the subcommand at `path`.
fn mut_arg_at(
    command: Command,
    path: &[String],
    id: &str,
    change: impl FnOnce(Arg) -> Arg,
) -> Command {
    match path.split_first() {
        None => command.mut_arg(id, change),
        Some((name, rest)) => command.mut_subcommand(name, |sub| mut_arg_at(sub, rest, id, change)),
    }
}

#[cfg(test)]
mod tests;
