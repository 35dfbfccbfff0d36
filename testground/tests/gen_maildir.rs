//! `gen_maildir.py` run by several processes at once, as the tests of one binary do when each
//! resets its own scratch user: every run succeeds and the manifest keeps every user's entry.
//! Needs no server: the Maildirs are written under a temporary root without `--owner`.

use std::path::Path;
use std::process::{Command, Stdio};

/// Every user but the two with 2,000 messages (slow to write), with their message counts.
const USERS: [(&str, u64); 13] = [
    ("alice", 100),
    ("bob", 0),
    ("dave", 0),
    ("erin", 100),
    ("frank", 100),
    ("grace", 0),
    ("ivan", 0),
    ("judy", 0),
    ("kate", 100),
    ("liam", 0),
    ("mia", 100),
    ("noah", 100),
    ("olivia", 0),
];

struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("gen-maildir-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn concurrent_resets_of_different_users_all_succeed_and_all_stay_in_the_manifest() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gen_maildir.py");
    let root = ScratchDir::new();
    for round in 0..3 {
        let children: Vec<_> = USERS
            .iter()
            .map(|(user, _)| {
                let child = Command::new("python3")
                    .arg(&script)
                    .arg(root.path())
                    .arg(user)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("python3 runs");
                (user, child)
            })
            .collect();
        for (user, child) in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: resetting {user} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root.path().join("manifest.json")).unwrap())
                .unwrap();
        for (user, count) in USERS {
            assert_eq!(
                manifest["users"][user]["count"], count,
                "round {round}: {user} missing from the manifest: {manifest}"
            );
        }
    }
}
