//! HTTP/1.1 request heads (parsed with `httparse`) and JSON responses. No IO.

use serde::Serialize;

/// Largest request head we accept; a longer one gets 431.
pub const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path, percent-decoding left to the router (segment by segment).
    pub path: String,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// HTTP minor version (0 or 1).
    pub version: u8,
    /// The body (`Content-Length` bytes), read after the head.
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body length announced by `Content-Length`; chunked bodies are refused (411).
    pub fn content_length(&self) -> Result<usize, HeadError> {
        if self.header("transfer-encoding").is_some() {
            return Err(HeadError {
                status: 411,
                message: "chunked bodies are not supported: send Content-Length",
            });
        }
        match self.header("content-length") {
            None => Ok(0),
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or(HeadError {
                    status: 400,
                    message: "invalid Content-Length",
                }),
        }
    }

    /// The `Authorization: Bearer <token>` token, if any.
    pub fn bearer(&self) -> Option<&str> {
        let value = std::str::from_utf8(self.header("authorization")?).ok()?;
        let (scheme, token) = value.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }

    /// Whether the client asks for a WebSocket upgrade (`Upgrade: websocket`).
    pub fn wants_upgrade(&self) -> bool {
        self.header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case(b"websocket"))
    }
}

/// Why a head could not be parsed: answered with `status` and closed.
#[derive(Debug, PartialEq)]
pub struct HeadError {
    pub status: u16,
    pub message: &'static str,
}

/// Parses a request head from `buf`: `Ok(None)` until it is complete, then the request and
/// the length of the head (bytes after it belong to the next protocol, e.g. WebSocket).
pub fn parse_head(buf: &[u8]) -> Result<Option<(Request, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let status = req.parse(buf).map_err(|e| HeadError {
        status: if e == httparse::Error::TooManyHeaders {
            431
        } else {
            400
        },
        message: match e {
            httparse::Error::TooManyHeaders => "too many headers",
            _ => "malformed HTTP request",
        },
    })?;
    let len = match status {
        httparse::Status::Partial if buf.len() >= MAX_HEAD => {
            return Err(HeadError {
                status: 431,
                message: "request head too large",
            })
        }
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(len) => len,
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    Ok(Some((
        Request {
            method: req.method.unwrap_or("GET").to_owned(),
            path: path.to_owned(),
            query: form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            headers: req
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), h.value.to_vec()))
                .collect(),
            version: req.version.unwrap_or(1),
            body: Vec::new(),
        },
        len,
    )))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A complete response with a body; the connection closes after it.
pub fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// `{"error":{"code":..,"message":..}}` plus more top-level fields (`extra` is an object).
pub fn json_error_with(
    status: u16,
    code: &str,
    message: &str,
    extra: serde_json::Value,
) -> Vec<u8> {
    let mut body = serde_json::json!({"error": {"code": code, "message": message}});
    if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    json(status, &body)
}

/// A JSON response.
pub fn json<T: Serialize + ?Sized>(status: u16, body: &T) -> Vec<u8> {
    let body = serde_json::to_vec(body).expect("response bodies serialize");
    response(status, "application/json", &body)
}

/// `{"error":{"code":..,"message":..}}` with `status`.
pub fn json_error(status: u16, code: &str, message: &str) -> Vec<u8> {
    json(
        status,
        &serde_json::json!({"error": {"code": code, "message": message}}),
    )
}

/// Percent-decodes one path segment.
pub fn decode_segment(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_then_complete() {
        assert_eq!(parse_head(b"GET /websocket?ro").unwrap().map(|_| ()), None);
        let raw =
            b"GET /websocket?room=a%20b&x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\n\r\nrest";
        let (req, len) = parse_head(raw).unwrap().unwrap();
        assert_eq!(req.path, "/websocket");
        assert_eq!(req.query_param("room"), Some("a b"));
        assert_eq!(req.header("host"), Some(&b"h"[..]));
        assert!(req.wants_upgrade());
        assert_eq!(&raw[len..], b"rest");
    }

    #[test]
    fn garbage_and_oversized_heads_are_refused() {
        assert_eq!(
            parse_head(b"\x00\x01 nonsense\r\n\r\n").unwrap_err().status,
            400
        );
        let big = vec![b'a'; MAX_HEAD + 1];
        let mut req = b"GET / HTTP/1.1\r\nX: ".to_vec();
        req.extend_from_slice(&big);
        assert_eq!(parse_head(&req).unwrap_err().status, 431);
    }

    #[test]
    fn error_bodies_are_json() {
        let r = json_error(404, "not_found", "no such route");
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text.ends_with(r#"{"error":{"code":"not_found","message":"no such route"}}"#));
    }

    #[test]
    fn content_length_and_bearer() {
        let raw = b"POST /x HTTP/1.1\r\nContent-Length: 12\r\nAuthorization: bearer  k1 \r\n\r\n";
        let (req, _) = parse_head(raw).unwrap().unwrap();
        assert_eq!(req.content_length(), Ok(12));
        assert_eq!(req.bearer(), Some("k1"));
        let raw = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let (req, _) = parse_head(raw).unwrap().unwrap();
        assert_eq!(req.content_length().unwrap_err().status, 411);
        let raw = b"POST /x HTTP/1.1\r\nContent-Length: x\r\n\r\n";
        let (req, _) = parse_head(raw).unwrap().unwrap();
        assert_eq!(req.content_length().unwrap_err().status, 400);
        assert_eq!(req.bearer(), None);
    }

    #[test]
    fn segments_are_percent_decoded() {
        assert_eq!(decode_segment("my%20room"), "my room");
    }
}
