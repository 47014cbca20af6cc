//! The operator's commands against a live conversation: `lull inspect`, `stats`,
//! `flush`, `pause`, `resume` and `scripts`, run as the binary with no server of
//! their own.

use crate::console::{console_app, maria_id, maria_says};
use crate::helpers::*;
use crate::process::Spec;
use serde_json::Value;

/// The binary's environment for this app's database, Redis prefix and Graph API.
fn lull(app: &TestApp) -> Spec {
    Spec::new("cli", &app.db, &app.graph, &redis_url(), &app.prefix)
        .env("BATCH_WINDOW_SECONDS", "60")
        .env("BATCH_MAX_WAIT_SECONDS", "120")
        .env("USER", "alice")
}

/// Runs `lull args…` off the test's runtime; its exit code and stdout.
async fn run(spec: Spec, args: &[&str]) -> (Option<i32>, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let (status, stdout) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        spec.run(&args)
    })
    .await
    .unwrap();
    (status.code(), stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_shows_a_live_conversation_and_names_an_unknown_one() {
    let app = console_app().await;
    maria_says(&app, "wamid.i1", "is it raining?").await;
    let (code, stdout) = run(lull(&app), &["inspect", &maria_id(), "--json"]).await;
    assert_eq!(code, Some(0), "{stdout}");
    let view: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(view["conversation"], maria_id());
    assert_eq!(view["transcript"][0]["text"], "is it raining?");
    assert_eq!(view["redis"]["collecting"][0]["text"], "is it raining?");

    let (code, text) = run(lull(&app), &["inspect", &maria_id()]).await;
    assert_eq!(code, Some(0));
    assert!(
        text.contains("is it raining?") && text.contains("collecting 1"),
        "{text}"
    );

    let (code, stdout) = run(lull(&app), &["inspect", "whatsapp:1:nobody"]).await;
    assert_eq!(code, Some(1));
    assert!(
        stdout.contains("unknown conversation whatsapp:1:nobody"),
        "{stdout}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_on_the_command_line_makes_the_reply_go_out_and_is_audited() {
    let app = console_app().await;
    maria_says(&app, "wamid.f1", "hello?").await;
    let (code, stdout) = run(lull(&app), &["flush", &maria_id(), "--json"]).await;
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(replies_at_least(&app.graph, 1).await.len(), 1);
    let actors = app.column("SELECT actor FROM console_actions").await;
    assert_eq!(actors, vec!["cli:alice"]);

    let (code, stdout) = run(lull(&app), &["flush", "telegram:1:nobody"]).await;
    assert_eq!(code, Some(1));
    assert!(stdout.contains("telegram:1:nobody"), "{stdout}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_on_the_command_line_count_the_days_messages() {
    let app = console_app().await;
    maria_says(&app, "wamid.s1", "one").await;
    maria_says(&app, "wamid.s2", "two").await;
    let (code, stdout) = run(lull(&app), &["stats", "--since", "24h", "--json"]).await;
    assert_eq!(code, Some(0), "{stdout}");
    let stats: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(stats["total"]["messages_in"], 2);
    let (code, text) = run(lull(&app), &["stats"]).await;
    assert_eq!(code, Some(0));
    assert!(text.contains("whatsapp"), "{text}");
    let (code, _) = run(lull(&app), &["stats", "--since", "soon"]).await;
    assert_eq!(code, Some(1));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_on_the_command_line_holds_replies_until_resume() {
    let app = console_app().await;
    maria_says(&app, "wamid.p1", "a human please").await;
    let id = maria_id();
    let (code, stdout) = run(lull(&app), &["pause", &id, "--minutes", "5"]).await;
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("paused"), "{stdout}");
    let (code, stdout) = run(lull(&app), &["pause", &id, "--json"]).await;
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap()["changed"],
        false
    );

    let next = whatsapp_text(MARIA, "wamid.p2", now_secs(), "anyone?");
    assert_eq!(app.post_whatsapp(&next).await.status(), 200);
    wait_for("the next message stored", PATIENCE, || async {
        let stored = app
            .count("SELECT count(*) FROM conversation_messages WHERE direction = 'in'")
            .await;
        (stored == 2).then_some(())
    })
    .await;
    run(lull(&app), &["flush", &id]).await;
    settle().await;
    assert!(
        app.graph.replies().is_empty(),
        "nothing answered while paused"
    );

    let (code, stdout) = run(lull(&app), &["resume", &id]).await;
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("resumed"), "{stdout}");
    let (code, stdout) = run(lull(&app), &["flush", &id]).await;
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(replies_at_least(&app.graph, 1).await.len(), 1);

    let (code, stdout) = run(lull(&app), &["pause", "instagram:1:nobody"]).await;
    assert_eq!(code, Some(1));
    assert!(
        stdout.contains("unknown conversation instagram:1:nobody"),
        "{stdout}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_print_each_sha1_as_redis_script_load_computes_it() {
    let app = console_app().await;
    let (code, stdout) = run(lull(&app), &["scripts", "--json"]).await;
    assert_eq!(code, Some(0), "{stdout}");
    let scripts: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/lua")).unwrap();
    assert_eq!(scripts.len(), files.count());
    for script in &scripts {
        let path = format!(
            "{}/{}",
            env!("CARGO_MANIFEST_DIR"),
            script["path"].as_str().unwrap()
        );
        let source = std::fs::read_to_string(&path).unwrap();
        let loaded = std::process::Command::new("redis-cli")
            .args(["-u", &redis_url(), "SCRIPT", "LOAD", &source])
            .output()
            .expect("redis-cli runs");
        let sha1 = String::from_utf8_lossy(&loaded.stdout).trim().to_owned();
        assert_eq!(script["sha1"], sha1, "{path}");
        let header = script["header"].as_array().unwrap();
        assert!(
            header
                .iter()
                .any(|l| l.as_str().unwrap().starts_with("KEYS[1]"))
        );
        assert!(
            header
                .iter()
                .any(|l| l.as_str().unwrap().starts_with("ARGV[1]"))
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_shows_each_replys_responder_model_and_tokens() {
    let app = spawn_app().await;
    app.post_whatsapp(&whatsapp_text(MARIA, "wamid.usage1", now_secs(), "hi"))
        .await;
    batch_with_status(&app, "sent").await;
    let (code, stdout) = run(lull(&app), &["inspect", &maria_id(), "--json"]).await;
    assert_eq!(code, Some(0), "{stdout}");
    let view: Value = serde_json::from_str(&stdout).unwrap();
    let reply = &view["replies"][0];
    assert_eq!(reply["responder"], "builtin", "{reply}");
    for field in [
        "model",
        "prompt_tokens",
        "completion_tokens",
        "generation_ms",
    ] {
        assert!(reply.get(field).is_some(), "{field} in {reply}");
    }
    app.stop().await;
}
