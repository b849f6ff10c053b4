//! Demultiplexing datagrams on the one shared UDP port.
//!
//! Every peer of every room sends to the same socket. A datagram is classified by
//! its first byte (RFC 7983 §7): STUN 0–3, DTLS 20–63, RTP/RTCP 128–191.
//!
//! - A STUN binding request names its target in USERNAME (RFC 8445 §7.2.2:
//!   `"<receiver ufrag>:<sender ufrag>"`), so it is routed by *our* ufrag.
//! - Everything else is routed by the remote address, which is bound to a
//!   Transport only after that Transport answered a binding request from that
//!   address with a success response: a forged USERNAME alone cannot take an
//!   address over, since the success needs the right MESSAGE-INTEGRITY.
//! - A STUN *response* to one of our own checks (the `rtc` ICE agent sends
//!   triggered checks even in lite mode) can arrive from an address not bound
//!   yet; it is routed by the transaction id we recorded when sending the request.

/// What a datagram on the media port carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramKind {
    /// STUN (ICE connectivity checks).
    Stun,
    /// DTLS handshake or alerts.
    Dtls,
    /// SRTP or SRTCP.
    Rtp,
    /// Anything else: dropped and counted.
    Other,
}

/// Classifies a datagram by its first byte (RFC 7983 §7).
pub fn classify(b: &[u8]) -> DatagramKind {
    match b.first() {
        Some(0..=3) => DatagramKind::Stun,
        Some(20..=63) => DatagramKind::Dtls,
        Some(128..=191) => DatagramKind::Rtp,
        _ => DatagramKind::Other,
    }
}

const STUN_HEADER: usize = 20;
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;

fn stun_type(b: &[u8]) -> Option<u16> {
    if b.len() < STUN_HEADER || b[4..8] != MAGIC_COOKIE {
        return None;
    }
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// True for a STUN Binding request (RFC 8489 §5: method 0x001, class request).
pub fn is_binding_request(b: &[u8]) -> bool {
    stun_type(b) == Some(0x0001)
}

/// True for a STUN Binding success response (type 0x0101).
pub fn is_binding_success(b: &[u8]) -> bool {
    stun_type(b) == Some(0x0101)
}

/// True for any STUN response (success or error) to a Binding request.
pub fn is_binding_response(b: &[u8]) -> bool {
    matches!(stun_type(b), Some(0x0101) | Some(0x0111))
}

/// The 96-bit transaction id of a STUN message (RFC 8489 §5).
pub fn stun_transaction_id(b: &[u8]) -> Option<[u8; 12]> {
    stun_type(b)?;
    b[8..20].try_into().ok()
}

/// The receiver's ufrag from a STUN request's USERNAME (`"ours:theirs"`), or
/// `None` when the message is not STUN, is truncated, or carries no USERNAME.
pub fn stun_local_ufrag(b: &[u8]) -> Option<&str> {
    stun_type(b)?;
    let len = u16::from_be_bytes([b[2], b[3]]) as usize;
    let end = (STUN_HEADER + len).min(b.len());
    let mut i = STUN_HEADER;
    while i + 4 <= end {
        let t = u16::from_be_bytes([b[i], b[i + 1]]);
        let l = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
        let v = b.get(i + 4..i + 4 + l)?;
        if t == ATTR_USERNAME {
            let s = std::str::from_utf8(v).ok()?;
            return s.split(':').next();
        }
        i += 4 + l.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(typ: u16, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (t, v) in attrs {
            body.extend_from_slice(&t.to_be_bytes());
            body.extend_from_slice(&(v.len() as u16).to_be_bytes());
            body.extend_from_slice(v);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let mut m = Vec::new();
        m.extend_from_slice(&typ.to_be_bytes());
        m.extend_from_slice(&(body.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[9u8; 12]);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn routes_by_username() {
        let m = stun(0x0001, &[(0x8022, b"x"), (ATTR_USERNAME, b"srvufrag:cli")]);
        assert_eq!(classify(&m), DatagramKind::Stun);
        assert!(is_binding_request(&m));
        assert_eq!(stun_local_ufrag(&m), Some("srvufrag"));
        assert!(is_binding_success(&stun(0x0101, &[])));
        assert!(is_binding_response(&stun(0x0111, &[])));
        assert_eq!(stun_transaction_id(&m), Some([9u8; 12]));
    }

    #[test]
    fn garbage_is_not_stun() {
        assert_eq!(stun_local_ufrag(&[0, 1, 0, 8]), None);
        let mut m = stun(0x0001, &[(ATTR_USERNAME, b"abc:def")]);
        m.truncate(26); // attribute cut short
        assert_eq!(stun_local_ufrag(&m), None);
        assert_eq!(classify(&[]), DatagramKind::Other);
        assert_eq!(classify(&[200]), DatagramKind::Other);
        assert_eq!(classify(&[0x80]), DatagramKind::Rtp);
        assert_eq!(classify(&[22]), DatagramKind::Dtls);
    }
}
