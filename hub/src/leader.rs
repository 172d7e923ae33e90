//! Which hub replica leads: the one that runs the duties there must be one
//! of (the correlator, the alert sender, the playbook runner, the presence
//! sweep, the SSH transport, retention).
//!
//! On SQLite there is one hub and it always leads. On PostgreSQL the
//! leader is the replica whose session holds an advisory lock
//! ([`crate::store::LeaderConnection`]): the others try for it every
//! [`TRY_EVERY`], and since PostgreSQL releases a session's locks when the
//! session ends, a leader that dies is replaced within about that time. A
//! leader that loses its database connection steps down at its next check
//! and stops its duties; each duty starts again from the database when
//! its replica leads again, so what one leader left half done (an alert not
//! yet marked sent) is picked up, at least once, by the next.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::store::Store;

/// How often a follower tries for the lock and the leader checks its session.
pub const TRY_EVERY: Duration = Duration::from_secs(1);

/// Whether this replica leads, as it changes.
#[derive(Clone, Debug)]
pub struct Leadership {
    rx: watch::Receiver<bool>,
    /// Keeps the channel open for [`Leadership::always`].
    _tx: Option<Arc<watch::Sender<bool>>>,
}

impl Leadership {
    /// A hub that always leads (SQLite: the only one).
    pub fn always() -> Leadership {
        let (tx, rx) = watch::channel(true);
        Leadership { rx, _tx: Some(Arc::new(tx)) }
    }

    /// Leadership for the hub on `store`: [`Leadership::always`] on SQLite;
    /// on PostgreSQL, a task that campaigns for the leader lock.
    pub async fn start(store: &Store) -> Leadership {
        if store.dialect() == crate::store::Dialect::Sqlite {
            return Leadership::always();
        }
        let (tx, rx) = watch::channel(false);
        tokio::spawn(campaign(store.clone(), tx));
        Leadership { rx, _tx: None }
    }

    /// True while this replica leads.
    pub fn is_leader(&self) -> bool {
        *self.rx.borrow()
    }

    /// Waits until leading is `want`; never returns if the campaign ended.
    async fn until(&mut self, want: bool) {
        if self.rx.wait_for(|v| *v == want).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Runs the duty `name` while this replica leads: starts it (`duty()`)
    /// when leadership comes, drops it when leadership goes, and starts it
    /// afresh when it comes back. Returns when the duty itself ends.
    pub async fn lead<F, Fut>(mut self, name: &'static str, duty: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            self.until(true).await;
            tokio::select! {
                () = duty() => return,
                () = self.until(false) => warn!(duty = name, "no longer the leader; stopped"),
            }
        }
    }
}

/// Holds the leader lock while it can, on a database session of its own.
async fn campaign(store: Store, tx: watch::Sender<bool>) {
    let mut conn: Option<crate::store::LeaderConnection> = None;
    let mut tick = tokio::time::interval(TRY_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if tx.is_closed() {
            // Nobody asks any more (a test's replica dropped): ending the
            // session releases the lock.
            return;
        }
        let session = match conn.as_mut() {
            Some(c) => c,
            None => match store.leader_connection().await {
                Ok(Some(c)) => conn.insert(c),
                Ok(None) => return,
                Err(e) => {
                    warn!(error = %e, "no database session for the leader lock");
                    continue;
                }
            },
        };
        let leading = *tx.borrow();
        let result = if leading { session.ping().await.map(|()| true) } else { session.try_lead().await };
        match result {
            Ok(now) if now != leading => {
                if now {
                    info!("this hub is the leader now (it runs correlation, alerting, playbooks, the presence sweep)");
                }
                tx.send_replace(now);
            }
            Ok(_) => {}
            Err(e) => {
                // The session is gone, and the lock with it.
                if leading {
                    warn!(error = %e, "lost the database session holding the leader lock; stepping down");
                    tx.send_replace(false);
                }
                conn = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_duty_runs_only_while_leading_and_starts_again_when_leading_again() {
        let (tx, rx) = watch::channel(false);
        let leader = Leadership { rx, _tx: None };
        let starts = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let s = starts.clone();
        let task = tokio::spawn(leader.lead("test", move || {
            s.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::future::pending::<()>()
        }));
        let settle = || tokio::time::sleep(Duration::from_millis(50));
        settle().await;
        assert_eq!(starts.load(std::sync::atomic::Ordering::SeqCst), 0, "a follower runs nothing");
        tx.send_replace(true);
        settle().await;
        assert_eq!(starts.load(std::sync::atomic::Ordering::SeqCst), 1);
        tx.send_replace(false);
        settle().await;
        tx.send_replace(true);
        settle().await;
        assert_eq!(starts.load(std::sync::atomic::Ordering::SeqCst), 2, "started afresh");
        task.abort();
    }

    #[tokio::test]
    async fn on_postgresql_one_of_two_replicas_leads_and_the_other_takes_over() {
        let (a, _d1) = crate::store::test_store().await;
        if a.dialect() != crate::store::Dialect::Postgres {
            assert!(Leadership::start(&a).await.is_leader(), "SQLite: the one hub leads");
            return;
        }
        let first = Leadership::start(&a).await;
        let wait = |l: Leadership| async move {
            for _ in 0..50 {
                if l.is_leader() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        };
        assert!(wait(first.clone()).await, "the first replica leads");
        // A second replica on the same database waits.
        let b = a.clone();
        let second = Leadership::start(&b).await;
        tokio::time::sleep(TRY_EVERY * 2).await;
        assert!(!second.is_leader());
        // The first one goes (its session with it): the second takes over.
        drop(first);
        assert!(wait(second).await, "the second replica took over");
    }
}
