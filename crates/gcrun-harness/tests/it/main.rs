//! The harness itself: private Redis servers really are private, really
//! stop, and keep data across a crash when AOF is on.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use gcrun_harness::{RedisOptions, RedisServer};

/// Sends one command in RESP and reads one line of answer.
fn command(server: &RedisServer, parts: &[&str]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    let mut out = format!("*{}\r\n", parts.len());
    for p in parts {
        out.push_str(&format!("${}\r\n{p}\r\n", p.len()));
    }
    s.write_all(out.as_bytes()).unwrap();
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    if line.starts_with('$') && line.trim() != "$-1" {
        let mut value = String::new();
        reader.read_line(&mut value).unwrap();
        return value.trim_end().to_string();
    }
    line.trim_end().to_string()
}

#[test]
fn each_test_gets_its_own_server_on_its_own_port() {
    let a = RedisServer::start();
    let b = RedisServer::start();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.port(), 6379, "never the shared default port");
    assert_eq!(command(&a, &["SET", "k", "a"]), "+OK");
    assert_eq!(command(&b, &["GET", "k"]), "$-1", "b does not see a's data");
    assert_eq!(a.url(), format!("redis://127.0.0.1:{}/", a.port()));
}

#[test]
fn dropping_the_handle_stops_the_server() {
    let server = RedisServer::start();
    let port = server.port();
    assert!(server.ping());
    drop(server);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "nothing listens on {port} any more");
}

#[test]
fn with_aof_data_survives_a_kill_and_restart() {
    let mut server = RedisServer::start_with(RedisOptions { appendonly: true, ..RedisOptions::default() });
    assert_eq!(command(&server, &["SET", "durable", "yes"]), "+OK");
    server.kill();
    assert!(!server.ping());
    server.restart();
    assert_eq!(command(&server, &["GET", "durable"]), "yes");
    assert!(server.dir().join("appendonlydir").exists() || server.dir().join("appendonly.aof").exists());
}

#[test]
fn without_aof_a_restart_starts_empty() {
    let mut server = RedisServer::start();
    assert_eq!(command(&server, &["SET", "k", "v"]), "+OK");
    server.kill();
    server.restart();
    assert_eq!(command(&server, &["GET", "k"]), "$-1");
}
