//! Pure frame logic of the initiator: building requests into caller-owned buffers and judging
//! received frames. No I/O, no allocation, no panics on any input; the wire format itself
//! comes from `aoe-proto`.

use core::ops::Range;

use aoe_proto::ata::{self, AtaHeader};
use aoe_proto::config::{self, ConfigHeader};
use aoe_proto::{Command, Header, Mac, ParseError, AOE_VERSION, FLAG_ERROR, MAJOR_ANY, MINOR_ANY};

use crate::error::{RequestError, TargetAddress};
use crate::tag;

/// The two ends of a conversation with one discovered target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub own_mac: Mac,
    pub target_mac: Mac,
    /// The target's own shelf (never the wildcard).
    pub shelf: u16,
    /// The target's own slot (never the wildcard).
    pub slot: u8,
}

/// What a live request expects in its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Exactly `sectors` x 512 bytes of data (READ, IDENTIFY).
    Data { sectors: u8 },
    /// No data; anything after the ATA header is padding (WRITE, FLUSH, CHECK POWER MODE).
    NoData,
}

/// The ATA registers of a reply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AtaRegisters {
    pub status: u8,
    pub error: u8,
    /// Sectors remaining (0 after a successful transfer; 0xFF from CHECK POWER MODE when
    /// the device is active).
    pub sector_count: u8,
    /// The LBA registers as the reply carries them (48-bit when the reply's E flag is set).
    pub lba: u64,
}

/// A successful ATA reply: its registers and where its sector data lies in the frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AtaReply {
    pub registers: AtaRegisters,
    /// Byte range of the sector data in the frame (empty for [`Expect::NoData`]).
    pub data: Range<usize>,
}

/// Why a received AoE response is not the reply to any live request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stray {
    /// Sent by another MAC than the discovered target's.
    OtherSource,
    /// From the target's MAC but for another shelf.slot (one MAC may serve several).
    OtherAddress,
    /// Not an ATA response (e.g. a late Query Config reply, an announcement).
    OtherCommand,
    /// Bit 31 of the tag is clear: another initiator's (e.g. the kernel driver's).
    ForeignTag,
    /// Our tag, but the slot is idle or was retransmitted since: a late or duplicate reply.
    Stale,
}

/// What one received frame is, for the receive loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not an AoE response: too short, another ethertype, or a request (R clear).
    NotResponse,
    /// An AoE response that completes nothing.
    Stray(Stray),
    /// The reply to the live request in `slot`; `outcome` says whether it succeeded.
    Reply {
        slot: usize,
        outcome: Result<AtaReply, RequestError>,
    },
}

/// Judges a received frame: is it the reply to one of our live requests and if so, did the
/// request succeed? `live(slot, generation)` tells what the request currently in `slot`
/// expects, or `None` when `slot` is idle or `generation` is not its latest transmission.
pub fn classify(frame: &[u8], peer: &Peer, live: impl Fn(usize, u32) -> Option<Expect>) -> Verdict {
    let Ok(header) = Header::parse(frame) else {
        return Verdict::NotResponse;
    };
    if !header.is_response() {
        return Verdict::NotResponse;
    }
    if header.src != peer.target_mac {
        return Verdict::Stray(Stray::OtherSource);
    }
    if header.major != peer.shelf || header.minor != peer.slot {
        return Verdict::Stray(Stray::OtherAddress);
    }
    if header.command != Command::Ata as u8 {
        return Verdict::Stray(Stray::OtherCommand);
    }
    let Some((slot, generation)) = tag::decode(header.tag) else {
        return Verdict::Stray(Stray::ForeignTag);
    };
    let Some(expect) = live(slot, generation) else {
        return Verdict::Stray(Stray::Stale);
    };
    Verdict::Reply {
        slot,
        outcome: validate_ata_reply(frame, &header, expect),
    }
}

/// Checks an ATA reply already matched to a request: AoE version 1, no AoE error, ATA status
/// without failure bits, and for data-bearing commands exactly the data asked for.
pub fn validate_ata_reply(
    frame: &[u8],
    header: &Header,
    expect: Expect,
) -> Result<AtaReply, RequestError> {
    if header.version != AOE_VERSION {
        return Err(RequestError::Version {
            version: header.version,
        });
    }
    if header.flags & FLAG_ERROR != 0 {
        return Err(RequestError::Aoe { code: header.error });
    }
    let body = header.body_offset();
    let ata_header = AtaHeader::parse(frame, body).map_err(RequestError::Malformed)?;
    let registers = AtaRegisters {
        status: ata_header.cmd_status,
        error: ata_header.err_feature,
        sector_count: ata_header.sector_count,
        lba: ata_header.lba(),
    };
    if registers.status & ata::status::LINUX_FAILURE_MASK != 0 {
        return Err(RequestError::Ata {
            status: registers.status,
            error: registers.error,
        });
    }
    let data_start = ata::data_offset(body);
    let data = match expect {
        Expect::NoData => data_start..data_start,
        Expect::Data { sectors } => {
            let expected_bytes = ata::data_len(sectors);
            let actual_bytes = frame.len().saturating_sub(data_start);
            if actual_bytes != expected_bytes {
                return Err(RequestError::DataLength {
                    expected_bytes,
                    actual_bytes,
                });
            }
            data_start..data_start + expected_bytes
        }
    };
    Ok(AtaReply { registers, data })
}

/// Writes an ATA request (common header, ATA header, then `data`) at the start of `frame`
/// and returns its length. No padding: like the Linux driver, a read request is 36 bytes.
pub fn encode_ata_request(
    frame: &mut [u8],
    peer: &Peer,
    tag: u32,
    ata_header: &AtaHeader,
    data: &[u8],
) -> Result<usize, ParseError> {
    let header = request_header(
        peer.target_mac,
        peer.own_mac,
        peer.shelf,
        peer.slot,
        Command::Ata,
        tag,
    );
    let body = header.encode(frame)?;
    ata_header.encode(frame, body)?;
    let start = ata::data_offset(body);
    let end = start.saturating_add(data.len());
    let actual = frame.len();
    frame
        .get_mut(start..end)
        .ok_or(ParseError::TooShort {
            needed: end,
            actual,
        })?
        .copy_from_slice(data);
    Ok(end)
}

/// Rewrites the tag of a request built by [`encode_ata_request`] (for a retransmission).
pub fn set_tag(frame: &mut [u8], tag: u32) -> Result<(), ParseError> {
    let mut header = Header::parse(frame)?;
    header.tag = tag;
    header.encode(frame).map(|_| ())
}

/// Writes a Query Config read request from `own_mac` to the broadcast address for
/// `shelf.slot` (either may be the wildcard) and returns its length: 32 bytes, the size
/// the Linux driver sends.
pub fn encode_config_query(
    frame: &mut [u8],
    own_mac: Mac,
    address: TargetAddress,
    tag: u32,
) -> Result<usize, ParseError> {
    let header = request_header(
        Mac::BROADCAST,
        own_mac,
        address.shelf,
        address.slot,
        Command::QueryConfig,
        tag,
    );
    let body = header.encode(frame)?;
    ConfigHeader {
        aoe_version: AOE_VERSION,
        ccmd: config::ConfigCommand::Read as u8,
        ..ConfigHeader::default()
    }
    .encode(frame, body)?;
    Ok(config::string_offset(body))
}

fn request_header(dst: Mac, src: Mac, shelf: u16, slot: u8, command: Command, tag: u32) -> Header {
    Header {
        dst,
        src,
        vlan_tci: None,
        version: AOE_VERSION,
        flags: 0,
        error: 0,
        major: shelf,
        minor: slot,
        command: command as u8,
        tag,
    }
}

/// What a target says about itself in its Query Config reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetInfo {
    pub mac: Mac,
    pub shelf: u16,
    pub slot: u8,
    /// Requests the target queues per initiator before it drops.
    pub buffer_count: u16,
    /// Largest sector count the target takes in one ATA frame.
    pub sectors_per_frame: u8,
    pub firmware_version: u16,
    /// The AoE version of the reply's common header.
    pub aoe_version: u8,
    /// Raw config string (often ASCII, not necessarily).
    pub config_string: Vec<u8>,
}

impl TargetInfo {
    /// The config string with invalid UTF-8 replaced.
    pub fn config_string_lossy(&self) -> String {
        String::from_utf8_lossy(&self.config_string).into_owned()
    }
}

/// What a received frame is to a discovery in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigVerdict {
    /// Not a Query Config reply to one of our queries.
    Ignored,
    /// A reply with the E flag.
    Refused { mac: Mac, code: u8 },
    /// A target that matches the query.
    Target(TargetInfo),
}

/// Judges a frame received during discovery of `want` (shelf and slot may be wildcards).
/// `our_tag(tag)` tells whether `tag` is one of the queries sent. Allocates only for the
/// config string of a matching reply.
pub fn parse_config_reply(
    frame: &[u8],
    want: TargetAddress,
    our_tag: impl Fn(u32) -> bool,
) -> ConfigVerdict {
    let Ok(header) = Header::parse(frame) else {
        return ConfigVerdict::Ignored;
    };
    let addressed = (want.shelf == MAJOR_ANY || want.shelf == header.major)
        && (want.slot == MINOR_ANY || want.slot == header.minor);
    if !header.is_response()
        || header.command != Command::QueryConfig as u8
        || !our_tag(header.tag)
        || header.src.is_multicast()
        || !addressed
    {
        return ConfigVerdict::Ignored;
    }
    if header.flags & FLAG_ERROR != 0 {
        return ConfigVerdict::Refused {
            mac: header.src,
            code: header.error,
        };
    }
    let body = header.body_offset();
    let Ok(cfg) = ConfigHeader::parse(frame, body) else {
        return ConfigVerdict::Ignored;
    };
    // A reply whose length field overstates the string: keep what arrived.
    let string = config::string(frame, body, cfg.string_len)
        .unwrap_or_else(|_| frame.get(config::string_offset(body)..).unwrap_or_default());
    let string = string.get(..config::MAX_STRING_LEN).unwrap_or(string);
    ConfigVerdict::Target(TargetInfo {
        mac: header.src,
        shelf: header.major,
        slot: header.minor,
        buffer_count: cfg.buffer_count,
        sectors_per_frame: cfg.sector_count,
        firmware_version: cfg.firmware_version,
        aoe_version: header.version,
        config_string: string.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aoe_proto::ata::{opcode, AFLAG_EXTENDED, AFLAG_WRITE};
    use aoe_proto::{FLAG_RESPONSE, SECTOR_SIZE};

    const OWN: Mac = Mac([2, 0, 0, 0, 0, 1]);
    const TARGET: Mac = Mac([2, 0, 0, 0, 0, 2]);
    const PEER: Peer = Peer {
        own_mac: OWN,
        target_mac: TARGET,
        shelf: 1,
        slot: 2,
    };

    fn read_request(tag: u32, sectors: u8, lba: u64) -> Vec<u8> {
        let mut frame = vec![0u8; 36];
        let h = AtaHeader {
            aflags: AFLAG_EXTENDED,
            sector_count: sectors,
            cmd_status: opcode::READ_SECTORS_EXT,
            lba_bytes: AtaHeader::lba_bytes_for(lba, true),
            ..AtaHeader::default()
        };
        assert_eq!(encode_ata_request(&mut frame, &PEER, tag, &h, &[]), Ok(36));
        frame
    }

    /// A target's reply to `request`, built the way a target does it with proto.
    fn reply_to(request: &[u8], status: u8, error: u8, data: &[u8]) -> Vec<u8> {
        let req = Header::parse(request).unwrap();
        let mut frame = request[..36].to_vec();
        frame.extend_from_slice(data);
        req.reply(TARGET, PEER.shelf, PEER.slot)
            .encode(&mut frame)
            .unwrap();
        AtaHeader::encode_reply(&mut frame, 24, status, error, 0).unwrap();
        frame
    }

    fn live_one(
        slot: usize,
        generation: u32,
        expect: Expect,
    ) -> impl Fn(usize, u32) -> Option<Expect> {
        move |s, g| (s == slot && g == generation).then_some(expect)
    }

    #[test]
    fn read_request_wire_layout() {
        let tag = tag::encode(5, 9);
        let frame = read_request(tag, 2, 0x0102_0304_0506);
        assert_eq!(&frame[0..6], &TARGET.0);
        assert_eq!(&frame[6..12], &OWN.0);
        assert_eq!(&frame[12..14], &[0x88, 0xa2]);
        assert_eq!(frame[14], 0x10, "version 1, no flags");
        assert_eq!(&frame[16..20], &[0, 1, 2, 0]);
        assert_eq!(&frame[20..24], &tag.to_be_bytes());
        assert_eq!(&frame[24..36], &[0x40, 0, 2, 0x24, 6, 5, 4, 3, 2, 1, 0, 0]);
    }

    #[test]
    fn write_request_carries_data_and_fails_cleanly_when_too_long() {
        let h = AtaHeader {
            aflags: AFLAG_EXTENDED | AFLAG_WRITE,
            sector_count: 1,
            cmd_status: opcode::WRITE_SECTORS_EXT,
            ..AtaHeader::default()
        };
        let data = [0x5au8; SECTOR_SIZE];
        let mut frame = [0u8; 36 + SECTOR_SIZE];
        assert_eq!(
            encode_ata_request(&mut frame, &PEER, 0x8000_0000, &h, &data),
            Ok(548)
        );
        assert!(frame[36..].iter().all(|&b| b == 0x5a));
        let mut small = [0u8; 547];
        assert!(encode_ata_request(&mut small, &PEER, 0x8000_0000, &h, &data).is_err());
        assert!(encode_ata_request(&mut small[..20], &PEER, 0x8000_0000, &h, &[]).is_err());
    }

    #[test]
    fn good_read_reply_matches_and_locates_the_data() {
        let tag = tag::encode(3, 7);
        let req = read_request(tag, 2, 10);
        let data: Vec<u8> = (0..1024).map(|i| i as u8).collect();
        let reply = reply_to(&req, 0x40, 0, &data);
        let expect = Expect::Data { sectors: 2 };
        match classify(&reply, &PEER, live_one(3, 7, expect)) {
            Verdict::Reply {
                slot: 3,
                outcome: Ok(r),
            } => {
                assert_eq!(&reply[r.data.clone()], &data[..]);
                assert_eq!(r.registers.status, 0x40);
                assert_eq!(r.registers.lba, 10);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn short_and_long_read_replies_are_data_length_errors() {
        let tag = tag::encode(0, 1);
        let req = read_request(tag, 2, 0);
        let expect = Expect::Data { sectors: 2 };
        for len in [0usize, 24, 512, 1023, 1025] {
            let reply = reply_to(&req, 0x40, 0, &vec![0; len]);
            assert_eq!(
                classify(&reply, &PEER, live_one(0, 1, expect)),
                Verdict::Reply {
                    slot: 0,
                    outcome: Err(RequestError::DataLength {
                        expected_bytes: 1024,
                        actual_bytes: len
                    })
                }
            );
        }
    }

    #[test]
    fn ata_and_aoe_errors_are_reported_with_their_registers() {
        let tag = tag::encode(1, 1);
        let req = read_request(tag, 1, 1 << 40);
        let live = live_one(1, 1, Expect::Data { sectors: 1 });
        // vblade answers a read past the end with a bare 36-byte reply.
        let reply = reply_to(&req, 0x41, 0x10, &[]);
        let Verdict::Reply {
            outcome: Err(e), ..
        } = classify(&reply, &PEER, &live)
        else {
            panic!()
        };
        assert_eq!(
            e,
            RequestError::Ata {
                status: 0x41,
                error: 0x10
            }
        );
        assert!(e.is_out_of_range());
        // Every failure bit counts (BSY, DF, DRQ, ERR), not only ERR.
        for status in [0x80u8, 0x20, 0x08, 0x01] {
            let reply = reply_to(&req, status, 0, &[0; 512]);
            assert!(matches!(
                classify(&reply, &PEER, &live),
                Verdict::Reply {
                    outcome: Err(RequestError::Ata { .. }),
                    ..
                }
            ));
        }
        let mut reply = reply_to(&req, 0x40, 0, &[]);
        reply[14] |= FLAG_ERROR;
        reply[15] = 2;
        assert_eq!(
            classify(&reply, &PEER, &live),
            Verdict::Reply {
                slot: 1,
                outcome: Err(RequestError::Aoe { code: 2 })
            }
        );
    }

    #[test]
    fn wrong_version_and_truncated_ata_header_are_errors_not_panics() {
        let tag = tag::encode(1, 1);
        let req = read_request(tag, 1, 0);
        let live = live_one(1, 1, Expect::NoData);
        let mut reply = reply_to(&req, 0x40, 0, &[]);
        reply[14] = 0x28; // version 2, R
        assert_eq!(
            classify(&reply, &PEER, &live),
            Verdict::Reply {
                slot: 1,
                outcome: Err(RequestError::Version { version: 2 })
            }
        );
        let reply = reply_to(&req, 0x40, 0, &[]);
        for len in 24..36 {
            assert!(matches!(
                classify(&reply[..len], &PEER, &live),
                Verdict::Reply {
                    outcome: Err(RequestError::Malformed(_)),
                    ..
                }
            ));
        }
        for len in 0..24 {
            assert_eq!(classify(&reply[..len], &PEER, &live), Verdict::NotResponse);
        }
    }

    #[test]
    fn no_data_replies_ignore_padding() {
        let tag = tag::encode(2, 4);
        let req = read_request(tag, 0, 0);
        let reply = reply_to(&req, 0x40, 0, &[0; 24]);
        let Verdict::Reply { outcome: Ok(r), .. } =
            classify(&reply, &PEER, live_one(2, 4, Expect::NoData))
        else {
            panic!()
        };
        assert!(r.data.is_empty());
    }

    #[test]
    fn foreign_stale_and_misaddressed_replies_are_strays() {
        let tag = tag::encode(3, 7);
        let req = read_request(tag, 1, 0);
        let good = reply_to(&req, 0x40, 0, &[0; 512]);
        let live = live_one(3, 7, Expect::Data { sectors: 1 });
        assert!(matches!(
            classify(&good, &PEER, &live),
            Verdict::Reply { .. }
        ));

        let mut f = good.clone();
        f[14] &= !FLAG_RESPONSE;
        assert_eq!(
            classify(&f, &PEER, &live),
            Verdict::NotResponse,
            "a request"
        );
        let mut f = good.clone();
        f[11] ^= 1;
        assert_eq!(
            classify(&f, &PEER, &live),
            Verdict::Stray(Stray::OtherSource)
        );
        let mut f = good.clone();
        f[18] = 9;
        assert_eq!(
            classify(&f, &PEER, &live),
            Verdict::Stray(Stray::OtherAddress)
        );
        let mut f = good.clone();
        f[19] = 1;
        assert_eq!(
            classify(&f, &PEER, &live),
            Verdict::Stray(Stray::OtherCommand)
        );
        let mut f = good.clone();
        f[20] &= 0x7f;
        assert_eq!(
            classify(&f, &PEER, &live),
            Verdict::Stray(Stray::ForeignTag)
        );
        // The previous transmission of the same slot: a late reply after a retransmit.
        let old = reply_to(&read_request(tag::encode(3, 6), 1, 0), 0x40, 0, &[0; 512]);
        assert_eq!(classify(&old, &PEER, &live), Verdict::Stray(Stray::Stale));
        assert_eq!(
            classify(&good, &PEER, |_, _| None),
            Verdict::Stray(Stray::Stale)
        );
        let mut f = good.clone();
        f[12] = 0x08;
        f[13] = 0x00;
        assert_eq!(classify(&f, &PEER, &live), Verdict::NotResponse, "IPv4");
    }

    #[test]
    fn set_tag_rewrites_only_the_tag() {
        let mut frame = read_request(tag::encode(1, 1), 1, 77);
        let before = frame.clone();
        set_tag(&mut frame, tag::encode(1, 2)).unwrap();
        assert_eq!(&frame[20..24], &tag::encode(1, 2).to_be_bytes());
        assert_eq!(&frame[..20], &before[..20]);
        assert_eq!(&frame[24..], &before[24..]);
        assert!(set_tag(&mut frame[..10], 0).is_err());
    }

    fn config_reply(tag: u32, shelf: u16, slot: u8, string: &[u8], len_field: u16) -> Vec<u8> {
        let mut query = [0u8; 32];
        let any = TargetAddress {
            shelf: MAJOR_ANY,
            slot: MINOR_ANY,
        };
        assert_eq!(encode_config_query(&mut query, OWN, any, tag), Ok(32));
        let mut frame = vec![0u8; 32 + string.len()];
        let body = Header::parse(&query)
            .unwrap()
            .reply(TARGET, shelf, slot)
            .encode(&mut frame)
            .unwrap();
        ConfigHeader {
            buffer_count: 16,
            firmware_version: 0x4019,
            sector_count: 2,
            aoe_version: 1,
            ccmd: 0,
            string_len: len_field,
        }
        .encode(&mut frame, body)
        .unwrap();
        frame[32..].copy_from_slice(string);
        frame
    }

    #[test]
    fn config_query_wire_layout() {
        let mut frame = [0xeeu8; 40];
        let addr = TargetAddress {
            shelf: 0x0102,
            slot: 3,
        };
        assert_eq!(
            encode_config_query(&mut frame, OWN, addr, 0x8000_0001),
            Ok(32)
        );
        assert_eq!(&frame[0..6], &[0xff; 6]);
        assert_eq!(&frame[14..24], &[0x10, 0, 1, 2, 3, 1, 0x80, 0, 0, 1]);
        assert_eq!(&frame[24..32], &[0, 0, 0, 0, 0, 0x10, 0, 0]);
    }

    #[test]
    fn config_reply_is_accepted_only_for_our_tag_and_address() {
        let tag = 0x8000_0042;
        let ours = |t| t == tag;
        let any = TargetAddress {
            shelf: MAJOR_ANY,
            slot: MINOR_ANY,
        };
        let frame = config_reply(tag, 1, 2, b"hello", 5);
        let ConfigVerdict::Target(info) = parse_config_reply(&frame, any, ours) else {
            panic!()
        };
        assert_eq!(
            info,
            TargetInfo {
                mac: TARGET,
                shelf: 1,
                slot: 2,
                buffer_count: 16,
                sectors_per_frame: 2,
                firmware_version: 0x4019,
                aoe_version: 1,
                config_string: b"hello".to_vec(),
            }
        );
        let exact = TargetAddress { shelf: 1, slot: 2 };
        assert!(matches!(
            parse_config_reply(&frame, exact, ours),
            ConfigVerdict::Target(_)
        ));
        let other = TargetAddress { shelf: 1, slot: 3 };
        assert_eq!(
            parse_config_reply(&frame, other, ours),
            ConfigVerdict::Ignored
        );
        assert_eq!(
            parse_config_reply(&frame, any, |_| false),
            ConfigVerdict::Ignored
        );
        // The unsolicited announcement (tag 0) and requests are not replies to us.
        let announcement = config_reply(0, 1, 2, b"", 0);
        assert_eq!(
            parse_config_reply(&announcement, any, ours),
            ConfigVerdict::Ignored
        );
        let mut request = frame.clone();
        request[14] = 0x10;
        assert_eq!(
            parse_config_reply(&request, any, ours),
            ConfigVerdict::Ignored
        );
        let mut refused = frame.clone();
        refused[14] |= FLAG_ERROR;
        refused[15] = 5;
        assert_eq!(
            parse_config_reply(&refused, any, ours),
            ConfigVerdict::Refused {
                mac: TARGET,
                code: 5
            }
        );
    }

    #[test]
    fn config_reply_with_lying_length_keeps_what_arrived() {
        let tag = 0x8000_0001;
        let any = TargetAddress {
            shelf: MAJOR_ANY,
            slot: MINOR_ANY,
        };
        let frame = config_reply(tag, 1, 2, b"abc", 1000);
        let ConfigVerdict::Target(info) = parse_config_reply(&frame, any, |t| t == tag) else {
            panic!()
        };
        assert_eq!(info.config_string, b"abc");
        for len in 0..32 {
            assert_eq!(
                parse_config_reply(&frame[..len], any, |t| t == tag),
                ConfigVerdict::Ignored
            );
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: every length, many patterns, with the header fields a
        // reply needs so that the deep paths run too.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let live = |_: usize, _: u32| Some(Expect::Data { sectors: 2 });
        for round in 0..4000 {
            let len = round % 1100;
            let mut frame = vec![0u8; len];
            for b in frame.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            if len >= 24 && round % 2 == 0 {
                frame[6..12].copy_from_slice(&TARGET.0);
                frame[12..14].copy_from_slice(&[0x88, 0xa2]);
                frame[16..20].copy_from_slice(&[0, 1, 2, 0]);
                frame[14] |= FLAG_RESPONSE;
                frame[19] = if round % 4 == 0 { 0 } else { 1 };
                frame[20] |= 0x80;
            }
            let _ = classify(&frame, &PEER, live);
            let any = TargetAddress {
                shelf: MAJOR_ANY,
                slot: MINOR_ANY,
            };
            let _ = parse_config_reply(&frame, any, |_| true);
        }
    }
}
