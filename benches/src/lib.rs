//! `xblade-bench`: a closed-loop load generator for one AoE r11 target, or for several
//! exports of one target at once ([`exports`]: the load spread round robin per request).
//!
//! It keeps a fixed number of requests (one AoE ATA frame each) in flight, measures the
//! submit-to-reply latency of every one in an HdrHistogram, and can verify every sector it
//! reads against what it wrote. The pure parts (request generation, verify table,
//! statistics, report) are separate from the I/O (AF_PACKET rings in [`packet`], the loop in
//! [`engine`]). Wire encoding and reply classification come from `aoe_proto` and
//! `aoe_initiator::wire`/`tag`; discovery and IDENTIFY from `aoe_initiator::Initiator`.
//!
//! [`responder`] is the other end for measuring the generator itself: a zero-work AoE
//! responder that answers every request at once (binary `xblade-responder`, also used by the
//! integration tests). It is not a storage target.
//!
//! [`stalls`] counts what the machine takes from a CPU unseen (binary `xblade-stalls`): the
//! gaps in a loop that only reads the clock, the stalls that set the tail at queue depth 1.

pub mod engine;
pub mod exports;
pub mod packet;
pub mod report;
pub mod responder;
pub mod rng;
pub mod stalls;
pub mod stats;
pub mod verify;
pub mod workload;
