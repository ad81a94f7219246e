//! The Prometheus endpoint (`metrics_listen` / `--metrics-listen`): `GET /metrics` over
//! HTTP/1.1 in the text exposition format.
//!
//! * [`encode`]: a [`StatsReply`](crate::control::protocol::StatsReply) as exposition text
//!   (pure);
//! * [`http`]: parsing a request head, writing a response (pure);
//! * [`server`]: [`MetricsServer`], the non-blocking listener the control loop polls.
//!
//! Reading the numbers takes no lock on the data path: the control thread renders a
//! snapshot of the workers' single-writer counters when, and only when, a scraper asks.

pub mod encode;
pub mod http;
pub mod server;

pub use encode::{render, Process, CONTENT_TYPE, REVISION};
pub use server::{Limits, MetricsError, MetricsServer};
