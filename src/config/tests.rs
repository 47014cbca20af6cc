//! The settings as flags and variables give them: defaults, and every refusal
//! naming its variable.

use super::flags::Flags;
use super::*;
use clap::Parser;
use std::time::Duration;

fn parse(args: &[&str]) -> Config {
    let mut argv = vec!["lull"];
    argv.extend_from_slice(args);
    Flags::try_parse_from(argv).expect("parses").config
}

/// The LLM API base of the chosen responder; `None` for the built-in one.
fn base_url(settings: &Settings) -> Option<&str> {
    match &settings.responder {
        ResponderSettings::Builtin { .. } | ResponderSettings::Http(_) => None,
        ResponderSettings::OpenAi(llm) => Some(&llm.base_url),
        ResponderSettings::Anthropic(llm) => Some(&llm.base_url),
    }
}

#[test]
fn a_cache_ttl_shorter_than_a_batch_can_live_is_refused() {
    let error = parse(&["--cache-ttl-hours=0.01", "--batch-max-wait-seconds=120"])
        .parse_settings()
        .unwrap_err();
    assert_eq!(error.var, "CACHE_TTL_HOURS");
}

#[test]
fn a_cache_ttl_is_refused_in_hours_its_own_unit() {
    let error = parse(&["--cache-ttl-hours=-1"])
        .parse_settings()
        .unwrap_err();
    assert_eq!(error.var, "CACHE_TTL_HOURS");
    assert!(
        error.reason.contains("hours") && error.reason.ends_with("got -1"),
        "{}",
        error.reason
    );
}

#[test]
fn connection_urls_are_not_shown_in_help_where_they_may_hold_a_password() {
    let mut help = Vec::new();
    <Flags as clap::CommandFactory>::command()
        .write_long_help(&mut help)
        .unwrap();
    let help = String::from_utf8(help).unwrap();
    for var in ["DATABASE_URL", "REDIS_URL", "LLM_BASE_URL"] {
        assert!(help.contains(&format!("[env: {var}]")), "{var}");
    }
}

#[test]
fn the_defaults_are_the_seeds() {
    let c = parse(&[]);
    assert_eq!(c.batch_window_seconds, 30.0);
    assert_eq!(c.cache_ttl_hours, 1.0);
    assert_eq!(c.history_limit, 200);
    assert_eq!(c.scanner_interval, 0.5);
    assert_eq!(c.lock_ttl_seconds, 10.0);
    assert_eq!(c.port, 8000);
    assert_eq!(c.redis_key_prefix, "conv:");
    assert!(c.parse_settings().is_ok());
}

#[test]
fn a_non_positive_window_is_refused_naming_its_variable() {
    let error = parse(&["--batch-window-seconds=0"])
        .parse_settings()
        .unwrap_err();
    assert_eq!(error.var, "BATCH_WINDOW_SECONDS");
    assert!(error.to_string().contains("BATCH_WINDOW_SECONDS"));
}

#[test]
fn a_duration_too_long_to_use_is_refused_naming_its_variable() {
    for (flag, var) in [
        ("--batch-window-seconds=1e20", "BATCH_WINDOW_SECONDS"),
        ("--cache-ttl-hours=1e16", "CACHE_TTL_HOURS"),
        (
            "--reconcile-min-age-seconds=1e20",
            "RECONCILE_MIN_AGE_SECONDS",
        ),
        (
            "--reconcile-min-age-seconds=-1",
            "RECONCILE_MIN_AGE_SECONDS",
        ),
    ] {
        let error = parse(&[flag]).parse_settings().unwrap_err();
        assert_eq!(error.var, var, "{flag}");
    }
    // Ten years is the most any of them takes.
    let decade = parse(&["--reconcile-min-age-seconds=315360000"])
        .parse_settings()
        .unwrap();
    assert_eq!(decade.reconcile.min_age, Duration::from_secs(315_360_000));
}

#[test]
fn a_value_that_is_not_a_number_is_refused_naming_its_variable() {
    let error = Flags::try_parse_from(["lull", "--scanner-interval", "soon"]).unwrap_err();
    assert!(error.to_string().contains("SCANNER_INTERVAL"), "{error}");
}

#[test]
fn a_redis_url_of_another_scheme_is_refused() {
    let error = parse(&["--redis-url", "http://localhost"])
        .parse_settings()
        .unwrap_err();
    assert_eq!(error.var, "REDIS_URL");
}

#[test]
fn the_platform_api_bases_must_be_http_urls() {
    for (flag, var) in [
        ("--telegram-api-base", "TELEGRAM_API_BASE"),
        ("--instagram-api-base", "INSTAGRAM_API_BASE"),
    ] {
        for bad in ["ftp://example.com", "not a url"] {
            let error = parse(&[flag, bad]).parse_settings().unwrap_err();
            assert_eq!(error.var, var, "{bad}");
        }
        assert!(
            parse(&[flag, "http://127.0.0.1:1/x"])
                .parse_settings()
                .is_ok()
        );
    }
    let c = parse(&[]);
    assert_eq!(c.telegram_api_base, "https://api.telegram.org");
    assert_eq!(c.instagram_api_base, "https://graph.instagram.com/v23.0");
}

#[test]
fn a_telegram_bot_token_without_a_bot_id_is_refused_without_echoing_it() {
    let error = parse(&["--telegram-bot-token", "s3cret-no-colon"])
        .parse_settings()
        .unwrap_err();
    assert_eq!(error.var, "TELEGRAM_BOT_TOKEN");
    assert!(!error.to_string().contains("s3cret"));
    assert!(
        parse(&[
            "--telegram-bot-token",
            "7000000001:AAF_x-y",
            "--telegram-secret-token",
            "fixture_secret_token-123",
        ])
        .parse_settings()
        .is_ok()
    );
}

#[test]
fn a_telegram_secret_token_must_be_one_telegram_accepts() {
    let error = parse(&["--telegram-secret-token", "has space"])
        .parse_settings()
        .unwrap_err();
    assert_eq!(error.var, "TELEGRAM_SECRET_TOKEN");
    assert!(
        parse(&["--telegram-secret-token", "fixture_secret_token-123"])
            .parse_settings()
            .is_ok()
    );
}

#[test]
fn empty_platform_secrets_count_as_unset_and_none_prints() {
    let c = parse(&[
        "--telegram-bot-token",
        "",
        "--telegram-secret-token",
        "",
        "--instagram-app-secret",
        "",
        "--instagram-verify-token",
        "",
        "--instagram-token",
        "ig-s3cret",
        "--allow-unsigned-webhooks",
        "true",
    ])
    .parse_settings()
    .unwrap();
    assert!(c.telegram.bot_token.is_none());
    assert!(c.telegram.secret_token.is_none());
    assert!(c.instagram.app_secret.is_none());
    assert!(c.instagram.verify_token.is_none());
    assert!(c.instagram.token.is_some());
    assert!(!format!("{c:?}").contains("ig-s3cret"));
}

#[test]
fn the_builtin_responder_is_the_default_and_needs_no_llm_settings() {
    let c = parse(&[]);
    assert_eq!(c.responder, ResponderKind::Builtin);
    assert_eq!(c.llm_max_tokens, 512);
    let settings = c.parse_settings().unwrap();
    assert_eq!(base_url(&settings), None);
    assert_eq!(settings.responder.kind(), ResponderKind::Builtin);
    // The LLM defaults, as an LLM responder gets them.
    let llm = parse(&["--responder", "openai", "--llm-model", "m"])
        .parse_settings()
        .unwrap();
    let ResponderSettings::OpenAi(llm) = llm.responder else {
        panic!("{:?}", llm.responder)
    };
    assert_eq!(llm.max_tokens, 512);
    assert_eq!(llm.timeout, Duration::from_secs(60));
    assert_eq!(llm.system_prompt, DEFAULT_SYSTEM_PROMPT);
}

#[test]
fn an_llm_responder_without_a_model_is_refused_naming_llm_model() {
    for responder in ["openai", "anthropic"] {
        let error = parse(&["--responder", responder, "--llm-api-key", "k"])
            .parse_settings()
            .unwrap_err();
        assert_eq!(error.var, "LLM_MODEL", "{responder}");
        assert!(error.to_string().contains("LLM_MODEL"), "{error}");
    }
    let blank = parse(&["--responder", "openai", "--llm-model", ""]);
    assert_eq!(blank.parse_settings().unwrap_err().var, "LLM_MODEL");
}

#[test]
fn anthropic_needs_a_key_and_openai_does_not() {
    let error = parse(&["--responder", "anthropic", "--llm-model", "claude-x"])
        .parse_settings()
        .unwrap_err();
    assert_eq!(error.var, "LLM_API_KEY");
    let empty_key = parse(&[
        "--responder",
        "anthropic",
        "--llm-model",
        "claude-x",
        "--llm-api-key",
        "",
    ]);
    assert_eq!(empty_key.parse_settings().unwrap_err().var, "LLM_API_KEY");
    assert!(
        parse(&["--responder", "openai", "--llm-model", "llama3.2"])
            .parse_settings()
            .is_ok()
    );
}

#[test]
fn the_llm_base_url_defaults_by_responder() {
    let settings = |args: &[&str]| parse(args).parse_settings().unwrap();
    let openai = settings(&["--responder", "openai", "--llm-model", "m"]);
    assert_eq!(base_url(&openai), Some("https://api.openai.com/v1"));
    let anthropic = settings(&[
        "--responder",
        "anthropic",
        "--llm-model",
        "m",
        "--llm-api-key",
        "k",
    ]);
    assert_eq!(base_url(&anthropic), Some("https://api.anthropic.com"));
    let local = settings(&[
        "--responder",
        "openai",
        "--llm-model",
        "m",
        "--llm-base-url",
        "http://localhost:11434/v1",
    ]);
    assert_eq!(base_url(&local), Some("http://localhost:11434/v1"));
    let unset = settings(&[
        "--responder",
        "openai",
        "--llm-model",
        "m",
        "--llm-base-url",
        "",
    ]);
    assert_eq!(base_url(&unset), Some("https://api.openai.com/v1"));
}

#[test]
fn bad_llm_values_are_refused_naming_their_variable() {
    let llm = ["--responder", "openai", "--llm-model", "m"];
    for (extra, var) in [
        (["--llm-base-url", "ftp://x"], "LLM_BASE_URL"),
        (["--llm-base-url", "localhost:11434"], "LLM_BASE_URL"),
        (["--llm-max-tokens", "0"], "LLM_MAX_TOKENS"),
        (["--llm-timeout-seconds", "0"], "LLM_TIMEOUT_SECONDS"),
    ] {
        let args: Vec<&str> = llm.iter().chain(&extra).copied().collect();
        assert_eq!(
            parse(&args).parse_settings().unwrap_err().var,
            var,
            "{extra:?}"
        );
    }
    let error = Flags::try_parse_from(["lull", "--responder", "gpt"]).unwrap_err();
    assert!(error.to_string().contains("openai"), "{error}");
}

#[test]
fn the_llm_api_key_never_prints_and_empty_counts_as_unset() {
    let openai = ["--responder", "openai", "--llm-model", "m", "--llm-api-key"];
    let api_key = |settings: &Settings| match &settings.responder {
        ResponderSettings::OpenAi(llm) => llm.api_key.clone(),
        other => panic!("{other:?}"),
    };
    let c = parse(&[&openai[..], &["sk-s3cret"]].concat())
        .parse_settings()
        .unwrap();
    assert!(api_key(&c).is_some());
    assert!(!format!("{c:?}").contains("sk-s3cret"));
    assert!(
        api_key(
            &parse(&[&openai[..], &[""]].concat())
                .parse_settings()
                .unwrap()
        )
        .is_none()
    );
}

#[test]
fn empty_secrets_count_as_unset_and_never_print() {
    let c = parse(&["--whatsapp-token", "", "--whatsapp-app-secret", "s3cret"])
        .parse_settings()
        .unwrap();
    assert!(c.whatsapp.token.is_none());
    assert!(!format!("{c:?}").contains("s3cret"));
}

#[test]
fn a_send_token_without_its_webhook_secret_refuses_to_start_naming_both() {
    for (token, secret, value) in [
        ("--whatsapp-token", "WHATSAPP_APP_SECRET", "wa-s3cret"),
        (
            "--telegram-bot-token",
            "TELEGRAM_SECRET_TOKEN",
            "7000000001:AAF_x-y",
        ),
        ("--instagram-token", "INSTAGRAM_APP_SECRET", "ig-s3cret"),
    ] {
        let error = parse(&[token, value]).parse_settings().unwrap_err();
        assert_eq!(error.var, secret);
        let text = error.to_string();
        let token_var = token
            .trim_start_matches("--")
            .replace('-', "_")
            .to_uppercase();
        assert!(text.contains(&token_var) && text.contains(secret), "{text}");
        assert!(
            !text.contains("s3cret") && !text.contains("AAF_x"),
            "{text}"
        );
        let allowed = parse(&[token, value, "--allow-unsigned-webhooks", "true"]).parse_settings();
        assert!(allowed.is_ok(), "{token} with ALLOW_UNSIGNED_WEBHOOKS");
    }
}

#[test]
fn only_configured_channels_are_on_and_none_configured_runs_the_demo() {
    let demo = parse(&[]).parse_settings().unwrap().http.channels_on;
    assert!(demo.demo && demo.whatsapp && demo.telegram && demo.instagram);
    let whatsapp_only = parse(&["--whatsapp-app-secret", "s", "--whatsapp-token", "t"])
        .parse_settings()
        .unwrap()
        .http
        .channels_on;
    assert_eq!(
        whatsapp_only,
        ChannelsOn {
            whatsapp: true,
            telegram: false,
            instagram: false,
            demo: false
        }
    );
    let telegram_by_secret = parse(&["--telegram-secret-token", "abc"])
        .parse_settings()
        .unwrap()
        .http
        .channels_on;
    assert!(telegram_by_secret.telegram && !telegram_by_secret.whatsapp);
}

#[test]
fn the_http_responder_needs_its_url_and_secret_and_times_out_after_30_seconds() {
    let error = parse(&["--responder=http"]).parse_settings().unwrap_err();
    assert_eq!(error.var, "BOT_URL");
    let error = parse(&["--responder=http", "--bot-url=http://127.0.0.1:9/bot"])
        .parse_settings()
        .unwrap_err();
    assert_eq!(error.var, "BOT_SECRET");
    let error = parse(&["--responder=http", "--bot-url=ftp://x", "--bot-secret=s"])
        .parse_settings()
        .unwrap_err();
    assert_eq!(error.var, "BOT_URL");
    let settings = parse(&[
        "--responder=http",
        "--bot-url=http://127.0.0.1:9/bot",
        "--bot-secret=s",
    ])
    .parse_settings()
    .unwrap();
    let ResponderSettings::Http(bot) = settings.responder else {
        panic!("{:?}", settings.responder);
    };
    assert_eq!(bot.url, "http://127.0.0.1:9/bot");
    assert_eq!(bot.timeout, Duration::from_secs(30));
}

#[test]
fn the_fallback_reply_is_off_by_default_and_responder_attempts_are_their_own() {
    let settings = parse(&[]).parse_settings().unwrap();
    assert_eq!(settings.generation.fallback_reply, None);
    assert_eq!(settings.generation.max_attempts, 3);
    let settings = parse(&["--fallback-reply=Sorry, a person will answer soon."])
        .parse_settings()
        .unwrap();
    assert_eq!(
        settings.generation.fallback_reply.as_deref(),
        Some("Sorry, a person will answer soon.")
    );
    let error = parse(&["--responder-max-attempts=0"])
        .parse_settings()
        .unwrap_err();
    assert_eq!(error.var, "RESPONDER_MAX_ATTEMPTS");
}

#[test]
fn handoff_is_off_by_keyword_and_resumes_after_an_hour_by_default() {
    let settings = parse(&[]).parse_settings().unwrap();
    assert!(settings.handoff.keywords.is_empty());
    assert_eq!(
        settings.handoff.reply,
        "A person will answer you here shortly."
    );
    assert_eq!(settings.handoff.idle, Some(Duration::from_secs(3600)));
    assert_eq!(settings.handoff.instagram_app_id, None);
}

#[test]
fn handoff_keywords_split_on_commas_and_idle_zero_means_never() {
    let settings = parse(&[
        "--handoff-keywords= humano, talk to a person ,,",
        "--handoff-idle-minutes=0",
    ])
    .parse_settings()
    .unwrap();
    assert_eq!(settings.handoff.keywords, ["humano", "talk to a person"]);
    assert_eq!(settings.handoff.idle, None);
    let fraction = parse(&["--handoff-idle-minutes=0.005"])
        .parse_settings()
        .unwrap();
    assert_eq!(fraction.handoff.idle, Some(Duration::from_millis(300)));
}

#[test]
fn a_negative_handoff_idle_time_is_refused() {
    let error = parse(&["--handoff-idle-minutes=-1"])
        .parse_settings()
        .unwrap_err();
    assert_eq!(error.var, "HANDOFF_IDLE_MINUTES");
}
