//! The `ferry` command line as operators meet it: completions, the version,
//! examples in every help, the exit codes, config mistakes shown at their
//! line, and `ferry health`.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Output;

use clap::CommandFactory;
use ferry_gateway::cli::Cli;

use common::*;

fn run(args: &[&str]) -> Output {
    ferry().args(args).output().expect("run ferry")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn completions_are_printed_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let output = run(&["completions", shell]);
        assert!(output.status.success(), "{shell}: {}", stderr(&output));
        let script = stdout(&output);
        assert!(script.contains("ferry"), "{shell}: {script}");
        assert!(script.contains("warmup"), "{shell} completes subcommands");
    }
    let output = run(&["completions", "tcsh"]);
    assert_eq!(output.status.code(), Some(2), "not a shell clap knows");
}

/// `hash` is what the build found: a short commit hash, possibly marked
/// dirty, or "unknown" outside a git checkout.
fn is_build_hash(hash: &str) -> bool {
    let commit = hash.strip_suffix("-dirty").unwrap_or(hash);
    hash == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit()))
}

#[test]
fn the_version_names_the_commit_it_was_built_from() {
    let output = run(&["version"]);
    assert!(output.status.success());
    let line = stdout(&output);
    let prefix = format!("ferry {} (", env!("CARGO_PKG_VERSION"));
    let hash = line
        .trim_end()
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not `{prefix}HASH)`: {line:?}"));
    assert!(is_build_hash(hash), "{hash:?}");

    let flag = run(&["--version"]);
    assert!(flag.status.success());
    assert_eq!(stdout(&flag), line, "--version says the same");
}

/// Every command's path below the root: `["serve"]`, `["meta", "dump"]`, ...
fn command_paths(command: &clap::Command, above: &[String], into: &mut Vec<Vec<String>>) {
    for sub in command.get_subcommands() {
        let mut path = above.to_vec();
        path.push(sub.get_name().to_string());
        into.push(path.clone());
        command_paths(sub, &path, into);
    }
}

#[test]
fn every_command_has_examples_in_its_help() {
    let mut paths = vec![Vec::new()];
    command_paths(&Cli::command(), &[], &mut paths);
    assert!(paths.len() > 10, "{paths:?}");
    for path in paths {
        for flag in ["--help", "-h"] {
            let output = ferry().args(&path).arg(flag).output().expect("run");
            assert!(output.status.success(), "{path:?} {flag}");
            let help = stdout(&output);
            assert!(
                help.contains("\nExamples:\n  ferry "),
                "`ferry {} {flag}` has no examples:\n{help}",
                path.join(" ")
            );
        }
    }
    let help = stdout(&run(&["--help"]));
    assert!(help.contains("Exit codes:"), "{help}");
    for code in ["0", "1", "2", "3"] {
        assert!(
            help.contains(&format!("\n  {code}  ")),
            "exit code {code}: {help}"
        );
    }
}

#[test]
fn a_broken_config_shows_the_file_line_and_text() {
    let dir = temp_dir();
    let syntax = write_file(
        dir.path(),
        "syntax.toml",
        "[server]\nlisten = \"127.0.0.1:9000\n",
    );
    let output = ferry()
        .args(["config", "check"])
        .arg(&syntax)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(text.contains(&format!("{}:2:", syntax.display())), "{text}");
    assert!(text.contains("2 | listen = \"127.0.0.1:9000\n"), "{text}");

    let refused = write_file(
        dir.path(),
        "refused.toml",
        "[cache]\nblock_size = \"4MiB\"\n\n[server]\nlisten = \"nowhere\"\n",
    );
    let output = ferry()
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .arg("--config")
        .arg(&refused)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(
        text.contains(&format!(
            "{}:5:10: invalid value for `server.listen`",
            refused.display()
        )),
        "{text}"
    );
    assert!(
        text.contains("5 | listen = \"nowhere\"\n  |          ^^^^^^^^^"),
        "{text}"
    );
}

#[test]
fn exit_codes_tell_usage_from_failure() {
    let dir = temp_dir();
    assert_eq!(run(&["serve", "--no-such-flag"]).status.code(), Some(2));
    assert_eq!(
        run(&["cluster", "weight", "node-a"]).status.code(),
        Some(2),
        "neither a weight nor --reset"
    );
    // A tool whose config does not validate attempted nothing: usage.
    let bad = write_file(dir.path(), "bad.toml", "[server]\nlisen = 1\n");
    let output = ferry()
        .args(["fsck", "--config"])
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    // A node that cannot be reached is a failure, not a usage error.
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let output = run(&["cluster", "status", "--admin", &nobody]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
}

#[test]
fn health_exits_zero_only_for_a_healthy_node() {
    let dir = temp_dir();
    let server = Server::start(Launch::new(dir.path()));
    let output = run(&["health", "--admin", &server.admin]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).starts_with("ok"), "{}", stdout(&output));
    assert!(server.stop().success());

    let nobody = format!("http://127.0.0.1:{}", free_port());
    let output = run(&["health", "--admin", &nobody]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));

    let (admin, answered) = answer_once(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 21\r\nconnection: close\r\n\r\nmetadata unavailable\n",
    );
    let output = run(&["health", "--admin", &admin]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("metadata unavailable"),
        "{}",
        stderr(&output)
    );
    answered.join().expect("stub");
}

/// An HTTP endpoint that answers one request with `response`.
fn answer_once(response: &'static str) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let answered = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
        }
        stream.write_all(response.as_bytes()).expect("write");
    });
    (format!("http://{addr}"), answered)
}
