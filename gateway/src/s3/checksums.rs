//! Digests of a PUT body: the MD5 behind the ETag, and the flexible
//! checksums (CRC32, CRC32C, CRC64NVME, SHA1, SHA256) that clients send in
//! a header or, with `aws-chunked` bodies, in a trailer after the body.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::HeaderMap;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Md5, Sha1, Sha256};
use s3s::dto::{Checksum, ChecksumAlgorithm, PutObjectInput, UploadPartInput};
use s3s::{S3Result, s3_error};

/// The checksum algorithms S3 defines, by their wire name.
const ALGORITHMS: [&str; 5] = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"];

fn header_name(algorithm: &str) -> String {
    format!("x-amz-checksum-{}", algorithm.to_ascii_lowercase())
}

/// What the request claims about its body.
#[derive(Debug, Default)]
pub struct Claims {
    /// Algorithms to compute.
    algorithms: Vec<&'static str>,
    /// Values sent in headers, by algorithm.
    values: BTreeMap<&'static str, String>,
    /// The algorithm whose value arrives in the trailer, if any.
    trailer: Option<&'static str>,
    /// Decoded Content-MD5.
    content_md5: Option<[u8; 16]>,
}

pub fn algorithm_named(name: &str) -> Option<&'static str> {
    ALGORITHMS
        .iter()
        .copied()
        .find(|a| a.eq_ignore_ascii_case(name))
}

/// The five `checksum_*` fields of any s3s input or part, by algorithm.
macro_rules! checksum_fields {
    ($x:expr) => {
        [
            ("CRC32", $x.checksum_crc32.as_ref()),
            ("CRC32C", $x.checksum_crc32c.as_ref()),
            ("CRC64NVME", $x.checksum_crc64nvme.as_ref()),
            ("SHA1", $x.checksum_sha1.as_ref()),
            ("SHA256", $x.checksum_sha256.as_ref()),
        ]
    };
}
pub(super) use checksum_fields;

impl Claims {
    pub fn from_put(input: &PutObjectInput, headers: &HeaderMap) -> S3Result<Claims> {
        Claims::new(
            checksum_fields!(input),
            input.checksum_algorithm.as_ref(),
            input.content_md5.as_ref(),
            headers,
        )
    }

    pub fn from_part(input: &UploadPartInput, headers: &HeaderMap) -> S3Result<Claims> {
        Claims::new(
            checksum_fields!(input),
            input.checksum_algorithm.as_ref(),
            input.content_md5.as_ref(),
            headers,
        )
    }

    fn new(
        header_values: [(&'static str, Option<&String>); 5],
        algorithm: Option<&ChecksumAlgorithm>,
        content_md5: Option<&String>,
        headers: &HeaderMap,
    ) -> S3Result<Claims> {
        let mut claims = Claims::default();
        for (algorithm, value) in header_values {
            if let Some(value) = value {
                claims.values.insert(algorithm, value.clone());
                claims.algorithms.push(algorithm);
            }
        }
        if let Some(requested) = algorithm {
            let Some(algorithm) = algorithm_named(requested.as_str()) else {
                return Err(s3_error!(
                    InvalidRequest,
                    "Unknown checksum algorithm {}",
                    requested.as_str()
                ));
            };
            claims.algorithms.push(algorithm);
        }
        if let Some(trailer) = headers.get("x-amz-trailer").and_then(|v| v.to_str().ok()) {
            let name = trailer.trim().to_ascii_lowercase();
            if let Some(algorithm) = name
                .strip_prefix("x-amz-checksum-")
                .and_then(algorithm_named)
            {
                claims.trailer = Some(algorithm);
                claims.algorithms.push(algorithm);
            }
        }
        claims.algorithms.sort_unstable();
        claims.algorithms.dedup();
        if claims.algorithms.len() > 1 {
            return Err(s3_error!(
                InvalidRequest,
                "Expecting a single x-amz-checksum- header"
            ));
        }
        // s3s reads an empty header as no header; S3 refuses it.
        let content_md5 = match (content_md5, headers.get("content-md5")) {
            (None, Some(_)) => Some(&String::new()),
            (md5, _) => md5,
        };
        if let Some(md5) = content_md5 {
            let bytes = BASE64.decode(md5.trim()).map_err(|_| {
                s3_error!(
                    InvalidDigest,
                    "The Content-MD5 you specified is not valid base64"
                )
            })?;
            let digest: [u8; 16] = bytes.try_into().map_err(|_| {
                s3_error!(
                    InvalidDigest,
                    "The Content-MD5 you specified is not 16 bytes"
                )
            })?;
            claims.content_md5 = Some(digest);
        }
        Ok(claims)
    }
}

/// Running digests over a body.
pub struct BodyDigest {
    md5: Md5,
    checksums: ChecksumHasher,
    pub len: u64,
}

/// The verified digests of a complete body.
pub struct Verified {
    pub md5_hex: String,
    /// By algorithm name, base64.
    pub checksums: BTreeMap<String, String>,
}

impl BodyDigest {
    pub fn new(claims: &Claims) -> BodyDigest {
        let mut checksums = ChecksumHasher::default();
        for algorithm in &claims.algorithms {
            match *algorithm {
                "CRC32" => checksums.crc32 = Some(Crc32::new()),
                "CRC32C" => checksums.crc32c = Some(Crc32c::new()),
                "CRC64NVME" => checksums.crc64nvme = Some(Crc64Nvme::new()),
                "SHA1" => checksums.sha1 = Some(Sha1::new()),
                _ => checksums.sha256 = Some(Sha256::new()),
            }
        }
        BodyDigest {
            md5: Md5::new(),
            checksums,
            len: 0,
        }
    }

    pub fn update(&mut self, chunk: &[u8]) {
        self.md5.update(chunk);
        self.checksums.update(chunk);
        self.len += chunk.len() as u64;
    }

    /// Checks every claim against what was computed. `trailers` are the
    /// headers that followed an `aws-chunked` body.
    pub fn verify(self, claims: &Claims, trailers: Option<&HeaderMap>) -> S3Result<Verified> {
        let md5 = self.md5.finalize();
        if let Some(expected) = claims.content_md5
            && expected != md5
        {
            return Err(s3_error!(
                BadDigest,
                "The Content-MD5 you specified did not match what we received."
            ));
        }
        let computed = by_name(self.checksums.finalize());
        let mut claimed = claims.values.clone();
        if let Some(algorithm) = claims.trailer {
            let value = trailers
                .and_then(|t| t.get(header_name(algorithm)))
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    s3_error!(
                        InvalidRequest,
                        "The trailing {} checksum is missing",
                        header_name(algorithm)
                    )
                })?;
            claimed.insert(algorithm, value.trim().to_string());
        }
        for (algorithm, value) in &claimed {
            if computed.get(*algorithm) != Some(value) {
                return Err(s3_error!(
                    BadDigest,
                    "The {algorithm} you specified did not match the calculated checksum."
                ));
            }
        }
        Ok(Verified {
            md5_hex: hex::encode(md5),
            checksums: computed
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        })
    }
}

fn by_name(sum: Checksum) -> BTreeMap<&'static str, String> {
    [
        ("CRC32", sum.checksum_crc32),
        ("CRC32C", sum.checksum_crc32c),
        ("CRC64NVME", sum.checksum_crc64nvme),
        ("SHA1", sum.checksum_sha1),
        ("SHA256", sum.checksum_sha256),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect()
}

/// Stored checksums as the s3s output fields want them.
pub fn to_dto(stored: &BTreeMap<String, String>) -> Checksum {
    Checksum {
        checksum_crc32: stored.get("CRC32").cloned(),
        checksum_crc32c: stored.get("CRC32C").cloned(),
        checksum_crc64nvme: stored.get("CRC64NVME").cloned(),
        checksum_sha1: stored.get("SHA1").cloned(),
        checksum_sha256: stored.get("SHA256").cloned(),
        ..Checksum::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_input() -> PutObjectInput {
        PutObjectInput::builder()
            .bucket("b".into())
            .key("k".into())
            .build()
            .expect("input")
    }

    #[test]
    fn header_checksum_is_verified() {
        let mut input = put_input();
        // CRC32 of "hello" is 0x3610a686.
        input.checksum_crc32 = Some(BASE64.encode(0x3610_a686_u32.to_be_bytes()));
        let claims = Claims::from_put(&input, &HeaderMap::new()).expect("claims");
        let mut digest = BodyDigest::new(&claims);
        digest.update(b"hello");
        let verified = digest.verify(&claims, None).expect("matches");
        assert_eq!(verified.md5_hex, "5d41402abc4b2a76b9719d911017c592");
        assert!(verified.checksums.contains_key("CRC32"));

        let mut digest = BodyDigest::new(&claims);
        digest.update(b"hellO");
        assert!(digest.verify(&claims, None).is_err());
    }

    #[test]
    fn trailer_checksum_is_required_and_verified() {
        let input = put_input();
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amz-trailer",
            "x-amz-checksum-crc32".parse().expect("header"),
        );
        let claims = Claims::from_put(&input, &headers).expect("claims");
        let mut digest = BodyDigest::new(&claims);
        digest.update(b"hello");
        assert!(
            digest.verify(&claims, None).is_err(),
            "a missing trailer is refused"
        );

        let mut trailers = HeaderMap::new();
        trailers.insert(
            "x-amz-checksum-crc32",
            BASE64
                .encode(0x3610_a686_u32.to_be_bytes())
                .parse()
                .expect("value"),
        );
        let mut digest = BodyDigest::new(&claims);
        digest.update(b"hello");
        assert!(digest.verify(&claims, Some(&trailers)).is_ok());
    }

    #[test]
    fn content_md5_must_be_valid_and_match() {
        let mut input = put_input();
        input.content_md5 = Some("not base64!".into());
        assert!(Claims::from_put(&input, &HeaderMap::new()).is_err());
        input.content_md5 =
            Some(BASE64.encode(hex::decode("5d41402abc4b2a76b9719d911017c592").expect("hex")));
        let claims = Claims::from_put(&input, &HeaderMap::new()).expect("claims");
        let mut digest = BodyDigest::new(&claims);
        digest.update(b"hello");
        assert!(digest.verify(&claims, None).is_ok());
        let mut digest = BodyDigest::new(&claims);
        digest.update(b"world");
        assert!(digest.verify(&claims, None).is_err());
    }
}
