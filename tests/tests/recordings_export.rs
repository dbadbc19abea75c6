//! Recordings leave the box: `recordings export` as JSON Lines and as a
//! self-verifying archive that `verify --archive` checks on a machine with
//! no config and no store.

mod common;

use anyhow::Result;
use common::World;
use gatehouse_tests::OutputExt;

#[test]
fn an_exported_archive_verifies_anywhere_and_jsonl_matches_show() -> Result<()> {
    let w = World::standard()?;
    let token = w.token("export-bot")?;
    w.psql("export-bot", &token, "select 'exported'")?
        .success_text()?;
    let header = common::ended_session_of_user(&w.gh, "export-bot")?;
    let id = common::session_id(&header)?;

    let out = w.gh.run_cli(&[
        "recordings",
        "export",
        "--since",
        "1d",
        "--format",
        "archive",
    ])?;
    assert!(out.status.success(), "{}", out.stderr_text());
    let away = tempfile::tempdir()?;
    let archive = away.path().join("month.tar.zst");
    std::fs::write(&archive, &out.stdout)?;
    // Another directory, no config file anywhere: only the archive and key.
    let verified = common::verify_archive_away(&w.gh, away.path(), &archive)?;
    let text = verified.stdout_text();
    assert!(
        verified.status.success(),
        "{text}{}",
        verified.stderr_text()
    );
    assert!(text.contains("matches --public-key"), "{text}");
    assert!(text.contains(&format!("{id}  ok (")), "{text}");

    let jsonl =
        w.gh.run_cli(&["recordings", "export", &id, "--format", "jsonl"])?;
    let show = w.gh.run_cli(&["recordings", "show", &id, "--json"])?;
    assert_eq!(jsonl.stdout_text(), show.stdout_text());
    assert!(jsonl.stdout_text().contains("select 'exported'"));
    Ok(())
}
