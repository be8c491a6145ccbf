//! The configuration file and the environment variables that override it:
//! fuzzed TOML and values, parsed and checked as `ferry serve` does. Bad
//! input must be an error naming what is wrong, never a panic.

#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use ferry_config::{Overrides, RawConfig};
use libfuzzer_sys::fuzz_target;

const VARIABLES: [&str; 17] = [
    "FERRY_ACCESS_KEY",
    "FERRY_ADMIN_LISTEN",
    "FERRY_ADMIN_TOKEN",
    "FERRY_CACHE_DIR",
    "FERRY_CLUSTER_SECRET",
    "FERRY_DATA_DIR",
    "FERRY_DOMAIN",
    "FERRY_FEED_SECRET",
    "FERRY_GC_GRACE",
    "FERRY_GC_INTERVAL",
    "FERRY_LISTEN",
    "FERRY_META",
    "FERRY_NODE_ID",
    "FERRY_OTLP_ENDPOINT",
    "FERRY_REGION",
    "FERRY_SECRET_KEY",
    "FERRY_UPLOAD_EXPIRY",
];

#[derive(Arbitrary, Debug)]
struct Input {
    toml: String,
    env: Vec<(u8, String)>,
}

fuzz_target!(|input: Input| {
    let Ok(raw) = RawConfig::from_toml(&input.toml) else {
        return;
    };
    let env: HashMap<String, String> = input
        .env
        .into_iter()
        .map(|(at, value)| {
            (
                VARIABLES[usize::from(at) % VARIABLES.len()].to_string(),
                value,
            )
        })
        .collect();
    if let Err(error) = raw.build(&env, &Overrides::default()) {
        assert!(!error.to_string().is_empty(), "an empty config error");
    }
});
