//! Probe results as MCP resources (`probe://{probe_id}/results`), and the
//! notifications that tell subscribed clients a probe has new results.
//!
//! Both subscription styles are served: legacy `resources/subscribe` (peers
//! before 2026-07-28) and `subscriptions/listen` (2026-07-28). Updates are
//! debounced: a hot logpoint can fire thousands of times a second, a client
//! needs to hear at most every [`DEBOUNCE`].

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rmcp::model::ResourceUpdatedNotificationParam;
use rmcp::service::{Peer, RoleServer};
use tokio::sync::{broadcast, mpsc};

/// Shortest interval between two notifications for the same probe.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// The URI of a probe's results.
pub fn probe_uri(probe_id: u64) -> String {
    format!("probe://{probe_id}/results")
}

/// The probe id in a `probe://{id}/results` URI.
pub fn parse_probe_uri(uri: &str) -> Option<u64> {
    uri.strip_prefix("probe://")?
        .strip_suffix("/results")?
        .parse()
        .ok()
}

/// One legacy subscriber: its connection, and the HTTP scope (session)
/// that subscribed (`None` over stdio, where there is one client).
type Subscriber = (Option<u64>, Peer<RoleServer>);

/// Who listens to which probe.
pub struct Subscriptions {
    legacy: Mutex<HashMap<String, Vec<Subscriber>>>,
    /// Every update, for `subscriptions/listen` sessions to filter.
    pub updates: broadcast::Sender<String>,
}

impl Default for Subscriptions {
    fn default() -> Self {
        Subscriptions {
            legacy: Mutex::new(HashMap::new()),
            updates: broadcast::channel(256).0,
        }
    }
}

impl Subscriptions {
    fn legacy(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Subscriber>>> {
        self.legacy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A legacy `resources/subscribe`.
    pub fn subscribe(&self, uri: String, scope: Option<u64>, peer: Peer<RoleServer>) {
        self.legacy().entry(uri).or_default().push((scope, peer));
    }

    /// A legacy `resources/unsubscribe`: drops the subscriptions to `uri`
    /// of this scope (the one client over stdio, one session over HTTP) and
    /// those whose connection is gone; other sessions keep theirs.
    pub fn unsubscribe(&self, uri: &str, scope: Option<u64>) {
        let mut legacy = self.legacy();
        if let Some(list) = legacy.get_mut(uri) {
            list.retain(|(owner, peer)| *owner != scope && !peer.is_transport_closed());
            if list.is_empty() {
                legacy.remove(uri);
            }
        }
    }

    async fn notify(&self, uri: &str) {
        let peers: Vec<Peer<RoleServer>> = {
            let mut legacy = self.legacy();
            if let Some(list) = legacy.get_mut(uri) {
                list.retain(|(_, p)| !p.is_transport_closed());
                list.iter().map(|(_, p)| p.clone()).collect()
            } else {
                Vec::new()
            }
        };
        for peer in peers {
            let _ = peer
                .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri.to_string()))
                .await;
        }
        let _ = self.updates.send(uri.to_string());
    }

    /// Forwards the engine's "probe N has new results" to subscribers,
    /// debounced per probe. Runs until the engine's sender is dropped.
    pub async fn forward(
        self: std::sync::Arc<Self>,
        mut probe_updates: mpsc::UnboundedReceiver<u64>,
    ) {
        let mut last_sent: HashMap<u64, Instant> = HashMap::new();
        let mut pending: HashSet<u64> = HashSet::new();
        let mut tick = tokio::time::interval(DEBOUNCE);
        loop {
            tokio::select! {
                id = probe_updates.recv() => {
                    let Some(id) = id else { return };
                    let due = last_sent.get(&id).is_none_or(|t| t.elapsed() >= DEBOUNCE);
                    if due {
                        last_sent.insert(id, Instant::now());
                        pending.remove(&id);
                        self.notify(&probe_uri(id)).await;
                    } else {
                        pending.insert(id);
                    }
                }
                _ = tick.tick() => {
                    for id in pending.drain().collect::<Vec<_>>() {
                        last_sent.insert(id, Instant::now());
                        self.notify(&probe_uri(id)).await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_uris_round_trip() {
        assert_eq!(parse_probe_uri(&probe_uri(42)), Some(42));
        assert_eq!(parse_probe_uri("probe://x/results"), None);
        assert_eq!(parse_probe_uri("file:///etc/passwd"), None);
    }
}
