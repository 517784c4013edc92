//! A person's data: erasure (a device deleting its account, an admin erasing a user) leaves
//! nothing of the user behind, takes nothing from anyone else, and reaches every dashboard.

use std::collections::BTreeMap;

use tokio_stream::StreamExt;
use tonic::Code;

use coachfit::proto::v1 as pb;
use pb::stream_entries_response::Kind;

use crate::common::*;
use crate::each_backend;

each_backend!(
    erasure_under_concurrent_ingest_leaves_nothing_of_the_user_and_takes_nothing_from_others,
    a_device_deletes_its_own_account_and_only_its_own,
    a_dashboard_drops_an_erased_client_live_and_on_resume,
    an_erased_users_tokens_are_refused_at_once_on_another_instance,
);

/// Where an erased user may still be named: their removal from the feed (docs/PRIVACY.md).
const KEPT: &[&str] = &["removals"];

fn day(n: usize) -> String {
    (chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::Duration::days(n as i64)).to_string()
}

async fn erasure_under_concurrent_ingest_leaves_nothing_of_the_user_and_takes_nothing_from_others(backend: Backend) {
    let server = TestServer::start(backend).await;
    let erased = server.client.clone();
    let other = server.new_client(&server.coach.id).await;
    let keeps_sending = |token: String| {
        let mut ingest = server.ingest(&token);
        async move {
            // Each day acknowledged, with its total, until the server refuses the token.
            let mut acknowledged = BTreeMap::new();
            for n in 0..60 {
                let sample = steps(&day(n), 1_000 + n as u32, 12);
                match ingest.ingest_steps(steps_request(vec![sample])).await {
                    Ok(_) => acknowledged.insert(day(n), 1_000 + n as u32),
                    Err(status) => {
                        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
                        break;
                    }
                };
            }
            acknowledged
        }
    };
    let erase = async {
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let request = pb::EraseUserRequest { user_id: erased.id.clone() };
        server.privacy(&server.admin_token).erase_user(request).await.expect("EraseUser").into_inner()
    };
    let (_, others, answer) =
        tokio::join!(keeps_sending(erased.token.clone()), keeps_sending(other.token.clone()), erase);
    assert!(answer.erased && answer.position > 0, "{answer:?}");

    assert_eq!(server.columns_containing(&erased.id, KEPT).await, Vec::<String>::new(), "rows of the erased user");
    assert_eq!(others.len(), 60, "the other client was never refused");
    let listed = server
        .entries(&other.token)
        .list_entries(pb::ListEntriesRequest {
            start_date: day(0),
            end_date: day(59),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let stored: BTreeMap<String, u32> = listed.into_iter().map(|e| (e.date, e.steps.unwrap())).collect();
    assert_eq!(stored, others, "every day the other client was told was stored");
    assert!(server.verify().await, "verify passes after an erasure");

    let mut privacy = server.privacy(&server.admin_token);
    let again = privacy.erase_user(pb::EraseUserRequest { user_id: erased.id.clone() }).await;
    let again = again.expect("erasing twice is not an error").into_inner();
    assert_eq!((again.erased, again.position), (false, 0));
    // The same report again is new, not a "duplicate" of something erased: but the user is gone.
    let refused = server.ingest(&erased.token).ingest_steps(steps_request(vec![steps(&day(0), 1_000, 12)])).await;
    assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated);
}

async fn a_device_deletes_its_own_account_and_only_its_own(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.ingest(&server.client.token).ingest_steps(steps_request(vec![steps(&day(0), 4_321, 12)])).await.unwrap();
    let coach_tries = server.privacy(&server.coach.token).delete_account(pb::DeleteAccountRequest {}).await;
    assert_eq!(coach_tries.unwrap_err().code(), Code::PermissionDenied);
    let mut as_device = server.privacy(&server.client.token);
    let device_tries = as_device.erase_user(pb::EraseUserRequest { user_id: server.client.id.clone() }).await;
    assert_eq!(device_tries.unwrap_err().code(), Code::PermissionDenied, "EraseUser is for admins");

    let deleted = server.privacy(&server.client.token).delete_account(pb::DeleteAccountRequest {}).await;
    assert!(deleted.expect("DeleteAccount").into_inner().erased_at.is_some());
    assert_eq!(server.columns_containing(&server.client.id, KEPT).await, Vec::<String>::new());
    let retried = server.privacy(&server.client.token).delete_account(pb::DeleteAccountRequest {}).await;
    assert_eq!(retried.unwrap_err().code(), Code::Unauthenticated, "the token went with the account");
    let roster = server.roster(&server.coach.token).list_clients(pb::ListClientsRequest::default()).await.unwrap();
    assert!(roster.into_inner().clients.is_empty(), "the coach's roster no longer lists them");
}

/// The next message of a stream that is not a heartbeat.
async fn next_change(stream: &mut tonic::Streaming<pb::StreamEntriesResponse>) -> Kind {
    loop {
        match stream.next().await.expect("the stream stays open").expect("a message").kind.expect("a kind") {
            Kind::Heartbeat(_) => continue,
            change => return change,
        }
    }
}

async fn a_dashboard_drops_an_erased_client_live_and_on_resume(backend: Backend) {
    let server = TestServer::start(backend).await;
    let other = server.new_client(&server.coach.id).await;
    let follow = |after: u64| {
        let mut entries = server.entries(&server.coach.token);
        async move {
            let request = pb::StreamEntriesRequest { after_position: Some(after), ..Default::default() };
            entries.stream_entries(request).await.expect("StreamEntries").into_inner()
        }
    };
    let mut live = follow(0).await;
    for (who, total) in [(&server.client, 1_111), (&other, 2_222)] {
        server.ingest(&who.token).ingest_steps(steps_request(vec![steps(&day(0), total, 12)])).await.unwrap();
    }
    for _ in 0..2 {
        assert!(matches!(next_change(&mut live).await, Kind::Update(_)));
    }

    let request = pb::EraseUserRequest { user_id: server.client.id.clone() };
    let erased = server.privacy(&server.admin_token).erase_user(request).await.unwrap().into_inner();
    let Kind::Removed(removed) = next_change(&mut live).await else { panic!("a removal") };
    assert_eq!((removed.user_id.as_str(), removed.position), (server.client.id.as_str(), erased.position));
    assert!(removed.removed_at.is_some());

    // A dashboard that resumes from before it all: the other client's day, then the removal,
    // and nothing of the erased client's.
    let mut resumed = follow(0).await;
    let Kind::Update(update) = next_change(&mut resumed).await else { panic!("an update") };
    let entry = update.entry.unwrap();
    assert_eq!((entry.user_id.as_str(), entry.steps), (other.id.as_str(), Some(2_222)));
    let Kind::Removed(removed) = next_change(&mut resumed).await else { panic!("the removal") };
    assert_eq!(removed.user_id, server.client.id);
    // And another coach's stream hears nothing of it.
    let stranger = server.new_coach("Coach Dana").await;
    let mut theirs = server
        .entries(&stranger.token)
        .stream_entries(pb::StreamEntriesRequest { after_position: Some(0), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let first = theirs.next().await.unwrap().unwrap().kind.unwrap();
    assert!(matches!(first, Kind::Heartbeat(_)), "{first:?}");
}

async fn an_erased_users_tokens_are_refused_at_once_on_another_instance(backend: Backend) {
    let first = TestServer::start(backend).await;
    let second = first.another_instance().await;
    let ingest = |server: &TestServer| {
        let mut ingest = server.ingest(&server.client.token);
        async move { ingest.ingest_steps(steps_request(vec![steps(&day(3), 3_000, 12)])).await.map(|_| ()) }
    };
    ingest(&second).await.expect("the token works before");
    let request = pb::EraseUserRequest { user_id: first.client.id.clone() };
    first.privacy(&first.admin_token).erase_user(request).await.unwrap();
    assert_eq!(ingest(&second).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(ingest(&first).await.unwrap_err().code(), Code::Unauthenticated);
}
