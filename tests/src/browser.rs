//! A browser as far as sign-in needs one, without JavaScript: a cookie jar over
//! [`HttpClient`], forms read from the page's HTML, redirects within the server followed (at
//! most ten), and a redirect to anywhere else returned to the test.

use std::collections::BTreeMap;

use http::{Method, StatusCode};

use crate::http_client::{HttpClient, HttpResponse, form_encode};

pub struct Browser {
    pub http: HttpClient,
    /// Cookie name to value, as the server last set them.
    pub jar: BTreeMap<String, String>,
}

/// Where a navigation ended.
pub enum Landed {
    /// A page of the server.
    Page(HttpResponse),
    /// A redirect off the server (to a client): its `Location`.
    Away(String),
}

impl Landed {
    #[track_caller]
    pub fn page(self) -> HttpResponse {
        match self {
            Landed::Page(p) => p,
            Landed::Away(to) => panic!("expected a page, was sent to {to}"),
        }
    }

    #[track_caller]
    pub fn away(self) -> String {
        match self {
            Landed::Away(to) => to,
            Landed::Page(p) => panic!(
                "expected a redirect away, got {} {}",
                p.status,
                String::from_utf8_lossy(&p.body)
            ),
        }
    }
}

impl Browser {
    pub fn new(http: HttpClient) -> Self {
        Browser {
            http,
            jar: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn absorb(&mut self, r: &HttpResponse) {
        for v in r.headers.get_all(http::header::SET_COOKIE) {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            let expired = v
                .split(';')
                .any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            if expired || value.is_empty() {
                self.jar.remove(name.trim());
            } else {
                self.jar.insert(name.trim().to_owned(), value.to_owned());
            }
        }
    }

    /// One request, cookies sent and kept; no redirect followed.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        form: Option<&str>,
    ) -> HttpResponse {
        let cookies = self.cookie_header();
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if !cookies.is_empty() {
            headers.push(("cookie", &cookies));
        }
        let r = match form {
            Some(f) => self.http.post_form(path, &headers, f).await,
            None => self.http.send(method, path, &headers, Vec::new()).await,
        };
        self.absorb(&r);
        r
    }

    /// GET `path`, following redirects within the server.
    pub async fn get(&mut self, path: &str) -> Landed {
        let r = self.request(Method::GET, path, None).await;
        self.follow(r).await
    }

    /// POSTs a form, following redirects within the server.
    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Landed {
        let body = encode_form(form);
        let r = self.request(Method::POST, path, Some(&body)).await;
        self.follow(r).await
    }

    async fn follow(&mut self, mut r: HttpResponse) -> Landed {
        for _ in 0..10 {
            if !r.status.is_redirection() {
                return Landed::Page(r);
            }
            let to = r.headers[http::header::LOCATION]
                .to_str()
                .unwrap()
                .to_owned();
            if !to.starts_with('/') || to.starts_with("//") {
                return Landed::Away(to);
            }
            r = self.request(Method::GET, &to, None).await;
        }
        panic!("more than ten redirects");
    }

    /// Submits the page's form (its `action`), with its hidden fields and `fields`; a field of
    /// `fields` overrides a hidden one.
    pub async fn submit(&mut self, page: &HttpResponse, fields: &[(&str, &str)]) -> Landed {
        let html = String::from_utf8_lossy(&page.body).into_owned();
        let action = attribute(&html, "<form", "action").expect("a form");
        let mut form: Vec<(String, String)> = hidden_fields(&html)
            .into_iter()
            .filter(|(k, _)| !fields.iter().any(|(f, _)| f == k))
            .collect();
        form.extend(
            fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.post(&action, &pairs).await
    }
}

pub fn encode_form(form: &[(&str, &str)]) -> String {
    form.iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The hidden inputs of a page, in order, their values unescaped.
pub fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input")
        .skip(1)
        .filter(|tag| tag.contains("type=\"hidden\""))
        .filter_map(|tag| {
            let tag = &tag[..tag.find('>')?];
            Some((value_of(tag, "name")?, value_of(tag, "value")?))
        })
        .collect()
}

/// The value of `attr` in the first tag starting with `tag`.
fn attribute(html: &str, tag: &str, attr: &str) -> Option<String> {
    let start = html.find(tag)?;
    let rest = &html[start..];
    value_of(&rest[..rest.find('>')?], attr)
}

fn value_of(tag: &str, attr: &str) -> Option<String> {
    let needle = format!("{attr}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(unescape(&tag[start..end]))
}

/// HTML character references as askama writes them (numeric and the five named ones).
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The query parameters of a URL.
pub fn query_of(url: &str) -> BTreeMap<String, String> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or("");
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// A PKCE verifier and its S256 challenge (RFC 7636 section 4.1, 4.2).
pub fn pkce() -> (String, String) {
    use base64::Engine;
    use sha2::Digest;
    let verifier = format!("{}{}", writ_token::random_secret(), writ_token::random_id());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// Whether a response is an HTML page carrying the headers every sign-in page must.
#[track_caller]
pub fn assert_hardened_page(r: &HttpResponse, status: StatusCode) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.headers["x-frame-options"], "DENY");
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
}
