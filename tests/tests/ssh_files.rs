//! SFTP and scp under path rules with stock clients: a read-only tree and
//! a blocked file refused with `SSH_FX_PERMISSION_DENIED` (sftp, scp in
//! both protocols), allowed transfers intact, and every file operation in
//! the recording with its outcome, size and SHA-256.

mod common;

use anyhow::{Context, Result};
use common::{events_of_kind, show_session};
use gatehouse_tests::ssh_client::SSH_CONNECTION;
use gatehouse_tests::{OutputExt, PolicySpec, SshWorld};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// File operations of every ended SSH session, in order.
fn file_ops(w: &SshWorld, sessions: usize) -> Result<Vec<Value>> {
    let mut ops = Vec::new();
    for h in common::ended_sessions(&w.gh, "ssh", sessions)? {
        let (_, events) = show_session(&w.gh, h["id"].as_str().context("id")?)?;
        ops.extend(
            events_of_kind(&events, "file_op")
                .into_iter()
                .map(|e| e["kind"].clone()),
        );
    }
    Ok(ops)
}

#[test]
fn path_rules_hold_for_sftp_and_scp_and_every_file_operation_is_recorded() -> Result<()> {
    // The scratch directory's name is only known once sshd runs, so the
    // rules are written against the test user's home.
    let w = SshWorld::start(|c, _| {
        c.policy(PolicySpec::new("default").recording("batched"))
            .raw(
                r#"
[[policies.default.rules]]
name = "ro-tree"
action = "read_only"
paths = ["/home/*/ro/*"]

[[policies.default.rules]]
name = "no-keys"
action = "block"
paths = ["/home/*/secret*"]
message = "key material stays on the host"
"#,
            )
    })?;
    let auth = w.token_auth(&w.token("files")?)?;
    let scratch = w.sshd.scratch()?;
    let dir = scratch.path().display().to_string();
    // The tree the rules name, made by the test user through the gateway
    // (exec is not a file transfer: path rules do not judge shell commands).
    let out = w.ssh(
        &auth,
        SSH_CONNECTION,
        &[&format!(
            "mkdir {dir}/ro && echo original > {dir}/ro/readme && echo k > {dir}/secret.key"
        )],
    )?;
    out.success_text()?;
    let local = tempfile::tempdir()?;
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i * 13 % 251) as u8).collect();
    std::fs::write(local.path().join("up.bin"), &data)?;

    // sftp: reads in the read-only tree pass, writes there and anything on
    // the blocked file are refused; the batch goes on past refusals (`-`).
    let batch = format!(
        "cd {dir}\nget ro/readme readme.txt\n-put up.bin ro/new.bin\n-rm ro/readme\n-rename ro/readme ro/moved\n-get secret.key\n-mkdir ro/sub\nput up.bin ok.bin\nls -l\n"
    );
    let out = w.sftp(&auth, &batch, local.path())?;
    assert!(
        out.status.success(),
        "{}\n{}",
        out.stderr_text(),
        w.gh.log()
    );
    let said = out.stderr_text();
    assert!(said.contains("Permission denied"), "{said}");
    assert_eq!(
        std::fs::read_to_string(local.path().join("readme.txt"))?,
        "original\n"
    );
    assert!(
        !local.path().join("secret.key").exists(),
        "the blocked file was read"
    );
    let ro = scratch.path().join("ro");
    assert!(
        !ro.join("new.bin").exists(),
        "a write reached the read-only tree"
    );
    assert!(!ro.join("sub").exists());
    assert_eq!(std::fs::read_to_string(ro.join("readme"))?, "original\n");
    assert_eq!(std::fs::read(scratch.path().join("ok.bin"))?, data);

    // scp, SFTP protocol and legacy: refused into the read-only tree,
    // allowed elsewhere.
    let src = local.path().join("up.bin").display().to_string();
    for (proto, extra) in [("sftp", vec![]), ("legacy", vec!["-O"])] {
        let refused = w.scp(
            &auth,
            &extra,
            &src,
            &format!("{SSH_CONNECTION}@127.0.0.1:{dir}/ro/{proto}.bin"),
        )?;
        assert!(
            !refused.status.success(),
            "{proto} scp wrote into the read-only tree"
        );
        assert!(!ro.join(format!("{proto}.bin")).exists(), "{proto}");
        let ok = w.scp(
            &auth,
            &extra,
            &src,
            &format!("{SSH_CONNECTION}@127.0.0.1:{dir}/{proto}.bin"),
        )?;
        if proto == "legacy" {
            // Legacy scp names the file it writes only inside its stream:
            // `{dir}/legacy.bin` could be a directory, and `*` crosses
            // `/`, so `/home/*/secret*` could reach a file written into
            // it. The upload is refused rather than guessed.
            assert!(
                !ok.status.success(),
                "legacy scp upload under a reaching rule"
            );
            assert!(
                ok.stderr_text().contains("holds paths that rule"),
                "{}",
                ok.stderr_text()
            );
            continue;
        }
        assert!(ok.status.success(), "{proto}: {}", ok.stderr_text());
        assert_eq!(
            std::fs::read(scratch.path().join(format!("{proto}.bin")))?,
            data,
            "{proto}"
        );
    }
    let legacy = w.scp(
        &auth,
        &["-O"],
        &format!("{SSH_CONNECTION}@127.0.0.1:{dir}/secret.key"),
        &local.path().join("k").display().to_string(),
    )?;
    assert!(!legacy.status.success());
    assert!(
        legacy
            .stderr_text()
            .contains("key material stays on the host"),
        "{}",
        legacy.stderr_text()
    );

    // The recording: each operation with its path and outcome; the file
    // written through the gateway with its size and hash.
    let ops = file_ops(&w, 7)?;
    let find = |op: &str, path: &str| -> Vec<&Value> {
        ops.iter()
            .filter(|o| o["op"] == op && o["path"].as_str().is_some_and(|p| p.ends_with(path)))
            .collect()
    };
    let denied = |o: &&Value| {
        o["outcome"]
            .as_str()
            .is_some_and(|s| s.starts_with("denied: "))
    };
    assert!(
        find("open", "/ro/new.bin")
            .iter()
            .any(|o| o["outcome"] == "denied: ro-tree"),
        "{ops:#?}"
    );
    assert!(find("remove", "/ro/readme").iter().any(denied), "{ops:#?}");
    assert!(find("rename", "/ro/readme").iter().any(denied), "{ops:#?}");
    assert!(find("mkdir", "/ro/sub").iter().any(denied), "{ops:#?}");
    assert!(
        ops.iter().any(|o| o["protocol"] == "sftp"
            && o["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("/secret.key"))
            && o["outcome"] == "denied: no-keys"),
        "{ops:#?}"
    );
    assert!(
        find("download", "/secret.key")
            .iter()
            .any(|o| o["outcome"] == "denied: no-keys"),
        "{ops:#?}"
    );
    assert!(
        find("upload", "/ro/legacy.bin").iter().any(denied),
        "{ops:#?}"
    );
    let digest = hex(&Sha256::digest(&data));
    for name in ["/ok.bin", "/sftp.bin"] {
        let closed = find("close", name);
        let written = closed
            .first()
            .with_context(|| format!("no close of {name}: {ops:#?}"))?;
        assert_eq!(written["bytes"], data.len() as u64, "{name}");
        assert_eq!(written["sha256"], digest.as_str(), "{name}");
        assert_eq!(written["outcome"], "ok");
    }
    let read = find("close", "/ro/readme");
    assert_eq!(
        read.first().context("readme read")?["sha256"],
        hex(&Sha256::digest(b"original\n"))
    );
    // Paths are recorded absolute, as the target resolved them.
    assert!(
        ops.iter().all(|o| o["path"]
            .as_str()
            .is_none_or(|p| p.is_empty() || p.starts_with('/'))),
        "{ops:#?}"
    );
    Ok(())
}

#[test]
fn legacy_scp_records_every_file_with_its_size_and_hash() -> Result<()> {
    let w = SshWorld::start(|c, _| c.policy(PolicySpec::new("default").recording("batched")))?;
    let auth = w.token_auth(&w.token("copier")?)?;
    let scratch = w.sshd.scratch()?;
    let dir = scratch.path().display().to_string();
    let local = tempfile::tempdir()?;
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    std::fs::write(local.path().join("big.bin"), &big)?;
    std::fs::create_dir_all(local.path().join("tree/sub"))?;
    std::fs::write(local.path().join("tree/a.txt"), b"alpha\n")?;
    std::fs::write(local.path().join("tree/sub/b.txt"), b"")?;
    let remote = |p: &str| format!("{SSH_CONNECTION}@127.0.0.1:{dir}/{p}");
    let lp = |p: &str| local.path().join(p).display().to_string();

    // A file up, the same file down again, a tree up: all with -O.
    w.scp(&auth, &["-O"], &lp("big.bin"), &remote("big.bin"))?
        .success_text()?;
    w.scp(&auth, &["-O"], &remote("big.bin"), &lp("back.bin"))?
        .success_text()?;
    w.scp(&auth, &["-O", "-r"], &lp("tree"), &remote(""))?
        .success_text()?;
    assert_eq!(std::fs::read(local.path().join("back.bin"))?, big);
    assert_eq!(
        std::fs::read(scratch.path().join("tree/a.txt"))?,
        b"alpha\n"
    );

    let ops = file_ops(&w, 3)?;
    let files: Vec<(String, String, u64, String, String)> = ops
        .iter()
        .filter(|o| o["protocol"] == "scp" && o["outcome"] != "started")
        .map(|o| {
            (
                o["op"].as_str().unwrap_or_default().to_owned(),
                o["path"].as_str().unwrap_or_default().to_owned(),
                o["bytes"].as_u64().unwrap_or(0),
                o["sha256"].as_str().unwrap_or_default().to_owned(),
                o["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let big_hash = hex(&Sha256::digest(&big));
    let expected = vec![
        (
            "upload".to_owned(),
            format!("{dir}/big.bin"),
            big.len() as u64,
            big_hash.clone(),
            "ok".to_owned(),
        ),
        (
            "download".to_owned(),
            format!("{dir}/big.bin"),
            big.len() as u64,
            big_hash,
            "ok".to_owned(),
        ),
        (
            "upload".to_owned(),
            format!("{dir}/tree/a.txt"),
            6,
            hex(&Sha256::digest(b"alpha\n")),
            "ok".to_owned(),
        ),
        (
            "upload".to_owned(),
            format!("{dir}/tree/sub/b.txt"),
            0,
            hex(&Sha256::digest(b"")),
            "ok".to_owned(),
        ),
    ];
    let mut got = files.clone();
    got.sort();
    let mut want = expected;
    want.sort();
    assert_eq!(got, want, "{ops:#?}");
    Ok(())
}
