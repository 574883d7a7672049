//! The admin socket's protocol, both sides: the client sends one command line
//! (`upgrade`, `status`, `restart`, `stop` or `message <text>`); the supervisor answers
//! one line, `ok <text>` or `error <text>`, and closes. `upgrade` answers once the
//! upgrade finished (or failed); `status` answers with a JSON object; `restart`,
//! `stop` and `message` once the children were told.
//!
//! ```text
//! $ printf 'status\n' | socat - UNIX-CONNECT:/run/app.admin
//! ok {"supervisor_pid":…,"children":[…],…}
//! ```

use std::fmt;

/// The longest request line the supervisor reads.
pub(crate) const MAX_REQUEST: u64 = 4096;

/// The longest `message` text, in bytes (it must fit a request line).
pub const MAX_MESSAGE: usize = 4000;

/// The word an answer starts with when the request succeeded.
pub(crate) const OK: &str = "ok";

/// The word an answer starts with when the request was refused or failed.
pub(crate) const ERROR: &str = "error";

/// A request to the supervisor, as sent on its admin socket.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdminCommand {
    /// Start an upgrade and answer when it is over.
    Upgrade,
    /// Answer with the status (a JSON object).
    Status,
    /// Replace every worker now: each gets SIGTERM (SIGKILL after the drain timeout)
    /// and a new child is started for it at once, without waiting for readiness.
    Restart,
    /// Stop the workers and the supervisor, as SIGTERM does.
    Stop,
    /// Deliver a message to every worker: the text is written to the file named by
    /// `HOTSWAP_MESSAGE_FILE` in the children's environment, then each child's process
    /// group gets SIGUSR1. One line, at most [`MAX_MESSAGE`] bytes.
    Message(String),
    /// Re-execute the supervisor's own program keeping its sockets and children (see
    /// `hotswap serve --upgrade-self`); answered just before, once the request is
    /// accepted. The status's `self_upgrades` counts those that happened.
    UpgradeSelf,
}

impl AdminCommand {
    /// The command's word on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            AdminCommand::Upgrade => "upgrade",
            AdminCommand::Status => "status",
            AdminCommand::Restart => "restart",
            AdminCommand::Stop => "stop",
            AdminCommand::Message(_) => "message",
            AdminCommand::UpgradeSelf => "upgrade-self",
        }
    }

    /// The command a request line names (surrounding white space ignored); `None` for
    /// anything else, and for a message that is empty or too long.
    pub fn parse(line: &str) -> Option<AdminCommand> {
        let line = line.trim();
        if let Some(text) = line.strip_prefix("message ") {
            return (!text.is_empty() && text.len() <= MAX_MESSAGE)
                .then(|| AdminCommand::Message(text.to_owned()));
        }
        match line {
            "upgrade" => Some(AdminCommand::Upgrade),
            "status" => Some(AdminCommand::Status),
            "restart" => Some(AdminCommand::Restart),
            "stop" => Some(AdminCommand::Stop),
            "upgrade-self" => Some(AdminCommand::UpgradeSelf),
            _ => None,
        }
    }
}

impl fmt::Display for AdminCommand {
    /// The request line (without its newline): `upgrade`, `message <text>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminCommand::Message(text) => write!(f, "message {text}"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// The answer line for `text`: `ok <text>` or `error <text>`.
pub(crate) fn answer(result: Result<&str, &str>) -> String {
    match result {
        Ok(text) => format!("{OK} {text}"),
        Err(text) => format!("{ERROR} {text}"),
    }
}

/// The environment variable that carries a self-upgrading supervisor's state into its
/// new image (`handoff.rs`); never passed on to a child.
pub(crate) const HANDOFF: &str = "HOTSWAP_SERVE_HANDOFF";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        for c in [
            AdminCommand::Upgrade,
            AdminCommand::Status,
            AdminCommand::Restart,
            AdminCommand::Stop,
            AdminCommand::UpgradeSelf,
            AdminCommand::Message("rotate logs now".into()),
        ] {
            assert_eq!(AdminCommand::parse(&format!("{c}\n")), Some(c));
        }
        assert_eq!(AdminCommand::parse("reload"), None);
        assert_eq!(AdminCommand::parse("message "), None);
        assert_eq!(
            AdminCommand::parse(&format!("message {}", "x".repeat(MAX_MESSAGE + 1))),
            None
        );
        assert_eq!(answer(Ok("done")), "ok done");
        assert_eq!(answer(Err("busy")), "error busy");
    }
}
