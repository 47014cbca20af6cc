//! The fake platform APIs the tests send to, each `lull::fake_platform` on port 0
//! recording every request: the Graph API of the fixtures' business number, a
//! Telegram bot and an Instagram account, each checking its token the way the real
//! API does (Telegram's in the URL path, the others' as a bearer token).

use crate::helpers::PHONE_ID;
use lull::config::Secret;
pub use lull::fake_platform::{Answer, FakePlatform, Received};
use lull::fake_platform::{Api, Graph, Instagram, Record, Telegram};

/// The fake Graph API the test app sends its WhatsApp replies to.
pub type FakeGraph = FakePlatform;

/// The token the fake Graph API accepts.
pub const TOKEN: &str = "test-graph-token";
/// The bot token the fake Telegram accepts.
pub const TELEGRAM_TOKEN: &str = "7000000001:AAFakeTelegramTokenForTests_x-Y";
/// The bot id of [`TELEGRAM_TOKEN`]: our account in Telegram conversations.
pub const BOT_ID: &str = "7000000001";
/// The access token the fake Instagram accepts.
pub const INSTAGRAM_TOKEN: &str = "test-instagram-token";

/// Serves `api` on a port of its own, recording every request.
pub async fn fake(api: impl Api) -> FakePlatform {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    FakePlatform::start(listener, api, Record::Everything).unwrap()
}

/// A fake Graph API at `http://127.0.0.1:port/v23.0`.
pub async fn fake_graph() -> FakeGraph {
    fake(Graph::new(PHONE_ID, Some(Secret::new(TOKEN)))).await
}

/// A fake Bot API at `http://127.0.0.1:port`.
pub async fn fake_telegram() -> FakePlatform {
    fake(Telegram::new(Secret::new(TELEGRAM_TOKEN))).await
}

/// A fake Instagram API at `http://127.0.0.1:port/v23.0`.
pub async fn fake_instagram() -> FakePlatform {
    fake(Instagram::new(Secret::new(INSTAGRAM_TOKEN))).await
}
