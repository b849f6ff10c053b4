//! Staff pages (issue 8): login, triage, organisation inbox, mediator console, judge
//! review, clerk export, admin roster and KPI dashboard.
//!
//! Every page is the same small HTML shell (`assets/staff/shell.html`) with the page
//! name in `<body data-page>`; `assets/staff/staff.js` renders it from the case
//! service's JSON API (`/api`, `docs/cases.md`) and the evidence API
//! (`/api/evidence`). The shell carries no data, so role and case checks stay in the
//! API: a page the role may not see shows the 403 page, no login shows the login page
//! (and returns to the page afterwards). zh-CN by default, English with `?lang=en`.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

const SHELL: &str = include_str!("../assets/staff/shell.html");
const STAFF_JS: &str = include_str!("../assets/staff/staff.js");
const STAFF_CSS: &str = include_str!("../assets/staff/staff.css");

/// Page names served under `/staff/{page}` (the keys of `PAGES` in `staff.js`, plus `login`).
pub const PAGES: [&str; 8] = ["login", "triage", "inbox", "mediator", "judge", "clerk", "admin", "kpi"];

/// Content Security Policy of the staff pages: only this origin's script, style,
/// media and API; no inline script or style attribute; never framed (clickjacking).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    media-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn shell(page: &str) -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(SHELL.replace("{{page}}", page)),
    )
        .into_response()
}

/// 404 for a staff URL that names no page: a short page in both languages with a
/// way back, rather than the browser's own error page.
fn not_found() -> Response {
    const BODY: &str = "<!doctype html><html lang=\"zh-CN\"><meta charset=\"utf-8\">\
        <title>页面不存在 · Not found</title><h1>页面不存在</h1><p>Page not found.</p>\
        <p><a href=\"/staff/\">返回工作台 · Back to the staff pages</a></p></html>";
    (StatusCode::NOT_FOUND, [(header::CONTENT_SECURITY_POLICY, CSP)], Html(BODY)).into_response()
}

async fn page(Path(name): Path<String>) -> Response {
    match PAGES.iter().find(|p| **p == name) {
        Some(p) => shell(p),
        None => not_found(),
    }
}

async fn review(Path((id, sid)): Path<(String, String)>) -> Response {
    let num = |s: &str| !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit());
    if num(&id) && num(&sid) {
        shell("review")
    } else {
        not_found()
    }
}

/// Routes: `/staff` (→ `/staff/`), `/staff/` (the role's home page), `/staff/{page}`
/// for [`PAGES`], `/staff/review/{dispute}/{session}`, `/assets/staff/staff.js`,
/// `/assets/staff/staff.css`.
pub fn router() -> Router {
    Router::new()
        .route("/staff", get(|| async { Redirect::permanent("/staff/") }))
        .route("/staff/", get(|| async { shell("home") }))
        .route("/staff/{page}", get(page))
        .route("/staff/review/{id}/{sid}", get(review))
        .route(
            "/assets/staff/staff.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], STAFF_JS).into_response() }),
        )
        .route(
            "/assets/staff/staff.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STAFF_CSS).into_response() }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    async fn get(path: &str) -> (StatusCode, String) {
        let r = router().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn pages_get_the_shell_with_their_name_and_nothing_else_does() {
        for p in PAGES {
            let (st, body) = get(&format!("/staff/{p}")).await;
            assert_eq!(st, StatusCode::OK, "{p}");
            assert!(body.contains(&format!("data-page=\"{p}\"")), "{p}");
        }
        let (st, body) = get("/staff/").await;
        assert_eq!(st, StatusCode::OK);
        assert!(body.contains("data-page=\"home\""));
        let r = router().oneshot(Request::get("/staff/judge").body(Body::empty()).unwrap()).await.unwrap();
        assert!(r.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("frame-ancestors 'none'"));
        let (st, body) = get("/staff/review/12/3").await;
        assert_eq!(st, StatusCode::OK);
        assert!(body.contains("data-page=\"review\""));
        for bad in ["/staff/secret", "/staff/review/x/3", "/staff/review/1/3%2F..", "/staff/review/12"] {
            assert_eq!(get(bad).await.0, StatusCode::NOT_FOUND, "{bad}");
        }
        let (_, body) = get("/staff/review/1/abc").await;
        assert!(body.contains("页面不存在") && body.contains("href=\"/staff/\""), "a page with a way back: {body}");
        let (st, js) = get("/assets/staff/staff.js").await;
        assert_eq!(st, StatusCode::OK);
        assert!(js.contains("data-action"));
    }
}
