use super::*;
use crate::Cli;
use clap::CommandFactory;

/// A config file with `text` in it.
fn config(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

fn parse(args: &[&str]) -> anyhow::Result<CommandLine> {
    CommandLine::parse_from(
        Cli::command(),
        std::iter::once("shoal").chain(args.iter().copied()),
    )
}

fn node_with(file: &tempfile::NamedTempFile, flags: &[&str]) -> anyhow::Result<CommandLine> {
    let path = file.path().to_str().unwrap();
    parse(&[&["node", "--config", path], flags].concat())
}

fn node(line: &CommandLine) -> &ArgMatches {
    line.matches().subcommand_matches("node").unwrap()
}

fn strings<T: ToString + Clone + Send + Sync + 'static>(
    matches: &ArgMatches,
    id: &str,
) -> Vec<String> {
    matches
        .get_many::<T>(id)
        .into_iter()
        .flatten()
        .map(ToString::to_string)
        .collect()
}

fn labels(matches: &ArgMatches) -> Vec<(String, String)> {
    matches
        .get_many::<(String, String)>("labels")
        .into_iter()
        .flatten()
        .cloned()
        .collect()
}

fn error_of(result: anyhow::Result<CommandLine>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(error) => format!("{error:#}"),
    }
}

#[test]
fn the_file_sets_what_flags_leave_unset() {
    let file = config(
        r#"
        slots = 3
        cluster = "blue"
        listen = ["/ip4/127.0.0.1/tcp/7001", "/ip4/127.0.0.1/tcp/7002"]
        label = ["gpu=a100"]
        mdns = true
        log-format = "json"
        "#,
    );
    let line = node_with(&file, &[]).unwrap();
    let matches = node(&line);
    assert_eq!(matches.get_one::<u32>("slots"), Some(&3));
    assert_eq!(strings::<String>(matches, "cluster"), ["blue"]);
    assert_eq!(
        strings::<shoal_node::Multiaddr>(matches, "listen"),
        ["/ip4/127.0.0.1/tcp/7001", "/ip4/127.0.0.1/tcp/7002"]
    );
    assert_eq!(labels(matches), [("gpu".into(), "a100".into())]);
    assert_eq!(matches.get_one::<bool>("mdns"), Some(&true));
    assert_eq!(
        matches.get_one::<u64>("heartbeat_ms"),
        Some(&1000),
        "a key the file leaves out keeps its built-in default"
    );
    assert_eq!(strings::<String>(line.matches(), "log_format"), ["json"]);

    let line = node_with(
        &file,
        &[
            "--slots",
            "5",
            "--listen",
            "/ip4/0.0.0.0/tcp/7000",
            "--mdns=false",
            "--log-format",
            "text",
        ],
    )
    .unwrap();
    let matches = node(&line);
    assert_eq!(matches.get_one::<u32>("slots"), Some(&5), "a flag wins");
    assert_eq!(
        strings::<shoal_node::Multiaddr>(matches, "listen"),
        ["/ip4/0.0.0.0/tcp/7000"],
        "a repeated flag replaces the file's list, not adds to it"
    );
    assert_eq!(matches.get_one::<bool>("mdns"), Some(&false));
    assert_eq!(strings::<String>(line.matches(), "log_format"), ["text"]);
    assert_eq!(strings::<String>(matches, "cluster"), ["blue"]);
}

#[test]
fn labels_and_resources_may_be_tables() {
    let file = config(
        r#"
        label = { gpu = "a100", zone = "eu" }
        resource = { gpu = 2 }
        "#,
    );
    let line = node_with(&file, &[]).unwrap();
    let matches = node(&line);
    assert_eq!(
        labels(matches),
        [("gpu".into(), "a100".into()), ("zone".into(), "eu".into())]
    );
    let resources: Vec<_> = matches
        .get_many::<(String, u64)>("resources")
        .unwrap()
        .cloned()
        .collect();
    assert_eq!(resources, [("gpu".to_string(), 2)]);
}

#[test]
fn an_unknown_key_is_named_with_the_file() {
    let file = config("slot = 4\n");
    let error = error_of(node_with(&file, &[]));
    let name = file.path().display();
    assert_eq!(
        error,
        format!("unknown key \"slot\" in {name} (did you mean \"slots\"?)")
    );
    let error = error_of(node_with(&config("[node]\nslots = 4\n"), &[]));
    assert!(error.starts_with("unknown key \"node\" in "), "{error}");
    let error = error_of(node_with(&config("config = \"other.toml\"\n"), &[]));
    assert!(error.starts_with("unknown key \"config\" in "), "{error}");
}

#[test]
fn a_bad_value_is_named_with_its_key() {
    for (text, expected) in [
        (
            "slots = \"four\"",
            "invalid value for \"slots\" in FILE: \"four\" (invalid digit found in string)",
        ),
        (
            "slots = [1, 2]",
            "invalid value for \"slots\" in FILE: expected one value, got array",
        ),
        (
            "http = \"nowhere\"",
            "invalid value for \"http\" in FILE: \"nowhere\" (expected host:port (like 127.0.0.1:7070) or off, got \"nowhere\")",
        ),
        (
            "log-format = \"xml\"",
            "invalid value for \"log-format\" in FILE: \"xml\" (expected one of text, json)",
        ),
        (
            "label = [{ gpu = 1 }]",
            "invalid value for \"label\" in FILE: expected a string, number or boolean, got table",
        ),
        (
            "join = [\"not an address\"]",
            "invalid value for \"join\" in FILE: \"not an address\"",
        ),
    ] {
        let file = config(text);
        let error = error_of(node_with(&file, &[]));
        let expected = expected.replace("FILE", &file.path().display().to_string());
        assert!(error.starts_with(&expected), "{text}: {error}");
    }
    let error = error_of(node_with(&config("slots = "), &[]));
    assert!(error.contains("is not valid TOML"), "{error}");
    let error = error_of(parse(&["node", "--config", "/no/such/shoal.toml"]));
    assert!(
        error.starts_with("cannot read the config file /no/such/shoal.toml"),
        "{error}"
    );
}

#[test]
fn a_flag_displaces_the_keys_it_conflicts_with() {
    let file = config("secret-file = \"/etc/shoal/secret\"\n");
    let line = node_with(&file, &["--secret", "from the command line"]).unwrap();
    let matches = node(&line);
    assert_eq!(matches.get_one::<PathBuf>("secret_file"), None);
    assert_eq!(
        strings::<String>(matches, "secret"),
        ["from the command line"]
    );

    let file = config("secret-file = \"/etc/shoal/secret\"\nsecret = \"hunter2\"\n");
    let error = error_of(node_with(&file, &[]));
    assert!(
        error.ends_with(
            "sets both \"secret\" and \"secret-file\", which exclude each other; keep one"
        ),
        "{error}"
    );
}

#[test]
fn help_ignores_the_file() {
    let file = config("slots = 3\nsecret = \"hunter2\"\nslot = 1\n");
    let error = node_with(&file, &["--help"]).err().unwrap();
    let error = error.downcast::<clap::Error>().unwrap();
    assert_eq!(error.kind(), clap::error::ErrorKind::DisplayHelp);
    let help = error.render().to_string();
    assert!(help.contains("[default: 1000]"), "{help}");
    assert!(!help.contains("hunter2"), "{help}");
}

fn print(args: &[&str]) -> String {
    parse(&[&["config", "print"], args].concat())
        .unwrap()
        .settings_toml()
}

/// The long names of `shoal node`'s flags: the keys a file may have.
fn node_keys() -> Vec<String> {
    let mut command = Cli::command();
    command.build();
    let node = command.find_subcommand("node").unwrap();
    let mut keys: Vec<String> = settings(node)
        .filter_map(Arg::get_long)
        .map(String::from)
        .collect();
    keys.sort_unstable();
    keys
}

#[test]
fn the_example_in_deploy_is_valid_and_shows_every_key() {
    let example = include_str!("../../../../deploy/shoal.toml");
    let path = config(example);
    let printed = print(&["--config", path.path().to_str().unwrap()]);
    assert!(
        printed
            .lines()
            .any(|line| line == "label = [\"zone=eu-west\"]")
    );
    for key in node_keys() {
        let shown = example.lines().any(|line| {
            line.trim_start_matches("# ")
                .starts_with(&format!("{key} = "))
        });
        assert!(shown, "deploy/shoal.toml has no line for {key:?}");
    }
}

#[test]
fn print_fills_in_defaults() {
    let text = print(&[]);
    for line in [
        "listen = [\"/ip4/127.0.0.1/tcp/0\"]",
        "join = []",
        "# slots is not set",
        "mdns = false",
        "heartbeat-ms = 1000",
        "http = \"127.0.0.1:7070\"",
        "alert-load = 4.0",
        "# secret is not set",
        "log-format = \"text\"",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    let mut keys: Vec<String> = text
        .lines()
        .filter(|line| !line.starts_with("# ") || line.ends_with(" is not set"))
        .map(|line| {
            let line = line.trim_start_matches("# ");
            line.split([' ', '=']).next().unwrap().to_string()
        })
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, node_keys(), "every flag of `shoal node` is a key");
}

#[test]
fn print_redacts_secrets_and_round_trips() {
    let file = config(
        r#"
        slots = 3
        label = { gpu = "a100" }
        secret = "hunter2"
        python-module = ["scoring"]
        python = 2
        "#,
    );
    let path = file.path().to_str().unwrap();
    let printed = print(&[
        "--config",
        path,
        "--api-token",
        "s3cret",
        "--join",
        "/ip4/10.0.0.1/tcp/7001",
        "--http",
        "off",
    ]);
    assert!(!printed.contains("hunter2") && !printed.contains("s3cret"));
    assert!(
        printed.contains("\n# secret = \"<redacted>\"\n"),
        "{printed}"
    );
    assert!(
        printed.contains("\n# api-token = \"<redacted>\"\n"),
        "{printed}"
    );
    for line in [
        "slots = 3",
        "label = [\"gpu=a100\"]",
        "join = [\"/ip4/10.0.0.1/tcp/7001\"]",
        "http = \"off\"",
        "python = 2",
    ] {
        assert!(
            printed.lines().any(|l| l == line),
            "no {line:?} in\n{printed}"
        );
    }

    let reprinted = print(&["--config", config(&printed).path().to_str().unwrap()]);
    let without_secrets = |text: &str| {
        text.lines()
            .filter(|line| !line.starts_with("# secret") && !line.starts_with("# api-token"))
            .map(|line| format!("{line}\n"))
            .collect::<String>()
    };
    assert_eq!(without_secrets(&reprinted), without_secrets(&printed));
}
