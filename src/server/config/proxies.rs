//! `TRUST_PROXY_HEADERS` and `TRUSTED_PROXIES`: whether, and through which
//! proxies, `X-Forwarded-For` names the client (read by
//! [`crate::server::client_ip`]).

use super::ConfigError;
use ipnet::IpNet;
use std::net::IpAddr;

/// Most entries `TRUSTED_PROXIES` may list.
pub const MAX_TRUSTED_PROXIES: usize = 64;

/// How the client IP is found behind proxies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxySettings {
    /// Whether `X-Forwarded-For` is read at all (`TRUST_PROXY_HEADERS`,
    /// default false: the client IP is the TCP peer).
    pub trust_headers: bool,
    /// Our own proxies' addresses and networks (`TRUSTED_PROXIES`,
    /// comma-separated IPs or CIDRs, e.g. `10.0.0.0/8, 2001:db8::1`;
    /// default empty). Empty: the TCP peer is taken to be our one proxy,
    /// so the rightmost `X-Forwarded-For` address is the client. Listed:
    /// the header is read only when the peer is listed, and the client is
    /// the rightmost address that is not.
    pub trusted: Vec<IpNet>,
}

impl ProxySettings {
    /// Whether `ip` is one of the listed proxies (IPv4-mapped IPv6
    /// addresses compare as IPv4).
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// Parses `TRUST_PROXY_HEADERS` (already read as `trust_headers`) and
    /// the raw `TRUSTED_PROXIES` list.
    ///
    /// Errors: [`ConfigError::Invalid`] naming `TRUSTED_PROXIES` for an entry
    /// that is neither an IP nor a CIDR, more than
    /// [`MAX_TRUSTED_PROXIES`] entries, or a list given while
    /// `TRUST_PROXY_HEADERS` is off (it would do nothing: a mistake).
    pub fn parse(trust_headers: bool, trusted: Option<&str>) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            name: "TRUSTED_PROXIES",
            reason,
        };
        let mut nets = Vec::new();
        for entry in trusted.unwrap_or("").split(',').map(str::trim) {
            if entry.is_empty() {
                continue;
            }
            let net = match entry.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => match entry.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip.to_canonical()),
                    Err(_) => {
                        return Err(invalid(format!(
                            "`{entry}` is neither an IP address nor a CIDR network"
                        )))
                    }
                },
            };
            // A mapped IPv4 network (::ffff:10.0.0.0/104) as the IPv4 one.
            let net = match net {
                IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
                    Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).unwrap_or(net),
                    None => net,
                },
                other => other,
            };
            nets.push(net);
        }
        if nets.len() > MAX_TRUSTED_PROXIES {
            return Err(invalid(format!("at most {MAX_TRUSTED_PROXIES} entries")));
        }
        if !nets.is_empty() && !trust_headers {
            return Err(invalid(
                "set TRUST_PROXY_HEADERS=true too, or remove TRUSTED_PROXIES".into(),
            ));
        }
        Ok(Self {
            trust_headers,
            trusted: nets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_and_networks_parse_and_match() {
        let settings = ProxySettings::parse(
            true,
            Some(" 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,, ::ffff:198.51.100.0/120"),
        )
        .unwrap();
        assert_eq!(settings.trusted.len(), 4);
        for yes in [
            "10.1.2.3",
            "192.0.2.7",
            "2001:db8:ffff::1",
            "::ffff:10.0.0.1",
            "198.51.100.200",
        ] {
            assert!(settings.is_trusted(yes.parse().unwrap()), "{yes}");
        }
        for no in ["11.0.0.1", "192.0.2.8", "2001:db9::1", "198.51.101.1"] {
            assert!(!settings.is_trusted(no.parse().unwrap()), "{no}");
        }
        assert_eq!(
            ProxySettings::parse(false, None).unwrap(),
            ProxySettings::default()
        );
        assert!(ProxySettings::parse(true, Some(" "))
            .unwrap()
            .trusted
            .is_empty());
    }

    #[test]
    fn bad_lists_name_the_setting() {
        for (trust, bad) in [
            (true, "10.0.0.0/33"),
            (true, "proxy.internal"),
            (true, "10.0.0.1:8080"),
            (false, "10.0.0.1"),
        ] {
            let error = ProxySettings::parse(trust, Some(bad)).unwrap_err();
            assert!(error.to_string().contains("TRUSTED_PROXIES"), "{error}");
        }
        let many = vec!["10.0.0.1"; MAX_TRUSTED_PROXIES + 1].join(",");
        assert!(ProxySettings::parse(true, Some(&many)).is_err());
    }
}
