//! `lull loadtest ingest --chaos` with the real binary: it starts its own lull
//! children and redis-server, kills a child and wipes Redis while the load runs,
//! reports each fault, and leaves nothing running. Other promises (ordering, no
//! split) are the report's to judge, not this test's: only "no message lost" is
//! asserted, which holds.

use crate::helpers::TestDb;
use serde_json::Value;
use std::process::{Command, Stdio};

#[test]
fn a_chaos_run_kills_a_child_and_wipes_redis_and_reports_every_fault() {
    let db = TestDb::new();
    let output = Command::new(env!("CARGO_BIN_EXE_lull"))
        .args(["loadtest", "ingest", "--chaos", "--json"])
        .args(["--instances", "2", "--database-url", &db.url])
        .args([
            "--conversations",
            "16",
            "--bursts",
            "12",
            "--burst-size",
            "3",
        ])
        .args(["--concurrency", "16", "--duplicate-every", "7"])
        .args(["--graph-listen", "127.0.0.1:0", "--settle-seconds", "10"])
        .args(["--faults", "kill,flushall,redis-restart"])
        .args([
            "--chaos-every-seconds",
            "0.7",
            "--restart-after-seconds",
            "0.3",
        ])
        .args(["--child-env", "LOCK_TTL_SECONDS=1"])
        .args(["--child-env", "SCANNER_INTERVAL=0.05"])
        .args(["--child-env", "RECONCILE_INTERVAL_SECONDS=1"])
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .expect("the lull binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|_| panic!("one JSON object\n{stdout}\n{stderr}"));
    let chaos = &report["chaos"];
    let faults = chaos["faults"].as_array().expect("a list of faults");
    let kinds: Vec<&str> = faults.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"kill"), "{kinds:?}\n{stderr}");
    assert!(kinds.contains(&"flushall"), "{kinds:?}");
    for fault in faults {
        assert_eq!(fault["error"], Value::Null, "{fault}");
        assert!(fault["at_seconds"].as_f64().unwrap() > 0.0, "{fault}");
        assert!(fault["back_after_seconds"].as_f64().is_some(), "{fault}");
        assert!(fault.get("recovery_seconds").is_some(), "{fault}");
    }
    let kill = faults.iter().find(|f| f["kind"] == "kill").unwrap();
    assert!(
        kill["target"].as_str().unwrap().starts_with("lull-"),
        "{kill}"
    );
    assert!(chaos["redis_commands"].as_u64().unwrap() > 0, "{chaos}");
    assert!(
        chaos["redis_commands_per_reply"].as_f64().unwrap() > 0.0,
        "{chaos}"
    );
    assert_eq!(report["bursts"], 16 * 12);
    assert_eq!(report["lost_bursts"], 0, "{}", report["violations"]);
    // Splits are judged by the children's window, not the flag's default.
    assert_eq!(report["window_seconds"], 0.2);
    assert!(report["split_at_long_gaps"].is_u64(), "{report}");
    // Every child stopped, and the run's redis-server killed.
    let urls = chaos["instance_urls"].as_array().unwrap();
    assert_eq!(urls.len(), 2);
    let redis = chaos["redis_url"].as_str().unwrap().replace("redis://", "");
    for address in urls
        .iter()
        .map(|u| u.as_str().unwrap().replace("http://", ""))
        .chain([redis])
    {
        assert!(
            std::net::TcpStream::connect(&address).is_err(),
            "{address} still listens"
        );
    }
}
