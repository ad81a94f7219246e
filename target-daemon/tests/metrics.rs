//! The Prometheus endpoint of a real daemon: `--metrics-listen` / `metrics_listen`, scraped
//! over TCP inside the lab's target namespace.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{
    initiator, wait_for, write_atomically, xbladectl, xbladectl_json, ConfigFile, Daemon,
    ExportSpec, TempDir,
};
use xblade_lab::{Lab, LabOptions};

const T: Duration = Duration::from_secs(10);

/// Every family the endpoint serves for a daemon with an export on an attached interface.
const FAMILIES: [&str; 14] = [
    "xblade_build_info",
    "xblade_start_time_seconds",
    "xblade_requests_total",
    "xblade_bytes_total",
    "xblade_errors_total",
    "xblade_refused_total",
    "xblade_in_flight",
    "xblade_request_duration_seconds",
    "xblade_xdp_frames_total",
    "xblade_xsk_drops_total",
    "xblade_queue_frames_total",
    "xblade_queue_requests_total",
    "xblade_worker_drops_total",
    "xblade_worker_seconds_total",
];

/// The address the daemon logged (`metrics listening on http://ADDR/metrics`), once it has.
fn logged_addr(daemon: &Daemon) -> SocketAddr {
    let find = || {
        let log = daemon.log();
        let (_, rest) = log.split_once("metrics listening on http://")?;
        let (addr, _) = rest.split_once("/metrics")?;
        addr.parse::<SocketAddr>().ok()
    };
    assert!(
        wait_for(T, || find().is_some()),
        "no metrics address in the log:\n{}",
        daemon.log()
    );
    find().unwrap()
}

/// An HTTP response: status line, headers (lower-case names), body.
struct Response {
    status: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` to `addr` from inside the target namespace and reads until the server
/// closes.
fn http(lab: &Lab, addr: SocketAddr, request: &str) -> Response {
    let mut stream = {
        let _in_target = lab.enter_target_thread().expect("enter target namespace");
        TcpStream::connect_timeout(&addr, T).expect("connect to the metrics endpoint")
    };
    stream.set_read_timeout(Some(T)).unwrap();
    stream.set_write_timeout(Some(T)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    let raw = String::from_utf8(raw).expect("a UTF-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn scrape(lab: &Lab, addr: SocketAddr) -> Response {
    http(
        lab,
        addr,
        "GET /metrics HTTP/1.1\r\nHost: xblade\r\nAccept: text/plain\r\n\r\n",
    )
}

/// The value of the sample written exactly as `series` (name and labels).
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn scrape_a_vblade_style_daemon() {
    require_root!();
    let lab = Lab::new("metrics", LabOptions::default()).expect("lab");
    let dir = TempDir::new("metrics");
    let image = dir.image("disk.img", 8 << 20);
    let socket = dir.0.join("control.sock");
    let socket_arg = socket.to_str().unwrap();
    let daemon = Daemon::start(
        &lab,
        &dir,
        &image,
        &["--metrics-listen", "127.0.0.1:0", "--control", socket_arg],
    );
    let addr = logged_addr(&daemon);
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");

    // xbladectl status reports the same address.
    let (ok, status) = xbladectl_json(&lab, &socket, "status");
    assert!(ok.success());
    assert_eq!(status["metrics_listen"], addr.to_string());
    let (_, text, _) = xbladectl(&lab, &socket, &["status"]);
    assert!(
        text.contains(&format!("metrics at http://{addr}/metrics\n")),
        "{text}"
    );

    let response = scrape(&lab, addr);
    assert_eq!(response.status, "HTTP/1.1 200 OK");
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(
        response.header("content-length"),
        Some(response.body.len().to_string().as_str())
    );
    let body = &response.body;
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        body.lines().any(|l| l.starts_with(&format!(
            "xblade_build_info{{version=\"{version}\",revision=\""
        )) && l.ends_with("\"} 1")),
        "{body}"
    );
    for family in FAMILIES {
        assert!(
            body.contains(&format!("\n# TYPE {family} ")),
            "no {family} in\n{body}"
        );
    }
    // The start time is now-ish.
    let start = sample(body, "xblade_start_time_seconds").expect("start time");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(start <= now && now - start < 300.0, "{start} vs {now}");
    // An independent parser takes it.
    let parsed =
        prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("parse");
    assert!(parsed.samples.len() > FAMILIES.len());

    let missing = http(&lab, addr, "GET / HTTP/1.1\r\n\r\n");
    assert_eq!(missing.status, "HTTP/1.1 404 Not Found");
    let post = http(
        &lab,
        addr,
        "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(post.status, "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    let garbage = http(&lab, addr, "nonsense\r\n\r\n");
    assert_eq!(garbage.status, "HTTP/1.1 400 Bad Request");

    // Still serving AoE, and stops cleanly.
    let mut client = initiator(&lab, 2000, 2);
    let mut sector = [0u8; 512];
    client.read(0, &mut sector).expect("read");
    let exit = daemon.terminate(T);
    assert!(exit.status.success(), "{exit:?}");
}

#[test]
fn config_file_command_line_and_reload() {
    require_root!();
    let lab = Lab::new("metricsc", LabOptions::default()).expect("lab");
    let dir = TempDir::new("metricsc");
    let mut config = ConfigFile::new(&dir);
    config.exports.push(ExportSpec::new(
        1,
        0,
        dir.image("a.img", 8 << 20),
        &[lab.target_if()],
    ));
    let with_listen = |config: &ConfigFile, addr: &str| {
        config.toml().replacen(
            "[defaults]\n",
            &format!("[defaults]\nmetrics_listen = \"{addr}\"\n"),
            1,
        )
    };

    // An address that is not this host's: a clear error naming the key, nothing started.
    write_atomically(&config.path, &with_listen(&config, "192.0.2.1:9650"));
    let exit = Daemon::try_start_config(&lab, &dir, &config.path, &[], T)
        .err()
        .expect("must not start");
    assert!(!exit.status.success());
    assert!(
        exit.stderr
            .contains("metrics endpoint 192.0.2.1:9650 (metrics_listen, --metrics-listen): not an address of this host"),
        "{}",
        exit.stderr
    );

    // The command line wins over the file.
    let daemon = Daemon::start_config(
        &lab,
        &dir,
        &config.path,
        &["--metrics-listen", "127.0.0.1:0"],
    );
    let addr = logged_addr(&daemon);
    assert_eq!(scrape(&lab, addr).status, "HTTP/1.1 200 OK");

    // A second daemon on the same port: refused, saying so.
    let second_dir = TempDir::new("metricsc2");
    let mut second = ConfigFile::new(&second_dir);
    second.exports = Vec::new();
    write_atomically(&second.path, &with_listen(&second, &addr.to_string()));
    let exit = Daemon::try_start_config(&lab, &second_dir, &second.path, &[], T)
        .err()
        .expect("must not start");
    assert!(
        exit.stderr.contains(&format!(
            "metrics endpoint {addr} (metrics_listen, --metrics-listen): the address is in use"
        )),
        "{}",
        exit.stderr
    );
    drop(daemon);

    // From the file alone; a reload that moves it is refused and changes nothing.
    write_atomically(&config.path, &with_listen(&config, "127.0.0.1:0"));
    let daemon = Daemon::start_config(&lab, &dir, &config.path, &[]);
    let addr = logged_addr(&daemon);
    config.exports.push(ExportSpec::new(
        1,
        1,
        dir.image("b.img", 8 << 20),
        &[lab.target_if()],
    ));
    write_atomically(&config.path, &with_listen(&config, "127.0.0.1:9651"));
    let (status, _, stderr) = xbladectl(&lab, &config.control, &["reload"]);
    assert!(!status.success());
    assert!(
        stderr.contains("metrics_listen changed from 127.0.0.1:0 to 127.0.0.1:9651")
            && stderr.contains("restart xblade to apply it"),
        "{stderr}"
    );
    let (_, status) = xbladectl_json(&lab, &config.control, "status");
    assert_eq!(
        status["exports"].as_array().map(Vec::len),
        Some(1),
        "{status}"
    );
    assert_eq!(status["metrics_listen"], addr.to_string());
    // The same address (and a new export): applied.
    write_atomically(&config.path, &with_listen(&config, "127.0.0.1:0"));
    let (status, stdout, stderr) = xbladectl(&lab, &config.control, &["reload"]);
    assert!(status.success(), "{stdout}{stderr}");
    let body = scrape(&lab, addr).body;
    assert!(
        body.contains("xblade_requests_total{export=\"e1.1\",op=\"read\"}"),
        "{body}"
    );
}

#[test]
fn requests_total_counts_exactly_what_was_sent() {
    require_root!();
    let lab = Lab::new("metricsn", LabOptions::default()).expect("lab");
    let dir = TempDir::new("metricsn");
    let image = dir.image("disk.img", 8 << 20);
    let daemon = Daemon::start(&lab, &dir, &image, &["--metrics-listen", "127.0.0.1:0"]);
    let addr = logged_addr(&daemon);
    let series = |op: &str| format!("xblade_requests_total{{export=\"e1.0\",op=\"{op}\"}}");
    let before = scrape(&lab, addr).body;
    assert_eq!(sample(&before, &series("read")), Some(0.0), "{before}");
    assert_eq!(sample(&before, &series("write")), Some(0.0), "{before}");

    // One sector per request, one request at a time, no retransmission: each call is
    // exactly one request.
    const READS: u64 = 37;
    const WRITES: u64 = 23;
    let mut client = initiator(&lab, 5000, 0);
    let mut sector = [0u8; 512];
    for lba in 0..READS {
        client.read(lba, &mut sector).expect("read");
    }
    for lba in 0..WRITES {
        client.write(lba, &[lba as u8; 512]).expect("write");
    }
    let after = scrape(&lab, addr).body;
    assert_eq!(
        sample(&after, &series("read")),
        Some(READS as f64),
        "{after}"
    );
    assert_eq!(
        sample(&after, &series("write")),
        Some(WRITES as f64),
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "xblade_bytes_total{export=\"e1.0\",direction=\"read\"}"
        ),
        Some((READS * 512) as f64)
    );
    assert_eq!(
        sample(
            &after,
            "xblade_request_duration_seconds_count{export=\"e1.0\"}"
        )
        .map(|n| n >= (READS + WRITES) as f64),
        Some(true),
        "{after}"
    );
}
