//! Replays the committed corpus of every fuzz target through its checks, on
//! stable Rust, as part of `cargo test`: the regression half of fuzzing.
//! Every input that ever found a bug is kept in `corpus/TARGET/`, so the
//! bug stays found; the seeds from real traffic and the test suites keep
//! the invariants exercised on realistic input.
//!
//! `FUZZ_CORPUS_DIR` points it at another corpus root (a long run's).

use std::path::{Path, PathBuf};

fn corpus_root() -> PathBuf {
    std::env::var_os("FUZZ_CORPUS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"))
}

fn replay(name: &str, check: fn(&[u8])) -> usize {
    let dir = corpus_root().join(name);
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.expect("a readable corpus entry").path())
        .collect();
    inputs.sort();
    for path in &inputs {
        let data = std::fs::read(path).expect("a readable corpus file");
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "{name}: input {} breaks an invariant (run `cargo fuzz run {name} {}` to see it)",
            path.display(),
            path.display()
        );
    }
    inputs.len()
}

#[test]
fn every_target_has_a_seed_corpus_and_it_passes() {
    for (name, check) in gatehouse_fuzz::TARGETS {
        let n = replay(name, *check);
        assert!(n > 0, "{name}: the corpus is empty");
        println!("{name}: {n} inputs replayed");
    }
}

#[test]
fn every_target_is_built_for_libfuzzer() {
    let targets = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz_targets");
    for (name, _) in gatehouse_fuzz::TARGETS {
        let src = std::fs::read_to_string(targets.join(format!("{name}.rs")))
            .unwrap_or_else(|e| panic!("fuzz_targets/{name}.rs: {e}"));
        assert!(src.contains(&format!("gatehouse_fuzz::{name}::check")));
    }
}
