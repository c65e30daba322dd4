//! Redis as users run it for idempotency keys: `SET key token NX PX ttl`,
//! one round trip, acquired (`+OK`) or a duplicate (a nil reply). A
//! private `redis-server` without persistence on a free loopback port, and
//! a small RESP client (only what that one command needs) over a tokio
//! socket, one connection per worker.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::Claimed;
use super::pool::Pool;
use crate::dedupd_process::free_port;
use crate::process;
use crate::process::{on_cpus, on_path, private_dir};

/// A reply of the RESP protocol, as far as `SET … NX` and `PING` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`, `+PONG`
    Simple(String),
    /// `-ERR …`
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    /// A nil bulk string (`$-1`, RESP2) or a null (`_`, RESP3).
    Nil,
}

/// A command as RESP sends it: an array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|arg| arg.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The first reply in `buffer` and the bytes it took, or None while it is
/// incomplete. Arrays and other RESP3 types are not expected here: errors.
pub fn parse(buffer: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    let Some(end) = buffer.windows(2).position(|pair| pair == b"\r\n") else {
        return Ok(None);
    };
    if end == 0 {
        return Err("a reply without a type".into());
    }
    let line = std::str::from_utf8(&buffer[1..end]).map_err(|_| "reply is not UTF-8")?;
    let after_line = end + 2;
    let reply = match buffer[0] {
        b'+' => Reply::Simple(line.to_owned()),
        b'-' => Reply::Error(line.to_owned()),
        b':' => Reply::Integer(line.parse().map_err(|_| format!("bad integer {line:?}"))?),
        b'_' => Reply::Nil,
        b'$' => {
            let length: i64 = line
                .parse()
                .map_err(|_| format!("bad bulk length {line:?}"))?;
            if length < 0 {
                Reply::Nil
            } else {
                let length = length as usize;
                if buffer.len() < after_line + length + 2 {
                    return Ok(None);
                }
                let body = buffer[after_line..after_line + length].to_vec();
                return Ok(Some((Reply::Bulk(body), after_line + length + 2)));
            }
        }
        other => return Err(format!("unexpected reply type {:?}", other as char)),
    };
    Ok(Some((reply, after_line)))
}

/// One connection, one command at a time.
pub struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    pub async fn connect(port: u16) -> std::io::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buffer: Vec::with_capacity(512),
        })
    }

    pub async fn command(&mut self, args: &[&[u8]]) -> Result<Reply, String> {
        self.stream
            .write_all(&encode(args))
            .await
            .map_err(|error| format!("redis_write:{:?}", error.kind()))?;
        loop {
            if let Some((reply, used)) = parse(&self.buffer)? {
                self.buffer.drain(..used);
                return Ok(reply);
            }
            let mut chunk = [0_u8; 512];
            let read = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|error| format!("redis_read:{:?}", error.kind()))?;
            if read == 0 {
                return Err("redis_closed".into());
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    /// `SET key token NX PX ttl_ms`: the claim.
    pub async fn claim(&mut self, key: &str, token: &str, ttl_ms: u64) -> Result<Claimed, String> {
        let ttl = ttl_ms.to_string();
        let reply = self
            .command(&[
                b"SET",
                key.as_bytes(),
                token.as_bytes(),
                b"NX",
                b"PX",
                ttl.as_bytes(),
            ])
            .await?;
        claimed(reply)
    }
}

/// What a `SET … NX` reply says of the claim.
pub fn claimed(reply: Reply) -> Result<Claimed, String> {
    match reply {
        Reply::Simple(ok) if ok == "OK" => Ok(Claimed::Acquired),
        Reply::Nil => Ok(Claimed::Duplicate),
        Reply::Error(error) => Err(format!(
            "redis:{}",
            error.chars().take(30).collect::<String>()
        )),
        other => Err(format!("redis_unexpected:{other:?}")),
    }
}

/// A private `redis-server` on a free loopback port, without persistence;
/// stopped with [`RedisServer::stop`] or, at the latest, when dropped.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    pub pid: u32,
    dir: PathBuf,
}

/// The binary the alternatives start, if this machine has it.
pub fn binary() -> Option<PathBuf> {
    on_path("redis-server")
}

impl RedisServer {
    /// Starts `binary` (on `cpus` when given) and waits until it answers.
    pub async fn start(binary: &Path, cpus: Option<&str>) -> anyhow::Result<Self> {
        let port = free_port()?;
        let dir = private_dir("redis")?;
        let log = dir.join("redis.log");
        let mut command = Command::from(on_cpus(cpus, binary));
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            // No persistence: neither snapshots nor an append-only file.
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(&log)
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let pid = child.id().context("redis-server exited at once")?;
        let mut server = Self {
            child,
            port,
            pid,
            dir,
        };
        process::wait_ready(&mut server.child, 100, move || async move {
            match Connection::connect(port).await {
                Ok(mut connection) => {
                    connection.command(&[b"PING"]).await == Ok(Reply::Simple("PONG".into()))
                }
                Err(_) => false,
            }
        })
        .await
        .with_context(|| format!("redis-server did not get ready; see {}", log.display()))?;
        Ok(server)
    }

    /// Its settings, as it reports them (`CONFIG GET`).
    pub async fn config(&self, name: &str) -> String {
        let Ok(mut connection) = Connection::connect(self.port).await else {
            return "unknown".into();
        };
        // RESP2 answers CONFIG GET with an array [name, value]: read it by hand.
        let reply = connection
            .stream
            .write_all(&encode(&[b"CONFIG", b"GET", name.as_bytes()]))
            .await;
        if reply.is_err() {
            return "unknown".into();
        }
        let mut text = Vec::new();
        let mut chunk = [0_u8; 512];
        while let Ok(Ok(read)) = tokio::time::timeout(
            Duration::from_millis(500),
            connection.stream.read(&mut chunk),
        )
        .await
        {
            if read == 0 {
                break;
            }
            text.extend_from_slice(&chunk[..read]);
            if let Some(value) = config_value(&text) {
                return value;
            }
        }
        "unknown".into()
    }

    /// SIGTERM, then SIGKILL after 5 s.
    pub async fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// The value in a `CONFIG GET` reply (`*2 $n name $n value`), once complete.
fn config_value(reply: &[u8]) -> Option<String> {
    let rest = reply.strip_prefix(b"*2\r\n")?;
    let (_, used) = parse(rest).ok()??;
    match parse(&rest[used..]).ok()?? {
        (Reply::Bulk(value), _) => Some(String::from_utf8_lossy(&value).into_owned()),
        _ => None,
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // The child is killed on drop if it still runs (kill_on_drop).
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Claims on a Redis, one connection per worker.
pub struct RedisClaims {
    pool: Pool<Connection>,
}

impl RedisClaims {
    pub async fn connect(port: u16, connections: usize) -> anyhow::Result<Arc<Self>> {
        let mut pool = Vec::with_capacity(connections);
        for _ in 0..connections {
            pool.push(Connection::connect(port).await?);
        }
        Ok(Arc::new(Self {
            pool: Pool::new(pool),
        }))
    }

    /// Claims `{namespace}:{key}` for `ttl_ms`.
    pub async fn claim(&self, namespace: &str, key: &str, ttl_ms: u64) -> Result<Claimed, String> {
        let token = uuid::Uuid::new_v4().to_string();
        let key = format!("{namespace}:{key}");
        self.pool.lease().await.claim(&key, &token, ttl_ms).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_an_array_of_bulk_strings() {
        assert_eq!(
            encode(&[b"SET", b"k", b"t", b"NX", b"PX", b"3600000"]),
            b"*6\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nt\r\n$2\r\nNX\r\n$2\r\nPX\r\n$7\r\n3600000\r\n"
        );
    }

    #[test]
    fn replies_parse_whole_or_not_at_all() {
        assert_eq!(parse(b"+OK\r\n"), Ok(Some((Reply::Simple("OK".into()), 5))));
        assert_eq!(parse(b"$-1\r\n+OK\r\n"), Ok(Some((Reply::Nil, 5))));
        assert_eq!(parse(b"_\r\n"), Ok(Some((Reply::Nil, 3))));
        assert_eq!(parse(b":42\r\n"), Ok(Some((Reply::Integer(42), 5))));
        assert_eq!(
            parse(b"-ERR wrong\r\n"),
            Ok(Some((Reply::Error("ERR wrong".into()), 12)))
        );
        assert_eq!(
            parse(b"$3\r\nabc\r\n"),
            Ok(Some((Reply::Bulk(b"abc".to_vec()), 9)))
        );
        assert_eq!(parse(b"+O"), Ok(None));
        assert_eq!(parse(b"$3\r\nab"), Ok(None));
        assert_eq!(parse(b""), Ok(None));
        assert!(parse(b"*2\r\n").is_err());
        assert!(parse(b"\r\n").is_err());
    }

    #[test]
    fn ok_is_acquired_nil_is_a_duplicate_anything_else_an_error() {
        assert_eq!(claimed(Reply::Simple("OK".into())), Ok(Claimed::Acquired));
        assert_eq!(claimed(Reply::Nil), Ok(Claimed::Duplicate));
        assert!(claimed(Reply::Error("OOM command not allowed".into())).is_err());
        assert!(claimed(Reply::Integer(1)).is_err());
    }

    #[test]
    fn config_get_values_are_read_from_the_array() {
        let reply = b"*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n";
        assert_eq!(config_value(reply), Some("no".into()));
        assert_eq!(
            config_value(b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n"),
            Some(String::new())
        );
        assert_eq!(config_value(b"*2\r\n$4\r\nsave\r\n$0\r\n"), None);
    }
}
