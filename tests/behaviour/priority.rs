//! The source-priority rule is data: set once, through any instance, it is the rule every
//! instance folds with from then on, and the days stored before it are re-folded under it.

use coachfit::proto::v1 as pb;
use tonic::Code;

use crate::common::*;
use crate::each_backend;

each_backend!(
    a_rule_set_through_one_instance_folds_the_next_event_through_another,
    a_rule_that_names_unknowns_is_refused,
);

/// `fields.steps`: HealthKit before the client's own entries.
fn healthkit_first_for_steps() -> pb::PriorityRule {
    let sources = vec![pb::Source::Healthkit.into(), pb::Source::Manual.into()];
    pb::PriorityRule { fields: [("steps".to_string(), pb::SourceOrder { sources })].into(), ..Default::default() }
}

async fn a_rule_set_through_one_instance_folds_the_next_event_through_another(backend: Backend) {
    let a = TestServer::start(backend).await;
    let b = a.another_instance().await;
    let client = &a.client;
    let own_steps =
        |date: &str, total| manual(&client.id, date, pb::ManualValues { steps: Some(total), ..Default::default() });
    a.ingest(&client.token).ingest_steps(steps_request(vec![steps("2026-03-01", 8_000, 20)])).await.unwrap();
    a.entries(&client.token).record_manual_entry(own_steps("2026-03-01", 5_000)).await.unwrap();
    a.entries(&client.token).record_manual_entry(own_steps("2026-03-02", 4_000)).await.unwrap();
    assert_eq!(a.entry("2026-03-01").await.steps, Some(5_000), "the client's own entry wins by default");
    let before = a.entry("2026-03-02").await;

    let request = pb::SetPriorityRuleRequest { rule: Some(healthkit_first_for_steps()) };
    let set = a.admin(&a.admin_token).set_priority_rule(request).await.unwrap().into_inner();
    assert_eq!((set.version, set.days_rebuilt, set.days_changed), (1, 2, 1), "only the first day's value changes");

    let first = b.entry("2026-03-01").await;
    assert_eq!(first.steps, Some(8_000), "re-folded under the new rule");
    assert_eq!(provenance(&first, "steps"), (pb::Source::Healthkit, true));
    let unchanged = b.entry("2026-03-02").await;
    assert_eq!((unchanged.steps, unchanged.position), (Some(4_000), before.position), "no new position");

    // The next event, through the other instance, folds under the rule it did not set.
    b.ingest(&client.token).ingest_steps(steps_request(vec![steps("2026-03-02", 9_000, 20)])).await.unwrap();
    assert_eq!(b.entry("2026-03-02").await.steps, Some(9_000));
    assert_eq!(a.entry("2026-03-02").await.steps, Some(9_000));

    let shown = b.admin(&b.coach.token).get_priority_rule(pb::GetPriorityRuleRequest {}).await.unwrap().into_inner();
    assert_eq!((shown.version, shown.set_by.as_str(), shown.applied), (1, "admin", true));
    assert_eq!(shown.rule, Some(healthkit_first_for_steps()));
    assert!(shown.set_at.is_some());
    assert!(a.verify().await, "every entry is the fold of its events under the stored rule");

    // The same rule again (a retried call) is no new version and re-folds nothing.
    let request = pb::SetPriorityRuleRequest { rule: Some(healthkit_first_for_steps()) };
    let again = b.admin(&b.admin_token).set_priority_rule(request).await.unwrap().into_inner();
    assert_eq!((again.version, again.days_rebuilt), (1, 0));
}

async fn a_rule_that_names_unknowns_is_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut admin = server.admin(&server.admin_token);
    let mut unknown_field = healthkit_first_for_steps();
    unknown_field.fields.insert("mood".into(), pb::SourceOrder { sources: vec![pb::Source::Manual.into()] });
    let unspecified = pb::PriorityRule { default_order: vec![pb::Source::Unspecified.into()], ..Default::default() };
    let twice = pb::PriorityRule { default_order: vec![pb::Source::Coach.into(); 2], ..Default::default() };
    for (rule, field) in [
        (Some(unknown_field), r#"rule.fields["mood"]"#),
        (Some(unspecified), "rule.default_order"),
        (Some(twice), "rule.default_order"),
        (None, "rule"),
    ] {
        let refused = admin.set_priority_rule(pb::SetPriorityRuleRequest { rule }).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert_eq!(bad_request_fields(&refused), vec![field.to_string()], "{}", refused.message());
    }
    let shown = admin.get_priority_rule(pb::GetPriorityRuleRequest {}).await.unwrap().into_inner();
    assert_eq!((shown.version, shown.set_at), (0, None), "nothing was stored");
}
