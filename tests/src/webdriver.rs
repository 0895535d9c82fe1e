//! A real browser for tests: Debian's Chromium, headless, driven over the W3C WebDriver protocol
//! (chromedriver's plain HTTP + JSON API on loopback). Missing browsers are installed with apt
//! (see [`crate::debian`]); every wait is bounded.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};

use crate::http_client::HttpClient;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Installs Debian's `chromium` and `chromium-driver` when they are missing.
pub fn ensure_chromium() {
    crate::debian::ensure(
        &[CHROMIUM, CHROMEDRIVER],
        &["chromium", "chromium-driver"],
        "the browser tests",
    );
}

/// A chromedriver process and one headless Chromium session in it; both end on drop.
pub struct Browser {
    driver: Child,
    http: HttpClient,
    /// `127.0.0.1:port` of the driver.
    http_addr: String,
    session: String,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium with JavaScript
    /// turned off (the pages must work without it). `accept_insecure_certs`: the development
    /// CA is not in the browser's store.
    pub async fn start() -> Browser {
        ensure_chromium();
        let port = crate::free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http = HttpClient::new(&format!("http://127.0.0.1:{port}"), None);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let listening = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok();
            if listening
                && let Ok(r) =
                    tokio::time::timeout(Duration::from_secs(5), http.get("/status")).await
                && r.json()["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut browser = Browser {
            driver,
            http,
            http_addr: format!("127.0.0.1:{port}"),
            session: String::new(),
        };
        let caps = json!({
            "capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "acceptInsecureCerts": true,
                "pageLoadStrategy": "normal",
                "timeouts": {"pageLoad": 15000, "implicit": 0, "script": 5000},
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=480,800",
                             "--no-first-run", "--no-default-browser-check"],
                    "prefs": {"profile.managed_default_content_settings.javascript": 2}
                }
            }}
        });
        let r = browser.call(Method::POST, "/session", Some(caps)).await;
        browser.session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_owned();
        browser
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let r = tokio::time::timeout(
            Duration::from_secs(30),
            self.http.send(
                method,
                path,
                &[("content-type", "application/json; charset=utf-8")],
                body,
            ),
        )
        .await
        .expect("the WebDriver call answers within 30 s");
        let v = r.json();
        assert!(
            v["value"].get("error").is_none(),
            "WebDriver {path}: {}",
            v["value"]
        );
        v
    }

    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub async fn goto(&self, url: &str) {
        self.call(
            Method::POST,
            &self.path("/url"),
            Some(json!({ "url": url })),
        )
        .await;
    }

    pub async fn url(&self) -> String {
        self.call(Method::GET, &self.path("/url"), None).await["value"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn title(&self) -> String {
        self.call(Method::GET, &self.path("/title"), None).await["value"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn source(&self) -> String {
        self.call(Method::GET, &self.path("/source"), None).await["value"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The element a CSS selector finds (the page must have it).
    pub async fn find(&self, css: &str) -> String {
        let r = self
            .call(
                Method::POST,
                &self.path("/element"),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        r["value"]
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {r}"))
            .to_owned()
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call(
            Method::POST,
            &self.path(&format!("/element/{e}/value")),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call(
            Method::POST,
            &self.path(&format!("/element/{e}/click")),
            Some(json!({})),
        )
        .await;
    }

    /// The browser's cookies for the current page, as WebDriver reports them.
    pub async fn cookies(&self) -> Vec<Value> {
        self.call(Method::GET, &self.path("/cookie"), None).await["value"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let r = self
            .call(Method::GET, &self.path("/screenshot"), None)
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(r["value"].as_str().unwrap())
            .unwrap()
    }

    /// Polls until `done` holds for the page's title, at most `timeout`. A form's submit may
    /// return before the next page loads, and the URL alone cannot tell two pages at one address.
    pub async fn wait_for_title(&self, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let title = self.title().await;
            if done(&title) {
                return title;
            }
            assert!(
                Instant::now() < deadline,
                "still at a page titled {title:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until `done` holds for the current URL, at most `timeout`.
    pub async fn wait_for_url(&self, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let url = self.url().await;
            if done(&url) {
                return url;
            }
            assert!(Instant::now() < deadline, "still at {url}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The session first (chromedriver makes Chromium quit), then the driver. Drop cannot
        // await: one blocking request on loopback, bounded.
        if !self.session.is_empty() {
            let _ = delete_session(&self.http_addr, &self.session);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn delete_session(addr: &str, session: &str) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let bound = Some(Duration::from_secs(10));
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(bound)?;
    s.set_write_timeout(bound)?;
    write!(
        s,
        "DELETE /session/{session} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    Ok(())
}
