//! `coachfit import coachfit-legacy`: a generated CoachFit web-app database comes in as its
//! people would expect — coaches with new tokens, clients under the right coaches, every
//! day as the legacy rows say except where a known defect explains it, listed exactly —
//! a second run adds nothing, and a run after the legacy database changed brings the
//! changes alone.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde_json::Value;

use coachfit::proto::v1 as pb;
use coachfit_testkit::legacy_db::{Events, ExpectedDay, ExpectedDifference, ExpectedSkip, Held, LegacyDb};
use coachfit_testkit::{test_postgres_server, ScratchDatabase};

use crate::common::*;
use crate::each_backend;

each_backend!(a_legacy_database_comes_in_reconciled_a_second_run_adds_nothing_and_a_third_brings_its_changes);

/// Runs the import: whether it exited 0, the coaches it printed, and its reconciliation
/// (its last line) with what it listed on the way under `listed` (`skipped`, `difference`,
/// `day_without_row`).
fn run_import(db_url: &str, legacy_url: &str) -> (bool, Vec<Value>, Value) {
    let output = coachfit(db_url, &["import", "coachfit-legacy", "--from", legacy_url]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let failed = format!("import failed: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    let mut lines: Vec<Value> = stdout.lines().map(|line| serde_json::from_str(line).expect(&failed)).collect();
    let mut report = lines.pop().expect(&failed)["reconciliation"].clone();
    assert!(report.is_object(), "{failed}");
    let (mut coaches, mut listed) =
        (Vec::new(), serde_json::json!({"skipped": [], "difference": [], "day_without_row": []}));
    for line in lines {
        if line.get("coach_token").is_some() {
            coaches.push(line);
            continue;
        }
        let (kind, item) = line.as_object().and_then(|object| object.iter().next()).expect("a listed item");
        listed[kind].as_array_mut().unwrap_or_else(|| panic!("an unknown line: {line}")).push(item.clone());
    }
    report["listed"] = listed;
    (output.status.success(), coaches, report)
}

/// Runs the import, which must succeed: the coaches it printed, and its reconciliation.
fn import(db_url: &str, legacy_url: &str) -> (Vec<Value>, Value) {
    let (succeeded, coaches, report) = run_import(db_url, legacy_url);
    assert!(succeeded, "the import exited with a failure: {report}");
    (coaches, report)
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_else(|| panic!("{value} is not a string")).to_string()
}

fn skipped(report: &Value) -> Vec<ExpectedSkip> {
    let listed = report["listed"]["skipped"].as_array().expect("skipped");
    let column = |s: &Value| s.get("column").map(text);
    listed.iter().map(|s| (text(&s["table"]), text(&s["id"]), column(s), text(&s["cause"]))).collect()
}

fn differences(report: &Value) -> Vec<ExpectedDifference> {
    let listed = report["listed"]["difference"].as_array().expect("differences");
    let difference = |d: &Value| {
        let date: NaiveDate = text(&d["date"]).parse().unwrap();
        let cause = if d["cause"].is_null() { "unexplained".to_string() } else { text(&d["cause"]) };
        (text(&d["user_id"]), date, text(&d["field"]), cause)
    };
    listed.iter().map(difference).collect()
}

/// What the reconciliation says came in, against what should have.
fn assert_reconciled(report: &Value, legacy: &LegacyDb, events: Events, already_there: u64) {
    let rows: BTreeMap<String, u64> = serde_json::from_value(report["rows_read"].clone()).unwrap();
    let want: BTreeMap<String, u64> = legacy.rows().into_iter().map(|(t, n)| (t.to_string(), n)).collect();
    assert_eq!(rows, want);
    let counted = &report["events"];
    assert_eq!(
        (counted["written"].as_u64(), counted["already_there"].as_u64(), counted["refused"].as_u64()),
        (Some(events.written), Some(already_there), Some(events.refused)),
        "{counted}"
    );
    let listed = skipped(report);
    let mut by_cause: BTreeMap<String, u64> = BTreeMap::new();
    for (_, _, _, cause) in &listed {
        *by_cause.entry(cause.clone()).or_default() += 1;
    }
    assert_eq!(serde_json::to_value(by_cause).unwrap(), report["skipped"], "the counts by cause");
    let unique: BTreeSet<ExpectedSkip> = listed.iter().cloned().collect();
    assert_eq!(listed.len(), unique.len(), "something is listed twice: {listed:?}");
    assert_eq!(unique, legacy.expected_skipped());
    let listed = differences(report);
    assert_eq!(report["differences"].as_u64(), Some(listed.len() as u64));
    let unique: BTreeSet<ExpectedDifference> = listed.iter().cloned().collect();
    assert_eq!(listed.len(), unique.len(), "a difference is listed twice: {listed:?}");
    assert_eq!(unique, legacy.expected_differences());
    assert_eq!(report["unexplained"].as_u64(), Some(0));
}

/// Every day of the legacy clients as an admin reads it.
async fn days(server: &TestServer, legacy: &LegacyDb) -> BTreeMap<(String, NaiveDate), ExpectedDay> {
    let mut entries = server.entries(&server.admin_token);
    let mut days = BTreeMap::new();
    for user_id in legacy.clients.keys().filter(|id| !legacy.erased.contains(*id)) {
        let mut page_token = String::new();
        loop {
            let request = pb::ListEntriesRequest {
                user_id: user_id.clone(),
                start_date: "2024-12-01".into(),
                end_date: "2025-12-31".into(),
                page_size: 100,
                page_token,
            };
            let page = entries.list_entries(request).await.unwrap().into_inner();
            for e in page.entries {
                let day = ExpectedDay {
                    steps: e.steps,
                    weight_kg: e.weight_kg,
                    height_m: e.height_m,
                    body_fat_percent: e.body_fat_percent,
                    calories: e.calories,
                    sleep_quality: e.sleep_quality,
                    perceived_stress: e.perceived_stress,
                    notes: e.notes,
                    sleep_minutes: e.sleep_minutes,
                    workouts: e.workouts.map_or(0, |w| w.count),
                };
                days.insert((user_id.clone(), e.date.parse().unwrap()), day);
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
    }
    days
}

/// A day as the API shows it: kilograms to the gram, metres to the millimetre, percents to
/// a hundredth.
fn as_shown(day: ExpectedDay) -> ExpectedDay {
    let round = |x: Option<f64>, per: f64| x.map(|x| (x * per).round() / per);
    ExpectedDay {
        weight_kg: round(day.weight_kg, 1_000.0),
        height_m: round(day.height_m, 1_000.0),
        body_fat_percent: round(day.body_fat_percent, 100.0),
        ..day
    }
}

async fn assert_days(server: &TestServer, legacy: &LegacyDb) {
    let got = days(server, legacy).await;
    let want: BTreeMap<_, _> = legacy.expected_days().into_iter().map(|(key, day)| (key, as_shown(day))).collect();
    let wrong: Vec<String> = want
        .iter()
        .filter(|(key, day)| got.get(*key) != Some(*day))
        .map(|(key, day)| format!("{key:?}: got {:?}, expected {day:?}", got.get(key)))
        .collect();
    assert!(wrong.is_empty(), "{} days differ:\n{}", wrong.len(), wrong[..wrong.len().min(8)].join("\n"));
    assert_eq!(got.len(), want.len(), "days the legacy database does not have");
}

async fn a_legacy_database_comes_in_reconciled_a_second_run_adds_nothing_and_a_third_brings_its_changes(
    backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let scratch = ScratchDatabase::create(&test_postgres_server()).await.unwrap();
    let mut legacy = LegacyDb::generate();
    legacy.create(&scratch.url).await.unwrap();
    let expected = legacy.expected_events();
    assert!(expected.written > 400 && expected.refused > 0, "{expected:?}");

    let (coaches, first) = import(&server.db_url, &scratch.url);
    let printed: Vec<(String, String)> = coaches.iter().map(|c| (text(&c["coach_id"]), text(&c["name"]))).collect();
    assert_eq!(printed, legacy.coaches);
    assert_eq!((&first["coaches"]["added"], &first["clients"]["added"]), (&Value::from(2), &Value::from(4)));
    assert_reconciled(&first, &legacy, expected, 0);
    assert_days(&server, &legacy).await;
    assert!(server.verify().await);
    // Each coach's printed token shows them their clients, under the legacy ids.
    for coach in &coaches {
        let mut roster = server.roster(&text(&coach["coach_token"]));
        let listed = roster.list_clients(pb::ListClientsRequest::default()).await.unwrap().into_inner();
        let ids: BTreeSet<String> = listed.clients.into_iter().map(|c| c.user_id).collect();
        let coach_id = text(&coach["coach_id"]);
        let want: BTreeSet<String> =
            legacy.clients.iter().filter(|(_, coach)| **coach == coach_id).map(|(id, _)| id.clone()).collect();
        assert_eq!(ids, want, "clients of {coach_id}");
    }

    let (again, second) = import(&server.db_url, &scratch.url);
    assert!(again.is_empty(), "coaches are added once: {again:?}");
    assert_eq!((&second["coaches"]["existing"], &second["clients"]["existing"]), (&Value::from(2), &Value::from(4)));
    let nothing_new = Events { written: 0, refused: expected.refused };
    assert_reconciled(&second, &legacy, nothing_new, expected.written);
    assert_days(&server, &legacy).await;

    // Cy's new phone reports a day's steps, and Cy types a note on another day; the legacy
    // rows of both days change afterwards: the import leaves what Cy wrote alone.
    let [synced, typed, _] = legacy.picks();
    let cy = legacy.entries[synced].user_id.clone();
    let (steps_day, notes_day) = (legacy.entries[synced].date, legacy.entries[typed].date);
    let coach = coaches.iter().find(|c| text(&c["coach_id"]) == legacy.clients[&cy]).unwrap();
    let mut pairing = server.pairing(&text(&coach["coach_token"]));
    let code = pb::CreatePairingCodeRequest { user_id: Some(cy.clone()), display_name: String::new() };
    let code = pairing.create_pairing_code(code).await.unwrap().into_inner().code;
    let redeem = pb::RedeemPairingCodeRequest { code, device_name: "Cy's new iPhone".into() };
    let device = server.pairing("").redeem_pairing_code(redeem).await.unwrap().into_inner();
    let synced_steps = steps(&steps_day.to_string(), 7_777, 24 * 10);
    server.ingest(&device.device_token).ingest_steps(steps_request(vec![synced_steps])).await.unwrap();
    let note = "typed in the new app";
    let values = pb::ManualValues { notes: Some(note.into()), ..Default::default() };
    let typed_note = manual(&cy, &notes_day.to_string(), values);
    server.entries(&device.device_token).record_manual_entry(typed_note).await.unwrap();
    legacy.hold(&cy, steps_day, Held { steps: Some(7_777), notes: None });
    legacy.hold(&cy, notes_day, Held { steps: None, notes: Some(note.into()) });

    let (changed, replaced) = legacy.change(&scratch.url).await.unwrap();
    let (_, third) = import(&server.db_url, &scratch.url);
    let refused = expected.refused - replaced.refused + changed.refused;
    let unchanged = expected.written - replaced.written;
    assert_reconciled(&third, &legacy, Events { written: changed.written, refused }, unchanged);
    assert_eq!(third["events"]["workouts_withdrawn"].as_u64(), Some(1), "the deleted run");
    assert_days(&server, &legacy).await;
    assert!(server.verify().await);

    // An erased client does not come back with the next run.
    let ed = legacy.users[4].id.clone();
    let erase = pb::EraseUserRequest { user_id: ed.clone() };
    server.privacy(&server.admin_token).erase_user(erase).await.unwrap();
    legacy.erase(&ed);
    let (_, fourth) = import(&server.db_url, &scratch.url);
    let now = legacy.expected_events();
    assert_reconciled(&fourth, &legacy, Events { written: 0, refused: now.refused }, now.written);
    assert_eq!(fourth["clients"]["existing"].as_u64(), Some(3));
    assert_days(&server, &legacy).await;
    assert!(server.columns_containing(&ed, &["removals"]).await.is_empty(), "Ed is back");
    let asked = pb::GetEntryRequest { user_id: ed, date: "2025-01-02".into() };
    let status = server.entries(&server.admin_token).get_entry(asked).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);

    // A legacy row deleted: what it brought in stays, and its day is listed for a person.
    let gone = legacy.delete_entry(&scratch.url, &cy).await.unwrap();
    let (succeeded, _, fifth) = run_import(&server.db_url, &scratch.url);
    assert!(!succeeded, "a day without its row is unexplained: {fifth}");
    let listed = serde_json::json!([{ "user_id": cy, "date": gone.to_string() }]);
    assert_eq!((&fifth["days_without_row"], &fifth["listed"]["day_without_row"]), (&Value::from(1), &listed));
    assert_eq!(fifth["unexplained"].as_u64(), Some(1));
    assert_eq!(fifth["events"]["written"].as_u64(), Some(0));
}
