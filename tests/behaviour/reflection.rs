//! Server reflection, as grpcurl uses it: the services, and the error details, so that
//! `grpcurl -format-error` prints a BadRequest's violations and a RetryInfo as JSON.

use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

use crate::common::*;

/// The names of the files that describe `symbol` (with their imports), as reflection v1
/// answers.
async fn files_describing(server: &TestServer, symbol: &str) -> Vec<String> {
    use prost::Message;
    let channel = tonic::transport::Channel::from_shared(server.uri()).unwrap().connect().await.unwrap();
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(symbol.into())),
    };
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    match answers.message().await.unwrap().unwrap().message_response.unwrap() {
        MessageResponse::FileDescriptorResponse(files) => files
            .file_descriptor_proto
            .iter()
            .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap().name().to_string())
            .collect(),
        other => panic!("{symbol}: {other:?}"),
    }
}

#[tokio::test]
async fn reflection_describes_the_services_and_the_error_details() {
    let server = TestServer::start(Backend::Sqlite).await;
    assert!(files_describing(&server, "coachfit.v1.IngestService").await.contains(&"coachfit/v1/ingest.proto".into()));
    for detail in ["google.rpc.BadRequest", "google.rpc.RetryInfo"] {
        let files = files_describing(&server, detail).await;
        assert!(files.iter().any(|f| f.ends_with("error_details.proto")), "{detail}: {files:?}");
    }
}

/// The service config shipped for standard gRPC clients names only methods the API has,
/// retries only what is safe to retry, and leaves out the calls a retry would harm.
#[test]
fn the_shipped_service_config_names_real_methods_and_retries_only_unavailable() {
    use prost::Message;
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("docs/service-config.json").unwrap()).unwrap();
    let files = prost_types::FileDescriptorSet::decode(coachfit::proto::FILE_DESCRIPTOR_SET).unwrap();
    let methods: Vec<(String, String)> = files
        .file
        .iter()
        .flat_map(|f| f.service.iter().map(move |s| (f.package().to_string(), s)))
        .flat_map(|(package, s)| {
            s.method.iter().map(move |m| (format!("{package}.{}", s.name()), m.name().to_string()))
        })
        .collect();
    let mut named = Vec::new();
    for method_config in config["methodConfig"].as_array().unwrap() {
        assert_eq!(method_config["retryPolicy"]["retryableStatusCodes"], serde_json::json!(["UNAVAILABLE"]));
        for name in method_config["name"].as_array().unwrap() {
            let service = name["service"].as_str().unwrap();
            match name["method"].as_str() {
                Some(method) => named.push((service.to_string(), method.to_string())),
                None => named.extend(methods.iter().filter(|(s, _)| s == service).cloned()),
            }
        }
    }
    for (service, method) in &named {
        assert!(methods.contains(&(service.clone(), method.clone())), "{service}/{method} is not an RPC");
    }
    for not_retried in ["StreamEntries", "RedeemPairingCode", "CreateCoach", "RebuildProjections"] {
        assert!(!named.iter().any(|(_, m)| m == not_retried), "{not_retried} must not be retried blindly");
    }
    assert!(named.contains(&("coachfit.v1.IngestService".into(), "IngestSteps".into())));
}
