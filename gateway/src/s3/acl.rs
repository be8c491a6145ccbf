//! Canned ACLs in their minimal form: `private` and `public-read`, on
//! buckets and objects. The owner (every key of this gateway acts as the
//! one owner) always has FULL_CONTROL; `public-read` adds READ for
//! everyone, which lets anonymous requests read (see `auth`). Any other
//! grant answers NotImplemented rather than being dropped silently.

use ferry_meta::CannedAcl;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::FerryS3;
use super::list::owner;
use super::names::check_key;
use crate::error::ResultExt;

/// The group URI S3 uses for "everyone, signed or not".
const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";

fn unsupported(what: &str) -> s3s::S3Error {
    s3_error!(
        NotImplemented,
        "{what}: Ferry supports the canned ACLs private and public-read only"
    )
}

/// The canned ACL a request asks for in `x-amz-acl` (private when absent).
/// Explicit `x-amz-grant-*` headers are refused. `bucket-owner-*` mean
/// private here: the bucket's owner owns every object.
pub(super) fn canned(acl: Option<&str>, headers: &http::HeaderMap) -> S3Result<CannedAcl> {
    if headers
        .keys()
        .any(|name| name.as_str().starts_with("x-amz-grant-"))
    {
        return Err(unsupported("x-amz-grant-* headers"));
    }
    match acl {
        None | Some("private" | "bucket-owner-full-control" | "bucket-owner-read") => {
            Ok(CannedAcl::Private)
        }
        Some("public-read") => Ok(CannedAcl::PublicRead),
        Some(other) => Err(unsupported(&format!("canned ACL {other:?}"))),
    }
}

/// The canned ACL an explicit AccessControlPolicy amounts to: the owner's
/// FULL_CONTROL, with or without everyone's READ.
fn from_policy(policy: &AccessControlPolicy) -> S3Result<CannedAcl> {
    let mut owner_full_control = false;
    let mut public_read = false;
    for grant in policy.grants.iter().flatten() {
        let grantee = grant
            .grantee
            .as_ref()
            .ok_or_else(|| s3_error!(MalformedACLError, "A grant names no grantee"))?;
        let permission = grant.permission.as_ref().map(Permission::as_str);
        match (grantee.type_.as_str(), permission) {
            (Type::CANONICAL_USER, Some(Permission::FULL_CONTROL))
                if grantee.id.as_deref() == owner().id.as_deref() =>
            {
                owner_full_control = true;
            }
            (Type::GROUP, Some(Permission::READ)) if grantee.uri.as_deref() == Some(ALL_USERS) => {
                public_read = true;
            }
            _ => return Err(unsupported("this grant")),
        }
    }
    if !owner_full_control {
        return Err(unsupported("an ACL without the owner's FULL_CONTROL"));
    }
    Ok(if public_read {
        CannedAcl::PublicRead
    } else {
        CannedAcl::Private
    })
}

/// The ACL a PutBucketAcl / PutObjectAcl asks for: a canned header or a
/// policy in the body, not both.
fn requested(
    acl: Option<&str>,
    policy: Option<&AccessControlPolicy>,
    headers: &http::HeaderMap,
) -> S3Result<CannedAcl> {
    // Grant headers are refused whatever else the request says.
    canned(None, headers)?;
    match (acl, policy) {
        (Some(_), Some(_)) => Err(s3_error!(
            InvalidRequest,
            "Specify a canned ACL or an AccessControlPolicy, not both"
        )),
        (None, Some(policy)) => from_policy(policy),
        (acl, None) => {
            if acl.is_none() {
                return Err(s3_error!(
                    MalformedACLError,
                    "The request names neither a canned ACL nor an AccessControlPolicy"
                ));
            }
            canned(acl, headers)
        }
    }
}

/// The grants S3 lists for a canned ACL.
fn grants(acl: CannedAcl) -> Grants {
    let owner = owner();
    let mut grants = vec![Grant {
        grantee: Some(Grantee {
            display_name: owner.display_name,
            id: owner.id,
            type_: Type::from_static(Type::CANONICAL_USER),
            email_address: None,
            uri: None,
        }),
        permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
    }];
    if acl == CannedAcl::PublicRead {
        grants.push(Grant {
            grantee: Some(Grantee {
                display_name: None,
                id: None,
                type_: Type::from_static(Type::GROUP),
                email_address: None,
                uri: Some(ALL_USERS.to_string()),
            }),
            permission: Some(Permission::from_static(Permission::READ)),
        });
    }
    grants
}

pub(super) async fn get_bucket_acl(
    s3: &FerryS3,
    req: S3Request<GetBucketAclInput>,
) -> S3Result<S3Response<GetBucketAclOutput>> {
    let info = s3.meta.bucket(&req.input.bucket).await.s3()?;
    Ok(S3Response::new(GetBucketAclOutput {
        grants: Some(grants(info.acl)),
        owner: Some(owner()),
    }))
}

pub(super) async fn put_bucket_acl(
    s3: &FerryS3,
    req: S3Request<PutBucketAclInput>,
) -> S3Result<S3Response<PutBucketAclOutput>> {
    let input = req.input;
    let acl = requested(
        input.acl.as_ref().map(BucketCannedACL::as_str),
        input.access_control_policy.as_ref(),
        &req.headers,
    )?;
    s3.meta.set_bucket_acl(&input.bucket, acl).await.s3()?;
    Ok(S3Response::new(PutBucketAclOutput::default()))
}

pub(super) async fn get_object_acl(
    s3: &FerryS3,
    req: S3Request<GetObjectAclInput>,
) -> S3Result<S3Response<GetObjectAclOutput>> {
    let input = req.input;
    check_key(&input.key)?;
    let entry = s3.meta.head(&input.bucket, &input.key).await.s3()?;
    Ok(S3Response::new(GetObjectAclOutput {
        grants: Some(grants(entry.acl)),
        owner: Some(owner()),
        ..GetObjectAclOutput::default()
    }))
}

pub(super) async fn put_object_acl(
    s3: &FerryS3,
    req: S3Request<PutObjectAclInput>,
) -> S3Result<S3Response<PutObjectAclOutput>> {
    let input = req.input;
    check_key(&input.key)?;
    let acl = requested(
        input.acl.as_ref().map(ObjectCannedACL::as_str),
        input.access_control_policy.as_ref(),
        &req.headers,
    )?;
    s3.meta
        .set_object_acl(&input.bucket, &input.key, acl)
        .await
        .s3()?;
    Ok(S3Response::new(PutObjectAclOutput::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(acl: CannedAcl) -> AccessControlPolicy {
        AccessControlPolicy {
            grants: Some(grants(acl)),
            owner: Some(owner()),
        }
    }

    #[test]
    fn canned_acls_and_their_policies_round_trip() {
        let none = http::HeaderMap::new();
        for acl in [CannedAcl::Private, CannedAcl::PublicRead] {
            assert_eq!(from_policy(&policy(acl)).ok(), Some(acl));
        }
        assert_eq!(canned(None, &none).ok(), Some(CannedAcl::Private));
        assert_eq!(
            canned(Some("public-read"), &none).ok(),
            Some(CannedAcl::PublicRead)
        );
        assert!(canned(Some("public-read-write"), &none).is_err());
        assert!(canned(Some("authenticated-read"), &none).is_err());
    }

    #[test]
    fn other_grants_are_refused() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "x-amz-grant-read",
            http::HeaderValue::from_static("uri=http://acs.amazonaws.com/groups/global/AllUsers"),
        );
        assert!(canned(Some("private"), &headers).is_err());
        let mut p = policy(CannedAcl::PublicRead);
        if let Some(grants) = p.grants.as_mut() {
            grants[1].permission = Some(Permission::from_static(Permission::WRITE));
        }
        assert!(from_policy(&p).is_err());
        let mut p = policy(CannedAcl::Private);
        if let Some(grants) = p.grants.as_mut()
            && let Some(grantee) = grants[0].grantee.as_mut()
        {
            grantee.id = Some("someone-else".into());
        }
        assert!(from_policy(&p).is_err());
        assert!(requested(None, None, &http::HeaderMap::new()).is_err());
    }
}
