//! AdminService: operator calls, admin token only (a coach may rotate their own token).

use tonic::{Request, Response, Status};

use super::access_log::Reader;
use super::auth::{self, bearer_token, Principal};
use super::convert;
use super::status::{ApiError, ApiResult};
use super::AppState;
use crate::domain::dates::parse_day;
use crate::domain::priority::{PriorityFile, PriorityRule};
use crate::domain::validate::{check_text, identifier, TextKind, MAX_NAME_CHARS};
use crate::domain::{reason, Source, Violation};
use crate::proto::v1 as pb;
use crate::proto::v1::admin_service_server::AdminService;
use crate::store::Store;

pub struct AdminApi<S> {
    state: AppState<S>,
}

impl<S> AdminApi<S> {
    pub fn new(state: AppState<S>) -> Self {
        AdminApi { state }
    }
}

impl<S: Store> AdminApi<S> {
    async fn admin<T>(&self, request: &Request<T>, rpc: &str) -> ApiResult<()> {
        let principal = self.state.auth.principal(request, rpc).await?;
        self.state.auth.require_admin(&principal)
    }
}

#[tonic::async_trait]
impl<S: Store> AdminService for AdminApi<S> {
    async fn recompute_day(
        &self,
        request: Request<pb::RecomputeDayRequest>,
    ) -> Result<Response<pb::RecomputeDayResponse>, Status> {
        self.admin(&request, "RecomputeDay").await?;
        let r = request.get_ref();
        identifier("user_id", &r.user_id).map_err(ApiError::invalid_one)?;
        let day = parse_day("date", &r.date, chrono::Utc::now()).map_err(ApiError::invalid_one)?;
        let entry = self.state.store.recompute_day(&r.user_id, day).await?;
        let entry = entry.ok_or_else(|| ApiError::NotFound(format!("no events on {day}")))?;
        // The answer is the user's day: a read of it.
        let reader = Reader { principal: Principal::Admin, user_id: r.user_id.clone(), peer: auth::peer(&request) };
        self.state.access_log.record(&reader, "RecomputeDay", day.to_string()).await;
        Ok(Response::new(pb::RecomputeDayResponse { entry: Some(convert::entry(&entry)) }))
    }

    async fn rebuild_projections(
        &self,
        request: Request<pb::RebuildProjectionsRequest>,
    ) -> Result<Response<pb::RebuildProjectionsResponse>, Status> {
        self.admin(&request, "RebuildProjections").await?;
        let user_id = request.get_ref().user_id.as_deref().filter(|u| !u.is_empty());
        if let Some(user_id) = user_id {
            identifier("user_id", user_id).map_err(ApiError::invalid_one)?;
        }
        let stats = self.state.store.rebuild(user_id).await?;
        Ok(Response::new(pb::RebuildProjectionsResponse {
            days_rebuilt: stats.days_rebuilt,
            events_replayed: stats.events_replayed,
        }))
    }

    async fn create_coach(
        &self,
        request: Request<pb::CreateCoachRequest>,
    ) -> Result<Response<pb::CreateCoachResponse>, Status> {
        self.admin(&request, "CreateCoach").await?;
        let name = request.get_ref().name.trim();
        check_text("name", name, TextKind::Identifier, 1, MAX_NAME_CHARS).map_err(ApiError::invalid_one)?;
        let (coach_id, coach_token) = crate::accounts::create_coach(&self.state.store, name).await?;
        Ok(Response::new(pb::CreateCoachResponse { coach_id, coach_token }))
    }

    async fn rotate_coach_token(
        &self,
        request: Request<pb::RotateCoachTokenRequest>,
    ) -> Result<Response<pb::RotateCoachTokenResponse>, Status> {
        let principal = self.state.auth.principal(&request, "RotateCoachToken").await?;
        let requested = request.get_ref().coach_id.as_str();
        // A coach's own rotation holds only while the token it presents is still live.
        let (coach_id, presented) = match &principal {
            Principal::Coach { coach_id } if requested.is_empty() || requested == coach_id => {
                (coach_id.clone(), bearer_token(&request))
            }
            Principal::Admin => {
                identifier("coach_id", requested).map_err(ApiError::invalid_one)?;
                (requested.to_string(), None)
            }
            _ => {
                let message = "only the coach themselves or an admin may rotate a coach's token";
                return Err(ApiError::PermissionDenied(message.into()).into());
            }
        };
        let token = crate::accounts::rotate_coach_token(&self.state.store, &coach_id, presented).await?;
        let coach_token = token.ok_or_else(|| match presented {
            Some(_) => ApiError::Unauthenticated,
            None => ApiError::NotFound("no such coach".into()),
        })?;
        Ok(Response::new(pb::RotateCoachTokenResponse { coach_token }))
    }

    async fn revoke_coach(
        &self,
        request: Request<pb::RevokeCoachRequest>,
    ) -> Result<Response<pb::RevokeCoachResponse>, Status> {
        self.admin(&request, "RevokeCoach").await?;
        let coach_id = request.get_ref().coach_id.as_str();
        identifier("coach_id", coach_id).map_err(ApiError::invalid_one)?;
        let revoked = self.state.store.revoke_coach(coach_id).await?;
        let tokens_revoked = revoked.ok_or_else(|| ApiError::NotFound("no such coach".into()))?;
        Ok(Response::new(pb::RevokeCoachResponse { tokens_revoked }))
    }

    async fn get_priority_rule(
        &self,
        request: Request<pb::GetPriorityRuleRequest>,
    ) -> Result<Response<pb::GetPriorityRuleResponse>, Status> {
        let principal = self.state.auth.principal(&request, "GetPriorityRule").await?;
        if !matches!(principal, Principal::Admin | Principal::Coach { .. }) {
            return Err(ApiError::PermissionDenied("only coaches and admins may read the priority rule".into()).into());
        }
        let stored = self.state.store.priority_rule().await?;
        let (set_by, set_at) = stored.set.unzip();
        Ok(Response::new(pb::GetPriorityRuleResponse {
            version: stored.current.version,
            rule: Some(convert::priority_rule(stored.current.rule.file())),
            set_by: set_by.unwrap_or_default(),
            set_at: set_at.map(convert::timestamp),
            applied: stored.applied,
        }))
    }

    async fn set_priority_rule(
        &self,
        request: Request<pb::SetPriorityRuleRequest>,
    ) -> Result<Response<pb::SetPriorityRuleResponse>, Status> {
        self.admin(&request, "SetPriorityRule").await?;
        let rule = priority_rule(request.get_ref().rule.as_ref()).map_err(ApiError::invalid_one)?;
        let (version, stats) = self.state.store.set_priority_rule(&rule, "admin").await?;
        Ok(Response::new(pb::SetPriorityRuleResponse {
            version,
            days_rebuilt: stats.days_rebuilt,
            days_changed: stats.days_changed,
            events_replayed: stats.events_replayed,
        }))
    }
}

/// The rule a request names; a violation names the part of it at fault.
fn priority_rule(message: Option<&pb::PriorityRule>) -> Result<PriorityRule, Violation> {
    let message = message.ok_or_else(|| Violation::new("rule", reason::REQUIRED, "name the rule to set"))?;
    let names = |path: &str, sources: &[i32]| -> Result<Vec<String>, Violation> {
        let name = |&value: &i32| match pb::Source::try_from(value) {
            Ok(pb::Source::Coach) => Ok(Source::Coach.as_str().to_string()),
            Ok(pb::Source::Manual) => Ok(Source::Manual.as_str().to_string()),
            Ok(pb::Source::Healthkit) => Ok(Source::Healthkit.as_str().to_string()),
            Ok(pb::Source::Strava) => Ok(Source::Strava.as_str().to_string()),
            Ok(pb::Source::Unspecified) | Err(_) => {
                Err(Violation::new(path, reason::REQUIRED, format!("{value} is not a source")))
            }
        };
        sources.iter().map(name).collect()
    };
    let mut file = PriorityFile::default();
    if !message.default_order.is_empty() {
        file.default = Some(names("rule.default_order", &message.default_order)?);
    }
    for (field, order) in &message.fields {
        let path = format!("rule.fields[{}]", crate::domain::quoted(field));
        file.fields.insert(field.clone(), names(&path, &order.sources)?);
    }
    PriorityRule::from_file(file).map_err(|e| {
        let path = match e.path.strip_prefix("fields.") {
            Some(field) => format!("rule.fields[{}]", crate::domain::quoted(field)),
            None => "rule.default_order".to_string(),
        };
        Violation::new(path, reason::INVALID_FORMAT, e.message)
    })
}
