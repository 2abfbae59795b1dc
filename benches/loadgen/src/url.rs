//! `ws://` / `http://` URL splitting. The authority must be literal; the
//! path and query may carry template placeholders.

use std::net::{SocketAddr, ToSocketAddrs};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Ws,
    Http,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: Scheme,
    /// Host without brackets (IPv6) — what gets resolved.
    pub host: String,
    pub port: u16,
    /// Value for the `Host:` header.
    pub host_header: String,
    /// Path and query (starts with `/`), possibly containing placeholders.
    pub path: String,
}

pub fn parse(url: &str) -> Result<Url, String> {
    let (scheme, rest) = if let Some(r) = url.strip_prefix("ws://") {
        (Scheme::Ws, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (Scheme::Http, r)
    } else if url.starts_with("wss://") || url.starts_with("https://") {
        return Err(format!("{url}: TLS (wss/https) is not supported"));
    } else {
        return Err(format!("{url}: expected a ws:// or http:// URL"));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("{url}: bad host"));
    }
    let default_port = match scheme {
        Scheme::Ws | Scheme::Http => 80,
    };
    let (host, port) = if let Some(r) = authority.strip_prefix('[') {
        let close = r.find(']').ok_or_else(|| format!("{url}: bad IPv6 host"))?;
        let host = &r[..close];
        let after = &r[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("{url}: bad port"))?,
            None if after.is_empty() => default_port,
            None => return Err(format!("{url}: bad host")),
        };
        (host.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse().map_err(|_| format!("{url}: bad port"))?,
            ),
            None => (authority.to_string(), default_port),
        }
    };
    if host.contains('{') {
        return Err(format!(
            "{url}: placeholders are only allowed in the path and query"
        ));
    }
    Ok(Url {
        scheme,
        host,
        port,
        host_header: authority.to_string(),
        path,
    })
}

impl Url {
    /// Resolve once at start-up (the hot path never touches DNS).
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("resolve {}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("resolve {}: no address", self.host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let u = parse("ws://127.0.0.1:8000/ws/connect?session_id={sid}&token={token}").unwrap();
        assert_eq!(u.scheme, Scheme::Ws);
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.port, 8000);
        assert_eq!(u.host_header, "127.0.0.1:8000");
        assert_eq!(u.path, "/ws/connect?session_id={sid}&token={token}");
        let u = parse("http://localhost/api/publish").unwrap();
        assert_eq!(
            (u.scheme, u.port, u.path.as_str()),
            (Scheme::Http, 80, "/api/publish")
        );
        let u = parse("http://[::1]:9000").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 9000, "/")
        );
        let u = parse("ws://h:1?x=1").unwrap();
        assert_eq!(u.path, "/?x=1");
        assert!(parse("wss://h/").is_err());
        assert!(parse("ftp://h/").is_err());
        assert!(parse("ws://h:port/").is_err());
        assert!(parse("ws://{sid}:80/").is_err());
    }

    #[test]
    fn resolves_loopback() {
        let a = parse("ws://127.0.0.1:1234/").unwrap().resolve().unwrap();
        assert_eq!(a.to_string(), "127.0.0.1:1234");
    }
}
