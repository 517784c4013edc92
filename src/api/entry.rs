//! EntryService: manual entries, reading days, and explaining them.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{NaiveDate, Utc};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::access_log::Reader;
use super::auth::{self, Principal};
use super::convert;
use super::encoded_entries::EncodedEntries;
use super::items;
use super::status::{ApiError, ApiResult};
use super::AppState;
use crate::domain::dates;
use crate::domain::fold::{fold, outranked};
use crate::domain::validate::identifier;
use crate::domain::{reason, Source, Violation};
use crate::feed::{self, FeedItem, Subscription};
use crate::proto::v1 as pb;
use crate::proto::v1::entry_service_server::EntryService;
use crate::store::{AppendOutcome, FeedFilter, Store};

pub const DEFAULT_PAGE_SIZE: u32 = 31;
pub const MAX_PAGE_SIZE: u32 = 366;

pub struct EntryApi<S> {
    state: AppState<S>,
    /// Shared by this server's streams: each entry is encoded once, not once per stream.
    encoded: Arc<EncodedEntries>,
}

impl<S> EntryApi<S> {
    pub fn new(state: AppState<S>) -> Self {
        EntryApi { state, encoded: Arc::default() }
    }
}

/// A `YYYY-MM-DD` date for reading (any day, past or future).
fn read_day(field: &str, text: &str) -> ApiResult<NaiveDate> {
    dates::parse_date(field, text).map_err(ApiError::invalid_one)
}

impl<S: Store> EntryApi<S> {
    /// Which entries a stream may carry: empty `user_ids` is everything the caller may see.
    async fn feed_filter(&self, principal: &Principal, user_ids: &[String]) -> ApiResult<FeedFilter> {
        let most = self.state.max_stream_users;
        if user_ids.len() > most {
            return Err(ApiError::invalid_one(Violation::new(
                "user_ids",
                reason::TOO_MANY,
                format!("at most {most} users per stream"),
            )));
        }
        if user_ids.is_empty() {
            return Ok(match principal {
                Principal::Admin => FeedFilter::All,
                Principal::Coach { coach_id } => FeedFilter::Coach(coach_id.clone()),
                Principal::Device { user_id, .. } => FeedFilter::Users(vec![user_id.clone()]),
            });
        }
        let mut users = Vec::with_capacity(user_ids.len());
        for (i, requested) in user_ids.iter().enumerate() {
            identifier(&format!("user_ids[{i}]"), requested).map_err(ApiError::invalid_one)?;
            users.push(self.state.auth.user_for(principal, requested).await?);
        }
        users.sort();
        users.dedup();
        Ok(FeedFilter::Users(users))
    }
}

#[tonic::async_trait]
impl<S: Store> EntryService for EntryApi<S> {
    async fn record_manual_entry(
        &self,
        request: Request<pb::RecordManualEntryRequest>,
    ) -> Result<Response<pb::RecordManualEntryResponse>, Status> {
        let reader = self.state.auth.reader(&request, "RecordManualEntry", &request.get_ref().user_id).await?;
        let (principal, user_id, r) = (&reader.principal, &reader.user_id, request.get_ref());
        // A coach's or an admin's entry is a correction, a source of its own that the
        // client's later entries do not override.
        let source = match principal {
            Principal::Device { .. } => Source::Manual,
            Principal::Coach { .. } | Principal::Admin => Source::Coach,
        };
        let event = items::manual_entry(Utc::now(), source, r).map_err(ApiError::invalid)?;
        let day = event.day.expect("manual entries always have a day");
        let outcome = self.state.store.append(user_id, &principal.actor(), vec![event]).await;
        let (event_id, duplicate) = match outcome?.as_slice() {
            [AppendOutcome::Accepted(id)] => (*id, false),
            [AppendOutcome::Duplicate(id)] => (*id, true),
            [AppendOutcome::DayFull { limit }] => {
                return Err(ApiError::ResourceExhausted { message: super::ingest::day_full(*limit), retry: None }.into())
            }
            _ => {
                return Err(ApiError::invalid_one(Violation::new(
                    "idempotency_key",
                    reason::IDEMPOTENCY_KEY_REUSED,
                    "this key was already used for a different entry",
                ))
                .into())
            }
        };
        // The answer carries the whole day: for a coach or an admin, a read of it.
        self.state.access_log.record(&reader, "RecordManualEntry", day.to_string()).await;
        let entry = self.state.store.get_entry(user_id, day).await?;
        Ok(Response::new(pb::RecordManualEntryResponse {
            event_id: event_id.to_string(),
            duplicate,
            entry: entry.as_ref().map(convert::entry),
        }))
    }

    async fn get_entry(&self, request: Request<pb::GetEntryRequest>) -> Result<Response<pb::GetEntryResponse>, Status> {
        let reader = self.state.auth.reader(&request, "GetEntry", &request.get_ref().user_id).await?;
        let day = read_day("date", &request.get_ref().date)?;
        self.state.access_log.record(&reader, "GetEntry", day.to_string()).await;
        let entry = self.state.store.get_entry(&reader.user_id, day).await?;
        let entry = entry.ok_or_else(|| ApiError::NotFound(format!("no entry on {day}")))?;
        Ok(Response::new(pb::GetEntryResponse { entry: Some(convert::entry(&entry)) }))
    }

    async fn list_entries(
        &self,
        request: Request<pb::ListEntriesRequest>,
    ) -> Result<Response<pb::ListEntriesResponse>, Status> {
        let reader = self.state.auth.reader(&request, "ListEntries", &request.get_ref().user_id).await?;
        let r = request.get_ref();
        let start = read_day("start_date", &r.start_date)?;
        let end = read_day("end_date", &r.end_date)?;
        if end < start {
            return Err(ApiError::invalid_one(Violation::new(
                "end_date",
                reason::INCONSISTENT,
                "end_date is before start_date",
            ))
            .into());
        }
        let page_size = match r.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let after = match r.page_token.as_str() {
            "" => None,
            token => Some(read_day("page_token", token)?),
        };
        self.state.access_log.record(&reader, "ListEntries", format!("{start}..{end}")).await;
        let entries = self.state.store.list_entries(&reader.user_id, start, end, after, page_size).await?;
        let next_page_token = match entries.last() {
            Some(last) if entries.len() == page_size as usize && last.day < end => last.day.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListEntriesResponse {
            entries: entries.iter().map(convert::entry).collect(),
            next_page_token,
        }))
    }

    async fn explain_entry(
        &self,
        request: Request<pb::ExplainEntryRequest>,
    ) -> Result<Response<pb::ExplainEntryResponse>, Status> {
        let reader = self.state.auth.reader(&request, "ExplainEntry", &request.get_ref().user_id).await?;
        let day = read_day("date", &request.get_ref().date)?;
        self.state.access_log.record(&reader, "ExplainEntry", day.to_string()).await;
        let (store, user_id) = (&self.state.store, &reader.user_id);
        let entry = store.get_entry(user_id, day).await?;
        let entry = entry.ok_or_else(|| ApiError::NotFound(format!("no entry on {day}")))?;
        let events = store.fold_input(user_id, day).await?;
        // The rule the day was folded under, so the explanation matches the stored values
        // (while a new rule's re-fold is under way, the two differ).
        let rule = store.priority_rule_at(entry.rule_version).await?;
        let decisions = fold(day, &events, &rule.rule).provenance;
        let outranked = outranked(&events, &rule.rule);
        Ok(Response::new(pb::ExplainEntryResponse {
            entry: Some(convert::entry(&entry)),
            events: events.iter().map(convert::event_record).collect(),
            decisions: decisions.iter().map(|decision| convert::decision(decision, &outranked)).collect(),
        }))
    }

    type StreamEntriesStream = Pin<Box<dyn Stream<Item = Result<pb::StreamEntriesResponse, Status>> + Send>>;

    async fn stream_entries(
        &self,
        request: Request<pb::StreamEntriesRequest>,
    ) -> Result<Response<Self::StreamEntriesStream>, Status> {
        let principal = self.state.auth.principal(&request, "StreamEntries").await?;
        let peer = auth::peer(&request);
        let r = request.into_inner();
        if r.include_clients && matches!(principal, Principal::Device { .. }) {
            let message = "roster changes are for a client's coach; a device's stream carries entries";
            return Err(ApiError::PermissionDenied(message.into()).into());
        }
        let filter = self.feed_filter(&principal, &r.user_ids).await?;
        let slot = self.state.stream_slots.take(&principal)?;
        let after = r.after_position.map(|p| i64::try_from(p).unwrap_or(i64::MAX));
        let subscription = Subscription { filter, after, heartbeat: self.state.heartbeat, clients: r.include_clients };
        let stale_after_days = self.state.stale_after_days;
        let request_id = super::request_id::current();
        let items = feed::follow(self.state.store.clone(), subscription, self.state.shutdown.clone());
        let encoded = self.encoded.clone();
        // A coach's or an admin's stream reads a user's data from the first entry of theirs
        // it delivers: that is recorded, once per stream (users added later included).
        let (access_log, logs_reads) = (self.state.access_log.clone(), !matches!(principal, Principal::Device { .. }));
        let mut read_users = HashSet::new();
        let stream = items.then(move |item| {
            let read = match &item {
                Ok(FeedItem::Update(entry)) if logs_reads && !read_users.contains(&entry.user_id) => {
                    read_users.insert(entry.user_id.clone());
                    let reader =
                        Reader { principal: principal.clone(), user_id: entry.user_id.clone(), peer: peer.clone() };
                    Some((access_log.clone(), reader))
                }
                _ => None,
            };
            // Moved into the stream, the slot is freed when the stream is dropped.
            let _held = &slot;
            let response = match item {
                Ok(FeedItem::Update(entry)) => Ok(pb::StreamEntriesResponse {
                    kind: Some(pb::stream_entries_response::Kind::Update(pb::EntryUpdate::encoded(
                        entry.position as u64,
                        encoded.get(&entry),
                    ))),
                }),
                Ok(FeedItem::Client(client)) => {
                    let now = chrono::Utc::now();
                    Ok(pb::StreamEntriesResponse {
                        kind: Some(pb::stream_entries_response::Kind::Client(pb::ClientUpdate {
                            position: client.position as u64,
                            client: Some(super::roster::client_status(&client, now, stale_after_days)),
                            as_of: Some(convert::timestamp(now)),
                        })),
                    })
                }
                Ok(FeedItem::Removed(removal)) => Ok(pb::StreamEntriesResponse {
                    kind: Some(pb::stream_entries_response::Kind::Removed(pb::ClientRemoved {
                        position: removal.position as u64,
                        user_id: removal.user_id.clone(),
                        removed_at: Some(convert::timestamp(removal.removed_at)),
                    })),
                }),
                Ok(FeedItem::Heartbeat(position)) => Ok(pb::StreamEntriesResponse {
                    kind: Some(pb::stream_entries_response::Kind::Heartbeat(pb::Heartbeat {
                        position: position as u64,
                    })),
                }),
                // The error names the call's request id, as its other log lines do.
                Err(e) => Err(super::request_id::within(request_id.clone(), || ApiError::from(e).into())),
            };
            async move {
                if let Some((access_log, reader)) = read {
                    access_log.record(&reader, "StreamEntries", String::new()).await;
                }
                response
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
