//! MAC addresses: printed, or generated locally administered. (A configured one is parsed
//! with the VMM's config, `vmm_contract::config::NetConfig::parsed_mac`.)

/// A 48-bit Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A random unicast, locally administered address (the 0x02 bit set, 0x01 clear).
    pub fn random_local() -> std::io::Result<Self> {
        let mut b = [0u8; 6];
        crate::virtio::rng::fill_random(&mut b)?;
        b[0] = (b[0] & 0xfe) | 0x02;
        Ok(Self(b))
    }

    /// True for a locally administered address.
    pub fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// True for a multicast (or broadcast) address, which no NIC may own.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_and_generates() {
        let m = MacAddr([0x52, 0x54, 0, 0xab, 0xcd, 0xef]);
        assert_eq!(m.to_string(), "52:54:00:ab:cd:ef");
        let r = MacAddr::random_local().unwrap();
        assert!(r.is_local() && !r.is_multicast());
        assert_ne!(r, MacAddr::random_local().unwrap());
    }
}
