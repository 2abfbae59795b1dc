//! TCP connects with optional source-address binding.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

/// Connect to `addr`, optionally from `source` (port chosen at connect time
/// thanks to IP_BIND_ADDRESS_NO_PORT, so each source address gets its own
/// ephemeral port range per destination). Sets TCP_NODELAY.
pub async fn tcp_connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        crate::sys::set_bind_address_no_port(&sock);
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    let s = sock.connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// `127.0.0.1-127.0.0.16` (inclusive IPv4 range), or a comma list of
/// addresses and ranges.
pub fn parse_source_ips(s: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a.trim().parse().map_err(|_| format!("bad address {a:?}"))?;
            let b: Ipv4Addr = b.trim().parse().map_err(|_| format!("bad address {b:?}"))?;
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a || b - a > 1 << 16 {
                return Err(format!("bad address range {part:?}"));
            }
            out.extend((a..=b).map(|x| IpAddr::V4(Ipv4Addr::from(x))));
        } else {
            out.push(part.parse().map_err(|_| format!("bad address {part:?}"))?);
        }
    }
    if out.is_empty() {
        return Err("empty --source-ips".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_lists() {
        let v = parse_source_ips("127.0.0.1-127.0.0.3").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[2].to_string(), "127.0.0.3");
        let v = parse_source_ips("127.0.0.1, ::1,127.0.1.254-127.0.2.1").unwrap();
        assert_eq!(v.len(), 2 + 4);
        assert_eq!(v[1].to_string(), "::1");
        assert_eq!(v[5].to_string(), "127.0.2.1");
        assert!(parse_source_ips("127.0.0.3-127.0.0.1").is_err());
        assert!(parse_source_ips("x").is_err());
        assert!(parse_source_ips("").is_err());
    }
}
