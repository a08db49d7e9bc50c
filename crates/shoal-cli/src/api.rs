//! Talking to a running node through its HTTP API: `--node URL` (or
//! `SHOAL_NODE`), repeatable or comma-separated for failover.

use anyhow::Context;
use clap::Args;
use shoal_client::{Client, ClientBuilder, ClientError, ErrorCode};
use std::path::PathBuf;

#[derive(Args, Clone)]
pub struct ApiArgs {
    /// A node's HTTP API; give several (or a comma-separated list) and the
    /// next is used when one stops answering.
    #[arg(
        long = "node",
        env = "SHOAL_NODE",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:7070",
        global = true
    )]
    pub nodes: Vec<String>,
    /// The API token the nodes were started with.
    #[arg(long, env = "SHOAL_API_TOKEN", hide_env_values = true, global = true)]
    api_token: Option<String>,
    /// A file holding the API token.
    #[arg(long, conflicts_with = "api_token", global = true)]
    api_token_file: Option<PathBuf>,
}

impl ApiArgs {
    pub fn client(&self) -> anyhow::Result<Client> {
        Ok(self.builder()?.build()?)
    }

    /// The client's settings, for commands that change some (`top` gives
    /// up on a node sooner).
    pub fn builder(&self) -> anyhow::Result<ClientBuilder> {
        let mut builder = Client::builder(&self.nodes);
        if let Some(token) = read_token(self.api_token.as_deref(), self.api_token_file.as_deref())?
        {
            builder = builder.token(token);
        }
        Ok(builder)
    }
}

/// The token from `--api-token`, or the content of `--api-token-file`.
pub fn read_token(
    token: Option<&str>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<String>> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the API token file {}", path.display()))?;
        anyhow::ensure!(
            !text.trim().is_empty(),
            "the API token file {} is empty",
            path.display()
        );
        return Ok(Some(text.trim().to_string()));
    }
    Ok(token
        .filter(|t| !t.trim().is_empty())
        .map(|t| t.trim().to_string()))
}

/// A client error with a hint at the usual cause.
pub fn explain(error: ClientError) -> anyhow::Error {
    let hint = match &error {
        ClientError::Unreachable { .. } => Some(
            "is `shoal node` running there with its HTTP API (--http)? Point at it with --node URL or SHOAL_NODE",
        ),
        ClientError::Api { error, .. } if error.code == ErrorCode::Unauthorized => {
            Some("pass the node's token with --api-token, --api-token-file or SHOAL_API_TOKEN")
        }
        _ => None,
    };
    match hint {
        Some(hint) => anyhow::anyhow!("{error}\n  hint: {hint}"),
        None => anyhow::anyhow!("{error}"),
    }
}
