//! `shoal call`: run one function on a cluster from the command line,
//! through a node's HTTP API. With `--script` the script travels with the
//! call, so no node needs it beforehand.

use crate::api::{ApiArgs, explain};
use crate::args::{json_input, read_script};
use clap::Args;
use shoal_client::{CallBody, ScriptSource};
use std::path::PathBuf;

#[derive(Args)]
pub struct CallArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// A JavaScript file that defines the function; shipped with the call.
    #[arg(long)]
    script: Option<PathBuf>,
    /// Seconds to wait for the result.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// The function to call.
    function: String,
    /// Its arguments, as JSON; `@FILE` reads them from a file, `-` from
    /// standard input.
    #[arg(default_value = "null", allow_hyphen_values = true)]
    args: String,
}

pub async fn run(args: CallArgs) -> anyhow::Result<()> {
    let call_args = json_input(&args.args, "the arguments")?;
    let script = args.script.as_deref().map(read_script).transpose()?;
    let client = args.api.client()?;
    let body = CallBody {
        args: call_args,
        timeout_ms: Some(args.timeout.saturating_mul(1000)),
        script: script.map(|s| ScriptSource {
            name: s.name,
            source: s.source,
        }),
    };
    let value = client
        .call_with(&args.function, body)
        .await
        .map_err(explain)?;
    println!("{value}");
    Ok(())
}
