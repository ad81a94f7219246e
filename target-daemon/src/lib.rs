//! xblade: an ATA over Ethernet (AoE r11) target. An XDP program steers AoE frames into
//! AF_XDP sockets, one per RX queue, each served by a worker thread with its own io_uring;
//! sector data moves between the disk and the very UMEM frames it arrived or leaves in.
//!
//! Layout: the pure protocol logic is the `xblade-target` crate (re-exported as [`target`]);
//! [`xdp`], [`xsk`] and [`uring`] are thin
//! wrappers over the kernel interfaces; [`worker`] joins them; [`daemon`] starts and stops
//! it all; [`control`] and [`ctl`] are the control socket and `xbladectl`; [`metrics`] is
//! the Prometheus endpoint; [`backend`], [`stats`], [`config`] and [`netdev`] do what they
//! say; [`build`] names the version and git revision built.

pub mod backend;
pub mod build;
pub mod config;
pub mod control;
pub mod ctl;
pub mod daemon;
pub mod epoll;
pub mod eventfd;
pub mod metrics;
pub mod netdev;
pub mod persist;
pub mod privilege;
pub mod stats;
pub mod systemd;
pub mod uring;
pub mod worker;
pub mod xdp;
pub mod xsk;

/// The pure request logic, a crate of its own so that it cannot touch a socket or a file.
pub use xblade_target as target;
