//! Talking to nodes whose listeners speak TLS, trusting a test CA: an S3
//! client, curl, admin GETs and metrics.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::{Certificate, ClientOptions, ObjectStore};

use super::{ACCESS_KEY, SECRET_KEY, TestCa, metric_in};

/// An S3 client of `endpoint` trusting `ca`.
pub fn client_trusting(endpoint: &str, ca: &TestCa, bucket: &str) -> Arc<dyn ObjectStore> {
    let pem = std::fs::read(&ca.cert).expect("read the CA");
    let options = ClientOptions::new()
        .with_root_certificate(Certificate::from_pem(&pem).expect("CA certificate"))
        .with_timeout(Duration::from_secs(120));
    Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_region("us-east-1")
            .with_bucket_name(bucket)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_virtual_hosted_style_request(false)
            .with_client_options(options)
            .build()
            .expect("client"),
    )
}

/// curl trusting `ca`, its body discarded: (exit code, what `-w` wrote).
pub fn curl_trusting(ca: &TestCa, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--max-time", "20", "--cacert"])
        .arg(&ca.cert)
        .args(args)
        .output()
        .expect("curl");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

/// A GET of an admin path with curl trusting `ca` (unless `admin` is
/// plain http): the body.
pub fn admin_get(ca: &TestCa, admin: &str, path: &str) -> String {
    let mut command = Command::new("curl");
    command.args(["-s", "--max-time", "20"]);
    if admin.starts_with("https://") {
        command.arg("--cacert").arg(&ca.cert);
    }
    let out = command
        .arg(format!("{admin}{path}"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The sum of a metric's series whose lines contain `filter`, on a node
/// whose admin endpoint may speak TLS.
pub fn metric_trusting(ca: &TestCa, admin: &str, name: &str, filter: &str) -> f64 {
    metric_in(&admin_get(ca, admin, "/metrics"), name, filter)
}

/// The ids of the members a node's `/cluster/status` lists (none when it
/// does not answer).
pub fn member_ids(ca: &TestCa, admin: &str) -> Vec<String> {
    serde_json::from_str::<serde_json::Value>(&admin_get(ca, admin, "/cluster/status"))
        .ok()
        .and_then(|v| {
            v["members"].as_array().map(|m| {
                m.iter()
                    .filter_map(|m| m["id"].as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// CreateBucket with curl's SigV4, trusting `ca`.
pub fn create_bucket_trusting(endpoint: &str, ca: &TestCa, bucket: &str) {
    let (_, code) = curl_trusting(
        ca,
        &[
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "--user",
            &format!("{ACCESS_KEY}:{SECRET_KEY}"),
            "-H",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
            &format!("{endpoint}/{bucket}"),
        ],
    );
    assert_eq!(code, "200", "create bucket {bucket}");
}
