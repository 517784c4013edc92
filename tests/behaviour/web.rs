//! The dashboard's side of the server: the page at `/`, gRPC-Web on the same port over
//! HTTP/1.1 (unary and server streaming), and CORS only for the origins configured.

use http::{header, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_stream::StreamExt;
use tonic::service::interceptor::InterceptedService;
use tonic::Code;
use tonic_web::GrpcWebClientLayer;

use coachfit::proto::v1 as pb;
use coachfit::server::ServerOptions;
use pb::entry_service_client::EntryServiceClient;
use pb::roster_service_client::RosterServiceClient;

use crate::common::*;
use crate::each_backend;

each_backend!(
    the_dashboard_is_served_at_the_root,
    a_browser_calls_and_follows_the_api_over_grpc_web_on_http1,
    only_configured_origins_may_call_from_another_page,
);

/// A plain HTTP/1.1 request; the answer's status, headers and body.
async fn http1(request: Request<Empty<bytes::Bytes>>) -> (StatusCode, http::HeaderMap, String) {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(request).await.expect("an answer");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("a body").to_bytes();
    (parts.status, parts.headers, String::from_utf8_lossy(&body).into_owned())
}

fn get(uri: String) -> Request<Empty<bytes::Bytes>> {
    Request::get(uri).body(Empty::new()).unwrap()
}

async fn the_dashboard_is_served_at_the_root(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, headers, page) = http1(get(format!("{}/", server.uri()))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(policy.starts_with("default-src 'self';") && !policy.contains("unsafe"), "{policy}");
    assert!(page.contains(r#"<script src="/app.js"></script>"#), "{page}");
    let (status, headers, script) = http1(get(format!("{}/app.js", server.uri()))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
    assert!(script.contains("coachfit.coachToken"), "the dashboard's bundle");
    let (status, _, _) = http1(get(format!("{}/app.css", server.uri()))).await;
    assert_eq!(status, StatusCode::OK);
}

async fn a_browser_calls_and_follows_the_api_over_grpc_web_on_http1(backend: Backend) {
    let server = TestServer::start(backend).await;
    // HTTP/1.1 only, as a browser's fetch may be; gRPC-Web framing by tonic-web's client.
    let http1_only = Client::builder(TokioExecutor::new()).build_http();
    let grpc_web = tower::ServiceBuilder::new().layer(GrpcWebClientLayer::new()).service(http1_only);
    let uri: http::Uri = server.uri().parse().unwrap();
    let bearer = |token: &str| {
        let value: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
        move |mut request: tonic::Request<()>| {
            request.metadata_mut().insert("authorization", value.clone());
            Ok(request)
        }
    };
    let as_token = |token: &str| InterceptedService::new(grpc_web.clone(), bearer(token));
    let mut roster = RosterServiceClient::with_origin(as_token(&server.coach.token), uri.clone());
    let clients = roster.list_clients(pb::ListClientsRequest::default()).await.expect("ListClients over gRPC-Web");
    let listed: Vec<_> = clients.get_ref().clients.iter().map(|c| c.user_id.clone()).collect();
    assert_eq!(listed, vec![server.client.id.clone()]);

    let mut stranger = RosterServiceClient::with_origin(as_token("not-a-token"), uri.clone());
    let refused = stranger.list_clients(pb::ListClientsRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    let mut entries = EntryServiceClient::with_origin(as_token(&server.coach.token), uri);
    let request = pb::StreamEntriesRequest { after_position: Some(clients.get_ref().position), ..Default::default() };
    let mut stream = entries.stream_entries(request).await.expect("StreamEntries over gRPC-Web").into_inner();
    server
        .ingest(&server.client.token)
        .ingest_steps(steps_request(vec![steps("2026-03-02", 8_432, 22)]))
        .await
        .unwrap();
    let update = loop {
        let message = stream.next().await.expect("the stream stays open").expect("a message");
        if let Some(pb::stream_entries_response::Kind::Update(update)) = message.kind {
            break update;
        }
    };
    let entry = update.entry.expect("an entry");
    assert_eq!(
        (entry.user_id.as_str(), entry.date.as_str(), entry.steps),
        (server.client.id.as_str(), "2026-03-02", Some(8_432))
    );
}

async fn only_configured_origins_may_call_from_another_page(backend: Backend) {
    let allowed = "https://coach.example.com";
    let options = ServerOptions { cors_origins: vec![HeaderValue::from_static(allowed)], ..ServerOptions::default() };
    let configured = TestServer::start_with_options(backend, options).await;
    let plain = TestServer::start(backend).await;
    let preflight = |server: &TestServer, origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri(format!("{}/coachfit.v1.RosterService/ListClients", server.uri()))
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization,content-type,x-grpc-web")
            .body(Empty::new())
            .unwrap()
    };
    let (_, headers, _) = http1(preflight(&configured, allowed)).await;
    assert_eq!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).map(|v| v.to_str().unwrap()), Some(allowed));
    let allowed_headers = headers[header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap().to_string();
    for needed in ["authorization", "content-type", "x-grpc-web"] {
        assert!(allowed_headers.contains(needed), "{needed} not in {allowed_headers}");
    }
    // The call itself: the page may read the answer's status.
    let call = Request::post(format!("{}/coachfit.v1.RosterService/ListClients", configured.uri()))
        .header(header::ORIGIN, allowed)
        .header(header::CONTENT_TYPE, "application/grpc-web+proto")
        .header(header::AUTHORIZATION, format!("Bearer {}", configured.coach.token))
        .body(Full::new(bytes::Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http();
    let answer = client.request(call).await.expect("an answer");
    assert_eq!(answer.status(), StatusCode::OK);
    let headers = answer.headers();
    assert_eq!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).map(|v| v.to_str().unwrap()), Some(allowed));
    let exposed = headers[header::ACCESS_CONTROL_EXPOSE_HEADERS].to_str().unwrap().to_string();
    assert!(exposed.contains("grpc-status") && exposed.contains("grpc-message"), "{exposed}");
    for (server, origin) in [(&configured, "https://elsewhere.example.com"), (&plain, allowed)] {
        let (_, headers, _) = http1(preflight(server, origin)).await;
        assert_eq!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN), None, "{origin} allowed");
    }
}
