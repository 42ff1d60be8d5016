//! The `engram-stream` binary's subcommands that other binaries run: `load` and `capacity` pass
//! every argument, unparsed, to `engram-tools` (here `$ENGRAM_TOOLS`, a stand-in that echoes
//! them) and exit as it does.

use std::process::Command;

fn engram_stream(tools: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_engram-stream")).env("ENGRAM_TOOLS", tools).args(args).output().unwrap()
}

#[test]
fn load_and_capacity_run_the_tools_binary_with_every_argument() {
    for (command, args) in [
        ("load", vec!["--dataset", "../shared/data/minilm-384-stdlib", "--help", "--report", "-"]),
        ("capacity", vec!["--from", "a.json", "--target-rate", "10000", "--dim", "384"]),
    ] {
        let mut all = vec![command];
        all.extend(&args);
        let out = engram_stream("/bin/echo", &all);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), all.join(" "), "{command}");
    }
}

#[test]
fn the_tools_binarys_exit_status_is_kept_and_a_missing_one_is_named() {
    let failed = engram_stream("/bin/false", &["load", "--report", "x"]);
    assert_eq!(failed.status.code(), Some(1));
    let missing = engram_stream("/nonexistent/engram-tools", &["capacity"]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("/nonexistent/engram-tools") && stderr.contains("cargo build --release -p engram-tools"),
        "{stderr}"
    );
}
