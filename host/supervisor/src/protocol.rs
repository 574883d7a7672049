//! The admin socket's protocol, both sides: the client sends one command line
//! (`upgrade` or `status`); the supervisor answers one line, `ok <text>` or
//! `error <text>`, and closes. `upgrade` answers once the upgrade finished (or failed);
//! `status` answers with a JSON object.
//!
//! ```text
//! $ printf 'status\n' | socat - UNIX-CONNECT:/run/app.admin
//! ok {"supervisor_pid":…,"children":[…],…}
//! ```

use std::fmt;

/// The longest request line the supervisor reads.
pub(crate) const MAX_REQUEST: u64 = 256;

/// The word an answer starts with when the request succeeded.
pub(crate) const OK: &str = "ok";

/// The word an answer starts with when the request was refused or failed.
pub(crate) const ERROR: &str = "error";

/// A request to the supervisor, as sent on its admin socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdminCommand {
    /// Start an upgrade and answer when it is over.
    Upgrade,
    /// Answer with the status (a JSON object).
    Status,
}

impl AdminCommand {
    /// The command's word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminCommand::Upgrade => "upgrade",
            AdminCommand::Status => "status",
        }
    }

    /// The command a request line names (surrounding white space ignored); `None` for
    /// anything else.
    pub fn parse(line: &str) -> Option<AdminCommand> {
        match line.trim() {
            "upgrade" => Some(AdminCommand::Upgrade),
            "status" => Some(AdminCommand::Status),
            _ => None,
        }
    }
}

impl fmt::Display for AdminCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer line for `text`: `ok <text>` or `error <text>`.
pub(crate) fn answer(result: Result<&str, &str>) -> String {
    match result {
        Ok(text) => format!("{OK} {text}"),
        Err(text) => format!("{ERROR} {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        for c in [AdminCommand::Upgrade, AdminCommand::Status] {
            assert_eq!(AdminCommand::parse(&format!("{c}\n")), Some(c));
        }
        assert_eq!(AdminCommand::parse("reload"), None);
        assert_eq!(answer(Ok("done")), "ok done");
        assert_eq!(answer(Err("busy")), "error busy");
    }
}
