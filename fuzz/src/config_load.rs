//! Target `config_load`: the config loader (`config::load_text`) on any
//! text — TOML parsing, the typed shape, and every validation (listeners,
//! operators' SSH keys, OIDC settings, limits, roles, connections,
//! policies with their rules, mask rules and regexes).
//!
//! Invariants, beyond "no panic, bounded memory, no hang": a refused file
//! gets at least one problem, and every problem is reported as
//! `FILE:LINE: what` with a line that exists, as `check-config` promises.

use std::path::Path;

use gatehouse_appliance::config::load_text;

/// A directory that does not exist: relative paths in the config resolve
/// under it, so the files a config names are never there.
const FILE: &str = "/nonexistent/gatehouse-fuzz/gatehouse.toml";

pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    // The loader reads the files a config names (password files, CA
    // bundles, the mask key). Keep it away from device and kernel files
    // (a read of /dev/zero never ends), also when spelled with escapes.
    if ["/dev", "/proc", "/sys", "\\u", "\\U"]
        .iter()
        .any(|p| text.contains(p))
    {
        return;
    }
    let lines = text.lines().count() + 1;
    match load_text(Path::new(FILE), &text) {
        Ok(_) => {}
        Err(e) => {
            assert!(!e.problems.is_empty(), "refused without a reason");
            for p in &e.problems {
                let rest = p
                    .strip_prefix(FILE)
                    .unwrap_or_else(|| panic!("problem without the file name: {p}"));
                let Some(line) = rest.strip_prefix(':').and_then(|r| r.split(':').next()) else {
                    continue;
                };
                if let Ok(n) = line.trim().parse::<usize>() {
                    assert!(n <= lines, "problem on line {n} of {lines}: {p}");
                }
            }
        }
    }
}
