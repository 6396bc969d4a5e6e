//! The revocation list each host keeps in memory. Checking a token reads only this list; a
//! background task reloads it from the database every `token.revocation_poll_ms`, and a
//! revocation made on this host is applied to it at once. So a token revoked on one host is
//! refused there immediately and on the other hosts within one poll interval: the price of
//! checking tokens without a database round trip.

use locks::Unpoisoned;
use std::sync::RwLock;
use std::time::Duration;

use orchestrator::identity::RevocationEvent;
use orchestrator::{Store, StoreError};

use super::token::Claims;

/// The in-memory revocation list.
pub struct Revocations {
    events: RwLock<Vec<RevocationEvent>>,
    /// Events older than this many microseconds can match no live token.
    horizon_us: i64,
}

impl Revocations {
    /// An empty list; events older than `token_lifetime` are dropped.
    pub fn new(token_lifetime: Duration) -> Revocations {
        Revocations {
            events: RwLock::new(Vec::new()),
            horizon_us: i64::try_from(token_lifetime.as_micros()).unwrap_or(i64::MAX),
        }
    }

    /// Whether an event revokes the token with these claims.
    pub fn is_revoked(&self, c: &Claims) -> bool {
        let events = self.events.read().unpoisoned();
        events.iter().any(|ev| matches(ev, c))
    }

    /// Records an event in the database and in this host's list.
    pub async fn revoke(&self, store: &Store, ev: RevocationEvent) -> Result<(), StoreError> {
        store.add_revocation(&ev).await?;
        self.events.write().unpoisoned().push(ev);
        Ok(())
    }

    /// Reloads every event young enough to matter (the table stays small: events expire with
    /// the tokens they revoke, and [`Revocations::poll`] prunes older ones now and then).
    pub async fn refresh(&self, store: &Store) -> Result<(), StoreError> {
        let fresh = store.revocations_since(self.horizon()).await?;
        *self.events.write().unpoisoned() = fresh;
        Ok(())
    }

    fn horizon(&self) -> i64 {
        orchestrator::store::now_micros().saturating_sub(self.horizon_us)
    }

    /// Reloads every `interval` until the process ends, and deletes dead events about every
    /// ten minutes (a write, so not on every poll); errors are logged and retried.
    pub async fn poll(&self, store: Store, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let prune_every = (600_000 / interval.as_millis().max(1)).max(1);
        let mut n: u128 = 0;
        loop {
            tick.tick().await;
            if let Err(e) = self.refresh(&store).await {
                tracing::warn!(error = %e, "cannot reload token revocation events");
            }
            n += 1;
            if n.is_multiple_of(prune_every) {
                match store.prune_revocations(self.horizon()).await {
                    Ok(k) if k > 0 => tracing::debug!(pruned = k, "old revocation events deleted"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot prune revocation events"),
                }
            }
        }
    }
}

fn matches(ev: &RevocationEvent, c: &Claims) -> bool {
    if c.issued_at > ev.issued_before {
        return false;
    }
    if let Some(a) = &ev.audit_id
        && !c.audit_ids.iter().any(|x| x == a)
    {
        return false;
    }
    if let Some(u) = &ev.user_id
        && u != &c.user_id
    {
        return false;
    }
    if let Some(p) = &ev.project_id
        && Some(p) != c.project_id.as_ref()
    {
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(issued_at: i64) -> Claims {
        Claims {
            user_id: "u".into(),
            project_id: Some("p".into()),
            domain_id: None,
            roles: vec![],
            methods: vec!["password".into()],
            issued_at,
            expires_at: i64::MAX,
            audit_ids: vec!["child".into(), "parent".into()],
        }
    }

    fn ev(audit: Option<&str>, user: Option<&str>, project: Option<&str>) -> RevocationEvent {
        RevocationEvent {
            audit_id: audit.map(Into::into),
            user_id: user.map(Into::into),
            project_id: project.map(Into::into),
            issued_before: 100,
            revoked_at: 100,
        }
    }

    #[test]
    fn events_match_on_every_set_field_and_issue_time() {
        let c = claims(50);
        assert!(matches(&ev(Some("parent"), None, None), &c));
        assert!(matches(&ev(None, Some("u"), None), &c));
        assert!(matches(&ev(None, Some("u"), Some("p")), &c));
        assert!(!matches(&ev(None, Some("u"), Some("q")), &c));
        assert!(!matches(&ev(Some("other"), None, None), &c));
        // A token issued after the event is not touched by it.
        assert!(!matches(&ev(None, Some("u"), None), &claims(150)));
    }

    #[tokio::test]
    async fn revoke_applies_locally_and_refresh_reloads_from_the_store() {
        let store = Store::open_url("sqlite::memory:").await.unwrap();
        let here = Revocations::new(Duration::from_secs(3600));
        let there = Revocations::new(Duration::from_secs(3600));
        let c = claims(orchestrator::store::now_micros() - 10);
        here.revoke(
            &store,
            RevocationEvent::now(Some("child".into()), None, None),
        )
        .await
        .unwrap();
        assert!(here.is_revoked(&c));
        assert!(
            !there.is_revoked(&c),
            "another host sees it only after a poll"
        );
        there.refresh(&store).await.unwrap();
        assert!(there.is_revoked(&c));
    }
}
