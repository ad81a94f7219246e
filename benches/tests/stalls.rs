//! The `xblade-stalls` binary as scripts/bench.sh runs it: its JSON, and its refusals.
//! Needs no privileges and no network.

mod common;

const STALLS: &str = env!("CARGO_BIN_EXE_xblade-stalls");

fn run_stalls(args: &[&str]) -> (std::process::ExitStatus, String) {
    common::run_binary(STALLS, args)
}

#[test]
fn measures_the_cpu_it_is_given_and_writes_json() {
    let dir = std::env::temp_dir().join(format!("xblade-stalls-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("stalls.json");
    let (status, text) = run_stalls(&[
        "--cpus",
        "0",
        "--duration-s",
        "0.2",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(status.success(), "{text}");
    assert!(
        text.starts_with("CPU 0: 0.2 s, stalls >= 10 us: "),
        "{text}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).expect("valid JSON");
    std::fs::remove_dir_all(&dir).unwrap();
    let cpus = v["cpus"].as_array().expect("a list of CPUs");
    assert_eq!(cpus.len(), 1, "{v}");
    let cpu = &cpus[0];
    assert_eq!(cpu["cpu"], 0);
    let seconds = cpu["seconds"].as_f64().unwrap();
    assert!((0.2..0.5).contains(&seconds), "{v}");
    // A clock read is tens of ns: even a slow, shared machine makes a million in 0.2 s.
    assert!(cpu["clock_reads"].as_u64().unwrap() > 100_000, "{v}");
    let lost = cpu["lost_frac"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&lost), "{v}");
    assert_eq!(cpu["gaps_per_s"].as_array().unwrap().len(), 6, "{v}");
    assert_eq!(cpu["gaps_per_s"][2]["at_least_ns"], 10_000, "{v}");
    assert!(
        cpu["stalls_at_least_10us_per_s"].as_f64().unwrap() >= 0.0,
        "{v}"
    );
}

#[test]
fn bad_input_is_refused_without_a_panic() {
    let (status, text) = run_stalls(&["--cpus", "zero"]);
    assert_eq!(status.code(), Some(2), "{text}");

    let (status, text) = run_stalls(&["--cpus", "0,0"]);
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("twice"), "{text}");

    let (status, text) = run_stalls(&["--duration-s", "0"]);
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("0.01 to 600"), "{text}");

    // A CPU this machine does not have: refused by the kernel, named in the error.
    let (status, text) = run_stalls(&["--cpus", "1000", "--duration-s", "0.01"]);
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("CPU 1000"), "{text}");
    assert!(!text.contains("panicked"), "{text}");

    let (status, text) = run_stalls(&["--help"]);
    assert!(status.success(), "{text}");
    assert!(text.contains("scripts/bench.sh"), "{text}");
}
