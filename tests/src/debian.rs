//! Debian packages a test needs (Chromium, nginx), installed with apt when missing: as root,
//! which the build machines are, one installation at a time (apt holds one lock), bounded.
//! Installing starts no service: a `policy-rc.d` that forbids it is in place meanwhile (nginx's
//! package would otherwise start a server on port 80), unless the machine has one of its own.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

const INSTALL_TIMEOUT: Duration = Duration::from_secs(900);
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Installs `packages` unless every one of `binaries` exists; `why` says which tests need them.
pub fn ensure(binaries: &[&str], packages: &[&str], why: &str) {
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if binaries.iter().all(|b| Path::new(b).exists()) {
        return;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    assert!(
        root,
        "{why} need Debian's {}: install them (apt-get install {0}) or run the tests as root",
        packages.join(" ")
    );
    let own_policy = !Path::new(POLICY_RC_D).exists();
    if own_policy {
        std::fs::write(
            POLICY_RC_D,
            "#!/bin/sh\n# Written by Writ's tests while they install packages.\nexit 101\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(POLICY_RC_D, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend_from_slice(packages);
    let mut failure = None;
    for args in [&["update", "-qq"][..], &install[..]] {
        let mut cmd = Command::new("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        let done = crate::run_bounded(&mut cmd, None, INSTALL_TIMEOUT);
        if !done.status.success() {
            failure = Some(format!("apt-get {args:?} failed: {done}"));
            break;
        }
    }
    if own_policy {
        let _ = std::fs::remove_file(POLICY_RC_D);
    }
    if let Some(f) = failure {
        panic!("{f}");
    }
}
