//! What the fuzz targets (`fuzz/`) reach that is private to the gateway,
//! built only with the `fuzzing` feature. Everything else they drive
//! through the gateway's public parts (the S3 service, the peer and admin
//! routers), as a client would.

use ferry_config::Credential;
use s3s::S3ErrorCode;

use crate::auth::Keyring;
use crate::host::VirtualHosts;
use crate::signature::{Head, Signer, Verifier};

/// Ferry's own signature check (the preflight's) over one request head,
/// with one key and virtual hosts under `domain`: the key that signed it,
/// or the S3 error code it is refused with.
pub fn verify_signature<B>(
    request: &http::Request<B>,
    credential: &Credential,
    domain: &str,
    now: time::OffsetDateTime,
) -> Result<Option<String>, S3ErrorCode> {
    let verifier = Verifier::new(
        Keyring::new(std::slice::from_ref(credential), "us-east-1"),
        Some(VirtualHosts::new(&[domain.to_string()])),
    );
    match verifier.verify(&Head::of(request), now) {
        Ok(Signer::Anonymous) => Ok(None),
        Ok(Signer::Key(key)) => Ok(Some(key)),
        Err(refused) => Err(refused.code().clone()),
    }
}
