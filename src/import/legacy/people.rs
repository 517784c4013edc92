//! Who the legacy users become: a user with the COACH role a coach; a user with the CLIENT
//! role a client of the coach of their cohort (of several, the earliest cohort), else of the
//! coach who invited them. A user may be both. Anyone else comes in as nobody.

use std::collections::{BTreeMap, BTreeSet};

use super::report::Cause;
use super::rows::{MembershipRow, UserRow};
use crate::domain::validate::{check_text, identifier, TextKind, MAX_NAME_CHARS};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coach {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub id: String,
    pub name: Option<String>,
    pub coach_id: String,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct People {
    pub coaches: Vec<Coach>,
    pub clients: Vec<Client>,
    /// Users that are neither, with why (`NoCoach`, `NotAClient`, `InvalidId`); coaches
    /// who are not also clients are not here.
    pub left_out: Vec<(String, Cause)>,
}

pub fn place(users: &[UserRow], memberships: &[MembershipRow]) -> People {
    let is = |user: &UserRow, role: &str| user.roles.iter().any(|r| r == role);
    let coaches: BTreeSet<&str> =
        users.iter().filter(|u| is(u, "COACH") && identifier("id", &u.id).is_ok()).map(|u| u.id.as_str()).collect();
    // Per client, the coach of their earliest cohort with a coach.
    let mut cohort_coach: BTreeMap<&str, &MembershipRow> = BTreeMap::new();
    for m in memberships.iter().filter(|m| coaches.contains(m.coach_id.as_str()) && m.coach_id != m.user_id) {
        let earlier =
            |held: &&MembershipRow| (m.cohort_created_at, &m.cohort_id) < (held.cohort_created_at, &held.cohort_id);
        if cohort_coach.get(m.user_id.as_str()).is_none_or(earlier) {
            cohort_coach.insert(&m.user_id, m);
        }
    }
    let mut people = People::default();
    for user in users {
        if identifier("id", &user.id).is_err() {
            people.left_out.push((user.id.clone(), Cause::InvalidId));
            continue;
        }
        let name = user
            .name
            .as_deref()
            .map(str::trim)
            .filter(|name| check_text("name", name, TextKind::Identifier, 1, MAX_NAME_CHARS).is_ok());
        if coaches.contains(user.id.as_str()) {
            people.coaches.push(Coach { id: user.id.clone(), name: name.unwrap_or(&user.id).to_string() });
        }
        let invited_by = user.invited_by_coach_id.as_deref().filter(|c| coaches.contains(c) && *c != user.id);
        let coach = cohort_coach.get(user.id.as_str()).map(|m| m.coach_id.as_str()).or(invited_by);
        match (is(user, "CLIENT"), coach) {
            (true, Some(coach_id)) => people.clients.push(Client {
                id: user.id.clone(),
                name: name.map(str::to_string),
                coach_id: coach_id.to_string(),
            }),
            (true, None) => people.left_out.push((user.id.clone(), Cause::NoCoach)),
            (false, _) if !coaches.contains(user.id.as_str()) => {
                people.left_out.push((user.id.clone(), Cause::NotAClient))
            }
            (false, _) => {}
        }
    }
    people
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn user(id: &str, roles: &[&str], invited_by: Option<&str>) -> UserRow {
        UserRow {
            id: id.into(),
            name: Some(format!("{id} name")),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            invited_by_coach_id: invited_by.map(str::to_string),
        }
    }

    fn member(user_id: &str, cohort_id: &str, coach_id: &str, day: u32) -> MembershipRow {
        MembershipRow {
            user_id: user_id.into(),
            cohort_id: cohort_id.into(),
            coach_id: coach_id.into(),
            cohort_created_at: NaiveDate::from_ymd_opt(2024, 1, day).unwrap().and_hms_opt(0, 0, 0).unwrap(),
        }
    }

    #[test]
    fn a_client_belongs_to_the_earliest_cohorts_coach_else_the_inviting_coach() {
        let users = [
            user("ana", &["COACH"], None),
            user("bo", &["COACH", "CLIENT"], None),
            user("cy", &["CLIENT"], Some("bo")),
            user("di", &["CLIENT"], Some("bo")),
            user("ed", &["CLIENT"], None),
            user("fay", &["ADMIN"], None),
            user("gus", &["CLIENT"], Some("fay")),
        ];
        let memberships = [
            member("cy", "late", "bo", 20),
            member("cy", "early", "ana", 3),
            // A cohort of someone who is not a coach does not place its members.
            member("di", "odd", "fay", 1),
            member("bo", "coaches", "ana", 5),
        ];
        let people = place(&users, &memberships);
        let coaches: Vec<&str> = people.coaches.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(coaches, ["ana", "bo"]);
        let clients: Vec<(&str, &str)> = people.clients.iter().map(|c| (c.id.as_str(), c.coach_id.as_str())).collect();
        assert_eq!(clients, [("bo", "ana"), ("cy", "ana"), ("di", "bo")]);
        let left_out: Vec<(&str, Cause)> = people.left_out.iter().map(|(id, why)| (id.as_str(), *why)).collect();
        assert_eq!(left_out, [("ed", Cause::NoCoach), ("fay", Cause::NotAClient), ("gus", Cause::NoCoach)]);
    }

    #[test]
    fn a_coach_without_a_usable_name_is_named_by_id_and_a_bad_id_is_left_out() {
        let mut nameless = user("ana", &["COACH"], None);
        nameless.name = Some("  ".into());
        let people = place(&[nameless, user("bad\u{7}id", &["CLIENT"], Some("ana"))], &[]);
        assert_eq!(people.coaches, [Coach { id: "ana".into(), name: "ana".into() }]);
        assert_eq!(people.left_out, [("bad\u{7}id".to_string(), Cause::InvalidId)]);
    }
}
