//! A PostgreSQL server of a test's own (a fresh cluster in a temporary directory, on a free
//! loopback port), for tests that stop and start the database under Writ: the shared server
//! must not go down under every other test. Built from the machine's PostgreSQL binaries;
//! where there are none the test is skipped, unless `WRIT_REQUIRE_POSTGRES=1`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::run_bounded;

/// Bound on initdb, and on each start and stop.
const BOUND: Duration = Duration::from_secs(60);

pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    /// Creates and starts the cluster, or `None` (said on stderr) without PostgreSQL's binaries.
    pub fn start() -> Option<PrivatePostgres> {
        let Some(bin) = binaries() else {
            assert!(
                std::env::var("WRIT_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "PostgreSQL is required (WRIT_REQUIRE_POSTGRES=1) but no initdb was found under /usr/lib/postgresql"
            );
            eprintln!("skipped: no PostgreSQL binaries (initdb) under /usr/lib/postgresql");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        // PostgreSQL refuses to run as root: as root, the cluster is the postgres user's.
        if is_root() {
            chown_postgres(dir.path());
        }
        let port = crate::free_port();
        let pg = PrivatePostgres { dir, bin, port };
        let data = pg.data();
        let init = pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-N",
            ],
        );
        assert!(init.status.success(), "{init}");
        pg.start_again();
        Some(pg)
    }

    /// Where clients connect (trust authentication, database `postgres`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        let started = self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        assert!(started.status.success(), "{started}");
    }

    /// Stops the server at once (`-m fast`: open connections are cut, as in a restart).
    pub fn stop(&self) {
        let stopped = self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "-t",
                "30",
                "stop",
            ],
        );
        assert!(stopped.status.success(), "{stopped}");
    }

    fn run(&self, program: &str, args: &[&str]) -> crate::Finished {
        let program = self.bin.join(program);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.args(args).current_dir(self.dir.path());
        run_bounded(&mut cmd, None, BOUND)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "stop",
            ],
        );
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`.
fn binaries() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    // `id -u`: no libc call (and no unsafe code) in the tests.
    run_bounded(Command::new("id").arg("-u"), None, BOUND)
        .stdout
        .trim()
        == "0"
}

fn chown_postgres(dir: &Path) {
    let chown = run_bounded(
        Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir),
        None,
        BOUND,
    );
    assert!(chown.status.success(), "{chown}");
}
