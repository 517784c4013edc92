//! `coachfit demo`: the service running with a coach, two clients and a few weeks of their
//! data, sent through the API as the app and the coach would send it, plus a trickle of new
//! steps so that streams show life. Prints the tokens as `export` lines, once.

mod history;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use rand::Rng;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::accounts::new_token;
use crate::api::bearer::Bearer;
use crate::proto::v1 as pb;
use crate::proto::v1::admin_service_client::AdminServiceClient;
use crate::proto::v1::entry_service_client::EntryServiceClient;
use crate::proto::v1::ingest_service_client::IngestServiceClient;
use crate::proto::v1::pairing_service_client::PairingServiceClient;
use crate::server::{self, ServerOptions};
use crate::store::Store;
use history::Habits;

/// Days of history each client has.
const HISTORY_DAYS: i64 = 21;
/// How often today's step total grows.
const TRICKLE: Duration = Duration::from_secs(5);
/// Where the `export` lines are written, in the working directory.
pub const ENV_FILE: &str = "coachfit-demo.env";

type Authed = InterceptedService<Channel, Bearer>;

struct Person {
    name: &'static str,
    device: &'static str,
    habits: Habits,
}

/// A client as the demo paired it.
struct Paired {
    name: &'static str,
    user_id: String,
    device_token: String,
}

/// Serves on `listen` until SIGINT or SIGTERM, after filling the store with the demo.
pub async fn run<S: Store>(store: S, listen: SocketAddr, database: &str) -> anyhow::Result<()> {
    let admin_token = new_token();
    let (listener, addr) = server::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let options = ServerOptions { admin_token: Some(admin_token.clone()), ..ServerOptions::default() };
    let shutdown = server::shutdown_signal();
    let mut serving = tokio::spawn(server::serve(store, listener, options, shutdown));
    tracing::info!(%addr, database, "coachfit demo listening");

    let channel = Channel::from_shared(format!("http://{addr}"))?.connect().await?;
    let (coach_token, clients) = seed(&channel, &admin_token).await.context("filling the demo")?;
    let exports = exports(addr, &admin_token, &coach_token, &clients);
    std::fs::write(ENV_FILE, &exports).with_context(|| format!("writing {ENV_FILE}"))?;
    println!("{}", banner(addr, database, &exports));

    tokio::select! {
        served = &mut serving => served?,
        failed = trickle(&channel, &clients) => {
            failed?;
            serving.await?
        }
    }
}

fn people() -> [Person; 2] {
    [
        Person {
            name: "Ana",
            device: "Ana's iPhone",
            habits: Habits { seed: 1, steps: 9_500, sleep_minutes: 440, weight_kg: 64.0, pounds: false, strava: true },
        },
        Person {
            name: "Ben",
            device: "Ben's iPhone",
            habits: Habits { seed: 2, steps: 6_500, sleep_minutes: 400, weight_kg: 88.0, pounds: true, strava: false },
        },
    ]
}

fn authed<T>(channel: &Channel, token: &str, client: impl FnOnce(Authed) -> T) -> T {
    client(InterceptedService::new(channel.clone(), Bearer::new(token)))
}

/// The coach, their two clients paired by code, each client's history, and one correction
/// by the coach. Returns the coach's token and the clients.
async fn seed(channel: &Channel, admin_token: &str) -> anyhow::Result<(String, Vec<Paired>)> {
    let mut admin = authed(channel, admin_token, AdminServiceClient::new);
    let coach = admin.create_coach(pb::CreateCoachRequest { name: "Coach Carla".into() }).await?.into_inner();
    let mut coach_pairing = authed(channel, &coach.coach_token, PairingServiceClient::new);
    let today = Utc::now().with_timezone(&history::ZONE).date_naive();
    let days = history::past_days(today, HISTORY_DAYS);
    let mut clients = Vec::new();
    for person in people() {
        let request = pb::CreatePairingCodeRequest { user_id: None, display_name: person.name.into() };
        let code = coach_pairing.create_pairing_code(request).await?;
        let redeem = pb::RedeemPairingCodeRequest { code: code.into_inner().code, device_name: person.device.into() };
        let paired = PairingServiceClient::new(channel.clone()).redeem_pairing_code(redeem).await?.into_inner();
        send_history(channel, &paired.device_token, &person.habits, &days).await?;
        clients.push(Paired { name: person.name, user_id: paired.user_id, device_token: paired.device_token });
    }
    // The coach corrects a day Ana forgot her phone on a hike.
    let hike = days[days.len() - 3];
    let correction = pb::RecordManualEntryRequest {
        user_id: clients[0].user_id.clone(),
        date: hike.to_string(),
        values: Some(pb::ManualValues {
            steps: Some(21_400),
            notes: Some("Hike, phone left in the car".into()),
            ..Default::default()
        }),
        clear_fields: vec![],
        idempotency_key: format!("coach-hike-{hike}"),
        recorded_at: None,
    };
    authed(channel, &coach.coach_token, EntryServiceClient::new).record_manual_entry(correction).await?;
    Ok((coach.coach_token, clients))
}

/// A client's weeks of data, in the batches the app sends, and their own check-ins.
async fn send_history(
    channel: &Channel,
    token: &str,
    habits: &Habits,
    days: &[chrono::NaiveDate],
) -> anyhow::Result<()> {
    let mut ingest = authed(channel, token, IngestServiceClient::new);
    let zone = history::ZONE_NAME.to_string();
    let steps = pb::IngestStepsRequest { samples: history::steps(habits, days), time_zone: zone.clone() };
    let sleep = pb::IngestSleepRequest { sessions: history::sleep(habits, days), time_zone: zone.clone() };
    let workouts = history::workouts(habits, days);
    let workouts = pb::IngestWorkoutsRequest { workouts, deleted_workout_ids: vec![], time_zone: zone.clone() };
    let weights = pb::IngestBodyMetricsRequest { metrics: history::weights(habits, days), time_zone: zone };
    let responses = [
        ingest.ingest_steps(steps).await?.into_inner(),
        ingest.ingest_sleep(sleep).await?.into_inner(),
        ingest.ingest_workouts(workouts).await?.into_inner(),
        ingest.ingest_body_metrics(weights).await?.into_inner(),
    ];
    if let Some(rejected) = responses.iter().find(|r| r.rejected > 0) {
        anyhow::bail!("the demo's own data was rejected: {rejected:?}");
    }
    let mut entries = authed(channel, token, EntryServiceClient::new);
    for (day, values) in history::check_ins(habits, days) {
        let request = pb::RecordManualEntryRequest {
            user_id: String::new(),
            date: day.to_string(),
            values: Some(values),
            clear_fields: vec![],
            idempotency_key: format!("check-in-{day}"),
            recorded_at: None,
        };
        entries.record_manual_entry(request).await?;
    }
    Ok(())
}

/// Today's step totals, growing every few seconds, until the process is stopped.
async fn trickle(channel: &Channel, clients: &[Paired]) -> anyhow::Result<()> {
    let mut totals = vec![0u32; clients.len()];
    let mut interval = tokio::time::interval(TRICKLE);
    loop {
        interval.tick().await;
        let now = Utc::now();
        let today = now.with_timezone(&history::ZONE).date_naive();
        for (client, total) in clients.iter().zip(totals.iter_mut()) {
            *total += rand::thread_rng().gen_range(20..200);
            let sample = history::steps_now(today, *total, now);
            let request = pb::IngestStepsRequest { samples: vec![sample], time_zone: history::ZONE_NAME.into() };
            let sent = authed(channel, &client.device_token, IngestServiceClient::new).ingest_steps(request).await;
            if let Err(status) = sent {
                // The server is shutting down, or refused: the demo goes on regardless.
                tracing::debug!(%status, "demo trickle not stored");
            }
        }
    }
}

fn exports(addr: SocketAddr, admin_token: &str, coach_token: &str, clients: &[Paired]) -> String {
    let mut lines = vec![
        format!("export COACHFIT_ADDR={addr}"),
        format!("export ADMIN_TOKEN={admin_token}"),
        format!("export COACH_TOKEN={coach_token}"),
        format!("export DEVICE_TOKEN={}  # {}'s iPhone", clients[0].device_token, clients[0].name),
        format!("export USER_ID={}  # {}", clients[0].user_id, clients[0].name),
    ];
    for client in &clients[1..] {
        let name = client.name.to_uppercase();
        lines.push(format!("export {name}_DEVICE_TOKEN={}", client.device_token));
        lines.push(format!("export {name}_USER_ID={}", client.user_id));
    }
    lines.join("\n") + "\n"
}

fn banner(addr: SocketAddr, database: &str, exports: &str) -> String {
    let file = Path::new(ENV_FILE).display();
    format!(
        "\nCoachFit demo on {addr} (database {database})\n\
         Coach Carla with clients Ana and Ben: {HISTORY_DAYS} days of HealthKit, Strava and manual data,\n\
         a coach's correction, and today's steps growing every {} s.\n\n\
         The coach's dashboard: open http://{addr}/ and sign in with COACH_TOKEN below.\n\n\
         In another terminal, `source {file}` (written just now), or paste:\n\n{exports}\n\
         Then try grpcurl-examples/ (bash grpcurl-examples/run-all.sh runs them all). Ctrl-C stops the demo.",
        TRICKLE.as_secs()
    )
}
