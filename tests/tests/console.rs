//! The pages the binary serves itself (`/`, `/demo`) and the web console's HTTP side
//! (`/console`): who gets what, the security headers, `--no-demo`, and the live feed
//! (server-sent events) with a room's page and its tail, over real sockets.

use rookery_tests::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const KEY: &str = "console-test-key";
/// Failure bound for anything the feed should show (it ticks every second).
const FEED_WAIT: Duration = Duration::from_secs(20);

/// The whole response to `GET path` with `headers`: status, head (lowercased), body.
fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut s, &mut bytes).unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let status = head[9..12].parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn bearer() -> String {
    format!("Bearer {KEY}")
}

fn console_server() -> SocketAddr {
    server_with(2, |c| c.admin_key = Some(KEY.into()))
}

#[test]
fn the_root_says_what_is_served_as_json_or_a_page() {
    let addr = console_server();
    let (status, _, body) = get(addr, "/", &[]);
    assert_eq!(status, 200);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["demo"], "/demo");
    assert_eq!(body["console"], "/console");
    assert_eq!(body["websocket"]["pact"], "/websocket?room=ROOM");

    let (status, head, page) = get(addr, "/", &[("Accept", "text/html,*/*")]);
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(head.contains("frame-ancestors 'none'"), "{head}");
    assert!(
        page.contains("href=\"/demo\"") && page.contains("href=\"/console\""),
        "{page}"
    );

    // Without an admin key and with --no-demo, neither is offered.
    let bare = server_with(1, |c| c.no_demo = true);
    let (_, _, body) = get(bare, "/", &[]);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (body["demo"].clone(), body["console"].clone()),
        (Value::Null, Value::Null)
    );
    let (_, _, page) = get(bare, "/", &[("Accept", "text/html")]);
    assert!(
        !page.contains("/demo") && !page.contains("/console"),
        "{page}"
    );
}

#[test]
fn the_demo_is_served_with_the_sdk_and_strict_headers_unless_turned_off() {
    let addr = server(1);
    for (path, content_type) in [
        ("/demo", "text/html"),
        ("/demo/", "text/html"),
        ("/demo/assets/demo.js", "text/javascript"),
        ("/demo/assets/demo.css", "text/css"),
        ("/demo/assets/sdk/rookery_client.js", "text/javascript"),
        (
            "/demo/assets/sdk/rookery_client_bg.wasm",
            "application/wasm",
        ),
    ] {
        let (status, head, _) = get(addr, path, &[]);
        assert_eq!(status, 200, "{path}");
        assert!(
            head.contains(&format!("content-type: {content_type}")),
            "{path}: {head}"
        );
        assert!(head.contains("x-frame-options: deny"), "{path}");
        assert!(head.contains("x-content-type-options: nosniff"), "{path}");
        let csp = head
            .lines()
            .find_map(|l| l.strip_prefix("content-security-policy: "))
            .unwrap_or_else(|| panic!("{path} has no CSP"));
        assert!(
            csp.contains("script-src 'self' 'wasm-unsafe-eval';"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }
    let (_, _, page) = get(addr, "/demo", &[]);
    assert!(!page.contains("<script>") && page.contains("src=\"/demo/assets/demo.js\""));
    let (status, _, body) = get(addr, "/demo/nothing.js", &[]);
    assert_eq!(status, 404, "{body}");

    let off = server_with(1, |c| c.no_demo = true);
    for path in [
        "/demo",
        "/demo/assets/demo.js",
        "/demo/assets/sdk/rookery_client_bg.wasm",
    ] {
        let (status, _, body) = get(off, path, &[]);
        assert_eq!(status, 404, "{path}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["code"], "not_found");
    }
    let (status, _) = http_json(addr, "POST", "/demo", &[], b"");
    assert_eq!(status, 405);
}

#[test]
fn pages_leave_websockets_do_channels_named_demo_or_console_alone() {
    let addr = server(1);
    for channel in ["demo", "console"] {
        let (status, body) = http_json(addr, "GET", &format!("/{channel}/history"), &[], b"");
        assert_eq!(status, 200, "{channel}: {body}");
        let (mut listener, _) = Client::wsdo(addr, channel);
        let (status, _) = http(
            addr,
            "POST",
            &format!("/{channel}/emit"),
            &[],
            br#"{"x":1}"#,
        );
        assert_eq!(status, 200);
        assert_eq!(listener.recv_type("DATA")["payload"], json!({"x": 1}));
    }
}

#[test]
fn without_an_admin_key_the_console_is_refused() {
    let addr = server(1);
    for path in [
        "/console",
        "/console/assets/console.js",
        "/console/api/session",
        "/console/api/feed",
    ] {
        let (status, head, body) = get(addr, path, &[("Authorization", "Bearer x")]);
        assert_eq!(status, 403, "{path}");
        assert!(head.contains("cache-control: no-store"), "{path}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["code"], "admin_disabled", "{path}");
    }
}

#[test]
fn the_console_needs_the_key_for_data_and_sends_strict_headers() {
    let addr = console_server();
    // The page and its code hold no data: a login form, sent to anyone.
    for path in [
        "/console",
        "/console/assets/console.js",
        "/console/assets/console.css",
    ] {
        let (status, head, body) = get(addr, path, &[]);
        assert_eq!(status, 200, "{path}");
        assert!(head.contains("cache-control: no-store"), "{path}");
        assert!(head.contains("x-frame-options: deny"), "{path}");
        assert!(head.contains("x-content-type-options: nosniff"), "{path}");
        assert!(
            head.contains("content-security-policy: default-src 'none'; script-src 'self';"),
            "{path}: {head}"
        );
        assert!(!body.contains(KEY), "{path}");
    }
    let (_, _, page) = get(addr, "/console", &[]);
    assert!(page.contains("type=\"password\""));
    assert!(!page.contains("<script>"), "no inline script");

    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic Y29uc29sZQ=="),
        Some("Bearer"),
    ] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
        for path in ["/console/api/session", "/console/api/feed"] {
            let (status, head, body) = get(addr, path, &headers);
            assert_eq!(status, 401, "{path} with {auth:?}");
            assert!(head.contains("cache-control: no-store"));
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["error"]["code"], "unauthorized");
        }
    }
    // A key in the URL is no key.
    let (status, _, _) = get(
        addr,
        &format!("/console/api/session?key={KEY}&token={KEY}"),
        &[],
    );
    assert_eq!(status, 401);

    let auth = bearer();
    let (status, _, body) = get(addr, "/console/api/session", &[("Authorization", &auth)]);
    assert_eq!(status, 200);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["cores"], 2);
    assert!(
        !body.to_string().contains(KEY),
        "the page never receives a secret"
    );

    let (status, _, _) = get(addr, "/console/api/nothing", &[("Authorization", &auth)]);
    assert_eq!(status, 404);
    let (status, _) = http_json(
        addr,
        "POST",
        "/console/api/session",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(status, 405);
    let (status, _, body) = get(
        addr,
        "/console/api/feed?sort=size",
        &[("Authorization", &auth)],
    );
    assert_eq!(status, 400, "{body}");
}

/// A console feed: the server-sent events of `GET /console/api/feed?query`.
struct Feed {
    lines: BufReader<TcpStream>,
}

impl Feed {
    fn open(addr: SocketAddr, query: &str) -> Feed {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(FEED_WAIT)).unwrap();
        let req = format!(
            "GET /console/api/feed?{query} HTTP/1.1\r\nHost: t\r\nAuthorization: {}\r\n\r\n",
            bearer()
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut lines = BufReader::new(s);
        let mut status = String::new();
        lines.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let mut head = String::new();
        loop {
            let mut line = String::new();
            lines.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        assert!(head.contains("content-type: text/event-stream"), "{head}");
        assert!(head.contains("cache-control: no-store"), "{head}");
        Feed { lines }
    }

    /// The next event: its name and data.
    fn next(&mut self) -> (String, Value) {
        let (mut name, mut data) = (String::new(), String::new());
        loop {
            let mut line = String::new();
            let n = self.lines.read_line(&mut line).expect("the feed goes on");
            assert!(n > 0, "the feed ended");
            let line = line.trim_end_matches('\n');
            if line.is_empty() {
                return (name, serde_json::from_str(&data).unwrap());
            }
            if let Some(v) = line.strip_prefix("event: ") {
                name = v.to_owned();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push_str(v);
            }
        }
    }

    /// Reads events until one named `name` passes `check`, within [`FEED_WAIT`].
    fn wait_for(&mut self, name: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + FEED_WAIT;
        while Instant::now() < deadline {
            let (n, v) = self.next();
            if n == name && check(&v) {
                return v;
            }
        }
        panic!("no {name} event passing the check within {FEED_WAIT:?}");
    }
}

#[test]
fn the_feed_shows_counts_rooms_a_room_page_and_tails_its_events() {
    let addr = console_server();
    let room = "console-feed";
    let (mut alice, profile) = Client::pact(addr, room);
    let alice_id = profile["id"].as_str().unwrap().to_owned();
    alice.call(json!({"type":"subscribe","data":"poll"}), "s1");
    let vote = alice.call(
        json!({"type":"poll","data":{"id":"lunch","answer":"sushi"}}),
        "v",
    );
    assert_eq!(vote["type"], "ok", "{vote}");
    let add = alice.call(
        json!({"type":"counter","data":{"id":"clicks","value":3}}),
        "c",
    );
    assert_eq!(add["type"], "ok", "{add}");
    let (_bob, _) = Client::wsdo(addr, room);

    let mut list = Feed::open(addr, "q=FEED&sort=traffic");
    let stats = list.wait_for("stats", |s| s["connections"].as_u64() >= Some(2));
    assert!(stats["errors"]["pact"].is_u64());
    let rooms = list.wait_for("rooms", |r| r["total"] == 1);
    assert_eq!(rooms["rooms"][0]["name"], room);
    assert_eq!(rooms["rooms"][0]["members"], 2);
    let mut none = Feed::open(addr, "q=no-such-room");
    none.wait_for("rooms", |r| r["total"] == 0 && r["rooms"] == json!([]));

    let mut feed = Feed::open(addr, &format!("room={room}"));
    let page = feed.wait_for("room", |p| p["live"] == true && p["count"] == 2);
    let mut dialects: Vec<&str> = page["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["dialect"].as_str().unwrap())
        .collect();
    dialects.sort_unstable();
    assert_eq!(dialects, ["pact", "wsdo"]);
    assert_eq!(page["polls"]["lunch"]["sushi"], 1);
    assert_eq!(page["counters"]["clicks"], 3);
    assert_eq!(page["config"], "{}");
    // Nobody subscribed to chat, yet the tail sees it (the console observes, it is no member).
    alice.send(json!({"type":"chat","data":"seen by the console"}));
    let tail = feed.wait_for("tail", |e| e["type"] == "chat");
    assert_eq!(tail["data"]["message"], "seen by the console");
    // ... and it is nobody's member: the room still counts two.
    let page = feed.wait_for("room", |p| p["pos"]["seq"].as_u64() >= Some(3));
    assert_eq!(page["count"], 2);
    assert!(page["members"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == alice_id.as_str()));
}

#[test]
fn closed_feeds_give_back_their_place() {
    // One core serves at most 8 feeds at once: 20 feeds opened and dropped one after the
    // other are all served, so each one's place (and tail) went when its client did.
    let addr = server_with(1, |c| c.admin_key = Some(KEY.into()));
    for i in 0..20 {
        let deadline = Instant::now() + FEED_WAIT;
        loop {
            let (status, _, _) = peek(addr, &format!("room=r{i}"));
            if status == 200 {
                break;
            }
            assert_eq!(status, 503, "feed {i}");
            assert!(
                Instant::now() < deadline,
                "feed {i}: no place within {FEED_WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Opens a feed, reads its status line and first bytes, and drops it.
fn peek(addr: SocketAddr, query: &str) -> (u16, (), ()) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(FEED_WAIT)).unwrap();
    let req = format!(
        "GET /console/api/feed?{query} HTTP/1.1\r\nHost: t\r\nAuthorization: {}\r\n\r\n",
        bearer()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    (line[9..12].parse().unwrap(), (), ())
}
