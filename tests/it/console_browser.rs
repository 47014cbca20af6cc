//! The console in a real headless Chromium, driven over the DevTools protocol: it
//! asks for the token, lists a waiting conversation with its countdown, opens its
//! transcript, and its buttons act. With `LULL_SCREENSHOT=1` it also saves
//! docs/console.png for the README.

use crate::console::{OPS, console_app, maria_id, maria_says};
use crate::helpers::*;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Where Debian puts Chromium; `CHROMIUM` overrides it.
fn chromium_path() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// A headless Chromium of the test's own (fresh profile), killed when dropped.
struct Browser {
    _child: tokio::process::Child,
    _profile: tempfile::TempDir,
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl Browser {
    /// Starts Chromium on a free DevTools port and attaches to its page.
    async fn start() -> Self {
        let profile = tempfile::tempdir().unwrap();
        let child = tokio::process::Command::new(chromium_path())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--window-size=1440,900",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium starts (apt-get install chromium)");
        let port_file = profile.path().join("DevToolsActivePort");
        let port: u16 = wait_for("Chromium's DevTools port", PATIENCE, || async {
            let text = std::fs::read_to_string(&port_file).ok()?;
            text.lines().next()?.trim().parse().ok()
        })
        .await;
        let list_url = format!("http://127.0.0.1:{port}/json/list");
        let page: String = wait_for("Chromium's page", PATIENCE, || async {
            let targets: Vec<Value> = reqwest::get(&list_url).await.ok()?.json().await.ok()?;
            targets
                .iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                .map(str::to_owned)
        })
        .await;
        let (socket, _) = tokio_tungstenite::connect_async(page.as_str())
            .await
            .unwrap();
        Self {
            _child: child,
            _profile: profile,
            socket,
            next_id: 0,
        }
    }

    /// Chromium on the app's console, signed in as `ops` through the page's form.
    async fn signed_in(app: &TestApp) -> Self {
        let mut browser = Self::start().await;
        browser
            .call("Page.navigate", json!({ "url": app.url("/admin") }))
            .await;
        // The token is asked once, in the page, and kept for the tab.
        browser
            .until(
                "the sign-in form",
                "!document.querySelector('#login').classList.contains('hidden')",
            )
            .await;
        browser
            .eval(&format!(
                "document.querySelector('#token-input').value = '{OPS}';
                 document.querySelector('#token-submit').click(); true"
            ))
            .await;
        assert_eq!(
            browser
                .eval("sessionStorage.getItem('lull-admin-token')")
                .await,
            OPS
        );
        browser
    }

    /// One DevTools call; events that arrive meanwhile are skipped.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({ "id": id, "method": method, "params": params });
        self.socket
            .send(Message::text(request.to_string()))
            .await
            .unwrap();
        let answer = tokio::time::timeout(PATIENCE, async {
            while let Some(message) = self.socket.next().await {
                let Ok(Message::Text(text)) = message else {
                    continue;
                };
                let value: Value = serde_json::from_str(text.as_str()).unwrap();
                if value["id"] == id {
                    return value;
                }
            }
            panic!("DevTools closed");
        })
        .await
        .unwrap_or_else(|_| panic!("no answer to {method}"));
        assert!(answer.get("error").is_none(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// The value of a JavaScript expression in the page.
    async fn eval(&mut self, expression: &str) -> Value {
        let params =
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true });
        self.call("Runtime.evaluate", params).await["result"]["value"].clone()
    }

    /// Polls an expression until it is truthy; returns its value.
    async fn until(&mut self, what: &str, expression: &str) -> Value {
        let started = std::time::Instant::now();
        loop {
            let value = self.eval(expression).await;
            if !(value.is_null() || value == false || value == "" || value == 0) {
                return value;
            }
            assert!(started.elapsed() < PATIENCE, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_lists_opens_and_flushes_a_waiting_conversation() {
    let app = console_app().await;
    maria_says(&app, "wamid.b1", "hello, is the shop open today?").await;
    maria_says(&app, "wamid.b2", "and tomorrow?").await;
    let mut browser = Browser::signed_in(&app).await;

    let row = format!("tr[data-conversation='{}']", maria_id());
    let countdown = browser
        .until(
            "a waiting row with its countdown",
            &format!("document.querySelector(\"{row} .countdown\")?.textContent"),
        )
        .await;
    let countdown = countdown.as_str().unwrap().to_owned();
    assert!(
        countdown.ends_with('s') && countdown != "due",
        "{countdown}"
    );
    let later = browser
        .until(
            "the countdown to tick",
            &format!(
                "(() => {{ const t = document.querySelector(\"{row} .countdown\").textContent;
                           return t !== '{countdown}' && t; }})()"
            ),
        )
        .await;
    assert_ne!(later, countdown.as_str());

    browser
        .eval(&format!("document.querySelector(\"{row}\").click(); true"))
        .await;
    let transcript = browser
        .until(
            "the transcript",
            "(() => { const t = document.querySelector('#transcript')?.textContent || '';
                      return t.includes('and tomorrow?') && t; })()",
        )
        .await;
    assert!(
        transcript
            .as_str()
            .unwrap()
            .contains("hello, is the shop open today?")
    );
    let state = browser
        .eval("document.querySelector('#detail dl').textContent")
        .await;
    assert!(state.as_str().unwrap().contains("2 message(s)"), "{state}");

    if std::env::var_os("LULL_SCREENSHOT").is_some() {
        let shot = browser
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let png = base64_decode(shot["data"].as_str().unwrap());
        std::fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/docs/console.png"),
            png,
        )
        .unwrap();
    }

    // Pause holds the bot back: a flush afterwards sends nothing.
    browser
        .eval("document.querySelector('[data-action=pause]').click(); true")
        .await;
    browser
        .until(
            "pause's answer",
            "(() => { const t = document.querySelector('#toast').textContent;
                      return t.includes('paused') && t; })()",
        )
        .await;
    browser
        .until(
            "the human badge",
            "document.querySelector('#detail .badge.human') !== null",
        )
        .await;
    browser
        .eval("document.querySelector('[data-action=flush]').click(); true")
        .await;
    settle().await;
    assert!(
        app.graph.replies().is_empty(),
        "no reply goes out while paused"
    );

    browser
        .eval("document.querySelector('[data-action=resume]').click(); true")
        .await;
    browser
        .until(
            "resume's answer",
            "(() => { const t = document.querySelector('#toast').textContent;
                      return t.includes('resumed') && t; })()",
        )
        .await;
    browser
        .eval("document.querySelector('[data-action=flush]').click(); true")
        .await;
    assert_eq!(replies_at_least(&app.graph, 1).await.len(), 1);
    browser
        .until(
            "the reply in the transcript",
            "document.querySelector('#transcript .msg.out') !== null",
        )
        .await;
    app.stop().await;
}

/// Standard base64, as DevTools sends a screenshot.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut buffer, mut bits) = (0u32, 0);
    for byte in text.bytes().filter(|b| *b != b'=') {
        let Some(value) = ALPHABET.iter().position(|a| *a == byte) else {
            continue;
        };
        buffer = (buffer << 6) | value as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_retries_a_failure_and_charts_the_days_stats() {
    let app = console_app().await;
    let refusal = String::from_utf8(fixture("whatsapp/error_131047.json")).unwrap();
    app.graph
        .script([crate::fake_platforms::Answer::error(400, &refusal)]);
    maria_says(&app, "wamid.r1", "are you open?").await;
    crate::console::admin(&app, "POST", &format!("conversations/{}/flush", maria_id())).await;
    batch_with_status(&app, "failed").await;

    let mut browser = Browser::signed_in(&app).await;
    browser
        .eval("document.querySelector('nav [data-tab=failures]').click(); true")
        .await;
    browser
        .until(
            "the failure's retry button",
            "document.querySelector('#failures [data-action=retry]') !== null",
        )
        .await;
    browser
        .eval("document.querySelector('#failures [data-action=retry]').click(); true")
        .await;
    batch_with_status(&app, "sent").await;
    assert_eq!(replies_at_least(&app.graph, 2).await.len(), 2);

    browser
        .eval("document.querySelector('nav [data-tab=stats]').click(); true")
        .await;
    let bars = browser
        .until(
            "the hourly chart",
            "document.querySelectorAll('#chart svg rect').length",
        )
        .await;
    assert!(bars.as_i64().unwrap() >= 2, "{bars}");
    let kpis = browser
        .until(
            "the figures",
            "(() => { const t = document.querySelector('#kpis').textContent;
                      return t.includes('replies out') && t; })()",
        )
        .await;
    assert!(kpis.as_str().unwrap().starts_with("1messages in"), "{kpis}");

    browser
        .eval("document.querySelector('nav [data-tab=audit]').click(); true")
        .await;
    browser
        .until(
            "the retry in the audit",
            "(() => { const t = document.querySelector('#audit tbody').textContent;
                      return t.includes('retry') && t.includes('ops') && t; })()",
        )
        .await;
    app.stop().await;
}
