//! The real binary with a `--config` file: precedence (flag > `ROOKERY_*` > file > default),
//! `check-config`, errors that name the key, and SIGHUP reloading the log filter.

use std::path::{Path, PathBuf};
mod common;

use common::{lines_of, listening, signal, wait_for, Running};
use std::process::{Child, Command, Output, Stdio};

/// The binary with no `ROOKERY_*` variable but those given.
fn rookery(env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rookery"));
    cmd.env_clear().envs(env.iter().copied());
    cmd
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("rookery.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `(value, source)` of `key` in a `check-config` report.
fn setting(report: &str, key: &str) -> (String, String) {
    let line = report
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in {report}"));
    let (value, source) = line[key.len() + 3..].split_once('#').unwrap();
    (value.trim().to_owned(), source.trim().to_owned())
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn flags_beat_variables_beat_the_file_beats_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "cores = 1\nping_interval_ms = 1000\nmax_message_size = 100\nstore = \"memory\"\n",
    );
    let out = rookery(&[
        ("ROOKERY_PING_INTERVAL_MS", "2000"),
        ("ROOKERY_MAX_MESSAGE_SIZE", "200"),
    ])
    .args(["check-config", "--config"])
    .arg(&file)
    .args(["--max-message-size", "300"])
    .output()
    .unwrap();
    let (report, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert!(report.starts_with("# configuration OK: "), "{report}");
    let flag = ("300".to_owned(), "flag".to_owned());
    assert_eq!(setting(&report, "max_message_size"), flag);
    let env = ("2000".to_owned(), "environment".to_owned());
    assert_eq!(setting(&report, "ping_interval_ms"), env);
    let file_value = ("1".to_owned(), "config file".to_owned());
    assert_eq!(setting(&report, "cores"), file_value);
    let default = ("2".to_owned(), "default".to_owned());
    assert_eq!(setting(&report, "ping_missed"), default);
}

#[test]
fn the_file_is_named_by_a_variable_too_and_configures_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "listen = \"127.0.0.1:0\"\ncores = 1\ndriver = \"epoll\"\nstore = \"memory\"\nlog = \"warn\"\n",
    );
    let mut child = Running(
        rookery(&[("ROOKERY_CONFIG", file.to_str().unwrap())])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (addr, driver) = listening(&mut child.0);
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert_eq!(driver, "epoll");
}

#[test]
fn a_bad_file_stops_the_start_with_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "store = \"memory\"\nlisten = \"127.0.0.1:0\"\nping_intervall_ms = 5\n",
    );
    for args in [vec![], vec!["check-config"]] {
        let out = rookery(&[])
            .args(&args)
            .arg("--config")
            .arg(&file)
            .output()
            .unwrap();
        let (stdout, err) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{stdout}{err}");
        let want = format!("{}:3: unknown key `ping_intervall_ms`", file.display());
        assert!(err.contains(&want), "{err}");
        assert!(!stdout.contains("listening"), "{stdout}");
    }
    let file = write(dir.path(), "store = \"memory\"\nfsync = \"sometimes\"\n");
    let out = rookery(&[])
        .arg("check-config")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains(":2: `fsync`: invalid value \"sometimes\": expected one of: interval, always"),
        "{err}"
    );
}

#[test]
fn a_bad_variable_is_named_too() {
    let out = rookery(&[("ROOKERY_MAX_MESSAGE_SIZE", "lots")])
        .arg("check-config")
        .output()
        .unwrap();
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("--max-message-size"), "{err}");
    assert!(err.contains("lots"), "{err}");
}

#[test]
fn sighup_reloads_the_log_filter_and_names_what_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let base = "listen = \"127.0.0.1:0\"\nstore = \"memory\"\nlog_format = \"text\"\n";
    let file = write(dir.path(), &format!("{base}log = \"warn\"\ncores = 1\n"));
    let mut running = Running(
        rookery(&[])
            .arg("--config")
            .arg(&file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let child = &mut running.0;
    listening(child);
    let lines = lines_of(child);
    let hup = |child: &Child| signal(child, "HUP");
    // An invalid file changes nothing (and the error is a warning-level line or above).
    write(
        dir.path(),
        &format!("{base}log = \"info\"\ncores = \"two\"\n"),
    );
    hup(child);
    let refused = wait_for(&lines, "reload: the configuration is invalid");
    assert!(refused.contains("`cores`"), "{refused}");
    // A valid one: the filter now lets info through, and the core count waits for a restart.
    write(dir.path(), &format!("{base}log = \"info\"\ncores = 2\n"));
    hup(child);
    let restart = wait_for(&lines, "takes effect on restart");
    assert!(restart.contains("cores"), "{restart}");
    wait_for(&lines, "reload: new log filter");
    wait_for(&lines, "reload done");
}
