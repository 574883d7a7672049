//! The `--admin` / `--token` / `--timeout` arguments shared by `hotswap reload`, `status`
//! and `watch`, and the client they make.

use clap::Args;
use hotswap_host::admin::client::{AdminTarget, Client, ClientError};
use std::time::Duration;

/// Environment variable read when `--admin` is not given.
pub const ADMIN_ENV: &str = "HOTSWAP_ADMIN";
/// Environment variable read when `--token` is not given (keeps the token out of `ps`).
pub const TOKEN_ENV: &str = "HOTSWAP_ADMIN_TOKEN";

/// Where the host's admin endpoint is and how to talk to it.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// The host's admin endpoint: a unix socket path, or http://127.0.0.1:PORT
    /// [default: $HOTSWAP_ADMIN]
    #[arg(long, value_name = "SOCKET|URL")]
    pub admin: Option<String>,

    /// Bearer token for a TCP endpoint [default: $HOTSWAP_ADMIN_TOKEN]
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,

    /// Allow an http:// endpoint that is not loopback. The endpoint speaks plain HTTP:
    /// the token crosses the network in clear text (prefer an SSH tunnel)
    #[arg(long)]
    pub allow_remote: bool,

    /// Seconds to wait for the host's answer
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
}

/// Why no client could be made from the arguments.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminArgsError {
    /// Neither `--admin` nor `$HOTSWAP_ADMIN`.
    #[error(
        "no admin endpoint: pass --admin <socket path | http://127.0.0.1:PORT> or set {ADMIN_ENV}"
    )]
    Missing,
    /// The address cannot be parsed.
    #[error(transparent)]
    Target(#[from] ClientError),
}

impl AdminArgs {
    /// The client these arguments describe.
    ///
    /// Fails when no endpoint is given or it cannot be parsed.
    pub fn client(&self) -> Result<Client, AdminArgsError> {
        let admin = match &self.admin {
            Some(a) => a.clone(),
            None => std::env::var(ADMIN_ENV)
                .ok()
                .filter(|s| !s.is_empty())
                .ok_or(AdminArgsError::Missing)?,
        };
        let target: AdminTarget = admin.parse()?;
        let token = self
            .token
            .clone()
            .or_else(|| std::env::var(TOKEN_ENV).ok().filter(|s| !s.is_empty()));
        if self.allow_remote {
            if let AdminTarget::Tcp(authority) = &target {
                if !is_loopback_name(authority) {
                    eprintln!(
                        "warning: --allow-remote: the admin request{} to {target} crosses the network in clear text",
                        if token.is_some() { " and its bearer token" } else { "" }
                    );
                }
            }
        }
        Ok(Client::new(target)
            .token(token)
            .allow_remote(self.allow_remote)
            .timeout(Duration::from_secs(self.timeout)))
    }
}

/// Whether `host:port` names a loopback host without a lookup (an IP literal or
/// `localhost`); only decides whether to warn, the client checks resolved addresses.
fn is_loopback_name(authority: &str) -> bool {
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The `error` field of a JSON error answer, or the body as text.
pub fn error_message(response: &hotswap_host::admin::client::Response) -> String {
    response
        .json()
        .ok()
        .and_then(|j| j.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| response.text().trim().to_owned())
}
