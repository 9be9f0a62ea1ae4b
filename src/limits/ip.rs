//! 客户端 IP：只有直连对端是可信代理时才采信 `X-Forwarded-For`，并从右往左跳过可信代理。
//!
//! 为什么从右往左：`X-Forwarded-For` 的每一跳都由它前面的代理追加在末尾，最左边的值完全由客户端控制；
//! 只有最右边那些由我们信任的代理写下的条目可信，跳过它们之后的第一个地址才是真正的客户端。

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use serde::Deserialize;

/// `X-Forwarded-For` 请求头名。
pub const FORWARDED_FOR: &str = "x-forwarded-for";
/// IPv4 地址的位数。
const IPV4_BITS: u8 = 32;
/// IPv6 地址的位数。
const IPV6_BITS: u8 = 128;
/// IPv6 客户端按 /64 网段限流：一个用户通常拿到整个 /64，逐个地址限流形同虚设。
const IPV6_CLIENT_PREFIX: u8 = 64;

/// 一个 IP 网段（`10.0.0.0/8`、`::1/128`；不写前缀长度时为单个地址）。
///
/// 用途：`rate_limits.trusted_proxies` 的每一项。
///
/// ```
/// use chatnexus::limits::Cidr; // 网段
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
    /// 地址是否在网段内（IPv4 映射的 IPv6 地址按 IPv4 比较）。
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
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
        let network = canonical(addr.trim().parse::<IpAddr>().map_err(|_| bad())?);
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

/// 确定客户端 IP。
///
/// 参数：直连对端的地址（可能没有，如 Unix 套接字）、`X-Forwarded-For` 的值、可信代理列表。
/// 返回：对端不可信或没有该头时为对端地址；否则从右往左走，遇到第一个不可信的地址就是客户端；
/// 遇到无法解析的条目就停下，取最后一个可信的一跳（它报告的客户端地址不可用）；
/// 全是可信代理时取最左边的；无法确定时为 `None`。
pub fn client_ip(
    peer: Option<IpAddr>,
    forwarded: Option<&str>,
    trusted: &[Cidr],
) -> Option<IpAddr> {
    let peer = canonical(peer?);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    let Some(forwarded) = forwarded.filter(|_| is_trusted(peer)) else {
        return Some(peer);
    };
    // 从右往左：末尾的条目是离我们最近的代理写的。无法解析的条目只截断它左边的部分——
    // 整个头都不采信的话，客户端在最左边塞一个垃圾值就能让所有请求都算成代理的 IP
    let mut last_trusted = peer;
    for hop in forwarded.rsplit(',') {
        let Ok(ip) = hop.trim().parse::<IpAddr>().map(canonical) else {
            return Some(last_trusted);
        };
        if !is_trusted(ip) {
            return Some(ip);
        }
        last_trusted = ip;
    }
    Some(last_trusted)
}

/// 限流用的 IP 主体：IPv4 为地址本身，IPv6 为所在 /64 网段。
///
/// ```
/// let v6 = chatnexus::limits::ip_subject("2001:db8::1".parse().unwrap()); // IPv6 地址
/// assert_eq!(v6, "2001:db8::/64"); // 按 /64 网段
/// ```
pub fn ip_subject(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let net = masked(u128::from(v6), IPV6_CLIENT_PREFIX, IPV6_BITS);
            format!("{}/{IPV6_CLIENT_PREFIX}", Ipv6Addr::from(net))
        }
    }
}

/// IPv4 映射的 IPv6 地址（`::ffff:1.2.3.4`）换回 IPv4，其余不变。
fn canonical(ip: IpAddr) -> IpAddr {
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
    fn 客户端ip_对端不可信时忽略转发头() {
        let trusted = [网段("10.0.0.0/8")];
        let got = client_ip(Some(ip("203.0.113.9")), Some("1.2.3.4"), &trusted);
        assert_eq!(
            got,
            Some(ip("203.0.113.9")),
            "伪造的转发头不能改变客户端 IP"
        );
    }

    #[test]
    fn 客户端ip_从右往左跳过可信代理() {
        let trusted = [网段("10.0.0.0/8")];
        let peer = Some(ip("10.0.0.2"));
        let chain = "6.6.6.6, 198.51.100.7, 10.0.0.9";
        assert_eq!(
            client_ip(peer, Some(chain), &trusted),
            Some(ip("198.51.100.7")),
            "最左边的值由客户端随意填写，不可采信"
        );
        assert_eq!(
            client_ip(peer, Some("10.0.0.7, 10.0.0.8"), &trusted),
            Some(ip("10.0.0.7")),
            "全是可信代理时取最左边的"
        );
    }

    #[test]
    fn 客户端ip_无法解析的条目只截断它左边的部分() {
        let trusted = [网段("10.0.0.0/8")];
        let peer = Some(ip("10.0.0.2"));
        assert_eq!(
            client_ip(peer, Some("garbage, 198.51.100.7"), &trusted),
            Some(ip("198.51.100.7")),
            "最左边塞一个垃圾值不能让请求算成代理的 IP"
        );
        assert_eq!(
            client_ip(peer, Some("198.51.100.7, 垃圾, 10.0.0.9"), &trusted),
            Some(ip("10.0.0.9")),
            "遇到无法解析的条目就停下，取最后一个可信的一跳"
        );
        assert_eq!(
            client_ip(peer, Some("198.51.100.7, 垃圾"), &trusted),
            peer,
            "最右边就无法解析：取对端"
        );
        assert_eq!(client_ip(peer, None, &trusted), peer);
        assert_eq!(client_ip(None, Some("1.2.3.4"), &trusted), None);
    }

    #[test]
    fn 限流主体_ipv6_按64位网段() {
        assert_eq!(ip_subject(ip("2001:db8:1:2:3::9")), "2001:db8:1:2::/64");
        assert_eq!(ip_subject(ip("::ffff:192.0.2.1")), "192.0.2.1");
    }
}
