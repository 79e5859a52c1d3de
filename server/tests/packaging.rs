//! The files the package installs agree with each other and with the binary: the packaged
//! config is valid and lists every setting; the systemd unit starts the binary with it,
//! keeps its data where the config says, and waits longer for the drain than the drain
//! may take. (`scripts/deb-test.sh` installs the package and runs it.)

use std::path::Path;
use std::process::Command;

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// `rookery check-config` on the packaged config: its report.
fn packaged_report() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rookery.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_rookery"))
        .env_clear()
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The value of `key` in the report.
fn setting(report: &str, key: &str) -> String {
    report
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in {report}"))
        .split('#')
        .next()
        .unwrap()
        .trim()
        .trim_matches('"')
        .to_owned()
}

/// `Key=` lines of the unit (the last one wins, as in systemd).
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .rev()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the unit has no {key}="))
        .to_owned()
}

#[test]
fn the_packaged_config_is_valid_and_lists_every_setting() {
    let report = packaged_report();
    let file = repo_file("deploy/rookery.toml");
    for line in report.lines().filter(|l| !l.starts_with("# configuration")) {
        let key = line.trim_start_matches("# ").split(' ').next().unwrap();
        let set = file.lines().any(|l| l.starts_with(&format!("{key} = ")));
        let shown = file.lines().any(|l| l.starts_with(&format!("# {key} = ")));
        assert!(set || shown, "deploy/rookery.toml does not mention `{key}`");
    }
    assert_eq!(setting(&report, "data_dir"), "/var/lib/rookery");
    assert_eq!(setting(&report, "store"), "disk");
}

#[test]
fn the_unit_runs_the_packaged_binary_and_config_and_outlasts_the_drain() {
    let unit = repo_file("deploy/systemd/rookery.service");
    let cargo = repo_file("server/Cargo.toml");
    assert_eq!(
        unit_value(&unit, "ExecStart"),
        "/usr/bin/rookery --config /etc/rookery/rookery.toml"
    );
    assert!(cargo.contains(r#"["target/release/rookery", "usr/bin/", "755"]"#));
    assert!(cargo.contains(r#"["../deploy/rookery.toml", "etc/rookery/rookery.toml", "644"]"#));
    assert_eq!(unit_value(&unit, "StateDirectory"), "rookery");
    assert_eq!(unit_value(&unit, "WorkingDirectory"), "/var/lib/rookery");
    assert_eq!(unit_value(&unit, "User"), "rookery");
    assert_eq!(unit_value(&unit, "Type"), "notify");
    assert_eq!(unit_value(&unit, "Restart"), "on-failure");
    assert_eq!(unit_value(&unit, "KillSignal"), "SIGTERM");
    assert_eq!(unit_value(&unit, "ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(unit_value(&unit, "LimitMEMLOCK"), "infinity");
    let nofile: u64 = unit_value(&unit, "LimitNOFILE").parse().unwrap();
    assert!(nofile >= 500_000, "LimitNOFILE={nofile}");
    assert!(unit_value(&unit, "SystemCallFilter").starts_with('~'));
    assert!(unit.contains("SystemCallFilter=@system-service\n"));

    // systemd sends SIGKILL TimeoutStopSec after SIGTERM: the drain must end well before.
    let report = packaged_report();
    let stop_ms: u64 = unit_value(&unit, "TimeoutStopSec").parse::<u64>().unwrap() * 1000;
    let drain_ms: u64 = setting(&report, "shutdown_timeout_ms").parse().unwrap();
    let jitter_ms: u64 = setting(&report, "shutdown_jitter_ms").parse().unwrap();
    assert!(jitter_ms <= drain_ms);
    assert!(
        drain_ms + 5_000 <= stop_ms,
        "shutdown_timeout_ms={drain_ms} leaves too little of TimeoutStopSec ({stop_ms} ms)"
    );
}

#[test]
fn the_dockerfile_is_multi_stage_non_root_and_runs_what_the_unit_runs() {
    let dockerfile = repo_file("Dockerfile");
    let unit = repo_file("deploy/systemd/rookery.service");
    let lines: Vec<&str> = dockerfile.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(lines.iter().filter(|l| l.starts_with("FROM ")).count() >= 2);
    let user = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "USER {user}"
    );
    let entry = lines
        .iter()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("an ENTRYPOINT");
    let entry: Vec<String> = serde_json::from_str(entry).unwrap();
    assert_eq!(entry.join(" "), unit_value(&unit, "ExecStart"));
    // `docker stop` kills 10 s after SIGTERM: the drain must be over by then.
    let drain_ms: u64 = dockerfile
        .split("ROOKERY_SHUTDOWN_TIMEOUT_MS=")
        .nth(1)
        .expect("the image sets ROOKERY_SHUTDOWN_TIMEOUT_MS")
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        drain_ms + 2_000 <= 10_000,
        "drain {drain_ms} ms vs docker stop's 10 s"
    );
    // What the runtime stage copies from the build context exists.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for line in lines
        .iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for source in &parts[1..parts.len() - 1] {
            if *source != "." {
                assert!(root.join(source).exists(), "COPY {source}: no such file");
            }
        }
    }
}
