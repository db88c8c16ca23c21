//! Who may see a probe when several clients share one liveprobe (the HTTP
//! transport). Over stdio there is one client and no caller is set: every
//! probe is visible to it, as before.
//!
//! The transport says who asks by running each request inside
//! [`CALLER`]`.scope(..)`; the engine checks it wherever a probe is looked
//! up, listed or set, so no tool can reach a probe of another session.

use std::collections::HashMap;
use std::sync::Mutex;

tokio::task_local! {
    /// The HTTP client the current request runs for; unset over stdio.
    pub static CALLER: Caller;
}

/// Who asks, over HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A 2025-11-25 (or older) session, numbered by the transport: its
    /// probes end with it unless set with `keep`.
    Session(u64),
    /// A 2026-07-28 stateless request: its probes belong to the token and
    /// live until removed or their TTL.
    Token,
}

impl Caller {
    /// The caller of the running request, if a transport set one.
    pub fn current() -> Option<Caller> {
        CALLER.try_with(|c| *c).ok()
    }
}

/// The owner of one probe.
#[derive(Clone, Copy, Debug)]
struct Owned {
    owner: Caller,
    keep: bool,
}

impl Owned {
    /// A kept probe, and a probe of the token, are anyone's with the token;
    /// a session's own probe is that session's alone.
    fn visible_to(self, caller: Caller) -> bool {
        self.keep || self.owner == Caller::Token || self.owner == caller
    }
}

/// Owners of the probes set over HTTP (probes set over stdio have none).
#[derive(Default)]
pub(crate) struct Owners {
    by_probe: Mutex<HashMap<u64, Owned>>,
}

impl Owners {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Owned>> {
        self.by_probe.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that the current caller (if any) set probe `id`.
    pub(crate) fn record(&self, id: u64, keep: bool) {
        if let Some(owner) = Caller::current() {
            self.map().insert(id, Owned { owner, keep });
        }
    }

    /// Forgets probe `id` (it was removed).
    pub(crate) fn forget(&self, id: u64) {
        self.map().remove(&id);
    }

    /// Whether the current caller may see probe `id`.
    pub(crate) fn visible(&self, id: u64) -> bool {
        let Some(caller) = Caller::current() else {
            return true;
        };
        // A probe set over stdio (no owner) is never reachable over HTTP:
        // both transports never serve one process at once, but be strict.
        self.map().get(&id).is_some_and(|o| o.visible_to(caller))
    }

    /// The probes session `session` set without `keep`: they end with it.
    pub(crate) fn of_session(&self, session: u64) -> Vec<u64> {
        self.map()
            .iter()
            .filter(|(_, o)| o.owner == Caller::Session(session) && !o.keep)
            .map(|(id, _)| *id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_sees_its_own_kept_and_token_probes_only() {
        let own = Owned {
            owner: Caller::Session(1),
            keep: false,
        };
        let kept = Owned {
            owner: Caller::Session(2),
            keep: true,
        };
        let other = Owned {
            owner: Caller::Session(2),
            keep: false,
        };
        let token = Owned {
            owner: Caller::Token,
            keep: false,
        };
        let me = Caller::Session(1);
        assert!(own.visible_to(me));
        assert!(kept.visible_to(me));
        assert!(token.visible_to(me));
        assert!(!other.visible_to(me));
        assert!(!own.visible_to(Caller::Token));
        assert!(kept.visible_to(Caller::Token));
    }

    #[tokio::test]
    async fn only_a_sessions_unkept_probes_end_with_it() {
        let owners = Owners::default();
        CALLER
            .scope(Caller::Session(7), async {
                owners.record(1, false);
                owners.record(2, true);
            })
            .await;
        CALLER
            .scope(Caller::Session(8), async { owners.record(3, false) })
            .await;
        assert_eq!(owners.of_session(7), vec![1]);
        // No caller (stdio): everything is visible.
        assert!(owners.visible(3));
        let seen = CALLER
            .scope(Caller::Session(7), async { owners.visible(3) })
            .await;
        assert!(!seen);
    }
}
