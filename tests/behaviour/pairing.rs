//! PairingService: the pairing flow, single use, expiry, throttled guessing, revocation.

use std::time::Duration;

use coachfit::api::pairing::PairingOptions;
use coachfit::proto::v1 as pb;
use pb::stream_entries_response::Kind;
use tonic::Code;
use tonic_types::StatusExt;

use crate::common::*;
use crate::each_backend;

each_backend!(
    a_paired_device_ingests_and_its_coach_sees_it_live,
    a_code_for_an_existing_client_pairs_another_device,
    a_code_is_single_use_even_under_concurrent_redeems,
    an_expired_code_is_not_found,
    guessing_codes_gets_a_peer_refused_for_the_lockout,
    concurrent_guesses_stop_at_the_limit_and_a_success_does_not_forgive_failures,
    behind_a_trusted_proxy_guesses_count_per_forwarded_client,
    a_revoked_device_is_refused_at_once_on_every_instance,
    a_rotated_or_revoked_coach_token_is_refused_at_once_on_every_instance,
    a_code_for_a_new_client_creates_the_user_only_when_redeemed,
    a_failed_redeem_leaves_the_database_writable_by_another_process,
);

const ALPHABET: &str = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

pub async fn create_code(
    server: &TestServer,
    coach_token: &str,
    user_id: Option<String>,
) -> pb::CreatePairingCodeResponse {
    let request = pb::CreatePairingCodeRequest { user_id, ..Default::default() };
    server.pairing(coach_token).create_pairing_code(request).await.expect("CreatePairingCode").into_inner()
}

pub async fn redeem(server: &TestServer, code: &str) -> Result<pb::RedeemPairingCodeResponse, tonic::Status> {
    let request = pb::RedeemPairingCodeRequest { code: code.into(), device_name: "Ana's iPhone".into() };
    server.pairing("").redeem_pairing_code(request).await.map(|r| r.into_inner())
}

async fn a_paired_device_ingests_and_its_coach_sees_it_live(backend: Backend) {
    let server = TestServer::start(backend).await;
    let request = pb::StreamEntriesRequest { user_ids: vec![], after_position: None, include_clients: false };
    let mut stream = server.entries(&server.coach.token).stream_entries(request).await.unwrap().into_inner();
    assert!(matches!(stream.message().await.unwrap().unwrap().kind, Some(Kind::Heartbeat(_))));

    let created = create_code(&server, &server.coach.token, None).await;
    assert_eq!(created.code.len(), 8);
    assert!(created.code.chars().all(|c| ALPHABET.contains(c)), "{}", created.code);
    let expires_in = created.expires_at.unwrap().seconds - chrono::Utc::now().timestamp();
    assert!((14 * 60..=15 * 60).contains(&expires_in), "expires in {expires_in} s");

    // Typed in lower case, as people do.
    let paired = redeem(&server, &created.code.to_lowercase()).await.unwrap();
    assert_eq!(
        (paired.user_id.as_str(), paired.coach_id.as_str()),
        (created.user_id.as_str(), server.coach.id.as_str())
    );
    assert_eq!(paired.device_token.len(), 64);

    server
        .ingest(&paired.device_token)
        .ingest_steps(steps_request(vec![steps("2026-03-05", 3_210, 20)]))
        .await
        .unwrap();
    let update = loop {
        let message = tokio::time::timeout(Duration::from_secs(30), stream.message()).await.unwrap().unwrap().unwrap();
        if let Some(Kind::Update(update)) = message.kind {
            break update;
        }
    };
    let entry = update.entry.unwrap();
    assert_eq!((entry.user_id.as_str(), entry.steps), (paired.user_id.as_str(), Some(3_210)));
}

async fn a_code_for_an_existing_client_pairs_another_device(backend: Backend) {
    let server = TestServer::start(backend).await;
    let created = create_code(&server, &server.coach.token, Some(server.client.id.clone())).await;
    assert_eq!(created.user_id, server.client.id);
    let paired = redeem(&server, &created.code).await.unwrap();
    assert_eq!(paired.user_id, server.client.id);
    assert_ne!(paired.device_token, server.client.token);

    let rival = server.new_coach("Coach Rival").await;
    let request = pb::CreatePairingCodeRequest { user_id: Some(server.client.id.clone()), ..Default::default() };
    let status = server.pairing(&rival.token).create_pairing_code(request).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

async fn a_code_is_single_use_even_under_concurrent_redeems(backend: Backend) {
    let server = TestServer::start(backend).await;
    let code = create_code(&server, &server.coach.token, None).await.code;
    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let mut client = server.pairing("");
            let request = pb::RedeemPairingCodeRequest { code: code.clone(), device_name: "phone".into() };
            tokio::spawn(async move { client.redeem_pairing_code(request).await })
        })
        .collect();
    let mut won = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => won += 1,
            Err(status) => assert_eq!(status.code(), Code::NotFound),
        }
    }
    assert_eq!(won, 1, "exactly one redeem wins");
    assert_eq!(redeem(&server, &code).await.unwrap_err().code(), Code::NotFound, "a used code is never a credential");
    let unknown = redeem(&server, "ZZZZ2222").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(unknown.message(), redeem(&server, &code).await.unwrap_err().message(), "no oracle");
}

async fn an_expired_code_is_not_found(backend: Backend) {
    let options = PairingOptions { code_ttl: Duration::from_secs(1), max_failures: 100, ..PairingOptions::default() };
    let server = TestServer::start_with(backend, options).await;
    let code = create_code(&server, &server.coach.token, None).await.code;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(redeem(&server, &code).await.unwrap_err().code(), Code::NotFound);
}

async fn guessing_codes_gets_a_peer_refused_for_the_lockout(backend: Backend) {
    let options = PairingOptions { max_failures: 3, lockout: Duration::from_secs(2), ..PairingOptions::default() };
    let server = TestServer::start_with(backend, options).await;
    let code = create_code(&server, &server.coach.token, None).await.code;
    for guess in ["AAAAAAAA", "BBBBBBBB", "not-a-code"] {
        assert_eq!(redeem(&server, guess).await.unwrap_err().code(), Code::NotFound);
    }
    // Refused now, even with the right code, and told when to come back.
    let refused = redeem(&server, &code).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let retry = refused.get_details_retry_info().expect("retry info").retry_delay.expect("a delay");
    assert!(retry > Duration::ZERO && retry <= Duration::from_secs(2));

    tokio::time::sleep(retry + Duration::from_millis(200)).await;
    assert!(redeem(&server, &code).await.is_ok(), "the refusal lasts the lockout, no longer");
}

/// Guesses are counted before they reach the database: of many sent at once, only the
/// allowed number are answered at all. Redeeming a code of one's own coach account does
/// not wipe out the failures before it.
async fn concurrent_guesses_stop_at_the_limit_and_a_success_does_not_forgive_failures(backend: Backend) {
    let options = PairingOptions { max_failures: 5, ..PairingOptions::default() };
    let server = TestServer::start_with(backend, options).await;
    let own_code = create_code(&server, &server.coach.token, None).await.code;
    for guess in ["AAAAAAAA", "BBBBBBBB", "CCCCCCCC"] {
        assert_eq!(redeem(&server, guess).await.unwrap_err().code(), Code::NotFound);
    }
    assert!(redeem(&server, &own_code).await.is_ok(), "the 4th attempt succeeds");
    assert_eq!(redeem(&server, "DDDDDDDD").await.unwrap_err().code(), Code::NotFound, "the 4th failure");

    // The fifth failure is the last admitted, however many are sent at once.
    let guesses: Vec<_> = (0..50)
        .map(|_| {
            tokio::spawn({
                let pairing = server.pairing("");
                async move {
                    let request = pb::RedeemPairingCodeRequest { code: "EEEEEEEE".into(), device_name: "guess".into() };
                    pairing.clone().redeem_pairing_code(request).await.unwrap_err().code()
                }
            })
        })
        .collect();
    let mut answered = 0;
    for guess in guesses {
        match guess.await.unwrap() {
            Code::NotFound => answered += 1,
            code => assert_eq!(code, Code::ResourceExhausted),
        }
    }
    assert_eq!(answered, 1, "four failures before, one admitted now");
}

/// A guess through a proxy the server trusts counts against the client the proxy names, so
/// one guesser does not lock out everyone behind the proxy; from a peer that is not
/// trusted, the header counts for nothing.
async fn behind_a_trusted_proxy_guesses_count_per_forwarded_client(backend: Backend) {
    let guess = |server: &TestServer, forwarded_for: &str| {
        let mut request =
            tonic::Request::new(pb::RedeemPairingCodeRequest { code: "ZZZZZZZZ".into(), device_name: "guess".into() });
        request.metadata_mut().insert("x-forwarded-for", forwarded_for.parse().unwrap());
        let mut pairing = server.pairing("");
        async move { pairing.redeem_pairing_code(request).await.unwrap_err().code() }
    };
    let loopback = "127.0.0.1".parse().unwrap();
    let options = PairingOptions { max_failures: 2, trusted_proxies: vec![loopback], ..PairingOptions::default() };
    let server = TestServer::start_with(backend, options).await;
    // The client is the last hop the trusted proxy appended.
    for _ in 0..2 {
        assert_eq!(guess(&server, "198.51.100.9, 203.0.113.5").await, Code::NotFound);
    }
    assert_eq!(guess(&server, "203.0.113.5").await, Code::ResourceExhausted);
    assert_eq!(guess(&server, "203.0.113.6").await, Code::NotFound, "another client behind the proxy");

    let untrusted =
        TestServer::start_with(backend, PairingOptions { max_failures: 2, ..PairingOptions::default() }).await;
    assert_eq!(guess(&untrusted, "203.0.113.5").await, Code::NotFound);
    assert_eq!(guess(&untrusted, "203.0.113.6").await, Code::NotFound);
    assert_eq!(guess(&untrusted, "203.0.113.7").await, Code::ResourceExhausted, "the header counts for nothing");
}

async fn a_revoked_device_is_refused_at_once_on_every_instance(backend: Backend) {
    let server = TestServer::start(backend).await;
    let other_instance = server.another_instance().await;
    let code = create_code(&server, &server.coach.token, Some(server.client.id.clone())).await.code;
    let second = redeem(&server, &code).await.unwrap();

    let request = pb::RevokeDeviceRequest { user_id: String::new(), device_id: None };
    let revoked = server.pairing(&second.device_token).revoke_device(request).await.unwrap().into_inner();
    assert_eq!(revoked.revoked, 1, "a device revokes itself");
    for instance in [&server, &other_instance] {
        let status =
            instance.entries(&second.device_token).get_entry(pb::GetEntryRequest::default()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    // The client's first device still works.
    server.ingest(&server.client.token).ingest_steps(steps_request(vec![steps("2026-03-05", 1, 20)])).await.unwrap();

    let rival = server.new_coach("Coach Rival").await;
    let request = pb::RevokeDeviceRequest { user_id: server.client.id.clone(), device_id: None };
    let status = server.pairing(&rival.token).revoke_device(request.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let all = server.pairing(&server.coach.token).revoke_device(request).await.unwrap().into_inner();
    assert_eq!(all.revoked, 1, "the coach revokes the remaining device");
    let status =
        other_instance.ingest(&server.client.token).ingest_steps(steps_request(vec![steps("2026-03-05", 2, 21)])).await;
    assert_eq!(status.unwrap_err().code(), Code::Unauthenticated);
}

async fn a_rotated_or_revoked_coach_token_is_refused_at_once_on_every_instance(backend: Backend) {
    let server = TestServer::start(backend).await;
    let other_instance = server.another_instance().await;
    let old = server.coach.token.clone();
    let rotate = pb::RotateCoachTokenRequest::default();
    let new = server.admin(&old).rotate_coach_token(rotate).await.unwrap().into_inner().coach_token;
    let read = || pb::GetEntryRequest { user_id: server.client.id.clone(), date: "2026-03-05".into() };
    for instance in [&server, &other_instance] {
        let status = instance.entries(&old).get_entry(read()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "the old token is refused");
        let status = instance.entries(&new).get_entry(read()).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "the new token reads the client's (empty) day");
    }

    let open_code = create_code(&server, &new, None).await.code;
    let revoke = pb::RevokeCoachRequest { coach_id: server.coach.id.clone() };
    let mut admin = server.admin(&server.admin_token);
    assert_eq!(admin.revoke_coach(revoke.clone()).await.unwrap().into_inner().tokens_revoked, 1);
    let status = redeem(&server, &open_code).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "a revoked coach's open codes are expired");
    for instance in [&server, &other_instance] {
        let status = instance.entries(&new).get_entry(read()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    assert_eq!(admin.revoke_coach(revoke).await.unwrap().into_inner().tokens_revoked, 0, "revoking again is no error");
    let unknown = admin.revoke_coach(pb::RevokeCoachRequest { coach_id: "nobody".into() }).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let rotate = pb::RotateCoachTokenRequest { coach_id: server.coach.id.clone() };
    let fresh = admin.rotate_coach_token(rotate).await.unwrap().into_inner().coach_token;
    server
        .entries(&fresh)
        .list_entries(pb::ListEntriesRequest {
            user_id: server.client.id.clone(),
            start_date: "2026-03-01".into(),
            end_date: "2026-03-05".into(),
            ..Default::default()
        })
        .await
        .expect("an admin gives a revoked coach a new token");
}

/// A code for a new client reserves the client's id; the user exists once the code is
/// redeemed, so a code never used leaves no client behind.
async fn a_code_for_a_new_client_creates_the_user_only_when_redeemed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let created = create_code(&server, &server.coach.token, None).await;
    let write = manual(&created.user_id, "2026-03-05", pb::ManualValues { steps: Some(1_000), ..Default::default() });
    let mut coach = server.entries(&server.coach.token);
    let before = coach.record_manual_entry(write.clone()).await.unwrap_err();
    assert_eq!(before.code(), Code::PermissionDenied, "no such client yet");
    let code_for_it = pb::CreatePairingCodeRequest { user_id: Some(created.user_id.clone()), ..Default::default() };
    let refused = server.pairing(&server.coach.token).create_pairing_code(code_for_it).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    let paired = redeem(&server, &created.code).await.unwrap();
    assert_eq!(
        (paired.user_id.as_str(), paired.coach_id.as_str()),
        (created.user_id.as_str(), server.coach.id.as_str())
    );
    coach.record_manual_entry(write).await.expect("the client exists once paired");
}

/// After a wrong code, another process (the CLI minting a coach, say) can write at once:
/// the redeem's transaction does not stay open until the server's next write.
async fn a_failed_redeem_leaves_the_database_writable_by_another_process(backend: Backend) {
    let server = TestServer::start(backend).await;
    assert_eq!(redeem(&server, "ABCDEFGH").await.unwrap_err().code(), Code::NotFound);
    // Fails with "database is locked" after the connection's busy timeout if it stayed open.
    let insert =
        format!("INSERT INTO coaches (coach_id, name, created_at) VALUES ('cli-coach', 'Cli', {})", server.epoch_sql());
    server.execute_sql(&insert).await;
}
