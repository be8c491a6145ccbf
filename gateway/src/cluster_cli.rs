//! `ferry cluster status|weight`, `ferry warmup`, `ferry cache
//! evict|pin|unpin|pins`, `ferry import` and `ferry health`: the admin API
//! of a node, from the command line.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::cli::{
    AdminEndpoint, ClusterCommand, EvictArgs, HealthArgs, ImportArgs, PinArgs, UnpinArgs,
    WarmupArgs,
};

/// A client of a node's admin endpoint, trusting `ca_file` besides the
/// system roots; `timeout` bounds a whole answer (none for streams).
fn client(ca_file: Option<&Path>, timeout: Option<Duration>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder().no_proxy();
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
        let roots = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
        builder = builder.tls_certs_merge(roots);
    }
    builder.build().map_err(|e| e.to_string())
}

const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A request to the admin endpoint's `path`: a POST of `body` as JSON, or
/// a GET without one; with the admin token when given. Answers the body of
/// a success.
pub(crate) async fn admin_call(
    admin: &AdminEndpoint,
    path: &str,
    body: Option<Value>,
) -> Result<String, String> {
    let url = format!("{}{path}", admin.admin.trim_end_matches('/'));
    let http = client(admin.ca_file.as_deref(), Some(ANSWER_TIMEOUT))?;
    let mut request = match body {
        Some(body) => http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_string()),
        None => http.get(&url),
    };
    if let Some(token) = &admin.token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
    answer(response).await
}

async fn answer(response: reqwest::Response) -> Result<String, String> {
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(text)
    } else {
        Err(format!("the node answered {status}: {}", text.trim()))
    }
}

pub async fn run(command: ClusterCommand) -> Result<bool, String> {
    match command {
        ClusterCommand::Status { admin, json } => status(&admin, json).await,
        ClusterCommand::Weight {
            node,
            weight,
            reset,
            admin,
        } => {
            if weight.is_none() && !reset {
                return Err("give a weight, or --reset".into());
            }
            admin_call(
                &admin,
                "/cluster/weight",
                Some(serde_json::json!({ "node": node, "weight": weight })),
            )
            .await?;
            match weight {
                Some(w) => {
                    println!("{node}: weight {w} (every node's view follows within seconds)")
                }
                None => println!("{node}: weight reset to its configured one"),
            }
            Ok(true)
        }
    }
}

async fn status(admin: &AdminEndpoint, json: bool) -> Result<bool, String> {
    let url = format!("{}/cluster/status", admin.admin.trim_end_matches('/'));
    let response = client(admin.ca_file.as_deref(), Some(ANSWER_TIMEOUT))?
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let text = answer(response).await?;
    if json {
        println!("{text}");
        return Ok(true);
    }
    let status: Value = serde_json::from_str(&text).map_err(|e| format!("{url}: {e}"))?;
    println!(
        "node {}  replicas {}  membership {}",
        status["node"].as_str().unwrap_or("?"),
        status["replicas"].as_u64().unwrap_or(0),
        if status["dynamic"].as_bool() == Some(true) {
            "redis"
        } else {
            "static"
        }
    );
    println!(
        "{:<24} {:<24} {:>7} {:>10} {:>7} {:>10} {:>6}",
        "member", "address", "weight", "capacity", "share", "heartbeat", "health"
    );
    for member in status["members"].as_array().into_iter().flatten() {
        let age = member["heartbeat_age_ms"]
            .as_i64()
            .map_or("-".to_string(), |ms| {
                format!("{:.1}s ago", ms as f64 / 1000.0)
            });
        // What its tiers hold (memory and disk), as it announced it.
        let capacity = match member["capacity"].as_u64() {
            Some(bytes) if bytes > 0 => format!("{:.1}GiB", bytes as f64 / f64::from(1u32 << 30)),
            _ => "-".to_string(),
        };
        println!(
            "{:<24} {:<24} {:>7} {:>10} {:>6.1}% {:>10} {:>6}",
            member["id"].as_str().unwrap_or("?"),
            member["address"].as_str().unwrap_or("?"),
            member["weight"].as_u64().unwrap_or(0),
            capacity,
            member["expected_share"].as_f64().unwrap_or(0.0) * 100.0,
            age,
            if member["down"].as_bool() == Some(true) {
                "down"
            } else {
                "up"
            }
        );
    }
    let served = &status["served"];
    if served.is_object() {
        println!(
            "this node served {} blocks from memory, {} from disk, {} from outside (hit ratio {:.1}%)",
            served["memory"].as_u64().unwrap_or(0),
            served["disk"].as_u64().unwrap_or(0),
            served["outside"].as_u64().unwrap_or(0),
            served["hit_ratio"].as_f64().unwrap_or(0.0) * 100.0
        );
    }
    Ok(true)
}

/// `ferry health`: whether the node answers `/health` with 200 within the
/// timeout. Its answer is printed either way: it says what is wrong.
pub async fn health(args: HealthArgs) -> Result<bool, String> {
    let url = format!("{}/health", args.admin.trim_end_matches('/'));
    let http = client(args.ca_file.as_deref(), Some(args.timeout))?;
    let response = http
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| format!("{url}: {e}"))?;
    if status.is_success() {
        print!("{text}");
        Ok(true)
    } else {
        eprintln!("{url}: {status}: {}", text.trim());
        Ok(false)
    }
}

/// BUCKET/PREFIX as the warm-up endpoint's fields.
fn bucket_and_prefix(target: &str) -> (String, String) {
    match target.split_once('/') {
        Some((bucket, prefix)) => (bucket.to_string(), prefix.to_string()),
        None => (target.to_string(), String::new()),
    }
}

/// Runs a job of the warm-up endpoint (`body`) with a progress bar of its
/// bytes, answering its last event.
async fn prefix_job(
    admin: &AdminEndpoint,
    body: serde_json::Value,
) -> Result<serde_json::Value, String> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
        )
        .map_err(|e| e.to_string())?,
    );
    follow_job(admin, "/warmup", body, &bar, |event| {
        match event["event"].as_str() {
            Some("plan") => {
                bar.set_length(event["bytes"].as_u64().unwrap_or(0));
                bar.set_message(format!("{} objects", event["objects"]));
            }
            Some("progress") => {
                bar.set_position(event["bytes"].as_u64().unwrap_or(0));
                bar.set_message(format!(
                    "{} objects, {} failed",
                    event["objects"], event["failures"]
                ));
            }
            _ => {}
        }
    })
    .await
}

/// `ferry cache evict`: drops a prefix's blocks from every member.
pub async fn evict(args: EvictArgs) -> Result<bool, String> {
    let (bucket, prefix) = bucket_and_prefix(&args.target);
    let body = serde_json::json!({
        "bucket": bucket, "prefix": prefix, "evict": true,
        "concurrency": args.concurrency,
    });
    let done = prefix_job(&args.admin, body).await?;
    let number = |name: &str| done[name].as_u64().unwrap_or(0);
    println!(
        "evicted {} objects, {} bytes: {} bytes were cached and are gone from every member, {} failures",
        number("objects"),
        number("bytes"),
        number("bytes_cached"),
        number("failures")
    );
    Ok(number("failures") == 0)
}

/// `ferry warmup`: starts the job on a node and shows its progress.
pub async fn warmup(args: WarmupArgs) -> Result<bool, String> {
    let (bucket, prefix) = bucket_and_prefix(&args.target);
    let body = serde_json::json!({
        "bucket": bucket, "prefix": prefix, "check": args.check,
        "force": args.force, "concurrency": args.concurrency,
    });
    let started = std::time::Instant::now();
    let done = prefix_job(&args.admin, body).await?;

    let number = |name: &str| done[name].as_u64().unwrap_or(0);
    let (bytes, cached, loaded, failures) = (
        number("bytes"),
        number("bytes_cached"),
        number("bytes_loaded"),
        number("failures"),
    );
    if args.check {
        let share = if bytes == 0 {
            100.0
        } else {
            cached as f64 * 100.0 / bytes as f64
        };
        println!(
            "{share:.1}% of {bytes} bytes in {} objects cached on their owners",
            number("objects")
        );
        let pinned = number("bytes_pinned");
        if pinned > 0 {
            println!(
                "{:.1}% in the pinned share of their disks",
                pinned as f64 * 100.0 / bytes.max(1) as f64
            );
        }
    } else {
        let secs = started.elapsed().as_secs_f64();
        println!(
            "warmed {} objects, {bytes} bytes in {secs:.1}s ({:.1} MB/s): {loaded} bytes loaded from the store, {cached} already cached, {failures} failures",
            number("objects"),
            bytes as f64 / secs.max(1e-9) / 1e6
        );
    }
    Ok(failures == 0)
}

/// `ferry import`: starts the import on a node and shows its progress.
pub async fn import(args: ImportArgs) -> Result<bool, String> {
    let (store, source_prefix) = ferry_config::split_path(&args.source);
    let (bucket, target_prefix) = ferry_config::split_path(&args.to);
    let body = serde_json::json!({
        "store": store, "source_prefix": source_prefix, "bucket": bucket,
        "target_prefix": target_prefix, "delete": args.delete,
    });
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} objects listed {per_sec} {msg}")
            .map_err(|e| e.to_string())?,
    );
    let done = follow_job(&args.admin, "/import", body, &bar, |event| {
        if event["event"].as_str() == Some("progress") {
            bar.set_position(event["listed"].as_u64().unwrap_or(0));
            bar.set_message(format!(
                "{} added, {} updated",
                event["added"], event["updated"]
            ));
        }
    })
    .await?;

    let n = |name: &str| done[name].as_u64().unwrap_or(0);
    println!(
        "listed {}, added {}, updated {}, unchanged {}, deleted {}, conflicts {}, refused {}, failures {}",
        n("listed"),
        n("added"),
        n("updated"),
        n("unchanged"),
        n("deleted"),
        n("conflicts"),
        n("refused"),
        n("failures")
    );
    Ok(n("failures") == 0)
}

/// Starts a job with a POST of `body` to `path` on the admin endpoint and
/// follows its JSON lines, handing each to `on_event`, until its `done`
/// line (returned) or a `refused` one (an error with its reason).
async fn follow_job(
    admin: &AdminEndpoint,
    path: &str,
    body: Value,
    bar: &indicatif::ProgressBar,
    mut on_event: impl FnMut(&Value),
) -> Result<Value, String> {
    let url = format!("{}{path}", admin.admin.trim_end_matches('/'));
    let http = client(admin.ca_file.as_deref(), None)?;
    let mut request = http
        .post(&url)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(token) = &admin.token {
        request = request.bearer_auth(token);
    }
    let mut response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(answer(response).await.err().unwrap_or_default());
    }
    let mut pending = String::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(at) = pending.find('\n') {
            let line: String = pending.drain(..=at).collect();
            let event: Value = serde_json::from_str(line.trim()).map_err(|e| e.to_string())?;
            match event["event"].as_str() {
                Some("done") => {
                    bar.finish_and_clear();
                    return Ok(event);
                }
                Some("refused") => {
                    bar.abandon();
                    return Err(event["reason"].as_str().unwrap_or("refused").to_string());
                }
                _ => on_event(&event),
            }
        }
    }
    bar.abandon();
    Err(format!("{url}: the job ended without a summary"))
}

/// Sends a pin change (`pinned` false: unpin) to the admin endpoint and
/// answers the pins in force there.
async fn change_pin(admin: &AdminEndpoint, prefix: &str, pinned: bool) -> Result<Value, String> {
    let body = serde_json::json!({ "prefix": prefix, "pinned": pinned });
    let text = admin_call(admin, "/cache/pins", Some(body)).await?;
    serde_json::from_str(&text).map_err(|e| format!("/cache/pins: {e}"))
}

/// `ferry cache pin`: pins the prefix, then (unless `--no-warm`) warms
/// it, which loads its missing blocks and moves cached ones into the
/// pinned share.
pub async fn pin(args: PinArgs) -> Result<bool, String> {
    change_pin(&args.admin, &args.target, true).await?;
    println!(
        "pinned {} (every member follows within seconds)",
        args.target
    );
    if args.no_warm {
        return Ok(true);
    }
    let (bucket, prefix) = bucket_and_prefix(&args.target);
    let body = serde_json::json!({
        "bucket": bucket, "prefix": prefix, "concurrency": args.concurrency,
        // A pinned prefix larger than the tiers still pins what fits.
        "force": true,
    });
    let warmed = prefix_job(&args.admin, body.clone()).await?;
    // Then a check: where the prefix's blocks are now.
    let mut check = body;
    check["check"] = serde_json::json!(true);
    let checked = prefix_job(&args.admin, check).await?;
    let (bytes, pinned) = (
        checked["bytes"].as_u64().unwrap_or(0),
        checked["bytes_pinned"].as_u64().unwrap_or(0),
    );
    println!(
        "warmed {} objects, {bytes} bytes ({} loaded from the store, {} failures): {:.1}% in the pinned share of their owners",
        warmed["objects"].as_u64().unwrap_or(0),
        warmed["bytes_loaded"].as_u64().unwrap_or(0),
        warmed["failures"].as_u64().unwrap_or(0),
        if bytes == 0 {
            100.0
        } else {
            pinned as f64 * 100.0 / bytes as f64
        }
    );
    Ok(warmed["failures"].as_u64() == Some(0))
}

/// `ferry cache unpin`.
pub async fn unpin(args: UnpinArgs) -> Result<bool, String> {
    let now = change_pin(&args.admin, &args.target, false).await?;
    let still = now["pins"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p["prefix"].as_str() == Some(args.target.as_str()));
    if still {
        println!(
            "{} is pinned in the config ([[cache.pin]]): remove it there",
            args.target
        );
        return Ok(false);
    }
    println!("unpinned {}", args.target);
    Ok(true)
}

/// `ferry cache pins`.
pub async fn pins(admin: AdminEndpoint) -> Result<bool, String> {
    let text = admin_call(&admin, "/cache/pins", None).await?;
    let list: Value = serde_json::from_str(&text).map_err(|e| format!("/cache/pins: {e}"))?;
    for pin in list["pins"].as_array().into_iter().flatten() {
        println!(
            "{:<8} {}",
            pin["source"].as_str().unwrap_or("?"),
            pin["prefix"].as_str().unwrap_or("?")
        );
    }
    Ok(true)
}
