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
