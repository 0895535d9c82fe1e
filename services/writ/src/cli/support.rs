//! What every client command shares: its error (and exit code), connections to the servers
//! (trusting the CA the flags name), reading input, printing JSON.

use std::io::Read;

use serde_json::Value;
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::{AdminConn, Conn};
use crate::platform::ADMIN_TOKEN_FILE;

/// Why a command failed; each maps to a documented exit code.
#[derive(Debug)]
pub enum CliError {
    /// The server refused the request (exit 1) or the caller's credentials (exit 4).
    Refused(Status),
    /// The server could not be reached (exit 3).
    Unreachable(String),
    /// Bad input or an invalid token (exit 1).
    Invalid(String),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Refused(s) => {
                let reason = tonic_types::StatusExt::get_error_details(s)
                    .error_info()
                    .map(|i| i.reason.clone())
                    .unwrap_or_default();
                if reason.is_empty() {
                    write!(f, "{:?}: {}", s.code(), s.message())
                } else {
                    write!(f, "{reason}: {} ({:?})", s.message(), s.code())
                }
            }
            CliError::Unreachable(m) => write!(f, "cannot reach the server: {m}"),
            CliError::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CliError {}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            // Only a rejected caller credential (invalid_client, a bad admin credential) is
            // Unauthenticated. PermissionDenied carries OAuth refusals of an authenticated caller
            // (invalid_grant, invalid_scope, unauthorized_client, invalid_target): those are
            // "refused" (1), as the documented exit codes say, not "authentication failed" (4).
            CliError::Refused(s) if s.code() == Code::Unauthenticated => 4,
            CliError::Refused(s) if s.code() == Code::Unavailable => 3,
            CliError::Refused(_) | CliError::Invalid(_) => 1,
            CliError::Unreachable(_) => 3,
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Invalid(format!("cannot write the output: {e}"))
    }
}

impl From<Status> for CliError {
    fn from(s: Status) -> Self {
        CliError::Refused(s)
    }
}

pub(super) type Result<T> = std::result::Result<T, CliError>;

pub(super) fn print(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// A JSON array printed an element at a time, so a listing of any length holds one page in
/// memory, never all of them. Its output is what [`print`] of the whole array would show.
pub(super) struct ArrayPrinter<W: std::io::Write = std::io::Stdout> {
    out: W,
    count: usize,
}

impl ArrayPrinter {
    pub(super) fn new() -> Self {
        ArrayPrinter::to(std::io::stdout())
    }
}

impl<W: std::io::Write> ArrayPrinter<W> {
    pub(super) fn to(out: W) -> Self {
        ArrayPrinter { out, count: 0 }
    }

    pub(super) fn push(&mut self, v: &Value) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
        let indented = text.replace('\n', "\n  ");
        let open = if self.count == 0 { "[" } else { "," };
        self.count += 1;
        write!(self.out, "{open}\n  {indented}")
    }

    pub(super) fn finish(mut self) -> std::io::Result<W> {
        writeln!(self.out, "{}", if self.count == 0 { "[]" } else { "\n]" })?;
        Ok(self.out)
    }
}

/// The CA to trust for `https://` servers: `--ca`, or the data directory's development CA.
pub fn ca_pem(conn: &Conn) -> Result<String> {
    let path = conn
        .files
        .ca
        .clone()
        .unwrap_or_else(|| conn.files.data_dir.join(writ_tls::CA_CERT_FILE));
    std::fs::read_to_string(&path).map_err(|e| {
        CliError::Invalid(format!(
            "cannot read the CA certificate {} ({e}); pass --ca or --data-dir",
            path.display()
        ))
    })
}

/// A channel to `url`, trusting the CA `conn` names.
pub async fn channel_to(url: &str, conn: &Conn) -> Result<Channel> {
    let ca = if url.starts_with("https://") {
        Some(ca_pem(conn)?)
    } else {
        None
    };
    writ_server::endpoint(url, ca.as_deref())
        .map_err(|e| CliError::Invalid(format!("{url}: {e}")))?
        .connect()
        .await
        .map_err(|e| CliError::Unreachable(format!("{url}: {e}")))
}

/// A channel to the authorization server.
pub async fn channel(conn: &Conn) -> Result<Channel> {
    channel_to(&conn.server, conn).await
}

pub(super) fn read_arg_or_stdin(value: &str) -> Result<String> {
    if value != "-" {
        return Ok(value.trim().to_owned());
    }
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| CliError::Invalid(format!("reading standard input: {e}")))?;
    Ok(s.trim().to_owned())
}

pub(super) fn read_stdin_line(what: &str) -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_line(&mut s)
        .map_err(|e| CliError::Invalid(format!("reading {what} from standard input: {e}")))?;
    let s = s.trim_end_matches(['\r', '\n']).to_owned();
    if s.is_empty() {
        return Err(CliError::Invalid(format!("no {what} on standard input")));
    }
    Ok(s)
}

pub(super) fn admin_credential(conn: &AdminConn) -> Result<String> {
    if let Some(t) = &conn.admin.admin_token {
        return Ok(t.trim().to_owned());
    }
    let path = conn.conn.files.data_dir.join(ADMIN_TOKEN_FILE);
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| {
            CliError::Invalid(format!(
                "no admin credential: pass --admin-token or --data-dir ({}: {e})",
                path.display()
            ))
        })
}

/// A small text file given on the command line (a JWK Set, a PEM key): at most 64 KiB.
pub fn read_text(path: &std::path::Path) -> Result<String> {
    let file = std::fs::File::open(path)
        .map_err(|e| CliError::Invalid(format!("{}: {e}", path.display())))?;
    let mut text = String::new();
    file.take(64 * 1024 + 1)
        .read_to_string(&mut text)
        .map_err(|e| CliError::Invalid(format!("{}: {e}", path.display())))?;
    if text.len() > 64 * 1024 {
        return Err(CliError::Invalid(format!(
            "{}: larger than 64 KiB",
            path.display()
        )));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_array_printed_element_by_element_reads_as_the_whole() {
        let items = [
            serde_json::json!({"client_id": "a", "scope": ["x", "y"], "nested": {"k": 1}}),
            serde_json::json!("plain"),
            serde_json::json!([]),
        ];
        for n in 0..=items.len() {
            let mut p = ArrayPrinter::to(Vec::new());
            for v in &items[..n] {
                p.push(v).unwrap();
            }
            let text = String::from_utf8(p.finish().unwrap()).unwrap();
            let whole = Value::Array(items[..n].to_vec());
            assert_eq!(
                text,
                format!("{}\n", serde_json::to_string_pretty(&whole).unwrap())
            );
        }
    }
}
