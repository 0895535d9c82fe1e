//! Replays the seed corpus and every saved regression input through the fuzz targets, on the
//! ordinary toolchain, in the workspace's tests: an input that once crashed a target stays a
//! test, and a harness that stopped reaching the code it fuzzes (a seed no longer accepted)
//! fails here instead of fuzzing nothing.

use std::path::Path;

use writ_fuzz::{fixture, seeds};

fn target(name: &str) -> fn(&[u8]) {
    match name {
        "jwt" => writ_fuzz::jwt,
        "jwt_signed" => writ_fuzz::jwt_signed,
        "biscuit" => writ_fuzz::biscuit,
        "biscuit_block" => writ_fuzz::biscuit_block,
        "form" => writ_fuzz::form,
        "revocation_entry" => writ_fuzz::revocation_entry,
        other => panic!("no fuzz target {other}"),
    }
}

const TARGETS: [&str; 6] = [
    "jwt",
    "jwt_signed",
    "biscuit",
    "biscuit_block",
    "form",
    "revocation_entry",
];

#[test]
fn seeds_run_clean_and_reach_acceptance() {
    let seeds = seeds();
    for name in TARGETS {
        assert!(
            seeds.iter().any(|(t, _, _)| *t == name),
            "no seed for the {name} target"
        );
    }
    for (name, _, bytes) in &seeds {
        target(name)(bytes);
    }
    // The valid seeds really are accepted, so the fuzzers start from inside the verifiers.
    let f = fixture();
    for (name, seed, bytes) in &seeds {
        if *name == "jwt" {
            let token = std::str::from_utf8(bytes).unwrap();
            f.verifier
                .verify(token)
                .unwrap_or_else(|e| panic!("seed {seed} refused: {e}"));
        }
    }
}

#[test]
fn saved_regressions_still_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut replayed = 0;
    for name in TARGETS {
        let dir = root.join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n == ".gitkeep") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            target(name)(&bytes);
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} regression inputs");
}
