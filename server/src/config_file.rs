//! The command line as a whole: the flags of [`Config`], `--config FILE` (TOML), and the
//! `check-config` subcommand.
//!
//! Precedence, highest first: a flag, its `ROOKERY_*` variable, the file, the default.
//! clap already does the first two and the last; the file fills the gap between them. Each
//! key of the file is the id of one of [`Config`]'s arguments (the flag without `--`, with
//! `_` for `-`: `max_message_size`), so every flag — including any added later — is a key
//! without a second list to keep in step. A key whose flag or variable was given is left
//! out; the others are checked one by one with the flag's own value parser (so a bad value
//! is reported with its key and line), then handed to clap as if they were flags before the
//! real ones.

use crate::config::Config;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// `rookery [FLAGS] [--config FILE] [check-config]`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "rookery",
    version,
    about = "Realtime room server",
    disable_help_subcommand = true
)]
pub struct Cli {
    /// TOML file holding any of the settings below, keyed by flag name with `_` for `-`
    /// (`max_message_size = 65536`). Flags and `ROOKERY_*` variables override it.
    #[arg(long = "config", env = "ROOKERY_CONFIG", value_name = "FILE")]
    pub config_file: Option<PathBuf>,

    #[command(flatten)]
    pub config: Config,

    #[command(subcommand)]
    pub command: Option<Subcommands>,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subcommands {
    /// Checks the configuration (flags, `ROOKERY_*` variables, `--config` file) and prints
    /// the settings it gives, with where each comes from, without starting the server.
    /// Exits 0 when it is valid, 2 when not.
    CheckConfig,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    File,
    Default,
    /// No value anywhere (an optional setting left out).
    Unset,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Flag => "flag",
            Source::Env => "environment",
            Source::File => "config file",
            Source::Default => "default",
            Source::Unset => "unset",
        })
    }
}

/// One setting as the server will run with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The file key (the argument id).
    pub key: String,
    /// The value as given (`None` when unset); secrets are kept, [`Setting::shown`] hides them.
    pub value: Option<String>,
    pub source: Source,
    pub secret: bool,
}

impl Setting {
    /// The value as TOML for people to read: secrets redacted, a URL's credentials and
    /// query too (either may hold a key: `--slip-target-url`, `--jwt-jwks-url`…), numbers
    /// and booleans bare.
    pub fn shown(&self) -> String {
        match &self.value {
            Some(_) if self.secret => "\"<redacted>\"".to_owned(),
            Some(v) => match redacted_url(v) {
                Some(url) => serde_json::to_string(&url).expect("a string serializes"),
                None => self.value_for_file(),
            },
            None => self.value_for_file(),
        }
    }

    /// The value as TOML, secrets included: what a config file would hold.
    pub fn value_for_file(&self) -> String {
        match &self.value {
            None => "(unset)".to_owned(),
            Some(v) if v == "true" || v == "false" => v.clone(),
            Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => v.clone(),
            Some(v) => serde_json::to_string(v).expect("a string serializes"),
        }
    }
}

/// `value` with its user, password and query replaced, when it is a URL that has any.
fn redacted_url(value: &str) -> Option<String> {
    let mut url = reqwest::Url::parse(value).ok()?;
    if url.username().is_empty() && url.password().is_none() && url.query().is_none() {
        return None;
    }
    if !url.username().is_empty() {
        let _ = url.set_username("redacted");
    }
    if url.password().is_some() {
        let _ = url.set_password(Some("redacted"));
    }
    if url.query().is_some() {
        url.set_query(Some("redacted"));
    }
    Some(url.to_string())
}

/// The parsed command line with everything resolved.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub cli: Cli,
    /// Every setting of [`Config`], in `--help` order.
    pub settings: Vec<Setting>,
}

/// Why the command line or the file could not be used.
#[derive(Debug)]
pub enum LoadError {
    /// A flag or variable is wrong (or `--help`/`--version` was asked): clap says so.
    Cli(clap::Error),
    /// The file is missing, unreadable, not TOML, or has a key or value that is wrong.
    File(String),
    /// Each setting is fine but together they are not ([`Config::check`]).
    Settings(String),
}

impl LoadError {
    /// Prints the message and exits: 0 for `--help`/`--version`, 2 for errors (as clap).
    pub fn exit(self) -> ! {
        match self {
            LoadError::Cli(e) => e.exit(),
            LoadError::File(message) | LoadError::Settings(message) => {
                eprintln!("rookery: {message}");
                std::process::exit(2)
            }
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Cli(e) => write!(f, "{e}"),
            LoadError::File(m) | LoadError::Settings(m) => f.write_str(m),
        }
    }
}

/// The command, with every argument global so that `rookery check-config --config F` and
/// `rookery --config F check-config` both work.
fn command() -> clap::Command {
    Cli::command().mut_args(|a| a.global(true))
}

/// Parses `args` (the program name first) and the `ROOKERY_*` variables, reads the
/// `--config` file when one is named, and resolves every setting.
pub fn load<I, T>(args: I) -> Result<Loaded, LoadError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut cmd = command();
    let first = cmd
        .try_get_matches_from_mut(args.iter().cloned())
        .map_err(LoadError::Cli)?;
    let mut from_file = Vec::new();
    let mut injected: Vec<OsString> = Vec::new();
    if let Some(path) = first.get_one::<PathBuf>("config_file") {
        for (key, value) in file_args(&cmd, &first, path)? {
            from_file.push(key);
            injected.extend(value);
        }
    }
    let matches = if injected.is_empty() {
        first
    } else {
        // The file's settings go before the real arguments (and before any subcommand).
        let mut all = Vec::with_capacity(args.len() + injected.len());
        all.extend(args.first().cloned());
        all.extend(injected);
        all.extend(args.iter().skip(1).cloned());
        command()
            .try_get_matches_from(all)
            .map_err(LoadError::Cli)?
    };
    let cli = Cli::from_arg_matches(&matches).map_err(LoadError::Cli)?;
    cli.config.check().map_err(LoadError::Settings)?;
    let settings = settings(&cmd, &matches, &from_file);
    Ok(Loaded { cli, settings })
}

/// The arguments of [`Config`] (not `--config`, `--help`, `--version`).
fn config_args(cmd: &clap::Command) -> impl Iterator<Item = &clap::Arg> {
    let own = Config::command();
    let ids: Vec<String> = own
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect();
    cmd.get_arguments()
        .filter(move |a| ids.iter().any(|id| id == a.get_id().as_str()))
        .filter(|a| !matches!(a.get_action(), ArgAction::Help | ArgAction::Version))
}

/// Reads the file at `path` and turns each of its keys that no flag or variable overrides
/// into flag arguments: `(key, ["--flag", "value"])`.
fn file_args(
    cmd: &clap::Command,
    matches: &ArgMatches,
    path: &Path,
) -> Result<Vec<(String, Vec<OsString>)>, LoadError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| LoadError::File(format!("cannot read the config file {shown}: {e}")))?;
    let table: BTreeMap<Spanned<String>, Spanned<toml::Value>> = toml::from_str(&text)
        .map_err(|e| LoadError::File(format!("{shown} is not valid TOML: {e}")))?;
    let mut entries: Vec<_> = table.into_iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    let at = |span: std::ops::Range<usize>| {
        let line = text[..span.start].matches('\n').count() + 1;
        format!("{shown}:{line}")
    };
    let mut out = Vec::new();
    for (key, value) in entries {
        let here = at(key.span());
        let key = key.into_inner();
        let Some(arg) = config_args(cmd).find(|a| a.get_id().as_str() == key) else {
            return Err(LoadError::File(unknown_key(cmd, &here, &key)));
        };
        let source = matches.value_source(arg.get_id().as_str());
        if matches!(
            source,
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let flag = format!("--{}", arg.get_long().expect("every setting has a flag"));
        let bad = |why: String| LoadError::File(format!("{here}: `{key}`: {why}"));
        let value = value.into_inner();
        if matches!(arg.get_action(), ArgAction::SetTrue) {
            match value {
                toml::Value::Boolean(true) => out.push((key, vec![flag.into()])),
                toml::Value::Boolean(false) => out.push((key, vec![])),
                other => return Err(bad(format!("expected true or false, not {other}"))),
            }
            continue;
        }
        let text = match &value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(bad(format!(
                    "expected a string or an integer, not {}",
                    other.type_str()
                )))
            }
        };
        check_value(arg, &text).map_err(|why| bad(format!("invalid value {value}: {why}")))?;
        out.push((key, vec![flag.into(), text.into()]));
    }
    Ok(out)
}

/// Runs the flag's own value parser on `text`; the reason when it refuses.
fn check_value(arg: &clap::Arg, text: &str) -> Result<(), String> {
    let flag = format!("--{}", arg.get_long().expect("every setting has a flag"));
    let alone = clap::Command::new("rookery").arg(arg.clone().global(false));
    match alone.try_get_matches_from(["rookery", flag.as_str(), text]) {
        Ok(_) => Ok(()),
        Err(e) => {
            use clap::error::{ContextKind, ContextValue};
            if let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) {
                return Err(format!("expected one of: {}", valid.join(", ")));
            }
            match std::error::Error::source(&e) {
                Some(cause) => Err(cause.to_string()),
                None => Err(e.kind().to_string()),
            }
        }
    }
}

/// The message for a key that names no setting, with the key meant when it is close.
fn unknown_key(cmd: &clap::Command, here: &str, key: &str) -> String {
    let wanted = key.trim_start_matches('-').replace('-', "_").to_lowercase();
    let wanted = wanted.strip_prefix("rookery_").unwrap_or(&wanted);
    let mut message = format!("{here}: unknown key `{key}`");
    if config_args(cmd).any(|a| a.get_id().as_str() == wanted) {
        message.push_str(&format!(" (did you mean `{wanted}`?)"));
    } else if key == "config" {
        message.push_str(" (a config file cannot name another)");
    } else {
        message.push_str("; `rookery check-config` lists every key");
    }
    message
}

/// Every setting of [`Config`] with its value and source.
fn settings(cmd: &clap::Command, matches: &ArgMatches, from_file: &[String]) -> Vec<Setting> {
    config_args(cmd)
        .map(|arg| {
            let id = arg.get_id().as_str();
            let value = matches
                .get_raw(id)
                .map(|raw| {
                    raw.map(|v| v.to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|_| matches.value_source(id).is_some());
            let source = if from_file.iter().any(|k| k == id) {
                Source::File
            } else {
                match matches.value_source(id) {
                    Some(ValueSource::CommandLine) => Source::Flag,
                    Some(ValueSource::EnvVariable) => Source::Env,
                    Some(ValueSource::DefaultValue) => Source::Default,
                    _ => Source::Unset,
                }
            };
            Setting {
                key: id.to_owned(),
                value,
                source,
                secret: arg.is_hide_env_values_set(),
            }
        })
        .collect()
}

/// The report of `rookery check-config`: every setting as a TOML line, with its source.
pub fn report(loaded: &Loaded) -> String {
    let mut out = String::new();
    match &loaded.cli.config_file {
        Some(path) => out.push_str(&format!("# configuration OK: {}\n", path.display())),
        None => out.push_str("# configuration OK (no config file)\n"),
    }
    for s in &loaded.settings {
        let line = format!("{} = {}", s.key, s.shown());
        match s.source {
            Source::Unset => out.push_str(&format!("# {line}\n")),
            source => out.push_str(&format!("{line:<48} # {source}\n")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn load_file(text: &str, flags: &[&str]) -> Result<Loaded, LoadError> {
        let f = file(text);
        let path = f.path().to_str().unwrap().to_owned();
        let mut args = vec!["rookery", "--config", &path];
        args.extend_from_slice(flags);
        load(args)
    }

    fn error(text: &str) -> String {
        match load_file(text, &[]) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{text:?} was accepted"),
        }
    }

    #[test]
    fn the_file_sets_what_flags_leave_out() {
        let loaded = load_file(
            "listen = \"127.0.0.1:0\"\nmax_message_size = 1024\nstore = \"memory\"\njac_require_auth = true\n",
            &["--max-message-size", "2048"],
        )
        .unwrap();
        let c = &loaded.cli.config;
        assert_eq!(c.listen.to_string(), "127.0.0.1:0");
        assert_eq!(c.max_message_size, 2048, "the flag wins over the file");
        assert_eq!(c.store, crate::store::StoreKind::Memory);
        assert!(c.jac_require_auth);
        let source = |k: &str| loaded.settings.iter().find(|s| s.key == k).unwrap().source;
        assert_eq!(source("listen"), Source::File);
        assert_eq!(source("max_message_size"), Source::Flag);
        assert_eq!(source("ping_interval_ms"), Source::Default);
        assert_eq!(source("backend_url"), Source::Unset);
    }

    #[test]
    fn every_flag_is_a_key() {
        // One line per setting, as `check-config` prints it, read back in.
        let loaded = load(["rookery", "--admin-key", "k"]).unwrap();
        let text: String = loaded
            .settings
            .iter()
            .filter(|s| s.source != Source::Unset)
            .map(|s| format!("{} = {}\n", s.key, s.value_for_file()))
            .collect();
        let again = load_file(&text, &[]).unwrap();
        assert_eq!(
            again
                .settings
                .iter()
                .filter(|s| s.source == Source::File)
                .count(),
            text.lines().count()
        );
        assert_eq!(again.cli.config.admin_key.as_deref(), Some("k"));
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = error("listen = \"127.0.0.1:0\"\nmax_mesage_size = 1\n");
        assert!(e.contains(":2: unknown key `max_mesage_size`"), "{e}");
        let e = error("max-message-size = 1\n");
        assert!(e.contains("did you mean `max_message_size`?"), "{e}");
        let e = error("config = \"/etc/x\"\n");
        assert!(e.contains("unknown key `config`"), "{e}");
        let e = error("[store]\nkind = \"disk\"\n");
        assert!(
            e.contains("`store`: expected a string or an integer, not table"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_named_with_the_reason() {
        let e = error("max_message_size = \"big\"\n");
        assert!(
            e.contains(":1: `max_message_size`: invalid value \"big\""),
            "{e}"
        );
        let e = error("\n\ndriver = \"io-uring\"\n");
        assert!(
            e.contains(
                ":3: `driver`: invalid value \"io-uring\": expected one of: auto, uring, epoll"
            ),
            "{e}"
        );
        let e = error("listen = 8080\n");
        assert!(
            e.contains("`listen`: invalid value 8080: invalid socket address"),
            "{e}"
        );
        let e = error("max_message_size = -1\n");
        assert!(e.contains("`max_message_size`: invalid value -1"), "{e}");
        let e = error("jac_require_auth = \"yes\"\n");
        assert!(
            e.contains("`jac_require_auth`: expected true or false"),
            "{e}"
        );
        let e = error("cores = 2.5\n");
        assert!(
            e.contains("`cores`: expected a string or an integer, not float"),
            "{e}"
        );
        let e = error("log = \"info,[\"\n");
        assert!(e.contains("`log`: invalid value"), "{e}");
    }

    #[test]
    fn settings_that_do_not_fit_together_are_refused() {
        let e = error("max_outbound_bytes = 100\nmax_message_size = 200\n");
        assert!(e.contains("--max-outbound-bytes (100) is less than"), "{e}");
    }

    #[test]
    fn broken_and_missing_files_are_named() {
        let e = error("listen = \n");
        assert!(e.contains("is not valid TOML"), "{e}");
        let Err(e) = load(["rookery", "--config", "/nonexistent/rookery.toml"]) else {
            panic!("a missing file was accepted");
        };
        let e = e.to_string();
        assert!(
            e.contains("cannot read the config file /nonexistent/rookery.toml"),
            "{e}"
        );
    }

    #[test]
    fn check_config_takes_its_flags_on_either_side() {
        let f = file("store = \"memory\"\n");
        let path = f.path().to_str().unwrap();
        for args in [
            vec!["rookery", "check-config", "--config", path, "--cores", "3"],
            vec!["rookery", "--config", path, "--cores", "3", "check-config"],
        ] {
            let loaded = load(args).unwrap();
            assert_eq!(loaded.cli.command, Some(Subcommands::CheckConfig));
            assert_eq!(loaded.cli.config.cores, Some(3));
            assert_eq!(loaded.cli.config.store, crate::store::StoreKind::Memory);
        }
    }

    #[test]
    fn the_report_hides_secrets() {
        let loaded = load(["rookery", "--jwt-secret", "hunter2", "check-config"]).unwrap();
        let report = report(&loaded);
        assert!(!report.contains("hunter2"), "{report}");
        assert!(report.contains("jwt_secret = \"<redacted>\""), "{report}");
        assert!(report.contains("# backend_url = (unset)"), "{report}");
        // Every secret flag, and a URL's credentials and query.
        let loaded = load([
            "rookery",
            "--admin-key",
            "adminsecret1",
            "--pact-signing-key",
            "pactsecret2",
            "--slip-jwt-secret",
            "slipsecret3",
            "--jwt-jwks-url",
            "https://user:urlsecret4@idp.example/keys?api_key=urlsecret5",
            "--slip-target-url",
            "http://backend.example/slip?token=urlsecret6",
            "--backend-url",
            "http://backend.example/jac",
            "--engine",
            "redis",
            "--redis-url",
            "rediss://rookery:urlsecret7@127.0.0.1:6380/2",
            "check-config",
        ])
        .unwrap();
        let report = super::report(&loaded);
        for leaked in [
            "secret1", "secret2", "secret3", "secret4", "secret5", "secret6", "secret7",
        ] {
            assert!(!report.contains(leaked), "{leaked}: {report}");
        }
        assert!(
            report
                .contains("jwt_jwks_url = \"https://redacted:redacted@idp.example/keys?redacted\""),
            "{report}"
        );
        assert!(
            report.contains("backend_url = \"http://backend.example/jac\""),
            "{report}"
        );
        assert!(
            report.contains("redis_url = \"rediss://redacted:redacted@127.0.0.1:6380/2\""),
            "{report}"
        );
    }
}
