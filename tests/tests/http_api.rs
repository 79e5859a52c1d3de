//! The admin API, the operations endpoints and HTTP error handling, over real HTTP.

use rookery_tests::*;
use serde_json::json;

const KEY: &str = "s3cret-admin-key";

fn admin_server() -> std::net::SocketAddr {
    server_with(2, |c| c.admin_key = Some(KEY.into()))
}

fn bearer() -> String {
    format!("Bearer {KEY}")
}

#[test]
fn admin_api_is_disabled_without_a_key_and_needs_the_right_key() {
    let off = server(1);
    let (status, body) = http_json(off, "POST", "/api/rooms/r/broadcast", &[], b"{}");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("admin_disabled"))
    );

    let addr = admin_server();
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic czNjcmV0"),
        Some("Bearer"),
    ] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
        for (method, path) in [
            ("POST", "/api/rooms/r/broadcast"),
            ("PUT", "/api/rooms/r/config"),
            ("DELETE", "/api/clients/x"),
        ] {
            let (status, body) = http_json(addr, method, path, &headers, b"{}");
            assert_eq!(status, 401, "{method} {path} with {auth:?}");
            assert_eq!(body["error"]["code"], "unauthorized");
        }
    }
}

#[test]
fn admin_broadcast_to_all_or_to_a_topic_in_every_dialect() {
    let addr = admin_server();
    let (mut subscribed, _) = Client::pact(addr, "bc");
    subscribed.call(json!({"type":"subscribe","data":"weather"}), "s");
    let (mut other, _) = Client::pact(addr, "bc");
    let (mut wsdo, _) = Client::wsdo(addr, "bc");
    let auth = bearer();
    let headers = [("Authorization", auth.as_str())];

    let (status, body) = http_json(
        addr,
        "POST",
        "/api/rooms/bc/broadcast",
        &headers,
        br#"{"type":"broadcast","data":{"anything":"can","be":["sent","by","the","server"]}}"#,
    );
    assert_eq!((status, &body), (200, &json!({"success": true})));
    for c in [&mut subscribed, &mut other] {
        assert_eq!(
            c.recv_type("broadcast"),
            json!({"type":"broadcast","data":{"anything":"can","be":["sent","by","the","server"]},"seq":1})
        );
    }
    let data = wsdo.recv_type("DATA");
    assert_eq!(data["event"], "broadcast");
    assert_eq!(data["payload"]["anything"], "can");

    let (status, _) = http_json(
        addr,
        "POST",
        "/api/rooms/bc/broadcast",
        &headers,
        br#"{"to":"weather","type":"weather","data":{"sun":true}}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(subscribed.recv_type("weather")["data"], json!({"sun":true}));
    other.expect_silence(150);
    wsdo.expect_silence(50);

    for bad in [
        &b"not json"[..],
        b"[]",
        br#"{"data":1}"#,
        br#"{"type":"x","to":5}"#,
    ] {
        let (status, body) = http_json(addr, "POST", "/api/rooms/bc/broadcast", &headers, bad);
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(bad));
        assert!(body["error"]["message"].is_string());
    }
}

#[test]
fn admin_config_is_stored_and_sent_to_every_pact_member() {
    let addr = admin_server();
    let (mut a, _) = Client::pact(addr, "cfg");
    let auth = bearer();
    let headers = [("Authorization", auth.as_str())];
    let (status, _) = http_json(
        addr,
        "PUT",
        "/api/rooms/cfg/config",
        &headers,
        br#"{"theme":"dark"}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(
        a.recv(),
        json!({"type":"config","data":"{\"theme\":\"dark\"}","seq":1})
    );
    let (mut b, _) = {
        let mut c = Client::connect(addr, "/websocket?room=cfg");
        let config = c.recv_type("config");
        (c, config)
    };
    b.recv_type("profile");
    let details = wait_for_room(addr, "cfg", |d| d["count"] == 2);
    assert_eq!(details["config"], "{\"theme\":\"dark\"}");
    // A room with nobody in it keeps its config for later.
    let (status, _) = http_json(addr, "PUT", "/api/rooms/later/config", &headers, b"cfg-2");
    assert_eq!(status, 200);
    let mut c = Client::connect(addr, "/websocket?room=later");
    assert_eq!(c.recv(), json!({"type":"config","data":"cfg-2"}));
    let (status, _) = http_json(addr, "PUT", "/api/rooms/cfg/config", &headers, b"\xff\xfe");
    assert_eq!(status, 400);
}

#[test]
fn admin_disconnect_closes_a_client_on_any_core() {
    let addr = admin_server();
    let auth = bearer();
    let headers = [("Authorization", auth.as_str())];
    // Clients on both cores; disconnect each by its id.
    let mut cores = std::collections::BTreeSet::new();
    let mut clients = Vec::new();
    while cores.len() < 2 {
        let (c, profile) = Client::pact(addr, "kick");
        cores.insert(profile["connectionDetails"]["core"].as_u64().unwrap());
        clients.push((c, profile["id"].as_str().unwrap().to_owned()));
        assert!(clients.len() < 64);
    }
    let (mut wsdo, connected) = Client::wsdo(addr, "kick");
    for (mut c, id) in clients {
        let (status, body) =
            http_json(addr, "DELETE", &format!("/api/clients/{id}"), &headers, b"");
        assert_eq!(
            (status, &body),
            (200, &json!({"success": true, "disconnected": 1}))
        );
        let (code, reason) = c.expect_close();
        assert_eq!(code, 1000);
        assert_eq!(reason, "disconnected by the server");
    }
    let wsdo_id = connected["clientID"].as_str().unwrap();
    let (status, _) = http_json(
        addr,
        "DELETE",
        &format!("/api/clients/{wsdo_id}"),
        &headers,
        b"",
    );
    assert_eq!(status, 200);
    assert_eq!(wsdo.expect_close().0, 1000);
    let (status, body) = http_json(addr, "DELETE", "/api/clients/nobody", &headers, b"");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

#[test]
fn ops_endpoints_and_metrics() {
    let addr = server(2);
    assert_eq!(
        http_json(addr, "GET", "/healthz", &[], b""),
        (200, json!({"status":"ok"}))
    );
    assert_eq!(
        http_json(addr, "GET", "/readyz", &[], b""),
        (200, json!({"status":"ready"}))
    );
    let (mut a, _) = Client::pact(addr, "m");
    a.call(json!({"type":"subscribe","data":"chat"}), "1");
    a.send_text("garbage");
    a.recv_type("error");
    a.send(json!({"type":"chat","data":"x"}));
    a.recv_type("chat");
    let (status, text) = http(addr, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("rookery_connections"), 1);
    assert!(value("rookery_connections_total") >= 1);
    assert_eq!(value("rookery_rooms"), 1);
    assert!(value("rookery_messages_in_total") >= 3);
    assert!(
        text.contains("rookery_error_frames_total{dialect=\"pact\"} 1\n"),
        "{text}"
    );
    assert!(value("rookery_fanout_deliveries_total") >= 3);
    assert!(value("rookery_bytes_out_total") > 0);
    assert!(text.contains("rookery_io_driver_info{driver=\""));
    assert!(value("rookery_io_uring_available") <= 1);
    assert_eq!(value("rookery_send_queue_bytes"), 0);
    assert!(text.contains("rookery_build_info{version=\""));
    assert_eq!(value("rookery_cores"), 2);
    a.send_text(&"x".repeat(70_000));
    assert_eq!(a.expect_close().0, 1009);
    let (_, text) = http(addr, "GET", "/metrics", &[], b"");
    assert!(
        text.contains("rookery_closes_total{code=\"1009\"} 1"),
        "{text}"
    );
}

#[test]
fn malformed_http_requests_get_json_errors() {
    let addr = server_with(1, |c| c.max_body_size = 100);
    let (status, body) = http_json(addr, "POST", "/x/emit", &[], b"");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("empty_payload"))
    );
    assert_eq!(body["error"]["message"], "No payload provided.");
    let (status, body) = http_json(addr, "POST", "/x/emit", &[], b"{}");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("empty_payload"))
    );
    let (status, body) = http_json(addr, "GET", "/x/emit?clients=2", &[], b"");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("empty_payload"))
    );
    let (status, body) = http_json(addr, "POST", "/x/emit", &[], b"{oops");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );
    let (status, body) = http_json(addr, "GET", "/x/emit?a=1&require-ack=maybe", &[], b"");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_require_ack"))
    );
    let (status, _) = http_json(addr, "PUT", "/x/emit", &[], b"{}");
    assert_eq!(status, 405);
    let (status, body) = http_json(addr, "POST", "/x/emit", &[], &[b'1'; 101]);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let (status, _) = raw_http(
        addr,
        b"POST /x/emit HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert_eq!(status, 411);
    let (status, _) = raw_http(
        addr,
        b"POST /x/emit HTTP/1.1\r\nHost: t\r\nContent-Length: nope\r\n\r\n",
    );
    assert_eq!(status, 400);
    // An emit to an empty channel is fine: it reaches nobody.
    let (status, body) = http_json(addr, "POST", "/x/emit", &[], br#"{"a":1}"#);
    assert_eq!((status, &body["clients"]), (200, &json!([])));
    let (status, _) = http_json(addr, "GET", "/x/listen", &[], b"");
    assert_eq!(status, 400);
}

#[test]
fn room_history_lists_lasting_events_as_pact_members_got_them() {
    let addr = server(2);
    let (mut a, _) = Client::pact(addr, "hist");
    a.call(json!({"type":"subscribe","data":"chat"}), "s");
    for n in 1..=3 {
        a.call(
            json!({"type":"chat","data":format!("m{n}")}),
            &format!("c{n}"),
        );
    }
    let (status, body) = http_json(addr, "GET", "/api/rooms/hist/history?limit=2", &[], b"");
    assert_eq!(status, 200, "{body}");
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["data"]["message"], "m2");
    assert_eq!(events[0]["seq"], 2);
    assert_eq!(events[1]["seq"], 3);
    assert_eq!(body["pos"]["seq"], 3);
    assert!(body["pos"]["epoch"].is_string());
    let (_, older) = http_json(addr, "GET", "/api/rooms/hist/history?before=2", &[], b"");
    assert_eq!(older["events"].as_array().unwrap().len(), 1);
    assert_eq!(older["events"][0]["data"]["message"], "m1");
    let (status, empty) = http_json(addr, "GET", "/api/rooms/nobody/history", &[], b"");
    assert_eq!((status, empty), (200, json!({"events": [], "pos": null})));
    for bad in ["limit=-1", "limit=x", "before=1.5"] {
        let path = format!("/api/rooms/hist/history?{bad}");
        let (status, body) = http_json(addr, "GET", &path, &[], b"");
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["error"]["code"], "invalid_query", "{bad}: {body}");
    }
}
