//! An index's entries kept also in expiry order, beside them in the same tree (so one batch
//! writes both): `prefix`, `expires_at` order-preserving, then the entry key's suffix after the
//! entries' prefix; empty values. Pruning scans `prefix` from the start and stops at the first
//! key not yet expired, so it reads only what has expired.

/// Where an index's expiry keys live and which entries they name.
#[derive(Debug, Clone, Copy)]
pub struct ExpiryOrder {
    /// The expiry keys' prefix.
    pub prefix: &'static [u8],
    /// The prefix of the entries they name.
    pub entries: &'static [u8],
}

impl ExpiryOrder {
    /// The expiry key of the entry under `entry_key`, expiring at `expires_at`.
    pub fn key(&self, expires_at: i64, entry_key: &[u8]) -> Vec<u8> {
        let mut k = self.prefix.to_vec();
        // The sign bit flipped: negative times sort before positive ones.
        k.extend_from_slice(&((expires_at as u64) ^ (1 << 63)).to_be_bytes());
        k.extend_from_slice(entry_key.get(self.entries.len()..).unwrap_or_default());
        k
    }

    /// The expiry and the entry key an expiry key names (`None` if it is not one).
    pub fn parse(&self, key: &[u8]) -> Option<(i64, Vec<u8>)> {
        let (at, suffix) = key.strip_prefix(self.prefix)?.split_at_checked(8)?;
        let at = u64::from_be_bytes(at.try_into().ok()?) ^ (1 << 63);
        let mut entry = self.entries.to_vec();
        entry.extend_from_slice(suffix);
        Some((at as i64, entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_expiry_and_name_their_entry() {
        let order = ExpiryOrder {
            prefix: b"x/",
            entries: b"i/",
        };
        let times = [-5i64, 0, 7, 1_800_000_000, i64::MAX];
        let keys: Vec<_> = times.iter().map(|t| order.key(*t, b"i/abc")).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        for (t, k) in times.iter().zip(&keys) {
            assert_eq!(order.parse(k), Some((*t, b"i/abc".to_vec())));
        }
        assert_eq!(order.parse(b"i/abc"), None);
        assert_eq!(order.parse(b"x/123"), None);
    }
}
