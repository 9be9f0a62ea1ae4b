//! 客户端 IP：只有直连对端是可信代理时才采信 `X-Forwarded-For`，并从右往左跳过可信代理。
//!
//! 为什么从右往左：`X-Forwarded-For` 的每一跳都由它前面的代理追加在末尾，最左边的值完全由客户端控制；
//! 只有最右边那些由我们信任的代理写下的条目可信，跳过它们之后的第一个地址才是真正的客户端。

use std::net::{IpAddr, Ipv4Addr};

use crate::config::{canonical_ip, Cidr};

/// `X-Forwarded-For` 请求头名。
pub const FORWARDED_FOR: &str = "x-forwarded-for";
/// IPv6 客户端按 /64 网段限流：一个用户通常拿到整个 /64，逐个地址限流形同虚设。
const IPV6_CLIENT_PREFIX: u8 = 64;
/// 点分十进制 IPv4 地址的最长字节数（`255.255.255.255`）。
const MAX_DOTTED_LEN: usize = 15;

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
    let peer = canonical_ip(peer?);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    let Some(forwarded) = forwarded.filter(|_| is_trusted(peer)) else {
        return Some(peer);
    };
    // 从右往左：末尾的条目是离我们最近的代理写的。无法解析的条目只截断它左边的部分——
    // 整个头都不采信的话，客户端在最左边塞一个垃圾值就能让所有请求都算成代理的 IP
    let mut last_trusted = peer;
    for hop in forwarded.rsplit(',') {
        let Ok(ip) = hop.trim().parse::<IpAddr>().map(canonical_ip) else {
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
    match canonical_ip(ip) {
        IpAddr::V4(v4) => dotted(v4),
        v6 => Cidr::containing(v6, IPV6_CLIENT_PREFIX).to_string(),
    }
}

/// IPv4 地址的点分十进制（与 `to_string` 相同）：每个请求都要算一次，按整数逐段写出比经过 `Display`
/// 的格式化机制省一千多条指令。
fn dotted(v4: Ipv4Addr) -> String {
    let mut text = String::with_capacity(MAX_DOTTED_LEN);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        text.push_str(itoa::Buffer::new().format(octet));
    }
    text
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
    fn 点分十进制_与标准库的写法相同() {
        for text in [
            "0.0.0.0",
            "10.0.0.1",
            "127.0.0.1",
            "192.168.100.254",
            "255.255.255.255",
        ] {
            let v4: Ipv4Addr = text.parse().expect("地址合法");
            assert_eq!(dotted(v4), v4.to_string());
            assert_eq!(ip_subject(IpAddr::V4(v4)), text);
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
