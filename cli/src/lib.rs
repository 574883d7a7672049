//! The `hotswap` command line, as a library.
//!
//! [`run`] parses a command line and executes it, exactly as the `hotswap` binary does, so
//! a host or a demo program can drive the same commands in-process. The work of each
//! subcommand lives in its own module (`hotswap build` in the [`hotswap_build`] crate);
//! this file only declares the arguments and maps them onto those modules' options.
#![warn(missing_docs)]

pub mod admin;
pub mod new;
pub mod reload;
pub mod rollback;
pub mod serve;
mod serve_log;
pub mod status;
pub mod watch;

use clap::{Args, Parser, Subcommand};
use hotswap_build::static_link;
use std::ffi::OsString;
use std::path::PathBuf;

/// Exit status of a command that failed (argument errors exit with clap's status 2).
pub const EXIT_FAILURE: i32 = 1;

/// Build, reload and inspect hot-swappable plugins.
#[derive(Debug, Parser)]
#[command(name = "hotswap", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build a plugin crate (a cdylib) and package it with its manifest into an output
    /// directory.
    #[command(after_help = "Examples:\n  hotswap build demo/hello/world plugins\n  \
                      hotswap build -v demo/hello/world plugins -- --features v2\n  \
                      hotswap build --static-linking demo/hello/world demo/slink/host")]
    Build(BuildArgs),
    /// Ask a running host to reload its plugins through its admin endpoint; exits
    /// non-zero if the reload fails (the host keeps serving its current plugins).
    #[command(after_help = "Examples:\n  hotswap reload --admin /tmp/host.sock\n  \
                      hotswap reload --admin http://127.0.0.1:7070 --token \"$TOKEN\"")]
    Reload(reload::ReloadArgs),
    /// Ask a running host to reload one plugin at an older build kept in its plugin
    /// directory (the one before the running build, or --to BUILD_ID); later reloads keep
    /// it there until a newer build appears.
    #[command(
        after_help = "Examples:\n  hotswap rollback world --admin /tmp/host.sock\n  \
                      hotswap rollback world --to \"$BUILD_ID\" --admin /tmp/host.sock"
    )]
    Rollback(rollback::RollbackArgs),
    /// Show a running host's generation, plugins, every version still in memory, and
    /// the builds kept in its plugin directory.
    Status(status::StatusArgs),
    /// Rebuild a plugin on every source change and reload it into a running host.
    #[command(after_help = "Example:\n  \
                      hotswap watch demo/hello/world plugins --admin /tmp/host.sock")]
    Watch(watch::WatchArgs),
    /// Run a command under the zero-downtime supervisor: bind the sockets once, pass
    /// them on (LISTEN_FDS), and replace the process on SIGHUP or `--upgrade` without
    /// refusing a connection.
    #[command(after_help = serve::EXAMPLES)]
    Serve(serve::ServeArgs),
    /// Make a signing key pair: the secret key (mode 0600) for `hotswap build --sign`,
    /// and `<SECRET_KEY>.pub` for the host's trusted keys (minisign's format)
    #[command(
        after_help = "Example:\n  hotswap keygen release.key   # writes release.key and release.key.pub\n  \
                      hotswap build --sign release.key demo/hello/world plugins"
    )]
    Keygen(KeygenArgs),
    /// Create a workspace with a host that serves and reloads plugins (SIGHUP, admin
    /// endpoint) and a plugin with two versions, ready to build and reload.
    #[command(after_help = "Examples:\n  hotswap new my-service\n  \
                      hotswap new my-service --hotswap-path ~/src/hotswap\n  \
                      hotswap new my-service --git https://example.org/you/hotswap")]
    New(new::NewArgs),
}

/// Arguments of `hotswap keygen`.
#[derive(Debug, Args)]
struct KeygenArgs {
    /// Where to write the secret key; the public key goes to <SECRET_KEY>.pub. Neither
    /// may exist yet
    #[arg(value_name = "SECRET_KEY")]
    secret_key: PathBuf,
}

/// Arguments of `hotswap build`.
#[derive(Debug, Args)]
struct BuildArgs {
    /// Print each step and the exact cargo command
    #[arg(short, long)]
    verbose: bool,

    /// Build with the dev profile instead of release
    #[arg(long)]
    debug: bool,

    /// Keep temporary files (their location is printed) instead of deleting them
    #[arg(long)]
    leave_temps: bool,

    /// Skip cargo; package the library cargo already built for this profile
    #[arg(long)]
    no_build: bool,

    /// Case-insensitive name prefix of live functions and types, stored in the manifest
    #[arg(long, value_name = "PREFIX", default_value = hotswap_build::DEFAULT_LIVE_PREFIX)]
    live_prefix: String,

    /// Regex of extra files (paths relative to <PLUGIN_DIR>) that count toward the source
    /// hash, besides *.rs, Cargo.toml and Cargo.lock
    #[arg(long, value_name = "REGEX", value_parser = parse_regex)]
    include: Option<regex::Regex>,

    /// Regex of files (paths relative to <PLUGIN_DIR>) left out of the source hash
    #[arg(long, value_name = "REGEX", value_parser = parse_regex)]
    exclude: Option<regex::Regex>,

    /// Cargo target directory [default: the plugin's own, where `cargo build --release`
    /// builds; its hotswap-build subdirectory when run from a build script]
    #[arg(long, value_name = "DIR")]
    target_dir: Option<PathBuf>,

    /// After building, delete all but the N newest builds of this plugin in <OUTPUT_DIR>
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    keep: Option<u32>,

    /// Package a plugin built with panic = "abort" (a panic in it aborts the host) instead
    /// of refusing it; warns, and records "panic": "abort" in the manifest
    #[arg(long)]
    allow_panic_abort: bool,

    /// Sign the manifest with this secret key (made by `hotswap keygen`, mode 0600) into
    /// <manifest>.minisig; a host with trusted keys loads only signed plugins
    #[arg(long, value_name = "SECRET_KEY")]
    sign: Option<PathBuf>,

    /// Link the plugin into the host crate given as the second directory instead of
    /// building it (one binary for debugger sessions): writes <HOST_DIR>/src/hotswap_static.rs
    /// and a marked dependency block in <HOST_DIR>/Cargo.toml, then `cargo build` the host.
    /// The plugin needs `crate-type = ["cdylib", "rlib"]`
    #[arg(long, conflicts_with_all = [
        "debug", "leave_temps", "no_build", "include", "exclude", "target_dir", "keep", "cargo_args",
        "allow_panic_abort", "sign",
    ])]
    static_linking: bool,

    /// Directory of the plugin crate (holding its Cargo.toml)
    #[arg(value_name = "PLUGIN_DIR")]
    plugin_dir: PathBuf,

    /// Directory to put the built library and its manifest in (created if missing); with
    /// --static-linking, the host crate's directory (holding its Cargo.toml)
    #[arg(value_name = "OUTPUT_DIR|HOST_DIR")]
    output_dir: PathBuf,

    /// Extra arguments passed to `cargo build` (after `--`), e.g. `--features v2`; cargo runs
    /// in <PLUGIN_DIR>, so its .cargo/config.toml and rust-toolchain apply
    #[arg(last = true, value_name = "CARGO_ARGS")]
    cargo_args: Vec<String>,
}

fn parse_regex(s: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(s)
}

impl From<BuildArgs> for hotswap_build::BuildOptions {
    fn from(args: BuildArgs) -> Self {
        hotswap_build::BuildOptions {
            plugin_dir: args.plugin_dir,
            output_dir: args.output_dir,
            verbose: args.verbose,
            debug: args.debug,
            leave_temps: args.leave_temps,
            no_build: args.no_build,
            live_prefix: args.live_prefix,
            include: args.include,
            exclude: args.exclude,
            target_dir: args.target_dir,
            keep: args.keep.map(|n| n as usize),
            cargo_args: args.cargo_args,
            allow_panic_abort: args.allow_panic_abort,
            sign: args.sign,
        }
    }
}

/// Runs the `hotswap` command line `args` (the first item is the program name, as in
/// [`std::env::args_os`]) and returns the process exit status.
///
/// Help and version requests print to stdout and return 0; argument errors print clap's
/// message and return 2; a failing command prints `error: <cause>: <cause>...` (the whole
/// chain of causes) on stderr and returns [`EXIT_FAILURE`]. Never panics on bad input.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            // Printing can only fail if stdout/stderr are closed; nothing left to tell then.
            let _ = err.print();
            return err.exit_code();
        }
    };
    match cli.command {
        Command::Build(args) if args.static_linking => {
            let options = static_link::StaticLinkOptions {
                plugin_dir: args.plugin_dir,
                host_dir: args.output_dir,
                live_prefix: args.live_prefix,
                verbose: args.verbose,
            };
            match static_link::link(&options) {
                Ok(output) => {
                    println!("{}", output.summary());
                    0
                }
                Err(err) => report(&err),
            }
        }
        Command::Build(args) => {
            let options = hotswap_build::BuildOptions::from(args);
            match hotswap_build::build(&options) {
                Ok(output) => {
                    println!("{}", output.summary(options.verbose));
                    0
                }
                Err(err) => report(&err),
            }
        }
        Command::Keygen(args) => match hotswap_build::signing::keygen(&args.secret_key) {
            Ok(files) => {
                println!(
                    "key {}: secret key {} (keep it private), public key {} (give it to the host)",
                    files.id,
                    files.secret.display(),
                    files.public.display()
                );
                0
            }
            Err(err) => report(&err),
        },
        Command::Reload(args) => reload::run(args),
        Command::Rollback(args) => rollback::run(args),
        Command::Status(args) => status::run(args),
        Command::Watch(args) => watch::run(args),
        Command::Serve(args) => serve::run(args),
        Command::New(args) => new::run(args),
    }
}

/// Prints `error: ` and the chain of causes of `err` on stderr; returns [`EXIT_FAILURE`].
fn report(err: &dyn std::error::Error) -> i32 {
    eprintln!("error: {}", error_chain(err));
    EXIT_FAILURE
}

/// `err` and its sources joined with ": ". A source whose message its parent already
/// contains (errors that print their cause themselves) is not repeated.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut last = out.clone();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !last.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        last = text;
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn build_arguments_parse() {
        let cli = Cli::try_parse_from([
            "hotswap",
            "build",
            "-v",
            "--keep",
            "3",
            "--include",
            r"\.sql$",
            "plug",
            "out",
            "--",
            "--features",
            "v2",
        ])
        .expect("valid command line");
        let Command::Build(args) = cli.command else {
            panic!("parsed as another subcommand");
        };
        let opts = hotswap_build::BuildOptions::from(args);
        assert!(opts.verbose && !opts.debug && !opts.no_build);
        assert_eq!(opts.keep, Some(3));
        assert_eq!(opts.live_prefix, "live_");
        assert_eq!(opts.plugin_dir, PathBuf::from("plug"));
        assert_eq!(opts.output_dir, PathBuf::from("out"));
        assert_eq!(opts.cargo_args, ["--features", "v2"]);
        assert!(opts.include.expect("include set").is_match("db/q.sql"));
    }

    #[test]
    fn static_linking_takes_the_host_directory_second() {
        let cli = Cli::try_parse_from(["hotswap", "build", "--static-linking", "-v", "p", "h"])
            .expect("valid command line");
        let Command::Build(args) = cli.command else {
            panic!("parsed as another subcommand");
        };
        assert!(args.static_linking && args.verbose);
        assert_eq!(
            (args.plugin_dir, args.output_dir),
            (PathBuf::from("p"), PathBuf::from("h"))
        );
    }

    #[test]
    fn bad_arguments_are_refused() {
        for bad in [
            &["hotswap", "build", "--keep", "0", "p", "o"][..],
            &["hotswap", "build", "--include", "(", "p", "o"],
            &["hotswap", "build", "p"],
            &["hotswap", "build", "p", "o", "--features", "v2"],
            &["hotswap", "build", "--static-linking", "--debug", "p", "o"],
            &["hotswap", "build", "--static-linking", "p", "o", "--", "-r"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?} should fail");
        }
        // What `run` prints and returns, checked without printing it: the test output
        // shows no alarming error line for a refusal that is expected.
        let err = Cli::try_parse_from(["hotswap", "build", "--keep", "0", "p", "o"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string()
                .contains("invalid value '0' for '--keep <N>'"),
            "{err}"
        );
    }

    #[test]
    fn error_chain_does_not_repeat_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer step failed")]
        struct Outer(#[source] Middle);
        #[derive(Debug, thiserror::Error)]
        #[error("middle: {0}")]
        struct Middle(#[source] std::io::Error);
        let err = Outer(Middle(std::io::Error::other("disk on fire")));
        assert_eq!(error_chain(&err), "outer step failed: middle: disk on fire");
    }
}
