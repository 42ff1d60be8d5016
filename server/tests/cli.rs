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

#[test]
fn keys_new_prints_a_key_then_the_config_entry_that_admits_it() {
    let out = engram_stream(
        "/bin/false",
        &["keys", "new", "--name", "ingest", "--grant", "tenant-a-*=write", "--grant", "metrics"],
    );
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let (key, toml) = stdout.split_once('\n').unwrap();
    assert!(key.starts_with("egk_") && key.len() == 68, "{key}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("engram.toml");
    std::fs::write(&file, toml).unwrap();
    let config = engram_server::ServerConfig::load(Some(&file)).unwrap();
    let entry = &config.auth.keys[0];
    assert_eq!(entry.name, "ingest");
    assert_eq!(entry.grants, ["tenant-a-*=write", "metrics"]);
    let hash: String = engram_server::auth::keys::sha256(key).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(entry.sha256, hash);

    let bad = engram_stream("/bin/false", &["keys", "new", "--name", "x", "--grant", "tenant=owner"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown role `owner`"), "{bad:?}");
}
