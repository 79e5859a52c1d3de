//! Which web pages may talk to this server from a browser (`--allowed-origins`).
//!
//! A browser opens a WebSocket to any site a page asks for, with the visitor's cookies,
//! and tells the server only one thing about who asked: the page's `Origin`. So an upgrade
//! (and an HTTP API call) whose `Origin` is not allowed is refused with `403` and a JSON
//! body, before anything else happens. Clients that are not browsers send no `Origin`;
//! they are let through unless `--require-origin` says otherwise (an `Origin` is no
//! credential: any non-browser client can send any value).
//!
//! A rule is `*` (any origin), an origin `scheme://host[:port]`, or one with a wildcard:
//! `https://*.example.com` (any subdomain, not the domain itself), `http://localhost:*`
//! (any port). A rule without a port matches the scheme's default port only. The server's
//! own origin (the `Origin` naming the `Host` the request was sent to, over `http`, or
//! `https` when the server serves TLS) is
//! always allowed. The default, [`DEFAULT_ALLOWED_ORIGINS`], allows pages served from this
//! machine only, which is what a local quick start needs and no page on the internet can
//! use.

use crate::http::{self, Request};

/// `--allowed-origins` when not set: pages on this machine, any port.
pub const DEFAULT_ALLOWED_ORIGINS: &str = "http://localhost:*,http://127.0.0.1:*,http://[::1]:*,https://localhost:*,https://127.0.0.1:*,https://[::1]:*";

/// Which port a rule accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Port {
    /// The scheme's default port (no port written, or the default written out).
    Default,
    Any,
    Is(u16),
}

/// One allowed origin, or a family of them.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    Any,
    /// `scheme://host` (`subdomains`: `scheme://*.host`, which matches `a.host`, `b.a.host`,
    /// not `host`).
    Origin {
        scheme: String,
        host: String,
        subdomains: bool,
        port: Port,
    },
}

/// The parsed `--allowed-origins` and `--require-origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPolicy {
    rules: Vec<Rule>,
    require: bool,
    /// The scheme of the server's own origin: `https` when it serves TLS.
    own_scheme: &'static str,
}

/// What the policy says of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No `Origin`: not a browser, and allowed.
    NoOrigin,
    /// A browser page that is allowed: its origin, for the CORS answer.
    Allowed(String),
    /// Refused: the `403` to send.
    Refused(Vec<u8>),
}

impl OriginPolicy {
    /// Parses the comma-separated rules (each trimmed; empty ones skipped). The error names
    /// the rule and what is wrong with it.
    pub fn parse(rules: &[String], require: bool) -> Result<OriginPolicy, String> {
        let mut parsed = Vec::new();
        for rule in rules.iter().flat_map(|r| r.split(',')) {
            let rule = rule.trim();
            if rule.is_empty() {
                continue;
            }
            parsed.push(parse_rule(rule).map_err(|why| {
                format!("--allowed-origins: {rule:?} is not an origin rule: {why}")
            })?);
        }
        Ok(OriginPolicy {
            rules: parsed,
            require,
            own_scheme: "http",
        })
    }

    /// The policy of a server that serves TLS (`true`): its own origin is `https://` + the
    /// request's `Host`, not `http://`.
    pub fn over_tls(mut self, tls: bool) -> OriginPolicy {
        self.own_scheme = if tls { "https" } else { "http" };
        self
    }

    /// Whether a page of `origin` may talk to this server, reached as `host` (the request's
    /// `Host` header).
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        let Some(seen) = parse_origin(origin) else {
            return false;
        };
        let own = host.is_some_and(|host| {
            seen.scheme == self.own_scheme && authority(&seen).eq_ignore_ascii_case(host)
        });
        own || self.rules.iter().any(|rule| matches(rule, &seen))
    }

    /// The verdict on a request, by its `Origin` and `Host` headers.
    pub fn check(&self, req: &Request) -> Verdict {
        let Some(origin) = req.header("origin") else {
            return match self.require {
                false => Verdict::NoOrigin,
                true => Verdict::Refused(http::json_error(
                    403,
                    "origin_required",
                    "this server accepts requests from allowed web pages only (an Origin header)",
                )),
            };
        };
        let origin = String::from_utf8_lossy(origin).into_owned();
        let host = req.header("host").and_then(|h| std::str::from_utf8(h).ok());
        if self.allows(&origin, host) {
            Verdict::Allowed(origin)
        } else {
            Verdict::Refused(http::json_error(
                403,
                "origin_not_allowed",
                &format!("pages from {origin:?} may not use this server (--allowed-origins)"),
            ))
        }
    }
}

/// An origin as a browser sends it, lowercased.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    scheme: String,
    host: String,
    /// `None`: not written.
    port: Option<u16>,
}

/// `host[:port]` as a `Host` header would say it.
fn authority(seen: &Seen) -> String {
    match seen.port {
        None => seen.host.clone(),
        Some(port) => format!("{}:{port}", seen.host),
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// Splits `scheme://host[:port]` (no path, no user info). `port` is the text after the
/// colon, if any.
fn split(origin: &str) -> Option<(String, String, Option<&str>)> {
    let (scheme, rest) = origin.split_once("://")?;
    if scheme.is_empty() || rest.is_empty() || rest.contains(['/', '@', '?', '#', ' ']) {
        return None;
    }
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (inner, after) = bracketed.split_once(']')?;
        let port = match after {
            "" => None,
            after => Some(after.strip_prefix(':')?),
        };
        (format!("[{inner}]"), port)
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (rest.to_owned(), None),
        }
    };
    if host.is_empty() || host.contains(':') && !host.starts_with('[') {
        return None;
    }
    Some((scheme.to_ascii_lowercase(), host.to_ascii_lowercase(), port))
}

fn parse_origin(origin: &str) -> Option<Seen> {
    let (scheme, host, port) = split(origin.trim())?;
    if host.contains('*') {
        return None;
    }
    let port = match port {
        None => None,
        Some(port) => Some(port.parse::<u16>().ok()?),
    };
    Some(Seen { scheme, host, port })
}

fn parse_rule(rule: &str) -> Result<Rule, &'static str> {
    if rule == "*" {
        return Ok(Rule::Any);
    }
    let (scheme, host, port) =
        split(rule).ok_or("expected `*` or scheme://host[:port], with no path")?;
    let (host, subdomains) = match host.strip_prefix("*.") {
        Some(parent) => (parent.to_owned(), true),
        None => (host, false),
    };
    if host.contains('*') || host.is_empty() {
        return Err("a wildcard may only stand for subdomains (https://*.example.com)");
    }
    let port = match port {
        None => Port::Default,
        Some("*") => Port::Any,
        Some(port) => Port::Is(port.parse().map_err(|_| "the port is not a number")?),
    };
    Ok(Rule::Origin {
        scheme,
        host,
        subdomains,
        port,
    })
}

fn matches(rule: &Rule, seen: &Seen) -> bool {
    let Rule::Origin {
        scheme,
        host,
        subdomains,
        port,
    } = rule
    else {
        return true;
    };
    let host_ok = match subdomains {
        false => seen.host == *host,
        true => seen
            .host
            .strip_suffix(host.as_str())
            .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
    };
    let port_ok = match port {
        Port::Any => true,
        Port::Is(p) => seen.port.or(default_port(&seen.scheme)) == Some(*p),
        Port::Default => seen.port.is_none() || seen.port == default_port(&seen.scheme),
    };
    seen.scheme == *scheme && host_ok && port_ok
}

/// `response` with the CORS headers that let a page of `origin` read it.
pub fn with_cors(response: Vec<u8>, origin: &str) -> Vec<u8> {
    let headers = format!("access-control-allow-origin: {origin}\r\nvary: Origin\r\n");
    insert_headers(response, &headers)
}

/// The answer to a CORS preflight (`OPTIONS`) from an allowed `origin`.
pub fn preflight(origin: &str) -> Vec<u8> {
    let head = format!(
        "HTTP/1.1 204 No Content\r\naccess-control-allow-origin: {origin}\r\nvary: Origin\r\n\
         access-control-allow-methods: GET, POST, PUT, DELETE\r\n\
         access-control-allow-headers: authorization, content-type, x-api-key\r\n\
         access-control-max-age: 600\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    head.into_bytes()
}

/// Puts `headers` (each ending in CRLF) right after the status line.
fn insert_headers(response: Vec<u8>, headers: &str) -> Vec<u8> {
    let Some(end) = response.windows(2).position(|w| w == b"\r\n") else {
        return response;
    };
    let mut out = Vec::with_capacity(response.len() + headers.len());
    out.extend_from_slice(&response[..end + 2]);
    out.extend_from_slice(headers.as_bytes());
    out.extend_from_slice(&response[end + 2..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rules: &str) -> OriginPolicy {
        OriginPolicy::parse(&[rules.to_owned()], false).unwrap()
    }

    #[test]
    fn the_default_allows_this_machine_only() {
        let p = policy(DEFAULT_ALLOWED_ORIGINS);
        for ok in [
            "http://localhost:8000",
            "http://localhost",
            "http://127.0.0.1:5173",
            "http://[::1]:3000",
            "HTTP://LOCALHOST:8000",
            // A local dev server over https (e.g. beside a --tls-cert server) is on this
            // machine too.
            "https://localhost:8443",
            "https://127.0.0.1:5173",
        ] {
            assert!(p.allows(ok, None), "{ok}");
        }
        for refused in [
            "https://evil.example",
            "http://localhost.evil.example",
            "http://127.0.0.1.evil.example:80",
            "https://localhost.evil.example:8000",
            "null",
            "",
            "localhost:8000",
        ] {
            assert!(!p.allows(refused, None), "{refused}");
        }
    }

    #[test]
    fn the_servers_own_origin_is_allowed() {
        let p = policy("https://app.example.com");
        assert!(p.allows(
            "http://chat.example.org:8080",
            Some("chat.example.org:8080")
        ));
        assert!(!p.allows(
            "http://chat.example.org:8080",
            Some("other.example.org:8080")
        ));
        assert!(!p.allows("http://chat.example.org", Some("chat.example.org:8080")));
    }

    #[test]
    fn over_tls_the_servers_own_origin_is_https() {
        let p = policy("https://app.example.com").over_tls(true);
        assert!(p.allows("https://chat.example.org", Some("chat.example.org")));
        assert!(p.allows(
            "https://chat.example.org:8443",
            Some("chat.example.org:8443")
        ));
        assert!(!p.allows("http://chat.example.org", Some("chat.example.org")));
    }

    #[test]
    fn wildcards_stand_for_subdomains_and_ports() {
        let p = policy("https://*.example.com, http://dev.test:*");
        assert!(p.allows("https://a.example.com", None));
        assert!(p.allows("https://b.a.example.com", None));
        assert!(p.allows("https://a.example.com:443", None));
        assert!(!p.allows("https://example.com", None), "the domain itself");
        assert!(!p.allows("https://aexample.com", None));
        assert!(!p.allows("http://a.example.com", None), "another scheme");
        assert!(
            !p.allows("https://a.example.com:8443", None),
            "another port"
        );
        assert!(p.allows("http://dev.test:1", None));
        assert!(p.allows("http://dev.test", None));
        assert!(policy("*").allows("https://anything.example", None));
        assert!(policy("https://x.example:8443").allows("https://x.example:8443", None));
        assert!(!policy("https://x.example:8443").allows("https://x.example", None));
    }

    #[test]
    fn bad_rules_are_errors_naming_them() {
        for bad in [
            "example.com",
            "https://ex*ample.com",
            "https://example.com/path",
            "https://example.com:http",
            "https://",
        ] {
            let error = OriginPolicy::parse(&[bad.to_owned()], false).unwrap_err();
            assert!(
                error.contains("--allowed-origins") && error.contains(bad),
                "{error}"
            );
        }
        assert_eq!(policy(" , ").rules, []);
    }

    #[test]
    fn cors_headers_go_after_the_status_line() {
        let response = http::json(200, &serde_json::json!({"ok": true}));
        let with = String::from_utf8(with_cors(response, "http://localhost:8000")).unwrap();
        assert!(with.starts_with(
            "HTTP/1.1 200 OK\r\naccess-control-allow-origin: http://localhost:8000\r\nvary: Origin\r\n"
        ));
        assert!(with.ends_with("{\"ok\":true}"));
        let pre = String::from_utf8(preflight("http://localhost:8000")).unwrap();
        assert!(pre.starts_with("HTTP/1.1 204 No Content\r\n"), "{pre}");
        assert!(pre.contains("access-control-allow-methods"));
    }
}
