//! The XML bodies Ferry takes, read as s3s reads them before a handler
//! sees them: DeleteObjects, CompleteMultipartUpload, ACL policies,
//! CreateBucket, bucket versioning and tagging. (Whole requests carrying
//! them, signed, go through the `s3_request` target.)

#![no_main]

use libfuzzer_sys::fuzz_target;
use s3s::dto::{
    AccessControlPolicy, CompletedMultipartUpload, CreateBucketConfiguration, Delete, Tagging,
    VersioningConfiguration,
};
use s3s::xml::{Deserialize, Deserializer};

fn read<'xml, T: Deserialize<'xml>>(xml: &'xml [u8]) {
    let mut reader = Deserializer::new(xml);
    if T::deserialize(&mut reader).is_ok() {
        let _ = reader.expect_eof();
    }
}

fuzz_target!(|xml: &[u8]| {
    read::<Delete>(xml);
    read::<CompletedMultipartUpload>(xml);
    read::<AccessControlPolicy>(xml);
    read::<CreateBucketConfiguration>(xml);
    read::<VersioningConfiguration>(xml);
    read::<Tagging>(xml);
});
