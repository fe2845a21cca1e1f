//! Where a webhook may go, and the TLS it goes over.
//!
//! - `NetPolicy`: the SSRF guard. A host that is, or resolves to, a loopback,
//!   private (RFC 1918, unique-local `fc00::/7`), link-local (`169.254/16`, the
//!   cloud metadata address among them; `fe80::/10`), CGNAT (`100.64/10`),
//!   unspecified, multicast or broadcast address, or an IPv4-mapped or
//!   -compatible IPv6 form of one, is refused: at endpoint creation and again
//!   before every attempt, which connects to the very address it checked (no
//!   second resolution for DNS to answer differently). Every resolved address
//!   is checked, so a name with one public and one private address is refused.
//!   `LEDGER_WEBHOOK_ALLOW_PRIVATE=1` lifts the guard (development and tests).
//! - `tls_config`: rustls (ring provider) trusting the Mozilla roots compiled
//!   into the binary (`webpki-roots`) plus the PEM certificates of
//!   `LEDGER_WEBHOOK_CA_FILE`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use crate::config::{WEBHOOK_CA_FILE_BYTES_MAX, WEBHOOK_RESOLVE_TIMEOUT};

/// Why a URL's host may not be delivered to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// It is, or resolves to, an address the policy blocks.
    Blocked,
    /// It does not resolve (in time), or to no address.
    Unresolved,
}

/// The SSRF policy of one server process.
#[derive(Debug, Clone, Default)]
pub struct NetPolicy {
    /// `LEDGER_WEBHOOK_ALLOW_PRIVATE=1`: any address is allowed.
    pub allow_private: bool,
    /// Tests only (`LEDGER_TEST_HOSTS=name=ip,...`): these names resolve to
    /// these addresses instead of asking DNS, so a test can make a name
    /// resolve to a blocked address.
    pub hosts: HashMap<String, Vec<IpAddr>>,
}

impl NetPolicy {
    /// The policy from `LEDGER_WEBHOOK_ALLOW_PRIVATE` and `LEDGER_TEST_HOSTS`.
    pub fn from_env() -> Result<NetPolicy, String> {
        let allow_private = match std::env::var("LEDGER_WEBHOOK_ALLOW_PRIVATE").as_deref().map(str::trim) {
            Err(_) | Ok("") | Ok("0") => false,
            Ok("1") => true,
            Ok(_) => return Err("LEDGER_WEBHOOK_ALLOW_PRIVATE must be 0 or 1".into()),
        };
        let hosts = match std::env::var("LEDGER_TEST_HOSTS") {
            Err(_) => HashMap::new(),
            Ok(v) => parse_hosts(&v)?,
        };
        Ok(NetPolicy { allow_private, hosts })
    }

    /// Resolves `host` (a name, an IPv4 address or a bracketed IPv6 one),
    /// checks every address it resolves to, and returns the one to connect to.
    pub async fn check(&self, host: &str, port: u16) -> Result<SocketAddr, Refused> {
        let addrs = self.resolve(host, port).await?;
        if !self.allow_private && addrs.iter().any(|a| is_blocked(a.ip())) {
            return Err(Refused::Blocked);
        }
        addrs.first().copied().ok_or(Refused::Unresolved)
    }

    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        if let Some(ips) = self.hosts.get(&bare.to_ascii_lowercase()) {
            return Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect());
        }
        match tokio::time::timeout(WEBHOOK_RESOLVE_TIMEOUT, tokio::net::lookup_host((bare, port))).await {
            Ok(Ok(addrs)) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                if addrs.is_empty() {
                    Err(Refused::Unresolved)
                } else {
                    Ok(addrs)
                }
            }
            _ => Err(Refused::Unresolved),
        }
    }
}

/// `name=ip,name=ip` (a name may repeat: several addresses).
fn parse_hosts(v: &str) -> Result<HashMap<String, Vec<IpAddr>>, String> {
    let mut hosts: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parsed = pair.split_once('=').and_then(|(name, ip)| Some((name.trim(), ip.trim().parse().ok()?)));
        let Some((name, ip)) = parsed else {
            return Err(format!("LEDGER_TEST_HOSTS: '{pair}' is not name=ip"));
        };
        hosts.entry(name.to_ascii_lowercase()).or_default().push(ip);
    }
    Ok(hosts)
}

/// Whether a webhook may not be delivered to `ip` (unless private addresses are allowed).
pub fn is_blocked(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_blocked_v4(v4),
        IpAddr::V6(v6) => is_blocked_v6(v6),
    }
}

fn is_blocked_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    a == 0 // "this network", 0.0.0.0 among it
        || ip.is_loopback() // 127/8
        || ip.is_private() // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local() // 169.254/16, 169.254.169.254 among it
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || ip.is_multicast() // 224/4
        || ip.is_broadcast() // 255.255.255.255
}

fn is_blocked_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() {
        return true;
    }
    // Unique-local fc00::/7, link-local fe80::/10, deprecated site-local fec0::/10.
    if (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80 || (s[0] & 0xffc0) == 0xfec0 {
        return true;
    }
    // IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d) and NAT64
    // (64:ff9b::a.b.c.d) forms reach the IPv4 address they carry.
    let carries_v4 = (s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0)) || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    carries_v4 && is_blocked_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8))
}

/// The host and port of an `http://` or `https://` URI.
pub fn host_and_port(uri: &awc::http::Uri) -> Option<(&str, u16)> {
    let host = uri.host().filter(|h| !h.is_empty())?;
    let default = match uri.scheme_str() {
        Some("https") => 443,
        Some("http") => 80,
        _ => return None,
    };
    Some((host, uri.port_u16().unwrap_or(default)))
}

/// The TLS client configuration of webhook delivery: rustls with the ring
/// provider, trusting the Mozilla roots built into the binary
/// (`webpki-roots`) and every certificate of the PEM file `ca_file`.
pub fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let shown = path.display();
        let size = std::fs::metadata(path).map_err(|e| format!("LEDGER_WEBHOOK_CA_FILE {shown}: {e}"))?.len();
        if size > WEBHOOK_CA_FILE_BYTES_MAX {
            return Err(format!(
                "LEDGER_WEBHOOK_CA_FILE {shown} is {size} bytes, more than {WEBHOOK_CA_FILE_BYTES_MAX}"
            ));
        }
        let pem = std::fs::read(path).map_err(|e| format!("LEDGER_WEBHOOK_CA_FILE {shown}: {e}"))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("LEDGER_WEBHOOK_CA_FILE {shown}: not PEM certificates: {e}"))?;
            roots.add(cert).map_err(|e| format!("LEDGER_WEBHOOK_CA_FILE {shown}: a certificate is unusable: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("LEDGER_WEBHOOK_CA_FILE {shown} holds no PEM certificate"));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(s: &str) -> bool {
        is_blocked(s.parse().unwrap())
    }

    #[test]
    fn blocked_and_allowed_addresses() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::ffff:100.64.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(blocked(ip), "{ip} should be blocked");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "172.32.0.1",
            "172.15.255.255",
            "100.63.255.255",
            "100.128.0.1",
            "192.169.0.1",
            "169.253.0.1",
            "2001:4860:4860::8888",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(!blocked(ip), "{ip} should be allowed");
        }
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    #[test]
    fn every_resolved_address_is_checked_and_the_checked_one_is_used() {
        let policy = NetPolicy {
            allow_private: false,
            hosts: parse_hosts("mixed=93.184.216.34,mixed=10.0.0.1, public = 93.184.216.34").unwrap(),
        };
        assert_eq!(run(policy.check("mixed", 80)), Err(Refused::Blocked), "one private address is enough");
        assert_eq!(run(policy.check("PUBLIC", 8080)), Ok("93.184.216.34:8080".parse().unwrap()));
        assert_eq!(run(policy.check("[::1]", 80)), Err(Refused::Blocked));
        assert_eq!(run(policy.check("[2606:4700::1111]", 443)), Ok("[2606:4700::1111]:443".parse().unwrap()));
        assert_eq!(run(policy.check("169.254.169.254", 80)), Err(Refused::Blocked));
        assert_eq!(run(policy.check("localhost", 80)), Err(Refused::Blocked), "localhost resolves to loopback");
        let open = NetPolicy { allow_private: true, ..policy };
        assert_eq!(run(open.check("mixed", 80)), Ok("93.184.216.34:80".parse().unwrap()));
        assert_eq!(run(open.check("127.0.0.1", 9)), Ok("127.0.0.1:9".parse().unwrap()));
        assert!(parse_hosts("nothing").is_err());
        assert!(parse_hosts("a=not-an-ip").is_err());
    }

    #[test]
    fn host_and_port_of_urls() {
        let hp = |s: &str| host_and_port(&s.parse().unwrap()).map(|(h, p)| (h.to_string(), p));
        assert_eq!(hp("http://example.com/x"), Some(("example.com".into(), 80)));
        assert_eq!(hp("https://example.com/x"), Some(("example.com".into(), 443)));
        assert_eq!(hp("https://[::1]:8443/x"), Some(("[::1]".into(), 8443)));
        assert_eq!(hp("ftp://example.com/"), None);
    }

    #[test]
    fn the_ca_file_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let none = dir.path().join("none.pem");
        assert!(tls_config(Some(&none)).unwrap_err().contains("LEDGER_WEBHOOK_CA_FILE"));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(tls_config(Some(&empty)).unwrap_err().contains("no PEM certificate"));
        assert!(tls_config(None).is_ok());
    }
}
