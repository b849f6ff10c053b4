//! Browser pages, embedded in the binary: the join page and its room client.
//!
//! `GET /join/{token}` serves the join page; the page reads the token from its
//! own URL and sends it as the first signaling message (`docs/signaling.md`).

pub mod staff;

use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;

const JOIN_HTML: &str = include_str!("../assets/join.html");
const ROOM_JS: &str = include_str!("../assets/room.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");

/// Routes: `/`, `/join/{token}`, `/assets/room.js`, `/assets/style.css`.
pub fn router() -> Router {
    Router::new()
        .route("/", get(|| async { Html(include_str!("../assets/index.html")) }))
        .route("/join/{token}", get(|| async { Html(JOIN_HTML) }))
        .route(
            "/assets/room.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], ROOM_JS).into_response() }),
        )
        .route(
            "/assets/style.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE_CSS).into_response() }),
        )
}
