use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Config, ConfigError, Membership, MetaConfig, Overrides, RawConfig, StoreKind};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn build(toml: &str) -> Result<Config, ConfigError> {
    RawConfig::from_toml(toml)?.build(&HashMap::new(), &Overrides::default())
}

fn invalid_field(result: Result<Config, ConfigError>) -> String {
    match result {
        Err(ConfigError::Invalid { field, .. }) => field,
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

#[test]
fn empty_config_gives_the_zero_setup_defaults() {
    let config = build("").expect("defaults are valid");
    assert_eq!(config.data_dir, PathBuf::from("ferry-data"));
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:9000");
    assert_eq!(config.server.region, "us-east-1");
    assert_eq!(
        config.meta,
        MetaConfig::Embedded {
            path: PathBuf::from("ferry-data/meta.redb")
        }
    );
    let data = &config.stores[&config.data_store];
    assert_eq!(
        data.kind,
        StoreKind::File {
            root: PathBuf::from("ferry-data/blobs")
        }
    );
    assert!(data.owned);
    assert_eq!(config.volume.grace, Duration::from_secs(24 * 3600));
    assert!(config.credentials.is_empty());
}

#[test]
fn full_fixture_parses_every_section() {
    let config = Config::load(
        Some(&fixture("full.toml")),
        &HashMap::new(),
        &Overrides::default(),
    )
    .expect("fixture is valid");
    assert_eq!(config.server.region, "eu-west-1");
    assert_eq!(config.server.max_put_size, 1 << 30);
    let data = &config.stores["data"];
    assert_eq!(
        data.kind,
        StoreKind::S3 {
            bucket: "models".into()
        }
    );
    assert_eq!(data.prefix, "ferry");
    assert!(data.allow_http, "an http:// endpoint implies allow_http");
    assert!(!config.stores["imported"].owned);
    assert_eq!(config.volume.grace, Duration::from_secs(7200));
    assert_eq!(config.credentials.len(), 2);
    assert!(config.credentials[1].read_only);
    assert!(config.credentials[1].allows_bucket("models"));
    assert!(!config.credentials[1].allows_bucket("other"));
}

#[test]
fn unknown_key_is_an_error_naming_the_key() {
    let err = Config::load(
        Some(&fixture("unknown-key.toml")),
        &HashMap::new(),
        &Overrides::default(),
    )
    .expect_err("unknown key must fail");
    let text = err.to_string();
    assert!(text.contains("listne"), "{text}");
    assert!(text.contains("unknown-key.toml"), "{text}");
}

#[test]
fn missing_file_is_a_read_error_naming_the_path() {
    let err = Config::load(
        Some(Path::new("/nonexistent/ferry.toml")),
        &HashMap::new(),
        &Overrides::default(),
    )
    .expect_err("missing file");
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().contains("/nonexistent/ferry.toml"));
}

#[test]
fn wrong_type_names_the_field() {
    let err = build("[server]\nshutdown_grace = 5\n").expect_err("a bare number is not a duration");
    assert!(err.to_string().contains("shutdown_grace"), "{err}");
    let err = build("[server]\nmax_put_size = \"lots\"\n").expect_err("not a size");
    assert!(err.to_string().contains("max_put_size"), "{err}");
    let err = build("[stores.a]\nurl = \"s3://b\"\nmax_bytes_per_sec = \"fast\"\n")
        .expect_err("not a size");
    assert!(err.to_string().contains("max_bytes_per_sec"), "{err}");
}

#[test]
fn a_store_byte_rate_is_a_size_and_zero_is_no_limit() {
    let rate = |line: &str| {
        build(&format!("[stores.a]\nurl = \"s3://b\"\n{line}\n"))
            .map(|config| config.stores["a"].max_bytes_per_sec)
    };
    assert_eq!(rate("").expect("valid"), None);
    assert_eq!(rate("max_bytes_per_sec = 0").expect("valid"), None);
    assert_eq!(
        rate("max_bytes_per_sec = \"200MiB\"").expect("valid"),
        Some(200 << 20)
    );
    assert_eq!(
        rate("max_bytes_per_sec = \"1.5GB\"").expect("valid"),
        Some(1_500_000_000)
    );
    let err = rate("max_bytes_per_sec = 200").expect_err("200 bytes per second");
    assert!(
        matches!(&err, ConfigError::Invalid { field, .. } if field == "stores.a.max_bytes_per_sec"),
        "{err}"
    );
    assert!(err.to_string().contains("200MiB"), "{err}");
    let config = build("").expect("defaults");
    assert_eq!(config.stores[&config.data_store].max_bytes_per_sec, None);
}

#[test]
fn bad_values_name_their_field() {
    assert_eq!(
        invalid_field(build("[server]\nlisten = \"localhost\"\n")),
        "server.listen"
    );
    assert_eq!(
        invalid_field(build("[server]\nregion = \"eu west\"\n")),
        "server.region"
    );
    assert_eq!(
        invalid_field(build("[meta]\nengine = \"postgres://x\"\n")),
        "meta.engine"
    );
    assert_eq!(
        invalid_field(build("[server]\ndomains = [\"bad domain\"]\n")),
        "server.domains[0]"
    );
    assert_eq!(
        invalid_field(build("[stores.a]\nurl = \"ftp://x\"\n")),
        "stores.a.url"
    );
    assert_eq!(
        invalid_field(build("[stores.a]\nurl = \"file://relative\"\n")),
        "stores.a.url"
    );
    assert_eq!(
        invalid_field(build("[stores.a]\nurl = \"s3://\"\n")),
        "stores.a.url"
    );
    assert_eq!(
        invalid_field(build(
            "[stores.a]\nurl = \"s3://b\"\nendpoint = \"localhost:9000\"\n"
        )),
        "stores.a.endpoint"
    );
    assert_eq!(
        invalid_field(build(
            "[stores.a]\nurl = \"s3://b\"\naccess_key_id = \"x\"\n"
        )),
        "stores.a.secret_access_key"
    );
    assert_eq!(
        invalid_field(build("[volume]\ndata_store = \"nope\"\n")),
        "volume.data_store"
    );
    assert_eq!(
        invalid_field(build("[stores.data]\nurl = \"s3://b\"\nowned = false\n")),
        "volume.data_store"
    );
    assert_eq!(
        invalid_field(build("[volume]\ngc_grace = \"0s\"\n")),
        "volume.gc_grace"
    );
    assert_eq!(
        invalid_field(build("[cache]\nblock_size = \"512KiB\"\n")),
        "cache.block_size"
    );
    assert_eq!(
        invalid_field(build("[cache]\nblock_size = \"128MiB\"\n")),
        "cache.block_size"
    );
    assert_eq!(
        invalid_field(build("[cache]\ndisk_page = \"4KiB\"\n")),
        "cache.disk_page"
    );
    assert_eq!(
        invalid_field(build(
            "[cache]\nblock_size = \"1MiB\"\ndisk_page = \"2MiB\"\n"
        )),
        "cache.disk_page"
    );
    assert_eq!(
        invalid_field(build(
            "[[credentials]]\naccess_key = \"a\"\nsecret_key = \"long-enough\"\n"
        )),
        "credentials[0].access_key"
    );
    assert_eq!(
        invalid_field(build(
            "[[credentials]]\naccess_key = \"abc\"\nsecret_key = \"short\"\n"
        )),
        "credentials[0].secret_key"
    );
    assert_eq!(
        invalid_field(build(
            "[[credentials]]\naccess_key = \"abc\"\nsecret_key = \"long-enough\"\n\
             [[credentials]]\naccess_key = \"abc\"\nsecret_key = \"long-enough2\"\n"
        )),
        "credentials[1].access_key"
    );
    assert_eq!(
        invalid_field(build(
            "[[credentials]]\naccess_key = \"abc\"\nsecret_key = \"long-enough\"\nbuckets = []\n"
        )),
        "credentials[0].buckets"
    );
}

#[test]
fn environment_overrides_file_and_flags_override_environment() {
    let raw =
        RawConfig::from_toml("[server]\nlisten = \"127.0.0.1:1000\"\nregion = \"eu-west-1\"\n")
            .expect("parse");
    let env: HashMap<String, String> = [
        ("FERRY_LISTEN", "127.0.0.1:2000"),
        ("FERRY_REGION", "ap-south-1"),
        ("FERRY_META", "redis://127.0.0.1:6379/2"),
        ("FERRY_ACCESS_KEY", "envkey"),
        ("FERRY_SECRET_KEY", "env-secret-key"),
        ("FERRY_GC_GRACE", "90s"),
        ("FERRY_CACHE_DIR", "/cache"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let flags = Overrides {
        listen: Some("127.0.0.1:3000".parse().expect("addr")),
        ..Overrides::default()
    };
    let config = raw.clone().build(&env, &flags).expect("valid");
    assert_eq!(
        config.server.listen.to_string(),
        "127.0.0.1:3000",
        "flag wins"
    );
    assert_eq!(config.server.region, "ap-south-1", "env wins over file");
    assert_eq!(
        config.meta,
        MetaConfig::Redis {
            url: "redis://127.0.0.1:6379/2".into(),
            prefix: "ferry".into(),
            allow_volatile: false,
            cluster: false,
        }
    );
    assert_eq!(config.volume.grace, Duration::from_secs(90));
    assert_eq!(config.credentials[0].access_key, "envkey");
    assert_eq!(config.cache.disks[0].dir, PathBuf::from("/cache"));

    let config = raw.build(&env, &Overrides::default()).expect("valid");
    assert_eq!(
        config.server.listen.to_string(),
        "127.0.0.1:2000",
        "env wins without flag"
    );
}

#[test]
fn half_a_credential_pair_in_the_environment_is_refused() {
    let env: HashMap<String, String> = [("FERRY_ACCESS_KEY".to_string(), "abc".to_string())].into();
    let err = RawConfig::default()
        .build(&env, &Overrides::default())
        .expect_err("secret missing");
    assert!(
        matches!(err, ConfigError::Env { ref var, .. } if var == "FERRY_SECRET_KEY"),
        "{err}"
    );
    let env: HashMap<String, String> = [("FERRY_GC_GRACE".to_string(), "soon".to_string())].into();
    let err = RawConfig::default()
        .build(&env, &Overrides::default())
        .expect_err("bad duration");
    assert!(err.to_string().contains("FERRY_GC_GRACE"), "{err}");
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let config = Config::load(
        Some(&fixture("full.toml")),
        &HashMap::new(),
        &Overrides::default(),
    )
    .expect("valid");
    let text = format!("{config:?}");
    assert!(!text.contains("admin-secret"), "{text}");
    assert!(!text.contains("\"SK\""), "{text}");
}

#[test]
fn store_retries_have_defaults_and_a_zero_timeout_is_refused() {
    let store = |line: &str| {
        build(&format!("[stores.a]\nurl = \"s3://b\"\n{line}\n")).map(|config| {
            let a = &config.stores["a"];
            (a.max_retries, a.retry_timeout)
        })
    };
    assert_eq!(
        store("").expect("valid"),
        (10, std::time::Duration::from_secs(30))
    );
    assert_eq!(
        store("max_retries = 2\nretry_timeout = \"5s\"").expect("valid"),
        (2, std::time::Duration::from_secs(5))
    );
    let err = store("retry_timeout = \"0s\"").expect_err("zero");
    assert!(
        matches!(&err, ConfigError::Invalid { field, .. } if field == "stores.a.retry_timeout"),
        "{err}"
    );
    let err = store("retry_timeout = 5").expect_err("a bare number is not a duration");
    assert!(err.to_string().contains("retry_timeout"), "{err}");
}

#[test]
fn fallbacks_must_name_other_configured_stores_once() {
    let ok = build(
        "[stores.data]\nurl = \"s3://edge\"\nfallback = [\"central\"]\n[stores.central]\nurl = \"s3://central\"\nowned = false\n",
    )
    .expect("a chain of two");
    assert_eq!(ok.stores["data"].fallback, ["central"]);
    for (text, field) in [
        (
            "[stores.data]\nurl = \"s3://edge\"\nfallback = [\"nope\"]\n",
            "stores.data.fallback[0]",
        ),
        (
            "[stores.data]\nurl = \"s3://edge\"\nfallback = [\"data\"]\n",
            "stores.data.fallback[0]",
        ),
        (
            "[stores.data]\nurl = \"s3://edge\"\nfallback = [\"c\", \"c\"]\n[stores.c]\nurl = \"s3://c\"\n",
            "stores.data.fallback[1]",
        ),
        (
            "[stores.data]\nurl = \"s3://edge\"\nattempt_timeout = \"0s\"\n",
            "stores.data.attempt_timeout",
        ),
    ] {
        assert_eq!(invalid_field(build(text)), field, "{text}");
    }
}

#[test]
fn a_mirror_region_follows_its_source_with_a_secret() {
    let config = build(&format!(
        r#"
        [region]
        name = "edge-1"
        follow = "http://127.0.0.1:9001/"
        feed_secret = "0123456789abcdef"
        replicate = ["models/llama"]
        {MIRROR_STORES}
        "#,
    ))
    .expect("valid");
    let region = config.region.expect("region");
    assert_eq!(region.name, "edge-1");
    assert_eq!(region.follow.as_deref(), Some("http://127.0.0.1:9001"));
    assert_eq!(region.replicate, ["models/llama"]);
    assert!(!format!("{region:?}").contains("0123456789abcdef"));
}

#[test]
fn the_feed_secret_may_come_from_the_environment() {
    let raw = RawConfig::from_toml(&format!(
        "[region]\nname = \"edge-1\"\nfollow = \"http://localhost:9001\"\n{MIRROR_STORES}"
    ))
    .expect("parse");
    let env = HashMap::from([(
        "FERRY_FEED_SECRET".to_string(),
        "from-the-environment".to_string(),
    )]);
    let config = raw.build(&env, &Overrides::default()).expect("valid");
    let region = config.region.expect("region");
    assert_eq!(region.feed_secret.as_deref(), Some("from-the-environment"));
}

#[test]
fn a_broken_region_names_the_field() {
    let cases = [
        (
            "[region]\nfollow = \"http://127.0.0.1:9001\"\n",
            "region.name",
        ),
        (
            "[region]\nname = \"e\"\nfollow = \"http://127.0.0.1:9001\"\n",
            "region.feed_secret",
        ),
        (
            "[region]\nname = \"e\"\nfeed_secret = \"short\"\n",
            "region.feed_secret",
        ),
        (
            "[region]\nname = \"e\"\nfeed_secret = \"0123456789abcdef\"\nfollow = \"http://10.1.2.3:9001\"\n",
            "region.follow",
        ),
        (
            "[region]\nname = \"e\"\nfeed_secret = \"0123456789abcdef\"\nfollow = \"ftp://x:1\"\n",
            "region.follow",
        ),
        (
            "[region]\nname = \"e\"\nreplicate = [\"/x\"]\n",
            "region.replicate[0]",
        ),
    ];
    for (toml, field) in cases {
        assert_eq!(invalid_field(build(toml)), field, "{toml}");
    }
    // Plain HTTP to another host is fine where the operator trusts the network.
    build(&format!("[region]\nname = \"e\"\nfeed_secret = \"0123456789abcdef\"\nfollow = \"http://10.1.2.3:9001\"\ntrusted_network = true\n{MIRROR_STORES}"))
        .expect("trusted network");
}

/// A mirror's own bucket, falling back to the source's.
const MIRROR_STORES: &str = "[stores.data]\nurl = \"file:///srv/edge\"\nfallback = [\"central\"]\n\
    [stores.central]\nurl = \"file:///srv/central\"\nowned = false\n";

const FOLLOW: &str = "[region]\nname = \"edge\"\nfollow = \"http://127.0.0.1:9001\"\nfeed_secret = \"0123456789abcdef\"\n";

#[test]
fn a_mirror_may_read_the_sources_bucket_without_one_of_its_own() {
    // An edge without object storage: its data store is the source's
    // bucket, read only.
    let storeless = format!(
        "{FOLLOW}[[region.warm]]\nprefix = \"models/llama-3/\"\n[stores.data]\nurl = \"file:///srv/central\"\nowned = false\n"
    );
    let config = build(&storeless).expect("a storeless mirror");
    assert!(!config.stores["data"].owned);
    let region = config.region.expect("region");
    assert_eq!(region.warm, ["models/llama-3/"]);
    assert_eq!(region.warm_concurrency, 8);

    // A source, or a single region, writes blobs: it must own its store.
    let source = "[stores.data]\nurl = \"file:///srv/central\"\nowned = false\n\
        [region]\nname = \"central\"\n";
    assert_eq!(invalid_field(build(source)), "volume.data_store");
    assert_eq!(
        invalid_field(build(
            "[stores.data]\nurl = \"file:///srv/x\"\nowned = false\n"
        )),
        "volume.data_store"
    );

    let cases = [
        // The default local folder holds none of the source's blobs.
        (FOLLOW.to_string(), "stores.data"),
        // Nothing to copy into.
        (
            format!(
                "{FOLLOW}replicate = [\"models\"]\n[stores.data]\nurl = \"file:///srv/central\"\nowned = false\n"
            ),
            "region.replicate",
        ),
        // Dumps would be written into the source's bucket.
        (
            format!("{storeless}[volume]\ndump_interval = \"6h\"\n"),
            "volume.dump_interval",
        ),
        (
            format!("{FOLLOW}{MIRROR_STORES}[[region.warm]]\nprefix = \"/llama\"\n"),
            "region.warm[0].prefix",
        ),
        (
            format!("{FOLLOW}warm_concurrency = 0\n{MIRROR_STORES}"),
            "region.warm_concurrency",
        ),
    ];
    for (toml, field) in cases {
        assert_eq!(invalid_field(build(&toml)), field, "{toml}");
    }
}

#[test]
fn any_region_may_warm_prefixes_on_arrival() {
    let config = build(
        "[region]\nname = \"central\"\nwarm_concurrency = 4\n\
         [[region.warm]]\nprefix = \"models\"\n[[region.warm]]\nprefix = \"weights/v2/\"\n",
    )
    .expect("valid");
    let region = config.region.expect("region");
    assert_eq!(region.warm, ["models", "weights/v2/"]);
    assert_eq!(region.warm_concurrency, 4);
}

#[test]
fn scheduled_imports_name_a_store_ferry_does_not_own() {
    let config = build(
        r#"
        [stores.legacy]
        url = "file:///srv/legacy"
        owned = false

        [[imports]]
        from = "legacy/models/llama"
        to = "models/llama"
        delete = true
        every = "1h"
        "#,
    )
    .expect("valid");
    let import = &config.imports[0];
    assert_eq!(
        (import.store.as_str(), import.source_prefix.as_str()),
        ("legacy", "models/llama")
    );
    assert_eq!(
        (import.bucket.as_str(), import.target_prefix.as_str()),
        ("models", "llama")
    );
    assert!(import.delete);
    assert_eq!(import.every, Duration::from_secs(3600));

    let cases = [
        (
            "from = \"nowhere\"\nto = \"b\"\nevery = \"1h\"",
            "imports[0].from",
        ),
        (
            "from = \"data\"\nto = \"b\"\nevery = \"1h\"",
            "imports[0].from",
        ),
        (
            "from = \"legacy\"\nto = \"/x\"\nevery = \"1h\"",
            "imports[0].to",
        ),
        (
            "from = \"legacy\"\nto = \"b\"\nevery = \"10ms\"",
            "imports[0].every",
        ),
    ];
    for (body, field) in cases {
        let toml = format!(
            "[stores.legacy]\nurl = \"file:///srv/legacy\"\nowned = false\n[[imports]]\n{body}\n"
        );
        assert_eq!(invalid_field(build(&toml)), field, "{toml}");
    }
    // A mirror imports nothing itself: its namespace is the source's.
    let mirror = "[stores.legacy]\nurl = \"file:///srv/legacy\"\nowned = false\n\
        [[imports]]\nfrom = \"legacy\"\nto = \"b\"\nevery = \"1h\"\n\
        [region]\nname = \"e\"\nfollow = \"http://127.0.0.1:9001\"\nfeed_secret = \"0123456789abcdef\"\n";
    assert_eq!(
        invalid_field(build(&format!("{mirror}{MIRROR_STORES}"))),
        "imports"
    );
}

#[test]
fn plain_peers_and_feeds_beyond_loopback_need_tls_or_a_trusted_network() {
    let cluster = "[cluster]\nnode_id = \"n0\"\nsecret = \"0123456789abcdef\"\npeer_listen = \"0.0.0.0:9002\"\nadvertise = \"10.0.0.1:9002\"\npeers = [{ id = \"n0\", address = \"10.0.0.1:9002\" }]\n";
    assert_eq!(invalid_field(build(cluster)), "cluster.peer_listen");
    build(&format!("{cluster}trusted_network = true\n")).expect("a trusted network");
    let tls = "[tls]\ncert_file = \"/etc/ferry/node.crt\"\nkey_file = \"/etc/ferry/node.key\"\n";
    let config = build(&format!("{cluster}{tls}")).expect("peers over TLS");
    assert!(config.tls.enabled());

    let feed = "[server]\nadmin_listen = \"0.0.0.0:9001\"\n[region]\nname = \"src\"\nfeed_secret = \"0123456789abcdef\"\n";
    assert_eq!(invalid_field(build(feed)), "server.admin_listen");
    build(&format!("{feed}trusted_network = true\n")).expect("a trusted network");
    build(&format!("{feed}{tls}")).expect("the feed over TLS");
    // The admin port alone beyond loopback, without a feed, only warns.
    build("[server]\nadmin_listen = \"0.0.0.0:9001\"\n").expect("no feed");
}

#[test]
fn tls_and_connection_limits_name_their_fields() {
    let cases = [
        ("[tls]\ncert_file = \"/a.crt\"\n", "tls.key_file"),
        ("[tls]\nkey_file = \"/a.key\"\n", "tls.cert_file"),
        (
            "[tls]\ncert_file = \"/a.crt\"\nkey_file = \"/a.key\"\npeer_client_auth = true\n",
            "tls.peer_client_auth",
        ),
        (
            "[server]\nheader_timeout = \"0s\"\n",
            "server.header_timeout",
        ),
        ("[server]\nidle_timeout = \"0s\"\n", "server.idle_timeout"),
        ("[server]\nwrite_timeout = \"0s\"\n", "server.write_timeout"),
        ("[server]\nmax_connections = 0\n", "server.max_connections"),
    ];
    for (toml, field) in cases {
        assert_eq!(invalid_field(build(toml)), field, "{toml}");
    }
    let defaults = build("").expect("defaults").server.limits;
    assert_eq!(defaults.header_timeout, Duration::from_secs(20));
    assert_eq!(defaults.idle_timeout, Duration::from_secs(60));
    assert_eq!(defaults.write_timeout, Duration::from_secs(30));
    assert_eq!(defaults.max_connections, 4096);
}

/// `Config::load` of `toml` written to a file, with `env`.
fn load_file(toml: &str, env: &[(&str, &str)]) -> (PathBuf, ConfigError) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ferry.toml");
    std::fs::write(&path, toml).expect("write");
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let err = Config::load(Some(&path), &env, &Overrides::default()).expect_err("refused");
    // The path is only named in the error, never read again.
    (path, err)
}

#[test]
fn a_syntax_error_shows_the_file_line_and_a_caret() {
    let (path, err) = load_file("[server]\nlisten = \"127.0.0.1:9000\n", &[]);
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("config file {}:2:", path.display())),
        "{text}"
    );
    assert!(text.contains("\n2 | listen = \"127.0.0.1:9000\n"), "{text}");
    assert!(text.contains('^'), "{text}");
}

#[test]
fn an_unknown_key_and_a_wrong_type_show_their_line() {
    let (path, err) = load_file("[server]\nregion = \"eu-west-1\"\nlisne = 1\n", &[]);
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "config file {}:3:1: unknown field `lisne`",
            path.display()
        )),
        "{text}"
    );
    assert!(text.ends_with("3 | lisne = 1\n  | ^^^^^"), "{text}");

    let (_, err) = load_file(
        "[cluster]\nsecret = \"0123456789abcdef\"\nweight = \"heavy\"\n",
        &[],
    );
    let text = err.to_string();
    assert!(text.contains(":3:10: "), "{text}");
    assert!(
        text.ends_with("3 | weight = \"heavy\"\n  |          ^^^^^^^"),
        "{text}"
    );
}

#[test]
fn a_refused_value_shows_the_line_that_sets_it() {
    let (path, err) = load_file(
        "data_dir = \"/tmp/x\"\n\n[server]\nlisten = \"nowhere\"\n",
        &[],
    );
    let ConfigError::InFile { at, problem } = &err else {
        panic!("expected a located error, got {err:?}");
    };
    assert_eq!(at.path, path);
    assert_eq!(at.line.as_ref().map(|l| l.number), Some(4));
    assert!(
        matches!(problem.as_ref(), ConfigError::Invalid { field, .. } if field == "server.listen")
    );
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "config file {}:4:10: invalid value for `server.listen`",
            path.display()
        )),
        "{text}"
    );
    assert!(
        text.ends_with("4 | listen = \"nowhere\"\n  |          ^^^^^^^^^"),
        "{text}"
    );
}

#[test]
fn a_value_from_the_environment_is_not_pinned_on_the_file() {
    let (_, err) = load_file(
        "[server]\nlisten = \"127.0.0.1:9000\"\n",
        &[("FERRY_LISTEN", "nowhere")],
    );
    assert!(
        matches!(&err, ConfigError::Invalid { field, .. } if field == "server.listen"),
        "{err:?}"
    );
    // The file's value is wrong too, but not the one refused.
    let (_, err) = load_file(
        "[server]\nlisten = \"nowhere\"\n",
        &[("FERRY_LISTEN", "elsewhere")],
    );
    assert!(matches!(&err, ConfigError::Invalid { .. }), "{err:?}");
}

#[test]
fn a_redis_cluster_engine_is_a_switch_of_the_redis_engine() {
    let config = build(
        "[meta]\nengine = \"redis://127.0.0.1:7000\"\nredis_prefix = \"vol\"\nredis_cluster = true\n",
    )
    .expect("valid");
    assert!(
        matches!(&config.meta, MetaConfig::Redis { prefix, cluster: true, .. } if prefix == "vol"),
        "{:?}",
        config.meta
    );
    let standalone = build("[meta]\nengine = \"redis://127.0.0.1:6379\"\n").expect("valid");
    assert!(matches!(
        standalone.meta,
        MetaConfig::Redis { cluster: false, .. }
    ));
    assert_eq!(
        invalid_field(build("[meta]\nredis_cluster = true\n")),
        "meta.redis_cluster"
    );
}

#[test]
fn cluster_membership_on_a_redis_cluster_is_a_switch() {
    let base = "[cluster]\nnode_id = \"n0\"\nsecret = \"0123456789abcdef\"\n";
    let on_cluster = build(&format!(
        "{base}membership = \"redis://127.0.0.1:7000\"\nredis_cluster = true\n"
    ))
    .expect("valid");
    let membership = on_cluster.cluster.map(|c| c.membership);
    assert!(
        matches!(membership, Some(Membership::Redis { cluster: true, .. })),
        "{membership:?}"
    );
    let standalone =
        build(&format!("{base}membership = \"redis://127.0.0.1:6379\"\n")).expect("valid");
    assert!(matches!(
        standalone.cluster.map(|c| c.membership),
        Some(Membership::Redis { cluster: false, .. })
    ));
    assert_eq!(
        invalid_field(build(&format!(
            "{base}redis_cluster = true\npeers = [{{ id = \"n0\", address = \"10.0.0.1:9002\" }}]\n"
        ))),
        "cluster.redis_cluster"
    );
}

#[test]
fn spool_bounds_have_defaults_and_no_zero() {
    let config = build("").expect("defaults");
    assert_eq!(config.server.max_spools, 8);
    assert_eq!(config.server.max_spool_bytes, 16 << 30);
    let config = build("[server]\nmax_spools = 2\nmax_spool_bytes = \"1GiB\"\n").expect("set");
    assert_eq!(config.server.max_spools, 2);
    assert_eq!(config.server.max_spool_bytes, 1 << 30);
    for (toml, field) in [
        ("[server]\nmax_spools = 0\n", "server.max_spools"),
        (
            "[server]\nmax_spool_bytes = \"0\"\n",
            "server.max_spool_bytes",
        ),
    ] {
        assert_eq!(invalid_field(build(toml)), field, "{toml}");
    }
}

#[test]
fn what_one_read_may_hold_has_defaults_and_no_zero() {
    let config = build("").expect("defaults");
    // The readahead window (64 MiB) and two blocks (4 MiB each).
    assert_eq!(config.cache.inflight_per_read, 72 << 20);
    assert_eq!(config.cache.inflight_wait, Duration::from_secs(10));
    assert_eq!(config.cache.send_timeout, Duration::from_secs(60));
    let config = build(
        "[cache]\ninflight_per_read = \"8MiB\"\ninflight_wait = \"2s\"\nsend_timeout = \"5s\"\n",
    )
    .expect("set");
    assert_eq!(config.cache.inflight_per_read, 8 << 20);
    assert_eq!(config.cache.inflight_wait, Duration::from_secs(2));
    assert_eq!(config.cache.send_timeout, Duration::from_secs(5));
    for (toml, field) in [
        ("[cache]\ninflight_wait = \"0s\"\n", "cache.inflight_wait"),
        ("[cache]\nsend_timeout = \"0s\"\n", "cache.send_timeout"),
    ] {
        assert_eq!(invalid_field(build(toml)), field, "{toml}");
    }
}

#[test]
fn the_disk_tier_spans_several_disks_or_one() {
    let several = build(
        "[cache]\ndisks = [{ dir = \"/nvme0/ferry\", capacity = \"3GiB\" }, { dir = \"/nvme1/ferry\", capacity = \"1GiB\" }]\n",
    )
    .expect("valid");
    assert_eq!(several.cache.disks.len(), 2);
    assert_eq!(several.cache.disks[1].dir, PathBuf::from("/nvme1/ferry"));
    assert_eq!(several.cache.disk, 4 << 30, "the tier's size is the sum");
    let one = build("[cache]\ndisk = \"2GiB\"\ndir = \"/ssd/ferry\"\n").expect("valid");
    assert_eq!(one.cache.disks.len(), 1);
    assert_eq!(one.cache.disks[0].capacity, 2 << 30);
    assert!(
        build("[cache]\ndisk = \"0\"\n")
            .expect("valid")
            .cache
            .disks
            .is_empty()
    );
    assert_eq!(
        invalid_field(build(
            "[cache]\ndisk = \"1GiB\"\ndisks = [{ dir = \"/a\", capacity = \"1GiB\" }]\n"
        )),
        "cache.disks"
    );
    assert_eq!(
        invalid_field(build(
            "[cache]\ndisks = [{ dir = \"/a\", capacity = \"0\" }]\n"
        )),
        "cache.disks[0].capacity"
    );
    assert_eq!(
        invalid_field(build(
            "[cache]\ndisks = [{ dir = \"/a\", capacity = \"1GiB\" }, { dir = \"/a\", capacity = \"1GiB\" }]\n"
        )),
        "cache.disks[1].dir"
    );
}

#[test]
fn a_node_s_weight_defaults_to_its_disk_capacity_in_gib() {
    let base = "[cluster]\nnode_id = \"n0\"\nsecret = \"0123456789abcdef\"\npeers = [{ id = \"n0\", address = \"127.0.0.1:9002\" }]\n";
    let weight = |cache: &str| {
        build(&format!("{cache}{base}"))
            .expect("valid")
            .cluster
            .map(|c| c.weight)
    };
    assert_eq!(
        weight(
            "[cache]\ndisks = [{ dir = \"/a\", capacity = \"8TiB\" }, { dir = \"/b\", capacity = \"8TiB\" }]\n"
        ),
        Some(16 << 10)
    );
    assert_eq!(weight("[cache]\ndisk = \"24GiB\"\n"), Some(24));
    assert_eq!(
        weight("[cache]\ndisk = \"0\"\n"),
        Some(100),
        "no disk tier: 100"
    );
    assert_eq!(
        build(&format!("[cache]\ndisk = \"24GiB\"\n{base}weight = 7\n"))
            .expect("valid")
            .cluster
            .map(|c| c.weight),
        Some(7),
        "a configured weight wins"
    );
}

#[test]
fn pins_name_a_bucket_and_their_share_is_bounded() {
    let config = build(
        "[cache]\npin_share = 0.25\n[[cache.pin]]\nprefix = \"models/llama-3/\"\n[[cache.pin]]\nprefix = \"weights\"\n",
    )
    .expect("valid");
    assert_eq!(config.cache.pins, vec!["models/llama-3/", "weights"]);
    assert!((config.cache.pin_share - 0.25).abs() < f64::EPSILON);
    let default = build("").expect("valid");
    assert!(default.cache.pins.is_empty());
    assert!((default.cache.pin_share - 0.1).abs() < f64::EPSILON);
    assert_eq!(
        invalid_field(build("[cache]\npin_share = 0.95\n")),
        "cache.pin_share"
    );
    assert_eq!(
        invalid_field(build("[cache]\npin_share = -0.1\n")),
        "cache.pin_share"
    );
    assert_eq!(
        invalid_field(build("[[cache.pin]]\nprefix = \"/models\"\n")),
        "cache.pin[0].prefix"
    );
}
