//! A real nginx for tests: Debian's package (installed when missing, see [`crate::debian`]),
//! one process in the foreground on a free loopback port, with a configuration and a prefix
//! of its own in a temporary directory; it stops on drop. Every wait is bounded.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const NGINX: &str = "/usr/sbin/nginx";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running nginx.
pub struct Nginx {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx with `http` as the inside of its `http { }` block, after replacing
    /// `{port}` (where it listens) and `{dir}` (its own directory: files a test puts there
    /// with [`Nginx::dir_with`] first). Waits until it accepts connections.
    pub async fn start(http: &str, files: &[(&str, &str)]) -> Nginx {
        crate::debian::ensure(&[NGINX], &["nginx"], "the gateway tests");
        let dir = tempfile::tempdir().unwrap();
        let port = crate::free_port();
        let d = dir.path().display().to_string();
        for (name, contents) in files {
            std::fs::write(dir.path().join(name), contents).unwrap();
        }
        let config = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\nevents {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  \
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{}\n}}\n",
            http.replace("{port}", &port.to_string())
                .replace("{dir}", &d)
        );
        std::fs::write(dir.path().join("nginx.conf"), &config).unwrap();
        let test = Command::new(NGINX)
            .args(["-t", "-q", "-p"])
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .output()
            .unwrap();
        assert!(
            test.status.success(),
            "nginx refuses the configuration: {}\n{config}",
            String::from_utf8_lossy(&test.stderr)
        );
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let mut nginx = Nginx { child, port, dir };
        let deadline = Instant::now() + START_TIMEOUT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited ({status}): {}", nginx.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen: {}",
                nginx.error_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        nginx
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What nginx logged (for failures).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
