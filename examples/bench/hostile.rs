//! Hostile DCS endpoints on loopback, for the tests and the benchmark: each serves
//! one way a tenant-chosen `spec.endpoint` can try to crash, starve or bloat the
//! operator (absurd Retry-After values, 16 MiB bodies, deep nesting, wrong ids,
//! flapping 503s, fake successes, wild numbers, a tarpit that never answers).
//!
//! A minimal HTTP/1.1 responder over raw TCP: one request per connection, then
//! `Connection: close`; a tarpit accepts and never writes.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The largest body the operator reads (its client's default cap), less room for
/// the wrapping: the worst a hostile endpoint can send.
pub const HUGE: usize = (16 << 20) - 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 429 with `Retry-After: 9999999999999`.
    RetryAfterHuge,
    /// 429 with `Retry-After: -5`.
    RetryAfterNegative,
    /// 429 with `Retry-After: Wed, 21 Oct 2099 07:28:00 GMT`.
    RetryAfterDate,
    /// 429 with a Retry-After that is not a number or a date.
    RetryAfterGarbage,
    /// 200 with 16 MiB of `{}` items.
    HugeList,
    /// 200 with the wanted instance whose `ip` is 16 MiB long.
    HugeIp,
    /// 200 with 100 000 nested arrays.
    DeepJson,
    /// 200 with ids that are not instance ids (upper case, paths, 10 KiB long).
    WrongIds,
    /// 503 every time.
    Flapper,
    /// 200 with a plausible RUNNING instance, whatever the signature.
    Fake200,
    /// 500 with a 16 MiB error body of `[{},{},…]`.
    HugeErrorBody,
    /// 200 with numbers at and past every integer limit.
    WildNumbers,
    /// Accepts the connection, never answers.
    Tarpit,
}

impl Mode {
    pub const ALL_BUT_TARPIT: [Mode; 12] = [
        Mode::RetryAfterHuge,
        Mode::RetryAfterNegative,
        Mode::RetryAfterDate,
        Mode::RetryAfterGarbage,
        Mode::HugeList,
        Mode::HugeIp,
        Mode::DeepJson,
        Mode::WrongIds,
        Mode::Flapper,
        Mode::Fake200,
        Mode::HugeErrorBody,
        Mode::WildNumbers,
    ];
}

/// One hostile endpoint: its URL, and how many requests it received.
pub struct HostileEndpoint {
    pub mode: Mode,
    pub base_url: String,
    pub requests: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl HostileEndpoint {
    /// Serves `mode` on a new loopback port; `instance_id` is the id the list and
    /// show answers pretend to describe.
    pub async fn start(mode: Mode, instance_id: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let requests = Arc::new(AtomicU64::new(0));
        let answers = Arc::new(Answers::new(mode, instance_id));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, Ordering::Relaxed);
                if mode == Mode::Tarpit {
                    // Keep it open, say nothing (bounded: the oldest are let go).
                    if held.len() > 256 {
                        held.remove(0);
                    }
                    held.push(socket);
                    continue;
                }
                let answers = answers.clone();
                tokio::spawn(async move {
                    let Some(path) = read_request(&mut socket).await else {
                        return;
                    };
                    let (head, body) = answers.respond(&path);
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(&body).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Ok(Self {
            mode,
            base_url,
            requests,
            task,
        })
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for HostileEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request's head (bounded) and returns its path.
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = socket.read(&mut buffer).await.ok()?;
        if read == 0 || head.len() > 64 << 10 {
            return None;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace().nth(1).map(str::to_string)
}

/// The prebuilt answers of one mode (16 MiB bodies are built once and shared).
struct Answers {
    mode: Mode,
    list: Bytes,
    show: Bytes,
}

fn head(status: &str, extra: &str, length: usize) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n{extra}\r\n"
    )
}

fn repeated(open: &str, item: &str, close: &str, size: usize) -> Bytes {
    let mut body = String::with_capacity(size + 64);
    body.push_str(open);
    while body.len() + item.len() + 1 + close.len() < size {
        body.push_str(item);
        body.push(',');
    }
    body.push_str(item);
    body.push_str(close);
    Bytes::from(body)
}

impl Answers {
    fn new(mode: Mode, id: &str) -> Self {
        let (list, show) = match mode {
            Mode::HugeList | Mode::HugeErrorBody => {
                let (open, close) = if mode == Mode::HugeList {
                    (r#"{"instances":["#, "]}")
                } else {
                    ("[", "]")
                };
                let body = repeated(open, "{}", close, HUGE);
                (body.clone(), body)
            }
            Mode::HugeIp => {
                let item = format!(
                    r#"{{"instance_id":"{id}","status":"RUNNING","port":6379,"ip":"{}"}}"#,
                    "1".repeat(HUGE - 200)
                );
                (
                    Bytes::from(format!(r#"{{"instance_num":1,"instances":[{item}]}}"#)),
                    Bytes::from(item),
                )
            }
            Mode::DeepJson => {
                let body = Bytes::from("[".repeat(100_000));
                (body.clone(), body)
            }
            Mode::WrongIds => {
                let long = "a".repeat(10_000);
                let upper = id.to_uppercase();
                let items: Vec<String> = (0..1000)
                    .map(|i| {
                        let bad = match i % 4 {
                            0 => upper.clone(),
                            1 => format!("../../{id}"),
                            2 => long.clone(),
                            _ => format!("{id} "),
                        };
                        format!(r#"{{"instance_id":"{bad}","status":"RUNNING","ip":"10.6.6.6","port":6379}}"#)
                    })
                    .collect();
                (
                    Bytes::from(format!(r#"{{"instances":[{}]}}"#, items.join(","))),
                    Bytes::from(r#"{"error_code":"DCS.3022","error_msg":"gone"}"#),
                )
            }
            Mode::Fake200 => {
                let item = format!(
                    r#"{{"instance_id":"{id}","name":"fake","engine":"Redis","status":"RUNNING","ip":"10.66.6.6","port":6379,"capacity":1}}"#
                );
                (
                    Bytes::from(format!(r#"{{"instance_num":1,"instances":[{item}]}}"#)),
                    Bytes::from(item),
                )
            }
            Mode::WildNumbers => {
                let item = format!(
                    r#"{{"instance_id":"{id}","status":"RUNNING","ip":"10.0.0.9","port":99999999,"capacity":9223372036854775807,"max_memory":-5,"used_memory":9223372036854775807,"capacity_minor":"0.0000000000000000001"}}"#
                );
                (
                    Bytes::from(format!(r#"{{"instance_num":1,"instances":[{item}]}}"#)),
                    Bytes::from(item),
                )
            }
            _ => {
                let body = Bytes::from(r#"{"error_code":"APIG.0308","error_msg":"throttled"}"#);
                (body.clone(), body)
            }
        };
        Self { mode, list, show }
    }

    fn respond(&self, path: &str) -> (String, Bytes) {
        let path = path.split('?').next().unwrap_or_default();
        let body = if path.contains("/v2/") && path.ends_with("/instances") {
            self.list.clone()
        } else {
            self.show.clone()
        };
        let throttled = |retry_after: &str| {
            (
                head(
                    "429 Too Many Requests",
                    &format!("Retry-After: {retry_after}\r\n"),
                    body.len(),
                ),
                body.clone(),
            )
        };
        match self.mode {
            Mode::RetryAfterHuge => throttled("9999999999999"),
            Mode::RetryAfterNegative => throttled("-5"),
            Mode::RetryAfterDate => throttled("Wed, 21 Oct 2099 07:28:00 GMT"),
            Mode::RetryAfterGarbage => throttled("NaN; DROP TABLE"),
            Mode::Flapper => {
                let body = Bytes::from(r#"{"error_code":"DCS.5000","error_msg":"down"}"#);
                (head("503 Service Unavailable", "", body.len()), body)
            }
            Mode::HugeErrorBody => (head("500 Internal Server Error", "", body.len()), body),
            Mode::WrongIds if !path.ends_with("/instances") => {
                (head("404 Not Found", "", body.len()), body)
            }
            _ => (head("200 OK", "", body.len()), body),
        }
    }
}
