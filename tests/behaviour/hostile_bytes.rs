//! Property-based hostile input over every RPC: request bytes shaped by the API's own
//! schema (the descriptor set the server serves by reflection) but holding extreme values —
//! any varint, NaN and infinite doubles, timestamps far from now, strings with control
//! characters or far too long, repeated fields too many times, unknown fields. Whatever
//! comes, each call is answered with a client error or success, never `INTERNAL` or
//! `UNKNOWN`, the server keeps serving, and `verify` stays clean.
//! `PROPTEST_CASES` sets the cases per RPC (default 40).

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Code;

use crate::common::*;

/// Passes request and response bytes through unchanged: the test writes the bytes itself.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The API's messages by full name (`.coachfit.v1.StepsSample`), and its RPCs.
struct Schema {
    messages: std::collections::HashMap<String, DescriptorProto>,
    /// (path, input type, server streaming)
    methods: Vec<(String, String, bool)>,
}

impl Schema {
    fn load() -> Schema {
        let mut messages = std::collections::HashMap::new();
        let mut methods = Vec::new();
        let mut sets = vec![FileDescriptorSet::decode(coachfit::proto::FILE_DESCRIPTOR_SET).unwrap()];
        sets.push(FileDescriptorSet::decode(prost_types_descriptor()).unwrap());
        for file in sets.iter().flat_map(|set| &set.file) {
            let package = file.package();
            for message in &file.message_type {
                messages.insert(format!(".{package}.{}", message.name()), message.clone());
            }
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/{package}.{}/{}", service.name(), method.name());
                    methods.push((path, method.input_type().to_string(), method.server_streaming()));
                }
            }
        }
        Schema { messages, methods }
    }

    /// A message of `type_name` with random fields of extreme values, and now and then a
    /// field the schema does not have.
    fn garbage(&self, type_name: &str, rng: &mut StdRng, depth: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let Some(message) = self.messages.get(type_name) else { return out };
        for field in &message.field {
            if !rng.gen_bool(0.6) {
                continue;
            }
            let repeats = match field.label() {
                Label::Repeated if rng.gen_bool(0.1) => rng.gen_range(0..600),
                Label::Repeated => rng.gen_range(0..4),
                _ => 1,
            };
            for _ in 0..repeats {
                self.field(field.number() as u32, field.r#type(), field.type_name(), rng, depth, &mut out);
            }
        }
        if rng.gen_bool(0.1) {
            prost::encoding::encode_key(rng.gen_range(100..1_000), prost::encoding::WireType::Varint, &mut out);
            prost::encoding::encode_varint(rng.gen(), &mut out);
        }
        out
    }

    fn field(&self, number: u32, kind: Type, type_name: &str, rng: &mut StdRng, depth: u32, out: &mut Vec<u8>) {
        use prost::encoding::{encode_key, encode_varint, WireType};
        match kind {
            Type::Double => {
                encode_key(number, WireType::SixtyFourBit, out);
                out.put_f64_le(extreme_double(rng));
            }
            Type::Float => {
                encode_key(number, WireType::ThirtyTwoBit, out);
                out.put_f32_le(extreme_double(rng) as f32);
            }
            Type::String => {
                encode_key(number, WireType::LengthDelimited, out);
                let text = hostile_text(rng);
                encode_varint(text.len() as u64, out);
                out.extend_from_slice(text.as_bytes());
            }
            Type::Message if depth < 4 => {
                let nested = self.garbage(type_name, rng, depth + 1);
                encode_key(number, WireType::LengthDelimited, out);
                encode_varint(nested.len() as u64, out);
                out.extend_from_slice(&nested);
            }
            Type::Message => {}
            _ => {
                encode_key(number, WireType::Varint, out);
                encode_varint(extreme_varint(rng), out);
            }
        }
    }
}

/// google/protobuf/timestamp.proto, so that Timestamps get extreme seconds and nanos too.
fn prost_types_descriptor() -> &'static [u8] {
    static SET: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    SET.get_or_init(|| {
        let field = |name: &str, number: i32, kind: Type| prost_types::FieldDescriptorProto {
            name: Some(name.into()),
            number: Some(number),
            label: Some(Label::Optional as i32),
            r#type: Some(kind as i32),
            ..Default::default()
        };
        let timestamp = DescriptorProto {
            name: Some("Timestamp".into()),
            field: vec![field("seconds", 1, Type::Int64), field("nanos", 2, Type::Int32)],
            ..Default::default()
        };
        let file = prost_types::FileDescriptorProto {
            name: Some("google/protobuf/timestamp.proto".into()),
            package: Some("google.protobuf".into()),
            message_type: vec![timestamp],
            ..Default::default()
        };
        FileDescriptorSet { file: vec![file] }.encode_to_vec()
    })
}

fn extreme_varint(rng: &mut StdRng) -> u64 {
    let picks = [0, 1, u64::MAX, i64::MAX as u64, i64::MIN as u64, u32::MAX as u64, 1_000_000_000, 253_402_300_800];
    match rng.gen_range(0..3) {
        0 => picks[rng.gen_range(0..picks.len())],
        1 => rng.gen_range(0..400_000),
        _ => rng.gen(),
    }
}

fn extreme_double(rng: &mut StdRng) -> f64 {
    let picks = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, f64::MIN_POSITIVE / 2.0, 1.7e308, -1.0, 0.185];
    match rng.gen_bool(0.5) {
        true => picks[rng.gen_range(0..picks.len())],
        false => rng.gen_range(-1e6..1e6),
    }
}

fn hostile_text(rng: &mut StdRng) -> String {
    let picks = [
        "",
        "\0",
        "a\0b",
        "\u{7}\u{1b}[31m",
        "2026-02-30",
        "+10000-01-01",
        "Europe/Nowhere",
        "UTC",
        "America/New_York",
        "ZZZZZZZZ",
        "steps",
        "weight_kg",
        "\u{202e}evil",
        "💥",
        "'; DROP TABLE events; --",
    ];
    match rng.gen_range(0..4) {
        0 => picks[rng.gen_range(0..picks.len())].to_string(),
        1 => format!("2026-{:02}-{:02}", rng.gen_range(0..14), rng.gen_range(0..33)),
        2 => (0..rng.gen_range(0..40)).map(|_| char::from_u32(rng.gen_range(0..0x2_0000)).unwrap_or('x')).collect(),
        _ => "x".repeat(rng.gen_range(0..30_000)),
    }
}

/// The token a call of `path` is made with: the service's natural caller.
fn token_for<'a>(server: &'a TestServer, path: &str) -> &'a str {
    match path.split('/').nth(1).unwrap_or_default() {
        // PrivacyService as admin: a device's DeleteAccount would end the device's user.
        "coachfit.v1.AdminService" | "coachfit.v1.PrivacyService" => &server.admin_token,
        "coachfit.v1.PairingService" => &server.coach.token,
        _ => &server.client.token,
    }
}

/// Calls `path` with `body`; the status code it ends with (OK for a stream that opens).
async fn call(server: &TestServer, path: &str, streaming: bool, body: Vec<u8>) -> Code {
    let channel = tonic::transport::Channel::from_shared(server.uri()).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(Bytes::from(body));
    let token = format!("Bearer {}", token_for(server, path));
    request.metadata_mut().insert("authorization", token.parse().unwrap());
    let path: tonic::codegen::http::uri::PathAndQuery = path.parse().unwrap();
    let answered = match streaming {
        false => grpc.unary(request, path, RawCodec).await.map(drop),
        true => match grpc.server_streaming(request, path, RawCodec).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                match tokio::time::timeout(Duration::from_secs(2), stream.message()).await {
                    Ok(Err(status)) => Err(status),
                    _ => Ok(()),
                }
            }
            Err(status) => Err(status),
        },
    };
    match answered {
        Ok(()) => Code::Ok,
        Err(status) => {
            assert!(!status.message().contains("SQL") && !status.message().contains("sqlx"), "{status:?}");
            status.code()
        }
    }
}

fn every_rpc_answers_schema_shaped_garbage_without_an_internal_error(backend: Backend) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = runtime.block_on(TestServer::start(backend));
    let schema = Schema::load();
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(40);
    let methods: Vec<_> = schema.methods.iter().filter(|(path, ..)| path.starts_with("/coachfit.v1.")).collect();
    assert_eq!(methods.len(), 26, "every coachfit RPC");
    for (path, input, streaming) in methods {
        let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
        let outcome = runner.run(&any::<u64>(), |seed| {
            let body = schema.garbage(input, &mut StdRng::seed_from_u64(seed), 0);
            let code = runtime.block_on(call(&server, path, *streaming, body));
            let allowed = [
                Code::Ok,
                Code::InvalidArgument,
                Code::NotFound,
                Code::PermissionDenied,
                Code::OutOfRange,
                Code::ResourceExhausted,
            ];
            if allowed.contains(&code) {
                Ok(())
            } else {
                Err(TestCaseError::fail(format!("{path} with seed {seed}: {code:?}")))
            }
        });
        if let Err(failure) = outcome {
            panic!("{failure}");
        }
    }
    assert!(runtime.block_on(server.verify()), "what the garbage stored verifies");
    let health = runtime.block_on(call(&server, "/grpc.health.v1.Health/Check", false, vec![]));
    assert_eq!(health, Code::Ok, "still serving");
}

#[test]
fn sqlite_every_rpc_answers_schema_shaped_garbage_without_an_internal_error() {
    every_rpc_answers_schema_shaped_garbage_without_an_internal_error(Backend::Sqlite);
}

#[test]
fn postgres_every_rpc_answers_schema_shaped_garbage_without_an_internal_error() {
    every_rpc_answers_schema_shaped_garbage_without_an_internal_error(Backend::Postgres);
}
