//! The coach's dashboard: its page and assets, built by `web/` (`npm run build`) and
//! embedded at compile time so the binary needs no Node; and who else may call the API
//! from a browser (CORS).

use std::time::Duration;

use axum::response::IntoResponse;
use axum::routing::get;
use http::header::{self, HeaderName, HeaderValue};
use http::Method;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// One built file of the page.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: [Asset; 3] = [
    Asset { path: "/", content_type: "text/html; charset=utf-8", body: include_bytes!("../../web/dist/index.html") },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/dist/app.js"),
    },
    Asset { path: "/app.css", content_type: "text/css; charset=utf-8", body: include_bytes!("../../web/dist/app.css") },
];

/// The page's routes beside the gRPC services (every other path stays theirs).
pub fn routes(router: axum::Router) -> axum::Router {
    ASSETS.iter().fold(router, |router, asset| {
        let headers = [
            (header::CONTENT_TYPE, asset.content_type),
            // Assets are not fingerprinted: a browser revalidates so an upgrade shows at once.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        ];
        let body = asset.body;
        router.route(asset.path, get(move || async move { (headers, body).into_response() }))
    })
}

/// The page loads only its own script and style and talks only to its own origin (Preact
/// and uPlot set styles through the DOM, which needs no `'unsafe-inline'`).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'";

/// Whether `path` is one of the page's files (not a call).
pub fn is_page(path: &str) -> bool {
    ASSETS.iter().any(|asset| asset.path == path)
}

/// Browsers on `origins` may call the API (a dashboard hosted elsewhere); with none, only
/// the page this server serves can.
pub fn cors(origins: &[HeaderValue]) -> CorsLayer {
    let sent_headers = ["content-type", "authorization", "x-grpc-web", "x-user-agent", "grpc-timeout"];
    let answer_headers = ["grpc-status", "grpc-message", "grpc-status-details-bin", "x-request-id"];
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.iter().cloned()))
        .allow_methods([Method::POST])
        .allow_headers(sent_headers.map(HeaderName::from_static))
        .expose_headers(answer_headers.map(HeaderName::from_static))
        .max_age(Duration::from_secs(24 * 60 * 60))
}
