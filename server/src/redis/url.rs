//! `--redis-url` as users write it (the form of redis-cli, redis-rs and most clients):
//!
//! ```text
//! redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]     plain TCP
//! rediss://[[USER]:PASSWORD@]HOST[:PORT][/DB]    TLS
//! ```
//!
//! User and password are percent-decoded (`%40` for `@`, `%3A` for `:`, `%2F` for `/`);
//! `HOST` is a name, an IPv4 address or an IPv6 address in brackets (`[::1]`); the port is
//! 6379 when left out; `DB` is the database number given to `SELECT`. A query (`?…`) or a
//! fragment is refused rather than silently ignored: no client option is read from the URL
//! (TLS's certificate authority is `--redis-ca`). A user without a password is refused too
//! (`AUTH` needs one).
//!
//! Parsing is the `url` crate's (through reqwest, already used for every other URL flag);
//! this module checks what a Redis URL may hold, and every error it gives shows the URL
//! with its password replaced ([`RedisUrl::shown`]), never the password.

use percent_encoding::percent_decode_str;
use std::net::{SocketAddr, ToSocketAddrs};

/// A parsed `--redis-url`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// `rediss://`: the connection is TLS.
    pub tls: bool,
    /// The host as written, without IPv6 brackets: what TLS checks the certificate against
    /// (SNI and name check).
    pub host: String,
    pub port: u16,
    /// `AUTH`'s user (`None`: the `default` user, `AUTH password`).
    pub username: Option<String>,
    pub password: Option<String>,
    /// The database to `SELECT` (`None`: Redis's default, 0, without a `SELECT`).
    pub db: Option<u32>,
}

/// The password never shows in `{:?}` either.
impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

/// Where `SELECT` stops (Redis's `databases` defaults to 16; a larger setting is allowed,
/// and a number the server does not have is refused by it at connection time).
const MAX_DB: u32 = 1_000_000;

impl RedisUrl {
    /// Parses `--redis-url` (the error is one line and never holds the password).
    pub fn parse(text: &str) -> Result<RedisUrl, String> {
        let expected = "expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or rediss://…";
        let url = reqwest::Url::parse(text).map_err(|e| {
            // The text is not echoed: it may hold a password and is not a URL to redact.
            format!("--redis-url is not a URL ({e}); {expected}")
        })?;
        let shown = shown_url(&url);
        let bad = |why: &str| format!("--redis-url {shown}: {why}; {expected}");
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => return Err(bad(&format!("the scheme {other:?} is not redis or rediss"))),
        };
        if url.query().is_some() {
            return Err(bad(
                "a query (?…) is not supported: no option is read from the URL (TLS's \
                 certificate authority is --redis-ca)",
            ));
        }
        if url.fragment().is_some() {
            return Err(bad("a fragment (#…) is not supported"));
        }
        // IPv6 comes bracketed (`[::1]`); a name or an IPv4 address as written (a
        // `redis` URL's host is opaque to the `url` crate: not lowercased, not checked).
        let host = match url.host_str() {
            Some(h) if h.starts_with('[') => h.trim_start_matches('[').trim_end_matches(']'),
            Some(h) if !h.is_empty() => h,
            _ => return Err(bad("no host")),
        }
        .to_owned();
        if host.contains('%') {
            return Err(bad("a host name cannot hold percent-encoded characters"));
        }
        let port = match url.port() {
            Some(0) => return Err(bad("port 0")),
            Some(port) => port,
            None => 6379,
        };
        let decode = |part: &str, what: &str| {
            percent_decode_str(part)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| bad(&format!("the {what} is not UTF-8 once percent-decoded")))
        };
        let username = match url.username() {
            "" => None,
            user => Some(decode(user, "user")?),
        };
        let password = match url.password() {
            None | Some("") => None,
            Some(password) => Some(decode(password, "password")?),
        };
        if username.is_some() && password.is_none() {
            return Err(bad(
                "a user needs a password (USER:PASSWORD@; for a password alone, :PASSWORD@)",
            ));
        }
        let db = match url.path() {
            "" | "/" => None,
            path => {
                let number = &path[1..];
                match number.parse::<u32>() {
                    Ok(db) if number.bytes().all(|b| b.is_ascii_digit()) && db <= MAX_DB => {
                        Some(db)
                    }
                    _ => {
                        return Err(bad(&format!(
                            "the path {path:?} is not a database number (/0, /1, …)"
                        )))
                    }
                }
            }
        };
        Ok(RedisUrl {
            tls,
            host,
            port,
            username,
            password,
            db,
        })
    }

    /// The URL for logs and errors: the user kept, the password replaced by `redacted`.
    pub fn shown(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let auth = match (&self.username, &self.password) {
            (Some(user), Some(_)) => format!("{user}:redacted@"),
            (None, Some(_)) => ":redacted@".to_owned(),
            _ => String::new(),
        };
        let db = self.db.map(|db| format!("/{db}")).unwrap_or_default();
        format!("{scheme}://{auth}{host}:{}{db}", self.port)
    }

    /// The address to connect to, resolved now (the first of the host's addresses).
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        let bad = |why: String| format!("--redis-url {}: {why}", self.shown());
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| bad(format!("cannot resolve {:?}: {e}", self.host)))?
            .next()
            .ok_or_else(|| bad(format!("{:?} has no address", self.host)))
    }
}

/// `url` with its password replaced, for an error about a URL that is not a good Redis URL.
fn shown_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("redacted"));
    }
    if shown.query().is_some() {
        shown.set_query(Some("redacted"));
    }
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> RedisUrl {
        RedisUrl::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn a_host_alone_has_the_default_port_no_auth_no_db() {
        let url = ok("redis://127.0.0.1");
        assert_eq!(
            (url.tls, url.host.as_str(), url.port, url.db),
            (false, "127.0.0.1", 6379, None)
        );
        assert_eq!((url.username, url.password), (None, None));
        assert_eq!(ok("redis://127.0.0.1/").db, None);
        assert_eq!(ok("redis://redis.example:7000").port, 7000);
    }

    #[test]
    fn a_password_alone_a_user_and_a_password() {
        let url = ok("redis://:s3cret@h:1");
        assert_eq!(
            (url.username, url.password.as_deref()),
            (None, Some("s3cret"))
        );
        let url = ok("redis://app:s3cret@h:1");
        assert_eq!(url.username.as_deref(), Some("app"));
        assert_eq!(url.password.as_deref(), Some("s3cret"));
    }

    #[test]
    fn user_and_password_are_percent_decoded() {
        let url = ok("redis://a%40b:p%3Aw%2Fd%40%25%20x@h");
        assert_eq!(url.username.as_deref(), Some("a@b"));
        assert_eq!(url.password.as_deref(), Some("p:w/d@% x"));
        assert_eq!(
            ok("redis://:%C3%A9t%C3%A9@h").password.as_deref(),
            Some("été")
        );
    }

    #[test]
    fn a_database_number() {
        assert_eq!(ok("redis://h/3").db, Some(3));
        assert_eq!(ok("redis://h:1/0").db, Some(0));
        assert_eq!(ok("redis://:p@h:1/15").db, Some(15));
    }

    #[test]
    fn ipv6_in_brackets() {
        let url = ok("redis://[::1]:7000/2");
        assert_eq!(
            (url.host.as_str(), url.port, url.db),
            ("::1", 7000, Some(2))
        );
        assert_eq!(url.resolve().unwrap(), "[::1]:7000".parse().unwrap());
        assert_eq!(url.shown(), "redis://[::1]:7000/2");
        assert_eq!(ok("rediss://[::1]").port, 6379);
    }

    #[test]
    fn rediss_is_tls() {
        let url = ok("rediss://u:p@cache.internal:6380/1");
        assert!(url.tls);
        assert_eq!(url.host, "cache.internal");
        assert!(!ok("redis://h").tls);
    }

    #[test]
    fn resolved_once() {
        assert_eq!(
            ok("redis://127.0.0.1:7000").resolve().unwrap(),
            "127.0.0.1:7000".parse().unwrap()
        );
        assert_eq!(ok("redis://localhost").resolve().unwrap().port(), 6379);
    }

    #[test]
    fn shown_never_holds_the_password() {
        let url = ok("rediss://app:hunter2@h:1/3");
        assert_eq!(url.shown(), "rediss://app:redacted@h:1/3");
        assert_eq!(format!("{url:?}"), url.shown());
        assert_eq!(ok("redis://:hunter2@h").shown(), "redis://:redacted@h:6379");
        assert_eq!(ok("redis://h").shown(), "redis://h:6379");
    }

    #[test]
    fn malformed_urls_are_refused_in_one_line_without_the_password() {
        let cases = [
            ("http://h:1", "scheme"),
            ("redis:/h", "no host"),
            ("redis://", "no host"),
            ("redis://:hunter2@", "empty host"),
            ("redis:h", "no host"),
            ("h:6379", "scheme"),
            ("127.0.0.1:6379", "not a URL"),
            ("", "not a URL"),
            ("redis://h:0", "port 0"),
            ("redis://h:70000", "not a URL"),
            ("redis://h:x", "not a URL"),
            ("redis://h/x", "database number"),
            ("redis://h/-1", "database number"),
            ("redis://h/+1", "database number"),
            ("redis://h/1/2", "database number"),
            ("redis://h/99999999999", "database number"),
            ("redis://h/1?x=1", "query"),
            ("redis://:hunter2@h?password=hunter2", "query"),
            ("redis://h/1#f", "fragment"),
            ("redis://app@h", "a user needs a password"),
            ("redis://app:@h", "a user needs a password"),
            ("redis://[::1", "not a URL"),
            ("redis://:%FFhunter2@h", "not UTF-8"),
            ("redis://h%41st", "percent"),
            ("redis://app:hunter2 x@h:1/x", "database number"),
        ];
        let mut wrong = Vec::new();
        for (text, why) in cases {
            match RedisUrl::parse(text) {
                Ok(url) => wrong.push(format!("{text}: accepted as {url:?}")),
                Err(e) if !e.contains(why) || e.contains("hunter2") || e.contains('\n') => {
                    wrong.push(format!("{text}: {e}"))
                }
                Err(_) => {}
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }
}
