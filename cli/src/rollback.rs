//! `hotswap rollback`: asks a running host to reload one plugin at an older build kept in
//! its plugin directory (the one before the running build, or a named one), as a normal
//! transactional reload; exits non-zero when it fails.

use crate::admin::AdminArgs;
use crate::reload::{answer, print_outcome, ReloadError};
use clap::Args;
use hotswap_host::admin::client::{Client, Response};

/// Arguments of `hotswap rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Where the host's admin endpoint is, and its token.
    #[command(flatten)]
    pub admin: AdminArgs,

    /// Go to this build (an id `hotswap status` lists) instead of the one before the
    /// running build
    #[arg(long, value_name = "BUILD_ID")]
    pub to: Option<String>,

    /// Print the host's JSON answer instead of the summary
    #[arg(long)]
    pub json: bool,

    /// The plugin to roll back
    #[arg(value_name = "PLUGIN")]
    pub plugin: String,
}

/// Sends `POST /rollback` and returns the host's answer when it is a success.
///
/// Fails when the host cannot be reached, has no such build, or the reload failed; the
/// error carries the host's message.
pub fn rollback(client: &Client, plugin: &str, to: Option<&str>) -> Result<Response, ReloadError> {
    let body = serde_json::json!({ "plugin": plugin, "build_id": to }).to_string();
    answer(client.post("/rollback", Some(body.as_bytes()))?)
}

/// Runs `hotswap rollback`; returns the exit status.
pub fn run(args: RollbackArgs) -> i32 {
    let client = match args.admin.client() {
        Ok(c) => c,
        Err(e) => return crate::report(&e),
    };
    print_outcome(
        rollback(&client, &args.plugin, args.to.as_deref()),
        args.json,
    )
}
