//! Request tags.
//!
//! Every tag this initiator sends has bit 31 set: the Linux aoe driver ignores replies with
//! that bit, so a kernel initiator on the same link never takes our replies for its own (the
//! convention of aoetools). The low [`SLOT_BITS`] bits index the in-flight slot table; the
//! [`GENERATION_BITS`] bits above them count transmissions of that slot, so a late reply to
//! a retransmitted (or abandoned) request carries an old generation and is recognised as
//! stale instead of completing the slot's current request.

/// Bit 31: "not for the kernel driver".
pub const USER_TAG_BIT: u32 = 1 << 31;
/// Bits of the tag that index the slot table.
pub const SLOT_BITS: u32 = 8;
/// Bits of the tag that hold the slot's generation.
pub const GENERATION_BITS: u32 = 31 - SLOT_BITS;
/// The largest queue depth tags can address.
pub const MAX_SLOTS: usize = 1 << SLOT_BITS;
/// Generations wrap at this mask.
pub const GENERATION_MASK: u32 = (1 << GENERATION_BITS) - 1;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;

/// The tag of transmission `generation` of slot `slot`. `slot` is taken modulo
/// [`MAX_SLOTS`] and `generation` modulo 2^[`GENERATION_BITS`].
pub fn encode(slot: usize, generation: u32) -> u32 {
    // Truncation is the documented behaviour: the slot table never exceeds MAX_SLOTS.
    let slot_bits = (slot as u32) & SLOT_MASK;
    USER_TAG_BIT | ((generation & GENERATION_MASK) << SLOT_BITS) | slot_bits
}

/// The (slot, generation) a tag names, or `None` when bit 31 is clear (not one of ours).
pub fn decode(tag: u32) -> Option<(usize, u32)> {
    if tag & USER_TAG_BIT == 0 {
        return None;
    }
    let slot = (tag & SLOT_MASK) as usize;
    let generation = (tag >> SLOT_BITS) & GENERATION_MASK;
    Some((slot, generation))
}

/// The generation after `generation`, wrapping within [`GENERATION_MASK`].
pub fn next_generation(generation: u32) -> u32 {
    generation.wrapping_add(1) & GENERATION_MASK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bit_31() {
        for slot in [0usize, 1, 15, 255] {
            for generation in [0u32, 1, 0x1234, GENERATION_MASK] {
                let tag = encode(slot, generation);
                assert_ne!(tag & USER_TAG_BIT, 0);
                assert_eq!(decode(tag), Some((slot, generation)));
            }
        }
    }

    #[test]
    fn kernel_style_tags_are_not_ours() {
        assert_eq!(decode(0), None);
        assert_eq!(decode(0x7fff_ffff), None);
    }

    #[test]
    fn generations_wrap_and_differ_per_transmission() {
        assert_eq!(next_generation(GENERATION_MASK), 0);
        assert_eq!(next_generation(7), 8);
        assert_ne!(encode(3, 7), encode(3, next_generation(7)));
        assert_ne!(encode(3, 7), encode(4, 7));
    }
}
