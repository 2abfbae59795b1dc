//! End-to-end: run the real binary against the in-process mock gateway.

use std::process::Command;
use std::time::Duration;

use pygw_loadgen::mock::{MockConfig, MockServer};
use serde_json::Value;

fn mock(cfg: MockConfig) -> MockServer {
    MockServer::start("127.0.0.1:0", cfg).expect("mock server")
}

fn ws_url(m: &MockServer) -> String {
    format!(
        "ws://{}/ws/connect?session_id={{sid}}&token={{token}}",
        m.addr
    )
}

fn run(args: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_pygw-loadgen"))
        .args(args)
        .arg("--quiet")
        .output()
        .expect("run pygw-loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "bad JSON ({e}) from {args:?}: stdout={stdout:?} stderr={:?}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

#[test]
fn ws_rtt_round_trips() {
    let m = mock(MockConfig::default());
    let url = ws_url(&m);
    let (code, v) = run(&[
        "ws-rtt",
        "--url",
        &url,
        "--token",
        "t",
        "--conns",
        "4",
        "--depth",
        "3",
        "--duration",
        "0.5",
        "--threads",
        "2",
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["conns"]["connected"], 4);
    assert_eq!(v["errors"], 0, "{v}");
    let rt = v["round_trips"].as_u64().unwrap();
    assert!(rt > 100, "{v}");
    assert_eq!(v["latency"]["count"].as_u64().unwrap(), rt);
    assert!(v["latency"]["p50_us"].as_f64().unwrap() > 0.0);
    assert!(v["round_trips_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(v["unmatched_replies"], 0);
    assert!(v["generator"]["cpu_s"].as_f64().unwrap() > 0.0);
    assert_eq!(v["options"]["token"], "<redacted>");
}

#[test]
fn ws_rtt_custom_frame_and_expect() {
    let m = mock(MockConfig::default());
    let url = ws_url(&m);
    let (code, v) = run(&[
        "ws-rtt",
        "--url",
        &url,
        "--conns",
        "2",
        "--duration",
        "0.3",
        "--frame",
        r#"{"type":"update_api_key","key":"k{id}","id":{id}}"#,
        "--expect",
        "ack",
    ]);
    assert_eq!(code, 0);
    assert!(v["round_trips"].as_u64().unwrap() > 10, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
}

#[test]
fn ws_rtt_bad_token_is_1008() {
    let m = mock(MockConfig::default());
    let url = ws_url(&m);
    let (code, v) = run(&[
        "ws-rtt",
        "--url",
        &url,
        "--token",
        "bad",
        "--conns",
        "3",
        "--duration",
        "0.2",
    ]);
    assert_eq!(code, 1);
    assert_eq!(v["conns"]["connected"], 0);
    assert_eq!(v["connect_failures"]["close:1008"], 3, "{v}");
    let (_, v) = run(&[
        "ws-rtt",
        "--url",
        &url,
        "--token",
        "forbidden",
        "--conns",
        "2",
        "--duration",
        "0.2",
    ]);
    assert_eq!(v["connect_failures"]["http_status:403"], 2, "{v}");
}

#[test]
fn creds_round_robin() {
    let m = mock(MockConfig::default());
    let url = ws_url(&m);
    let dir = std::env::temp_dir().join(format!("loadgen-creds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let creds = dir.join("creds.jsonl");
    std::fs::write(
        &creds,
        "{\"token\":\"good\",\"session_id\":\"s1\",\"username\":\"a\"}\n{\"token\":\"bad\",\"session_id\":\"s2\"}\n",
    )
    .unwrap();
    let out = dir.join("out.json");
    let (code, v) = run(&[
        "ws-rtt",
        "--url",
        &url,
        "--creds",
        creds.to_str().unwrap(),
        "--conns",
        "6",
        "--duration",
        "0.3",
        "--json",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    assert_eq!(v["conns"]["connected"], 3, "{v}");
    assert_eq!(v["connect_failures"]["close:1008"], 3);
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(file["mode"], "ws-rtt");
    let _ = std::fs::remove_dir_all(&dir);
}

fn check_fanout(v: &Value, subs: u64, msgs: u64) {
    assert_eq!(v["subscribers"]["ready"], subs, "{v}");
    assert_eq!(v["publisher"]["published_ok"], msgs, "{v}");
    let d = &v["deliveries"];
    assert_eq!(d["expected"].as_u64().unwrap(), subs * msgs);
    assert_eq!(d["unique"], d["expected"], "{v}");
    assert_eq!(d["received"], d["expected"]);
    assert_eq!(d["lost"], 0);
    assert_eq!(d["duplicates"], 0);
    assert_eq!(d["gaps"], 0);
    assert_eq!(d["unparsable"], 0);
    assert_eq!(v["timed_out"], false);
    assert_eq!(v["errors"], 0, "{v}");
    assert!(d["per_s"].as_f64().unwrap() > 0.0);
    assert!(v["latency"]["count"].as_u64().unwrap() > 0);
}

#[test]
fn fanout_via_ws() {
    let m = mock(MockConfig::default());
    let url = ws_url(&m);
    let (code, v) = run(&[
        "fanout",
        "--url",
        &url,
        "--subscribers",
        "30",
        "--messages",
        "300",
        "--threads",
        "2",
        "--payload-bytes",
        "256",
        "--window",
        "8",
        "--timeout",
        "20",
    ]);
    assert_eq!(code, 0, "{v}");
    check_fanout(&v, 30, 300);
    assert_eq!(v["latency"]["count"], 9000);
    assert_eq!(v["publisher"]["ack_latency"]["count"], 300);
}

#[test]
fn fanout_via_http_with_sampling() {
    let m = mock(MockConfig {
        api_key: Some("secret".into()),
        ..MockConfig::default()
    });
    let url = ws_url(&m);
    let pub_url = format!("http://{}/api/publish", m.addr);
    let (code, v) = run(&[
        "fanout",
        "--url",
        &url,
        "--subscribers",
        "20",
        "--messages",
        "200",
        "--via",
        "http",
        "--pub-url",
        &pub_url,
        "--api-key",
        "secret",
        "--window",
        "4",
        "--latency-sample",
        "10",
        "--timeout",
        "20",
    ]);
    assert_eq!(code, 0, "{v}");
    check_fanout(&v, 20, 200);
    assert_eq!(v["latency"]["count"], 400); // every 10th of 200 per subscriber
    assert_eq!(v["publisher"]["server_reported_deliveries"], 4000);
    // wrong key: every publish fails with 401 and the run ends without waiting for the timeout
    let (_, v) = run(&[
        "fanout",
        "--url",
        &url,
        "--subscribers",
        "2",
        "--messages",
        "5",
        "--via",
        "http",
        "--pub-url",
        &pub_url,
        "--api-key",
        "nope",
        "--timeout",
        "20",
    ]);
    assert_eq!(v["publisher"]["failures"]["http_status:401"], 5, "{v}");
    assert_eq!(v["deliveries"]["lost"], 10);
    assert_eq!(v["timed_out"], false);
}

#[test]
fn fanout_fragmented_deliveries_and_multiple_urls() {
    let m = mock(MockConfig {
        fragment: true,
        ..MockConfig::default()
    });
    let url = ws_url(&m);
    let sub_urls = format!("{url},{url}");
    let (code, v) = run(&[
        "fanout",
        "--sub-urls",
        &sub_urls,
        "--pub-url",
        &url,
        "--subscribers",
        "10",
        "--messages",
        "100",
        "--channel",
        "odd \"name\"",
        "--timeout",
        "20",
    ]);
    assert_eq!(code, 0, "{v}");
    check_fanout(&v, 10, 100);
}

#[test]
fn fanout_rate_limited() {
    let m = mock(MockConfig::default());
    let url = ws_url(&m);
    let (code, v) = run(&[
        "fanout",
        "--url",
        &url,
        "--subscribers",
        "2",
        "--messages",
        "50",
        "--rate",
        "200",
        "--timeout",
        "20",
    ]);
    assert_eq!(code, 0, "{v}");
    check_fanout(&v, 2, 50);
    // 50 messages at 200/s: the last is due 245 ms after the first
    let span = v["publisher"]["publish_span_s"].as_f64().unwrap();
    assert!((0.2..2.0).contains(&span), "{v}");
}

#[test]
fn hold_answers_server_pings() {
    let m = mock(MockConfig {
        ping_interval: Some(Duration::from_millis(100)),
        pong_timeout: Duration::from_millis(300),
        ..MockConfig::default()
    });
    let url = ws_url(&m);
    let pid = std::process::id().to_string();
    let (code, v) = run(&[
        "hold",
        "--url",
        &url,
        "--conns",
        "40",
        "--duration",
        "1",
        "--connect-concurrency",
        "8",
        "--pid",
        &pid,
        "--threads",
        "2",
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["conns"]["connected"], 40, "{v}");
    assert_eq!(v["conns"]["still_open"], 40, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert!(
        v["server_pings_answered"]["text"].as_u64().unwrap() >= 40 * 5,
        "{v}"
    );
    assert!(
        v["server_pings_answered"]["protocol"].as_u64().unwrap() >= 40 * 5,
        "{v}"
    );
    assert_eq!(v["storm"]["connect_latency"]["count"], 40);
    assert!(v["server"]["before"]["rss_bytes"].as_u64().unwrap() > 0);
    assert!(v["server"]["rss_delta_per_conn_bytes"].is_number(), "{v}");
    assert!(v["server"]["idle_cpu_pct"].is_number(), "{v}");
    assert_eq!(
        m.stats
            .pong_timeouts
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[test]
fn http_requests_and_duration() {
    let m = mock(MockConfig {
        api_key: Some("k".into()),
        ..MockConfig::default()
    });
    let url = format!("http://{}/api/publish", m.addr);
    let (code, v) = run(&[
        "http",
        "--url",
        &url,
        "--conns",
        "3",
        "--requests",
        "200",
        "--header",
        "X-API-Key: k",
        "--body",
        r#"{"channel":"c{conn}","data":{"i":{id}}}"#,
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["requests"], 200, "{v}");
    assert_eq!(v["status_classes"]["2xx"], 200);
    assert_eq!(v["errors"], 0);
    assert_eq!(v["options"]["headers"][0], "X-API-Key: <redacted>");
    let health = format!("http://{}/health", m.addr);
    let (_, v) = run(&[
        "http",
        "--url",
        &health,
        "--conns",
        "2",
        "--duration",
        "0.3",
    ]);
    assert!(v["requests"].as_u64().unwrap() > 10, "{v}");
    assert_eq!(v["status_classes"]["2xx"], v["requests"]);
    let missing = format!("http://{}/nope", m.addr);
    let (_, v) = run(&["http", "--url", &missing, "--conns", "1", "--requests", "5"]);
    assert_eq!(v["status_classes"]["4xx"], 5, "{v}");
    assert_eq!(v["statuses"]["404"], 5);
}

#[test]
fn bench_parse_runs() {
    let (code, v) = run(&["bench-parse", "--frames", "20000"]);
    assert_eq!(code, 0);
    assert!(v["parse_and_scan"]["frames_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_pygw-loadgen"))
        .args(["ws-rtt", "--depth", "zero"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_pygw-loadgen"))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ws-rtt"));
}
