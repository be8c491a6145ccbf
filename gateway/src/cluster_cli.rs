//! `ferry cluster status|weight`: the admin API of any node, from the
//! command line.

use serde_json::Value;

use crate::cli::{AdminEndpoint, ClusterCommand};

fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())
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
            let url = format!("{}/cluster/weight", admin.admin.trim_end_matches('/'));
            let mut request = client()?
                .post(&url)
                .header("content-type", "application/json")
                .body(serde_json::json!({ "node": node, "weight": weight }).to_string());
            if let Some(token) = &admin.token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
            answer(response).await?;
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
    let response = client()?
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
        status["replicas"],
        if status["dynamic"].as_bool() == Some(true) {
            "redis"
        } else {
            "static"
        }
    );
    println!(
        "{:<24} {:<24} {:>7} {:>7} {:>10} {:>6}",
        "member", "address", "weight", "share", "heartbeat", "health"
    );
    for member in status["members"].as_array().into_iter().flatten() {
        let age = member["heartbeat_age_ms"]
            .as_i64()
            .map_or("-".to_string(), |ms| {
                format!("{:.1}s ago", ms as f64 / 1000.0)
            });
        println!(
            "{:<24} {:<24} {:>7} {:>6.1}% {:>10} {:>6}",
            member["id"].as_str().unwrap_or("?"),
            member["address"].as_str().unwrap_or("?"),
            member["weight"],
            member["expected_share"].as_f64().unwrap_or(0.0) * 100.0,
            age,
            if member["down"].as_bool() == Some(true) {
                "down"
            } else {
                "up"
            }
        );
    }
    Ok(true)
}
