//! What a client without credentials can cost a node: requests refused
//! before their bodies are read.

mod common;

use common::*;

/// The peak resident memory of process `pid`, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

/// An anonymous browser-form upload (POST, multipart/form-data) is refused
/// before its body is read: s3s would otherwise hold the whole form in
/// memory before the access check.
#[tokio::test]
async fn an_anonymous_form_upload_is_refused_before_its_body_is_read() {
    let dir = temp_dir();
    let server = Server::start(Launch::new(&dir.path().join("data")));
    create_bucket(&server.endpoint, "models").await;
    let form = dir.path().join("form-file");
    let file = std::fs::File::create(&form).expect("create");
    file.set_len(256 << 20).expect("size the form's file");
    let before = peak_rss(server.pid());
    for expect in ["Expect:", "Expect: 100-continue"] {
        let (status, body) = curl(&[
            "-X",
            "POST",
            "-H",
            expect,
            "-F",
            "key=uploaded.bin",
            "-F",
            &format!("file=@{}", form.display()),
            &format!("{}/models", server.endpoint),
        ]);
        if expect == "Expect:" && status == 0 {
            // A client that sends the body without asking first may see
            // the connection closed under it (the node answers and closes
            // rather than read the form) before it reads the answer.
            continue;
        }
        assert_eq!(status, 501, "{expect}: {body}");
        assert!(body.contains("NotImplemented"), "{body}");
    }
    let grew = peak_rss(server.pid()).saturating_sub(before);
    assert!(
        grew < 64 << 20,
        "the node's peak memory grew by {} MiB for a 256 MiB form",
        grew >> 20
    );
    // Nothing was stored.
    let (status, _) = curl(&[&format!("{}/models/uploaded.bin", server.endpoint)]);
    assert_ne!(status, 200);
}

/// Bodies without a length that reached the node's spool, in bytes.
fn spooled(server: &Server) -> f64 {
    metric(&server.admin, "ferry_spool_received_bytes_total", "")
}

/// A PUT without a Content-Length is read to its end before s3s sees
/// it; unsigned, or signed with a wrong key or signature, not a byte of
/// it may be read.
#[tokio::test]
async fn an_unauthenticated_put_without_a_length_is_refused_before_its_body_is_read() {
    let dir = temp_dir();
    let server = Server::start(Launch::new(&dir.path().join("data")));
    create_bucket(&server.endpoint, "models").await;
    let url = format!("{}/models/chunked.bin", server.endpoint);
    let sigv4 = |secret: &str| {
        vec![
            "--aws-sigv4".to_string(),
            "aws:amz:us-east-1:s3".to_string(),
            "--user".to_string(),
            format!("{ACCESS_KEY}:{secret}"),
            "-H".to_string(),
            "x-amz-content-sha256: UNSIGNED-PAYLOAD".to_string(),
        ]
    };
    let wrong_secret = sigv4("not-the-secret");
    let unknown_key = {
        let mut args = sigv4(SECRET_KEY);
        args[3] = format!("someone:{SECRET_KEY}");
        args
    };
    // SigV2 with a signature of the right length that is not the right one.
    let date = httpdate_now();
    let sigv2 = vec![
        "-H".to_string(),
        format!("Date: {date}"),
        "-H".to_string(),
        format!("Authorization: AWS {ACCESS_KEY}:{}=", "A".repeat(27)),
    ];
    let cases: [(&str, Vec<String>, u16, &str); 4] = [
        ("anonymous", Vec::new(), 403, "AccessDenied"),
        ("wrong secret", wrong_secret, 403, "SignatureDoesNotMatch"),
        ("unknown key", unknown_key, 403, "InvalidAccessKeyId"),
        ("forged SigV2", sigv2, 403, "SignatureDoesNotMatch"),
    ];
    for (what, auth, status, code) in cases {
        let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
        let (got, body) = chunked_put(&url, &auth, 64 << 20);
        assert_eq!(got, status, "{what}: {body}");
        assert!(body.contains(code), "{what}: {body}");
        assert_eq!(spooled(&server), 0.0, "{what}: its body was read");
    }
    let (status, _) = curl(&[&url]);
    assert_ne!(status, 200, "nothing was stored");
}
