//! `shoal call`: run one function on a cluster from the command line.
//!
//! The command joins the cluster as a node without slots (it only calls),
//! makes the call, prints the result as JSON and leaves. With `--script`
//! the script travels with the call, so no node needs it beforehand.

use crate::client::connect;
use crate::node_cmd::{ClusterArgs, read_script};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct CallArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// A JavaScript file that defines the function; shipped with the call.
    #[arg(long)]
    script: Option<PathBuf>,
    /// Seconds to wait for the result.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// The function to call.
    function: String,
    /// Its arguments, as JSON.
    #[arg(default_value = "null")]
    args: String,
}

pub async fn run(args: CallArgs) -> anyhow::Result<()> {
    let call_args: serde_json::Value = serde_json::from_str(&args.args)
        .with_context(|| format!("the arguments are not valid JSON: {}", args.args))?;
    let script = args.script.as_deref().map(read_script).transpose()?;
    let node = connect(&args.cluster).await?;
    let timeout = Duration::from_secs(args.timeout);
    let call = async {
        match script {
            Some(script) => node.call_script(script, &args.function, call_args).await,
            None => {
                node.call_with_timeout(&args.function, call_args, timeout)
                    .await
            }
        }
    };
    let result = tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| anyhow::anyhow!("no result within {timeout:?}"))?;
    node.shutdown().await;
    let value = result.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{value}");
    Ok(())
}
