//! Versioned record encoding: one version byte, then a protobuf message. Protobuf lets fields be
//! added without a migration; the version byte catches incompatible changes.

use crate::{StoreError, Tree};

/// A value stored in a tree.
pub trait Record: prost::Message + Default {
    /// The tree this record lives in.
    const TREE: Tree;
    /// The encoding version this build writes and reads.
    const VERSION: u8 = 1;
}

pub fn encode<R: Record>(record: &R) -> Vec<u8> {
    let mut buf = Vec::with_capacity(1 + record.encoded_len());
    buf.push(R::VERSION);
    // Encoding into a Vec cannot run out of space.
    let _ = record.encode(&mut buf);
    buf
}

pub fn decode<R: Record>(bytes: &[u8]) -> Result<R, StoreError> {
    match bytes.split_first() {
        Some((&v, rest)) if v == R::VERSION => R::decode(rest).map_err(|_| StoreError::Corrupt),
        _ => Err(StoreError::Corrupt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Thing {
        #[prost(string, tag = "1")]
        name: String,
    }

    impl Record for Thing {
        const TREE: Tree = Tree::Meta;
    }

    #[test]
    fn round_trips_and_refuses_other_versions() {
        let t = Thing { name: "x".into() };
        let mut bytes = encode(&t);
        assert_eq!(decode::<Thing>(&bytes).unwrap(), t);
        bytes[0] = 2;
        assert!(matches!(decode::<Thing>(&bytes), Err(StoreError::Corrupt)));
        assert!(matches!(decode::<Thing>(&[]), Err(StoreError::Corrupt)));
    }
}
