//! Member ids as Kafka spells them, `{client_id}-{uuid}`, drawn from a seeded generator so that a
//! test run (and a lab run) replays exactly from its seed.

use kafka_protocol::protocol::StrBytes;

/// SplitMix64: tiny, fast and good enough for identifiers that only need to be unique.
pub(crate) struct IdGenerator {
    state: u64,
}

impl IdGenerator {
    pub(crate) fn new(seed: u64) -> Self {
        IdGenerator { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A fresh `{prefix}-{uuid}` with a version 4 UUID built from generator bits.
    pub(crate) fn member_id(&mut self, prefix: &str) -> StrBytes {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_be_bytes());
        let uuid = uuid::Builder::from_random_bytes(bytes).into_uuid();
        StrBytes::from_string(format!("{prefix}-{uuid}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_are_client_id_dash_uuid_v4() {
        let mut ids = IdGenerator::new(7);
        let id = ids.member_id("consumer-1");
        let uuid = id.strip_prefix("consumer-1-").expect("prefix");
        let parsed = uuid::Uuid::parse_str(uuid).expect("uuid");
        assert_eq!(parsed.get_version_num(), 4);
        assert_ne!(ids.member_id("consumer-1"), id);
    }
}
