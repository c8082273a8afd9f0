//! Where a WebSocket client comes from (SPEC §11.6): the ingress kind of its upgrade request
//! ("direct loopback" exactly as OpenClaw defines it) and the pairing locality the handshake
//! derives from it. Only the few facts the handshake needs are kept per connection.

use std::net::{IpAddr, SocketAddr};

use hyper::header::{HOST, HeaderMap};

use super::pairing::Locality;

/// How the upgrade request reached the gateway (IA:94-117).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngressKind {
    /// A loopback peer with no proxy or Tailscale headers.
    DirectLocal,
    /// Proxy or Tailscale headers from a peer that is not a configured trusted proxy. (This
    /// gateway has no `trustedProxies` setting yet, so every proxied request is this.)
    UnattributableProxy,
    /// Anything else.
    DirectRemote,
}

/// What the handshake needs to know about the upgrade request, kept for the connection's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingress {
    /// The ingress kind.
    pub kind: IngressKind,
    /// The request carried `Forwarded`, `X-Real-IP`, `X-Forwarded-*` or Tailscale headers.
    pub proxy_headers: bool,
    /// The `Host` header, trimmed and lowercased (port kept), when there was one.
    pub host_header: Option<String>,
    /// The `x-openclaw-scopes` header split on commas (present but blank → empty) (MH:519-525).
    pub scope_cap: Option<Vec<String>>,
}

/// Tailscale Serve's identity headers (IA:43-52).
const TAILSCALE_HEADERS: [&str; 5] = [
    "tailscale-funnel-request",
    "tailscale-headers-info",
    "tailscale-user-login",
    "tailscale-user-name",
    "tailscale-user-profile-pic",
];

/// Reads the facts of an upgrade request from `peer` with `headers`.
pub fn ingress(peer: SocketAddr, headers: &HeaderMap) -> Ingress {
    let proxy_headers = headers.keys().any(|name| {
        let name = name.as_str();
        name == "forwarded"
            || name == "x-real-ip"
            || name.starts_with("x-forwarded-")
            || TAILSCALE_HEADERS.contains(&name)
    });
    let kind = if proxy_headers {
        IngressKind::UnattributableProxy
    } else if is_loopback_ip(peer.ip()) {
        IngressKind::DirectLocal
    } else {
        IngressKind::DirectRemote
    };
    let host_header = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty());
    let scope_cap = headers.get("x-openclaw-scopes").map(|h| {
        String::from_utf8_lossy(h.as_bytes())
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    });
    Ingress {
        kind,
        proxy_headers,
        host_header,
        scope_cap,
    }
}

impl Ingress {
    /// The `Host` header's host name (no port, no brackets; empty when there was none).
    pub fn host(&self) -> String {
        self.host_header
            .as_deref()
            .map(host_name)
            .unwrap_or_default()
    }
}

/// Whether a browser `origin` is the gateway's own, served from a host it may trust: the
/// origin's `host[:port]` equals the `Host` header, and that host is loopback (for a local
/// peer), a private address, or a `.local`/`.ts.net` name (origin-check-Dh0t_-zy.mjs:64-67,
/// 88-94).
pub fn same_trusted_origin(ingress: &Ingress, origin: &str) -> bool {
    let Some(host_header) = ingress.host_header.as_deref() else {
        return false;
    };
    let Some((scheme, rest)) = origin.trim().split_once("://") else {
        return false;
    };
    let authority = rest
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => "",
    };
    let authority = if default_port.is_empty() {
        authority.as_str()
    } else {
        authority.strip_suffix(default_port).unwrap_or(&authority)
    };
    if authority != host_header {
        return false;
    }
    let name = host_name(host_header);
    if is_loopback_host(&name) {
        return ingress.kind == IngressKind::DirectLocal;
    }
    if name.parse::<IpAddr>().is_ok() {
        return is_private_or_loopback_host(&name);
    }
    name.ends_with(".local") || name.ends_with(".ts.net")
}

/// The host name of a `Host` header or URL authority: brackets and port removed, lowercase
/// (NET:21-31).
pub fn host_name(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default().to_owned();
    }
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        return host;
    }
    host.split(':').next().unwrap_or_default().to_owned()
}

/// `127.0.0.0/8`, `::1`, and IPv4-mapped `::ffff:127.x.x.x` (NET:32-34).
pub fn is_loopback_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Loopback, RFC 1918, link-local, CGNAT (`100.64.0.0/10`), IPv6 ULA and link-local.
pub fn is_private_or_loopback_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_private_or_loopback_ip(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
            }
        },
    }
}

/// A host name that is `localhost` or a loopback address (NET:243-248).
pub fn is_loopback_host(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(is_loopback_ip)
}

/// A host name that is `localhost` or a private or loopback address (NET:273-284).
pub fn is_private_or_loopback_host(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(is_private_or_loopback_ip)
}

/// What [`pairing_locality`] looks at besides the ingress.
#[derive(Debug, Clone, Copy)]
pub struct LocalityInputs<'a> {
    /// `client.id` and `client.mode`.
    pub client_id: &'a str,
    pub client_mode: &'a str,
    /// The connect proved the shared secret (token or password).
    pub shared_auth_ok: bool,
    /// The auth method so far (`token`, `password`, `none`, `device-token`, …).
    pub auth_method: &'a str,
    /// The peer's address.
    pub peer: IpAddr,
    /// The upgrade's `Origin` header, when it had a non-blank one.
    pub origin: Option<&'a str>,
}

/// The pairing locality (NCR:53-79), first match.
pub fn pairing_locality(ingress: &Ingress, inputs: LocalityInputs<'_>) -> Locality {
    if ingress.kind == IngressKind::DirectLocal {
        return Locality::DirectLocal;
    }
    let shared_secret = inputs.shared_auth_ok && matches!(inputs.auth_method, "token" | "password");
    let host = ingress.host();
    let host = host.as_str();
    if inputs.client_id == "openclaw-control-ui"
        && inputs.client_mode == "webchat"
        && shared_secret
        && !ingress.proxy_headers
        && is_private_or_loopback_ip(inputs.peer)
        && is_loopback_host(host)
        && inputs
            .origin
            .and_then(origin_host)
            .is_some_and(|h| is_loopback_host(&h))
    {
        return Locality::BrowserContainerLocal;
    }
    if shared_secret
        && !ingress.proxy_headers
        && inputs.origin.is_none()
        && is_loopback_ip(inputs.peer)
        && is_private_or_loopback_host(host)
    {
        return if inputs.client_id == "cli" && inputs.client_mode == "cli" {
            Locality::CliContainerLocal
        } else {
            Locality::SharedSecretLoopbackLocal
        };
    }
    Locality::Remote
}

/// The host name of an `Origin` (`scheme://host[:port]`).
fn origin_host(origin: &str) -> Option<String> {
    let (_, rest) = origin.trim().split_once("://")?;
    let authority = rest.split('/').next()?.rsplit('@').next()?;
    Some(host_name(authority)).filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn direct_local_means_a_loopback_peer_without_proxy_headers() {
        let loopback: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.9]:5000".parse().unwrap();
        let lan: SocketAddr = "192.168.1.4:5000".parse().unwrap();
        type Case<'a> = (SocketAddr, &'a [(&'a str, &'a str)], IngressKind);
        let cases: [Case; 9] = [
            (
                loopback,
                &[("host", "127.0.0.1:18789")],
                IngressKind::DirectLocal,
            ),
            (mapped, &[], IngressKind::DirectLocal),
            // The Host header is not consulted (MH:3320).
            (
                loopback,
                &[("host", "gateway.example.com")],
                IngressKind::DirectLocal,
            ),
            (
                loopback,
                &[("origin", "http://evil.example")],
                IngressKind::DirectLocal,
            ),
            (
                loopback,
                &[("x-forwarded-for", "")],
                IngressKind::UnattributableProxy,
            ),
            (
                loopback,
                &[("X-Forwarded-Proto", "https")],
                IngressKind::UnattributableProxy,
            ),
            (
                loopback,
                &[("forwarded", "for=1.2.3.4")],
                IngressKind::UnattributableProxy,
            ),
            (
                loopback,
                &[("tailscale-user-login", "a@b")],
                IngressKind::UnattributableProxy,
            ),
            (lan, &[], IngressKind::DirectRemote),
        ];
        for (peer, pairs, kind) in cases {
            assert_eq!(
                ingress(peer, &headers(pairs)).kind,
                kind,
                "{peer} {pairs:?}"
            );
        }
        let facts = ingress(
            loopback,
            &headers(&[("host", "[::1]:80"), ("x-openclaw-scopes", " a, ,b")]),
        );
        assert_eq!(facts.host(), "::1");
        assert_eq!(facts.scope_cap, Some(vec!["a".to_owned(), "b".to_owned()]));
        let blank = ingress(loopback, &headers(&[("x-openclaw-scopes", "")]));
        assert_eq!(blank.scope_cap, Some(vec![]));
    }

    #[test]
    fn a_browser_on_the_gateways_own_trusted_origin() {
        let lan: SocketAddr = "192.168.1.9:5000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let cases = [
            (lan, "192.168.1.4:18789", "http://192.168.1.4:18789", true),
            (lan, "gw.local", "https://gw.local", true),
            (lan, "gw.local", "https://gw.local:443", true),
            (
                lan,
                "box.tail1.ts.net:18789",
                "https://box.tail1.ts.net:18789",
                true,
            ),
            (lan, "192.168.1.4:18789", "http://192.168.1.4:18790", false),
            (lan, "203.0.113.5", "http://203.0.113.5", false),
            (lan, "gw.example.com", "https://gw.example.com", false),
            (lan, "localhost:18789", "http://localhost:18789", false),
            (local, "localhost:18789", "http://localhost:18789", true),
        ];
        for (peer, host, origin, trusted) in cases {
            let facts = ingress(peer, &headers(&[("host", host)]));
            assert_eq!(
                same_trusted_origin(&facts, origin),
                trusted,
                "{host} {origin}"
            );
        }
    }

    #[test]
    fn pairing_localities_first_match() {
        let local = ingress(
            "127.0.0.1:1".parse().unwrap(),
            &headers(&[("host", "localhost:1")]),
        );
        let proxied = ingress(
            "127.0.0.1:1".parse().unwrap(),
            &headers(&[("host", "localhost"), ("x-real-ip", "1.2.3.4")]),
        );
        let container = ingress(
            "172.17.0.1:1".parse().unwrap(),
            &headers(&[("host", "localhost")]),
        );
        let base = LocalityInputs {
            client_id: "cli",
            client_mode: "cli",
            shared_auth_ok: true,
            auth_method: "token",
            peer: "127.0.0.1".parse().unwrap(),
            origin: None,
        };
        let ui = LocalityInputs {
            client_id: "openclaw-control-ui",
            client_mode: "webchat",
            peer: "172.17.0.1".parse().unwrap(),
            origin: Some("http://localhost:18789"),
            ..base
        };
        let cases = [
            (&local, base, Locality::DirectLocal),
            (
                &local,
                LocalityInputs {
                    shared_auth_ok: false,
                    ..base
                },
                Locality::DirectLocal,
            ),
            (&container, ui, Locality::BrowserContainerLocal),
            (
                &container,
                LocalityInputs {
                    origin: Some("http://evil.example"),
                    ..ui
                },
                Locality::Remote,
            ),
            (
                &container,
                LocalityInputs {
                    auth_method: "none",
                    ..ui
                },
                Locality::Remote,
            ),
            (
                &container,
                LocalityInputs {
                    peer: ui.peer,
                    ..base
                },
                Locality::Remote,
            ),
            (&proxied, base, Locality::Remote),
        ];
        for (ingress, inputs, locality) in cases {
            assert_eq!(pairing_locality(ingress, inputs), locality, "{inputs:?}");
        }
        // A loopback peer seen through a port mapping: not direct-local when proxied headers
        // are absent but the ingress is not direct (e.g. a container's NAT): modelled by the
        // kind only, so build one by hand.
        let nat = Ingress {
            kind: IngressKind::DirectRemote,
            ..local.clone()
        };
        assert_eq!(pairing_locality(&nat, base), Locality::CliContainerLocal);
        let backend = LocalityInputs {
            client_id: "gateway-client",
            client_mode: "backend",
            ..base
        };
        assert_eq!(
            pairing_locality(&nat, backend),
            Locality::SharedSecretLoopbackLocal
        );
        assert_eq!(
            pairing_locality(
                &nat,
                LocalityInputs {
                    origin: Some("http://localhost"),
                    ..base
                }
            ),
            Locality::Remote
        );
    }

    #[test]
    fn private_and_loopback_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.31.0.1",
            "192.168.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private_or_loopback_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "172.32.0.1", "100.128.0.1", "2001:db8::1"] {
            assert!(!is_private_or_loopback_ip(ip.parse().unwrap()), "{ip}");
        }
        assert!(is_loopback_host("localhost"));
        assert!(!is_loopback_host("localhost.evil.example"));
        assert_eq!(host_name("EXAMPLE.com:443"), "example.com");
        assert_eq!(
            origin_host("https://user@[::1]:3000/x").as_deref(),
            Some("::1")
        );
    }
}
