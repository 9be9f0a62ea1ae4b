//! IP 网段（`10.0.0.0/8`、`::1/128`）：可信代理列表的每一项，也用来按网段归并客户端地址。

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Deserialize;

/// IPv4 地址的位数。
const IPV4_BITS: u8 = 32;
/// IPv6 地址的位数。
const IPV6_BITS: u8 = 128;

/// 一个 IP 网段（`10.0.0.0/8`、`::1/128`；不写前缀长度时为单个地址）。
///
/// 用途：`rate_limits.trusted_proxies` 的每一项。
///
/// ```
/// use chatnexus::config::Cidr; // 网段
/// let net = Cidr::try_from("10.0.0.0/8".to_string()).unwrap(); // 私有网段
/// assert!(net.contains("10.1.2.3".parse().unwrap()) && !net.contains("11.0.0.1".parse().unwrap())); // 按前缀匹配
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// 包含该地址的、前缀长度为 `prefix` 的网段（前缀超过地址位数时取地址位数）。
    ///
    /// ```
    /// let net = chatnexus::config::Cidr::containing("2001:db8:1:2:3::9".parse().unwrap(), 64); // 所在 /64
    /// assert_eq!(net.to_string(), "2001:db8:1:2::/64"); // 主机位清零
    /// ```
    pub fn containing(ip: IpAddr, prefix: u8) -> Cidr {
        let ip = canonical_ip(ip);
        let bits = if ip.is_ipv4() { IPV4_BITS } else { IPV6_BITS };
        let prefix = prefix.min(bits);
        let network = match ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(masked(to_bits(ip), prefix, bits) as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(masked(to_bits(ip), prefix, bits))),
        };
        Cidr { network, prefix }
    }

    /// 地址是否在网段内（IPv4 映射的 IPv6 地址按 IPv4 比较）。
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical_ip(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(u32::from(ip)), self.prefix, IPV4_BITS)
                    == u128::from(u32::from(net))
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(ip), self.prefix, IPV6_BITS) == u128::from(net)
            }
            _ => false,
        }
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;

    /// 解析 `地址[/前缀长度]`；主机位不为零或前缀过长时返回中文错误。
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let bad = || format!("`{value}` 不是合法的 IP 或 CIDR（如 10.0.0.0/8、192.168.1.7、::1）");
        let (addr, prefix) = match value.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (value.as_str(), None),
        };
        let network = canonical_ip(addr.trim().parse::<IpAddr>().map_err(|_| bad())?);
        let bits = if network.is_ipv4() {
            IPV4_BITS
        } else {
            IPV6_BITS
        };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| bad())?,
            None => bits,
        };
        if prefix > bits {
            return Err(bad());
        }
        let cidr = Cidr { network, prefix };
        if to_bits(network) != masked(to_bits(network), prefix, bits) {
            return Err(format!(
                "`{value}` 的主机位不为零（网段应写成如 10.0.0.0/8）"
            ));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// IPv4 映射的 IPv6 地址（`::ffff:1.2.3.4`）换回 IPv4，其余不变。
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// 地址的整数形式。
fn to_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// 只保留前 `prefix` 位（地址共 `bits` 位）。
fn masked(value: u128, prefix: u8, bits: u8) -> u128 {
    if prefix == 0 {
        return 0;
    }
    let host_bits = u32::from(bits - prefix);
    let mask = (u128::MAX >> (u128::BITS - u32::from(bits))) >> host_bits << host_bits;
    value & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn 网段(s: &str) -> Cidr {
        Cidr::try_from(s.to_string()).expect("网段合法")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("地址合法")
    }

    #[test]
    fn 网段_解析与匹配() {
        assert!(网段("192.168.0.0/16").contains(ip("192.168.200.1")));
        assert!(!网段("192.168.0.0/16").contains(ip("192.169.0.1")));
        assert!(
            网段("127.0.0.1").contains(ip("::ffff:127.0.0.1")),
            "映射地址按 IPv4 比较"
        );
        assert!(网段("fd00::/8").contains(ip("fd12::1")));
        assert!(!网段("fd00::/8").contains(ip("10.0.0.1")));
        assert!(网段("0.0.0.0/0").contains(ip("8.8.8.8")));
        for bad in ["10.0.0.1/8", "10.0.0.0/33", "不是地址", "10.0.0.0/x"] {
            assert!(Cidr::try_from(bad.to_string()).is_err(), "应拒绝 {bad}");
        }
    }

    #[test]
    fn 网段_按前缀归并地址() {
        assert_eq!(
            Cidr::containing(ip("10.1.2.3"), 8).to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            Cidr::containing(ip("::ffff:192.0.2.1"), 32).to_string(),
            "192.0.2.1/32"
        );
        assert_eq!(
            Cidr::containing(ip("10.1.2.3"), 99).to_string(),
            "10.1.2.3/32"
        );
    }
}
