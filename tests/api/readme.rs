//! The README's walkthrough, run as written (only the server address and root key are
//! substituted), so the first thing a newcomer copies keeps working.

use convergence_tests::ROOT_KEY;

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_walkthrough_works_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme.split("## Walkthrough").nth(1).expect("a Walkthrough section");
    let block = section.split("```sh\n").nth(1).and_then(|b| b.split("```").next()).expect("a sh block");
    assert!(block.contains("BASE=http://localhost:8080") && block.contains("ROOT=$(cat .data/root_api_key)"));

    // With the provider sandbox on (the local default) and its bases following the bound port.
    let app = crate::sandbox::spawn().await;
    let script = block
        .replace("BASE=http://localhost:8080", &format!("BASE={}", app.base))
        .replace("ROOT=$(cat .data/root_api_key)", &format!("ROOT={ROOT_KEY}"));
    let out =
        tokio::process::Command::new("bash").arg("-euo").arg("pipefail").arg("-c").arg(&script).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "walkthrough failed:\n{stdout}\n{stderr}");
    assert!(!stdout.contains("\"error\""), "a step failed:\n{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 13, "one line per step:\n{stdout}");
    assert!(lines[3].starts_with("acme_corp_api_"), "the key was captured: {}", lines[3]);
    assert!(lines[6].contains("revoked_fingerprints"), "{}", lines[6]);
    assert!(lines[7].contains("\"status\":\"VALID\""), "the sandbox key was validated: {}", lines[7]);
    assert_eq!(lines[8].len(), 36, "the run id was captured: {}", lines[8]);
    let run: serde_json::Value = serde_json::from_str(lines[9]).expect("the run as JSON");
    assert_eq!(run["status"], "SUCCESS", "{run}");
    assert!(run["totals"]["rows_written"].as_i64().unwrap_or(0) > 0, "{run}");
    assert!(lines[10].contains("\"status\":\"VALID\""), "the sandbox service account was accepted: {}", lines[10]);
    let gcp: serde_json::Value = serde_json::from_str(lines[11]).expect("the gcp run as JSON");
    assert_eq!(gcp["status"], "SUCCESS", "{gcp}");
    let metrics = &gcp["steps"][0]["metrics"];
    assert_eq!((metrics["transfer"].as_str(), metrics["rows"].as_i64()), (Some("server_side"), Some(1500)), "{gcp}");
    let types: Vec<&str> =
        metrics["totals"].as_array().unwrap().iter().filter_map(|t| t["cost_type"].as_str()).collect();
    for cost_type in ["regular", "tax", "adjustment", "rounding_error"] {
        assert!(types.contains(&cost_type), "{cost_type} in {metrics}");
    }
    let tick: serde_json::Value = serde_json::from_str(lines[12]).expect("the tick's report as JSON");
    let submitted = &tick["organizations"]["acme_corp"];
    assert_eq!(submitted["acme_corp-openai-usage-cost"]["status"], "submitted", "{tick}");
    assert_eq!(submitted["acme_corp-openai-subscriptions"]["status"], "submitted", "{tick}");
    assert!(submitted["acme_corp-gcp-cost-billing"]["status"].is_string(), "the tick covers gcp billing: {tick}");
    assert_eq!(app.count("org_api_keys", Some("acme_corp")).await, 2);
}
