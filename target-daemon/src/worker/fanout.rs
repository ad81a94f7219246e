//! Replies that one frame asks of many exports: a wildcard Query Config (one reply from each
//! export it matches) and the start-up announcements (one unsolicited config reply from each
//! export). Each reply needs a frame of its own, so a fan-out is a job: the request is copied
//! aside, its frame goes back to the fill ring, and replies are built one spare frame at a
//! time; when the spare frames run out the job waits for transmitted frames to come back and
//! resumes where it stopped. Nothing is allocated after start-up.

use std::collections::VecDeque;

use aoe_proto::{MAJOR_ANY, MINOR_ANY};
use xblade_target::{Action, DropReason, ExportKey, ReplyKind, StateChange};

use super::exports::Exports;

/// Fan-outs waiting at once; a wildcard query arriving when all are taken is dropped (the
/// initiator asks again).
pub const MAX_FANOUTS: usize = 8;

/// The longest Query Config request kept: Ethernet (with an 802.1Q tag) and AoE headers,
/// the config header and a 1024-byte string.
const REQUEST_MAX: usize = 18 + 10 + 8 + 1024;

struct FanOut {
    /// `None`: announcements; `Some`: the request to answer.
    request: Option<([u8; REQUEST_MAX], usize)>,
    major: u16,
    minor: u8,
    /// The export table index to look at next.
    next: usize,
}

/// What one step of a fan-out produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// A reply of `len` bytes is in the frame: an answer of `key` (in slab slot `slot`;
    /// `kind` is `None` for an announcement), which may have changed its state.
    Reply {
        len: usize,
        key: ExportKey,
        slot: u32,
        kind: Option<ReplyKind>,
        change: Option<StateChange>,
    },
    /// This export (in slab slot `slot`, when there is one) stays silent (a config test
    /// that did not match, a mask list that does not list the sender): the frame is still
    /// free.
    Silent {
        reason: DropReason,
        slot: Option<u32>,
    },
    /// Nothing left to send.
    Idle,
}

pub(super) struct FanOuts {
    jobs: VecDeque<FanOut>,
}

impl FanOuts {
    pub fn new() -> FanOuts {
        FanOuts {
            jobs: VecDeque::with_capacity(MAX_FANOUTS),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Queues the answers of every export to the wildcard request `request` (addressed to
    /// `major`.`minor`). False when the queue is full or the request too long (dropped).
    pub fn push_request(&mut self, request: &[u8], major: u16, minor: u8) -> bool {
        if self.jobs.len() == MAX_FANOUTS || request.len() > REQUEST_MAX {
            return false;
        }
        let mut copy = [0u8; REQUEST_MAX];
        copy[..request.len()].copy_from_slice(request);
        self.jobs.push_back(FanOut {
            request: Some((copy, request.len())),
            major,
            minor,
            next: 0,
        });
        true
    }

    /// Queues the announcements of the exports `major`.`minor` matches (wildcards for all).
    /// False when the queue is full.
    pub fn push_announce(&mut self, major: u16, minor: u8) -> bool {
        if self.jobs.len() == MAX_FANOUTS {
            return false;
        }
        self.jobs.push_back(FanOut {
            request: None,
            major,
            minor,
            next: 0,
        });
        true
    }

    /// Queues the announcements of every export.
    pub fn push_announce_all(&mut self) -> bool {
        self.push_announce(MAJOR_ANY, MINOR_ANY)
    }

    /// Builds the next reply of the oldest job in `frame` (a free frame's packet area).
    pub fn step(&mut self, exports: &Exports, frame: &mut [u8]) -> Step {
        while let Some(job) = self.jobs.front_mut() {
            let Some((index, slot)) = exports.matching(job.major, job.minor, job.next).next()
            else {
                self.jobs.pop_front();
                continue;
            };
            job.next = index + 1;
            let target = &exports.get(slot).target;
            let Some((request, len)) = &job.request else {
                return match target.announcement(frame) {
                    Some(len) => Step::Reply {
                        len,
                        key: target.key(),
                        slot,
                        kind: None,
                        change: None,
                    },
                    None => Step::Silent {
                        reason: DropReason::Malformed,
                        slot: None,
                    },
                };
            };
            let Some(dst) = frame.get_mut(..*len) else {
                return Step::Silent {
                    reason: DropReason::Malformed,
                    slot: None,
                };
            };
            dst.copy_from_slice(&request[..*len]);
            return match target.decide(frame, *len) {
                Action::Reply { len, kind, change } => Step::Reply {
                    len,
                    key: target.key(),
                    slot,
                    kind: Some(kind),
                    change,
                },
                Action::Drop(reason) => Step::Silent {
                    reason,
                    slot: Some(slot),
                },
                // A Query Config never waits for the disk.
                Action::Io(_) => Step::Silent {
                    reason: DropReason::Malformed,
                    slot: None,
                },
            };
        }
        Step::Idle
    }
}
