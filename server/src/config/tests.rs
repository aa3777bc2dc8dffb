//! Configuration: defaults, validation messages naming the variable, secrets never printed, and
//! the development secret's life cycle.

use std::collections::HashMap;
use std::path::PathBuf;

use super::*;

fn temp_dir() -> PathBuf {
    std::env::temp_dir().join(format!("loyalty-config-test-{}", uuid::Uuid::new_v4()))
}

fn load(vars: &[(&str, &str)]) -> anyhow::Result<Config> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_lookup(|name| map.get(name).cloned())
}

fn error_of(vars: &[(&str, &str)]) -> String {
    format!("{:#}", load(vars).unwrap_err())
}

const PG: &str = "postgres://app:hunter2@db:5432/loyalty";
const SECRET: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn embedded_defaults() {
    let dir = temp_dir();
    let config = load(&[("DATA_DIR", dir.to_str().unwrap())]).unwrap();
    assert_eq!(config.listen_addr, "127.0.0.1:8080".parse().unwrap());
    assert!(config.is_embedded());
    assert_eq!(config.sqlite_path(), dir.join("loyalty.db"));
    assert_eq!(config.database_max_connections, 4);
    assert_eq!(config.redis_url, None);
    assert_eq!(config.redis_prefix, "loyalty:");
    assert_eq!(config.jwt.issuer, "loyalty");
    assert_eq!(config.jwt.audience, "loyalty-api");
    assert_eq!(config.jwt.leeway_secs, 30);
    assert!(config.graphql.introspection);
    assert!(config.graphql.graphiql);
    assert_eq!(config.graphql.max_depth, 12);
    assert_eq!(config.graphql.max_complexity, 2_500);
    assert_eq!(config.graphql.max_batch, 10);
    assert_eq!(config.graphql.max_root_mutations, 10);
    assert_eq!(config.graphql.persisted_query_cache_size, 1_000);
    assert_eq!(config.graphql.persisted_query_cache_bytes, 1024 * 1024);
    assert_eq!(config.body_limit_bytes, 65_536);
    assert_eq!(config.rate_limit_ip_per_sec, 200);
    assert_eq!(config.rate_limit_subject_per_sec, 100);
    assert_eq!(config.log_format, LogFormat::Text);
    // Webhooks reach public addresses only, 10 s per attempt, polled every second.
    assert!(!config.webhooks.allow_private_urls);
    assert_eq!(config.webhooks.timeout_secs, 10);
    assert_eq!(config.webhooks.poll_interval_ms, 1_000);
    assert_eq!(config.posting.lane_cpu, LaneCpu::Auto);
    assert_eq!(
        config.jwt.origin,
        KeyOrigin::DevelopmentFile(dir.join("jwt-secret"))
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn development_secret_is_generated_once_and_reused() {
    let dir = temp_dir();
    let vars = [("DATA_DIR", dir.to_str().unwrap())];
    let first = load(&vars).unwrap();
    let second = load(&vars).unwrap();
    let (JwtKey::Hs256 { secret: a }, JwtKey::Hs256 { secret: b }) =
        (first.jwt.key, second.jwt.key)
    else {
        panic!("expected HS256");
    };
    assert_eq!(a, b);
    assert_eq!(a.expose().len(), 64);
    assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("jwt-secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn production_requires_a_key_and_names_it() {
    let err = error_of(&[("DATABASE_URL", PG)]);
    assert!(err.contains("JWT_SECRET"), "{err}");
    let config = load(&[("DATABASE_URL", PG), ("JWT_SECRET", SECRET)]).unwrap();
    assert!(!config.is_embedded());
    assert_eq!(config.database_max_connections, 20);
    assert!(
        !config.graphql.graphiql,
        "GraphiQL defaults off outside the embedded default"
    );
    assert_eq!(config.jwt.origin, KeyOrigin::Environment);
}

#[test]
fn short_secret_is_refused() {
    let err = error_of(&[("JWT_SECRET", "too-short")]);
    assert!(err.contains("JWT_SECRET") && err.contains("32"), "{err}");
    assert!(
        !err.contains("too-short"),
        "the secret must not be echoed: {err}"
    );
}

#[test]
fn secrets_and_passwords_never_print() {
    let config = load(&[
        ("DATABASE_URL", PG),
        ("REDIS_URL", "redis://:redispass@cache:6379/0"),
        ("JWT_SECRET", SECRET),
    ])
    .unwrap();
    let printed = format!("{config:?} {}", config.describe_storage());
    for secret in [SECRET, "hunter2", "redispass"] {
        assert!(!printed.contains(secret), "{secret} leaked: {printed}");
    }
    assert!(
        printed.contains("postgres://app:***@db:5432/loyalty"),
        "{printed}"
    );
}

#[test]
fn invalid_values_name_their_variable() {
    let cases = [
        ("LISTEN_ADDR", "localhost"),
        ("DATABASE_URL", "mysql://x"),
        ("DATABASE_MAX_CONNECTIONS", "0"),
        ("REDIS_URL", "http://cache"),
        ("REDIS_PREFIX", "has space"),
        ("JWT_LEEWAY_SECS", "301"),
        ("JWT_LEEWAY_SECS", "-1"),
        ("GRAPHQL_INTROSPECTION", "maybe"),
        ("GRAPHIQL", "2"),
        ("GRAPHQL_MAX_DEPTH", "0"),
        ("GRAPHQL_MAX_COMPLEXITY", "lots"),
        ("GRAPHQL_MAX_BATCH", "1000"),
        ("GRAPHQL_MAX_ROOT_MUTATIONS", "0"),
        ("PERSISTED_QUERY_CACHE_SIZE", "-1"),
        ("PERSISTED_QUERY_CACHE_BYTES", "100"),
        ("BODY_LIMIT_BYTES", "10"),
        ("RATE_LIMIT_IP_PER_SEC", "0"),
        ("RATE_LIMIT_SUBJECT_PER_SEC", "x"),
        ("LOG_FORMAT", "xml"),
        ("EXPIRY_INTERVAL_SECS", "86401"),
        ("TELEGRAM_AUTH_MAX_AGE_SECS", "59"),
        ("MEMBER_TOKEN_TTL_SECS", "forever"),
        ("HEADER_READ_TIMEOUT_SECS", "0"),
        ("MAX_CONNECTIONS", "0"),
        ("WS_MAX_SOCKETS_PER_IP", "lots"),
        ("TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal"),
        ("METRICS_TOKEN", "short"),
        ("METRICS_ADDR", "9090"),
        ("WEBHOOK_ALLOW_PRIVATE_URLS", "sometimes"),
        ("WEBHOOK_TIMEOUT_SECS", "0"),
        ("WEBHOOK_TIMEOUT_SECS", "61"),
        ("WEBHOOK_POLL_INTERVAL_MS", "60001"),
        ("SQLITE_LANE_CPU", "first"),
        ("SQLITE_LANE_CPU", "1024"),
        ("SQLITE_LANE_CPU", "-1"),
    ];
    for (name, value) in cases {
        let err = error_of(&[(name, value), ("JWT_SECRET", SECRET)]);
        assert!(err.contains(name), "{name}={value}: {err}");
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let err = error_of(&[
        ("LISTEN_ADDR", "x"),
        ("LOG_FORMAT", "xml"),
        ("DATABASE_URL", PG),
    ]);
    for name in ["LISTEN_ADDR", "LOG_FORMAT", "JWT_SECRET"] {
        assert!(err.contains(name), "{name}: {err}");
    }
}

#[test]
fn a_bad_configuration_leaves_no_secret_file() {
    let dir = temp_dir();
    let err = error_of(&[("DATA_DIR", dir.to_str().unwrap()), ("LOG_FORMAT", "xml")]);
    assert!(err.contains("LOG_FORMAT"));
    assert!(!dir.join("jwt-secret").exists());
}

#[test]
fn key_combinations() {
    let public = include_str!("../../tests/fixtures/rs256-public.pem");
    let private = include_str!("../../tests/fixtures/rs256-private.pem");
    let config = load(&[("DATABASE_URL", PG), ("JWT_PUBLIC_KEY_PEM", public)]).unwrap();
    assert!(matches!(
        config.jwt.key,
        JwtKey::Rs256 {
            private_key_pem: None,
            ..
        }
    ));

    // One-line PEM with literal \n, as environment files often carry it.
    let escaped = private.replace('\n', "\\n");
    let config = load(&[
        ("DATABASE_URL", PG),
        ("JWT_PUBLIC_KEY_PEM", public),
        ("JWT_PRIVATE_KEY_PEM", &escaped),
    ])
    .unwrap();
    assert!(matches!(
        config.jwt.key,
        JwtKey::Rs256 {
            private_key_pem: Some(_),
            ..
        }
    ));
    assert!(!format!("{config:?}").contains("PRIVATE KEY"));
    crate::auth::JwtAuth::new(&config.jwt)
        .unwrap()
        .self_check()
        .unwrap();

    let err = error_of(&[("DATABASE_URL", PG), ("JWT_PUBLIC_KEY_PEM", "not a pem")]);
    assert!(
        err.contains("JWT_PUBLIC_KEY_PEM must be an RSA public key"),
        "{err}"
    );
    let err = error_of(&[("JWT_SECRET", SECRET), ("JWT_PUBLIC_KEY_PEM", public)]);
    assert!(err.contains("not both"), "{err}");
    let err = error_of(&[("DATABASE_URL", PG), ("JWT_PRIVATE_KEY_PEM", private)]);
    assert!(err.contains("JWT_PUBLIC_KEY_PEM"), "{err}");
    let err = error_of(&[
        ("JWT_PUBLIC_KEY_PEM", public),
        ("JWT_PRIVATE_KEY_PEM", "garbage"),
    ]);
    assert!(err.contains("JWT_PRIVATE_KEY_PEM"), "{err}");
}

#[test]
fn overrides_and_spellings() {
    let config = load(&[
        ("DATABASE_URL", PG),
        ("JWT_SECRET", SECRET),
        ("LISTEN_ADDR", "0.0.0.0:9000"),
        ("DATABASE_MAX_CONNECTIONS", "50"),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("REDIS_PREFIX", "t1:"),
        ("GRAPHQL_INTROSPECTION", "off"),
        ("GRAPHIQL", "YES"),
        ("GRAPHQL_MAX_BATCH", " 3 "),
        ("PERSISTED_QUERY_CACHE_SIZE", "0"),
        ("LOG_FORMAT", "JSON"),
        ("JWT_LEEWAY_SECS", "0"),
        ("JWT_ISSUER", "issuer-x"),
        ("JWT_AUDIENCE", "aud-y"),
        ("BODY_LIMIT_BYTES", ""),
        ("SQLITE_LANE_CPU", " OFF "),
    ])
    .unwrap();
    assert_eq!(config.posting.lane_cpu, LaneCpu::Off);
    for (raw, cpu) in [
        ("auto", LaneCpu::Auto),
        ("0", LaneCpu::Cpu(0)),
        ("7", LaneCpu::Cpu(7)),
    ] {
        let config = load(&[
            ("DATABASE_URL", PG),
            ("JWT_SECRET", SECRET),
            ("SQLITE_LANE_CPU", raw),
        ]);
        assert_eq!(config.unwrap().posting.lane_cpu, cpu, "{raw}");
    }
    assert_eq!(config.listen_addr.port(), 9000);
    assert_eq!(config.database_max_connections, 50);
    assert_eq!(config.redis_prefix, "t1:");
    assert!(!config.graphql.introspection);
    assert!(config.graphql.graphiql);
    assert_eq!(config.graphql.max_batch, 3);
    assert_eq!(
        config.graphql.persisted_query_cache_size, 0,
        "0 turns APQ off"
    );
    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(config.jwt.leeway_secs, 0);
    assert_eq!(config.jwt.issuer, "issuer-x");
    assert_eq!(config.jwt.audience, "aud-y");
    assert_eq!(config.body_limit_bytes, 65_536, "blank means default");
}

#[test]
fn for_tests_is_usable() {
    let config = Config::for_tests(None, None, "t:".into(), temp_dir());
    assert_eq!(config.listen_addr.port(), 0);
    assert!(
        matches!(&config.jwt.key, JwtKey::Hs256 { secret } if secret.expose() == TEST_JWT_SECRET)
    );
    assert!(TEST_JWT_SECRET.len() >= 32);
    crate::auth::JwtAuth::new(&config.jwt)
        .unwrap()
        .self_check()
        .unwrap();
}

#[test]
fn urls_are_redacted() {
    assert_eq!(redact_url("postgres://u:p@h/db"), "postgres://u:***@h/db");
    assert_eq!(redact_url("redis://:p@h:6379"), "redis://:***@h:6379");
    assert_eq!(redact_url("redis://token@h"), "redis://***@h");
    assert_eq!(redact_url("postgres://h/db?x=@"), "postgres://h/db?x=@");
    assert_eq!(redact_url("sqlite://./data/x.db"), "sqlite://./data/x.db");
}

#[test]
fn migrate_needs_only_the_database() {
    let map: HashMap<String, String> = [("DATABASE_URL".to_owned(), PG.to_owned())].into();
    let target = DatabaseTarget::from_lookup(|name| map.get(name).cloned()).unwrap();
    assert_eq!(target.resolved_url().unwrap(), PG);
    assert!(!target.describe().contains("hunter2"));
    let bad: HashMap<String, String> = [("DATABASE_URL".to_owned(), "mysql://x".to_owned())].into();
    let err = DatabaseTarget::from_lookup(|name| bad.get(name).cloned()).unwrap_err();
    assert!(err.to_string().contains("DATABASE_URL"));
}

#[test]
fn cors_origins_parse_and_validate() {
    let with = |value: &str| {
        load(&[
            ("DATABASE_URL", PG),
            ("JWT_SECRET", SECRET),
            ("CORS_ALLOWED_ORIGINS", value),
        ])
    };
    assert_eq!(
        load(&[("DATABASE_URL", PG), ("JWT_SECRET", SECRET)])
            .unwrap()
            .cors,
        CorsOrigins::None
    );
    assert_eq!(with("*").unwrap().cors, CorsOrigins::Any);
    assert_eq!(
        with("https://shop.example, http://localhost:5173/")
            .unwrap()
            .cors,
        CorsOrigins::List(vec![
            "https://shop.example".into(),
            "http://localhost:5173".into()
        ])
    );
    for bad in ["shop.example", "https://shop.example/path", "ftp://x"] {
        assert!(
            format!("{:#}", with(bad).unwrap_err()).contains("CORS_ALLOWED_ORIGINS"),
            "{bad}"
        );
    }
}

#[test]
fn production_defaults_publish_nothing_extra() {
    let production = load(&[("DATABASE_URL", PG), ("JWT_SECRET", SECRET)]).unwrap();
    assert!(
        !production.graphql.introspection,
        "introspection is off outside the embedded default"
    );
    assert!(!production.graphql.graphiql);
    assert!(
        !production.metrics.on_main_listener,
        "no open /metrics on the main listener in production"
    );
    assert_eq!(production.metrics.addr, None);
    assert_eq!(production.telegram_max_age_secs, 3_600);
    assert_eq!(production.http.header_read_timeout_secs, 10);
    assert_eq!(production.http.max_connections, 20_000);
    assert_eq!(production.http.ws_max_sockets_per_ip, 1_000);
    assert!(production.http.trusted_proxies.is_empty());

    let dir = temp_dir();
    let embedded = load(&[("DATA_DIR", dir.to_str().unwrap())]).unwrap();
    assert!(embedded.graphql.introspection);
    assert!(embedded.metrics.on_main_listener);
    assert_eq!(embedded.telegram_max_age_secs, 3_600);
    std::fs::remove_dir_all(dir).unwrap();

    // Settings turn them back on.
    let opened = load(&[
        ("DATABASE_URL", PG),
        ("JWT_SECRET", SECRET),
        ("GRAPHQL_INTROSPECTION", "true"),
        ("METRICS_TOKEN", "0123456789abcdef-metrics"),
        ("METRICS_ADDR", "10.0.0.5:9090"),
        ("TRUSTED_PROXIES", "10.0.0.0/8,fd00::/8"),
    ])
    .unwrap();
    assert!(opened.graphql.introspection);
    assert!(opened.metrics.on_main_listener);
    assert_eq!(opened.metrics.addr, Some("10.0.0.5:9090".parse().unwrap()));
    assert!(opened
        .http
        .trusted_proxies
        .contains("10.1.2.3".parse().unwrap()));
    assert!(
        !format!("{opened:?}").contains("0123456789abcdef-metrics"),
        "the metrics token is a secret"
    );
}

#[test]
fn short_rsa_keys_are_refused_naming_the_variable() {
    for short in [
        include_str!("../../tests/fixtures/rs256-1024-public.pem"),
        include_str!("../../tests/fixtures/rs256-1024-public-pkcs1.pem"),
    ] {
        let err = error_of(&[("DATABASE_URL", PG), ("JWT_PUBLIC_KEY_PEM", short)]);
        assert!(
            err.contains("JWT_PUBLIC_KEY_PEM") && err.contains("1024") && err.contains("2048"),
            "{err}"
        );
    }
    let public = include_str!("../../tests/fixtures/rs256-public.pem");
    assert_eq!(rsa_bits(public), Some(2048));
    assert_eq!(rsa_bits("not a pem"), None);
}
