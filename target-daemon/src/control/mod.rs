//! The control plane's outside interfaces: the control socket that `xbladectl` talks to, and
//! the kernel's link events.
//!
//! * [`protocol`]: the wire format (one JSON object per line each way) and its types;
//! * [`acl`]: the access-control commands' payloads and argument checks;
//! * [`socket`]: [`ControlServer`], the daemon's non-blocking end of the socket;
//! * [`client`]: [`Client`] and [`request`], the client end (used by `xbladectl`);
//! * [`netlink`]: [`LinkWatcher`], link up/down, MTU and hotplug events from rtnetlink.
//!
//! The daemon's control loop polls two descriptors for `POLLIN`, [`ControlServer::fd`] and
//! [`LinkWatcher::fd`], then calls [`ControlServer::serve`] and [`LinkWatcher::drain`].

pub mod acl;
pub mod client;
pub mod netlink;
pub mod protocol;
pub mod socket;

pub use client::{request, Client, ClientError};
pub use netlink::{LinkEvent, LinkInfo, LinkWatcher, NetlinkError};
pub use protocol::{
    decode_reply, decode_request, encode_line, encode_request, AclChangeReply, AclReply,
    ConfigStringOp, ExportAcl, ExportStats, ExportStatus, InterfaceStats, InterfaceStatus,
    LatencyStats, MaskOp, QueueStats, ReloadReply, Reply, Request, ReserveOp, StatsReply,
    StatusReply, XskStats,
};
pub use socket::{ControlError, ControlServer};

/// Where the control socket is when neither `--control` (daemon) nor `--socket` /
/// [`SOCKET_ENV`] (`xbladectl`) says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/xblade/control.sock";

/// The environment variable `xbladectl` reads the socket path from when `--socket` is not
/// given.
pub const SOCKET_ENV: &str = "XBLADE_CONTROL";
