use std::collections::HashMap;
use std::rc::Rc;

use feedvisor_test_support::net::{refused_addr, RawServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> =
        pairs.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
    move |name| map.get(name).cloned()
}

fn proxy_at(addr: std::net::SocketAddr) -> HttpProxy {
    HttpProxy {
        host: addr.ip().to_string(),
        port: addr.port(),
        username: Some("alice".to_owned()),
        password: Some("p@ss word".to_owned()),
    }
}

#[test]
fn proxy_urls_carry_decoded_credentials_and_default_to_port_80() {
    let proxy = HttpProxy::parse("http://alice:p%40ss@proxy.internal:3128").expect("valid");
    assert_eq!(proxy.host, "proxy.internal");
    assert_eq!(proxy.port, 3128);
    assert_eq!(proxy.username.as_deref(), Some("alice"));
    assert_eq!(proxy.password.as_deref(), Some("p@ss"));
    assert_eq!(HttpProxy::parse("http://[::1]/").expect("valid").addr(), "[::1]:80");
    let refused = HttpProxy::parse("https://alice:hunter2@proxy:3128").expect_err("https");
    assert!(refused.contains("not supported") && !refused.contains("hunter2"), "{refused}");
    assert!(HttpProxy::parse("http://proxy:3128/path").is_err());
}

#[test]
fn the_environment_names_the_proxy_by_scheme_unless_no_proxy_matches() {
    let env = env_of(&[
        ("HTTPS_PROXY", "http://secure:3128"),
        ("http_proxy", "http://plain:8080"),
        ("NO_PROXY", "localhost, .internal.example,10.0.0.1:443"),
    ]);
    let chosen = |host: &str, secure: bool| {
        choose(&ProxyOptions::Environment, host, secure, &env)
            .expect("valid")
            .map(|proxy| proxy.addr())
    };
    assert_eq!(chosen("feed.example.com", true).as_deref(), Some("secure:3128"));
    assert_eq!(chosen("feed.example.com", false).as_deref(), Some("plain:8080"));
    assert_eq!(chosen("localhost", true), None);
    assert_eq!(chosen("a.internal.example", true), None);
    assert_eq!(chosen("internal.example", true), None);
    assert_eq!(chosen("10.0.0.1", false), None);
    assert_eq!(chosen("notinternal.example", true).as_deref(), Some("secure:3128"));
    let direct = choose(&ProxyOptions::Direct, "feed.example.com", true, &env).expect("valid");
    assert_eq!(direct, None);
    let none = choose(&ProxyOptions::Environment, "x", true, &env_of(&[])).expect("valid");
    assert_eq!(none, None);
}

#[test]
fn a_bad_proxy_in_the_environment_names_the_variable_not_its_value() {
    let env = env_of(&[("HTTPS_PROXY", "socks5://bob:hunter2@proxy:1080")]);
    let error = choose(&ProxyOptions::Environment, "x", true, &env).expect_err("socks");
    let shown = error.to_string();
    assert!(shown.contains("$HTTPS_PROXY") && !shown.contains("hunter2"), "{shown}");
}

/// A proxy that records the request head and answers `answer`.
async fn answering(answer: &'static [u8]) -> (RawServer, Rc<std::cell::RefCell<String>>) {
    let seen = Rc::new(std::cell::RefCell::new(String::new()));
    let record = seen.clone();
    let server = RawServer::start(move |_, mut socket| {
        let record = record.clone();
        async move {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                    return;
                }
                head.push(byte[0]);
            }
            *record.borrow_mut() = String::from_utf8_lossy(&head).into_owned();
            let _ = socket.write_all(answer).await;
            let mut rest = [0u8; 64];
            while socket.read(&mut rest).await.unwrap_or(0) > 0 {}
        }
    })
    .await;
    (server, seen)
}

#[actix_rt::test]
async fn a_tunnel_sends_connect_with_basic_credentials() {
    let (server, seen) = answering(b"HTTP/1.1 200 Connection established\r\n\r\n").await;
    tunnel(&proxy_at(server.addr), "feed.example.com", 443).await.expect("a tunnel");
    let head = seen.borrow().clone();
    assert!(head.starts_with("CONNECT feed.example.com:443 HTTP/1.1\r\n"), "{head}");
    // base64 of "alice:p@ss word"
    assert!(head.contains("Proxy-Authorization: Basic YWxpY2U6cEBzcyB3b3Jk\r\n"), "{head}");
}

#[actix_rt::test]
async fn a_407_names_the_answer_and_what_to_check_without_the_password() {
    let (server, _) = answering(
        b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n",
    )
    .await;
    let error = tunnel(&proxy_at(server.addr), "feed.example.com", 443).await.expect_err("407");
    let shown = error.to_string();
    assert_eq!(error.kind().as_str(), "proxy");
    assert!(shown.contains("407 Proxy Authentication Required"), "{shown}");
    assert!(shown.contains("user name and password"), "{shown}");
    assert!(!shown.contains("p@ss") && !shown.contains("YWxpY2U6"), "{shown}");
}

#[actix_rt::test]
async fn bad_and_oversized_answers_and_a_refusal_are_proxy_errors() {
    let (garbage, _) = answering(b"SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
    let error = tunnel(&proxy_at(garbage.addr), "x", 1).await.expect_err("not HTTP");
    assert!(error.to_string().contains("not HTTP"), "{error}");

    let huge: &'static [u8] = Box::leak(
        format!("HTTP/1.1 200 OK\r\nX-Padding: {}\r\n", "a".repeat(MAX_ANSWER)).into_bytes().into(),
    );
    let (long, _) = answering(huge).await;
    let error = tunnel(&proxy_at(long.addr), "x", 1).await.expect_err("too long");
    assert!(error.to_string().contains("longer than"), "{error}");

    let (eager, _) = answering(b"HTTP/1.1 200 OK\r\n\r\nunasked bytes").await;
    let error = tunnel(&proxy_at(eager.addr), "x", 1).await.expect_err("extra data");
    assert!(error.to_string().contains("data after its answer"), "{error}");

    let error = tunnel(&proxy_at(refused_addr()), "x", 1).await.expect_err("refused");
    assert_eq!(error.kind().as_str(), "proxy");
    assert!(error.to_string().contains("refused the connection"), "{error}");
}
