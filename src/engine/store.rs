//! The bounded store of one probe's results, and the metric summaries.
//!
//! Memory never grows without limit: items beyond a probe's capacity push
//! the oldest out, and the answer says how many were dropped.

use std::collections::VecDeque;

use super::items::{ProbeItem, SummaryView};

/// Renders a stored capture into the item clients see (its `seq` is set
/// by the store).
pub type Render = Box<dyn FnOnce() -> ProbeItem + Send>;

/// An item as kept: rendered, or a capture rendered when first read (most
/// items of a hot probe are pushed out before anyone reads them, so
/// rendering them all would be wasted work).
enum Body {
    Ready(Box<ProbeItem>),
    Pending(Render),
    /// Taken out to be rendered outside the store's lock.
    Rendering,
}

struct Entry {
    seq: u64,
    body: Body,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.body {
            Body::Ready(_) => "ready",
            Body::Pending(_) => "pending",
            Body::Rendering => "rendering",
        };
        write!(f, "Entry {{ seq: {}, {state} }}", self.seq)
    }
}

fn with_seq(mut item: ProbeItem, seq: u64) -> ProbeItem {
    item.set_seq(seq);
    item
}

/// A ring of the newest results of one probe.
#[derive(Debug)]
pub struct ResultStore {
    items: VecDeque<Entry>,
    capacity: usize,
    next_seq: u64,
    dropped: u64,
}

impl ResultStore {
    /// A store keeping at most `capacity` items.
    pub fn new(capacity: usize) -> ResultStore {
        ResultStore {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            next_seq: 1,
            dropped: 0,
        }
    }

    fn push(&mut self, body: Body) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.items.len() == self.capacity {
            self.items.pop_front();
            self.dropped += 1;
        }
        self.items.push_back(Entry { seq, body });
        seq
    }

    /// Adds a rendered item (its `seq` field is set here); drops the oldest
    /// when full.
    pub fn push_ready(&mut self, item: ProbeItem) -> u64 {
        let seq = self.next_seq;
        self.push(Body::Ready(Box::new(with_seq(item, seq))))
    }

    /// Adds a capture to be rendered when first read.
    pub fn push_pending(&mut self, render: Render) -> u64 {
        self.push(Body::Pending(render))
    }

    /// Takes out the renders of the items `after` would return, so they can
    /// run without this store's lock (see `put_rendered`).
    pub fn take_pending(&mut self, after: u64, limit: usize) -> Vec<(u64, Render)> {
        let mut out = Vec::new();
        for entry in self.items.iter_mut().filter(|i| i.seq > after).take(limit) {
            if matches!(entry.body, Body::Pending(_))
                && let Body::Pending(render) = std::mem::replace(&mut entry.body, Body::Rendering)
            {
                out.push((entry.seq, render));
            }
        }
        out
    }

    /// Puts back an item rendered outside the lock (if it is still held).
    pub fn put_rendered(&mut self, seq: u64, item: ProbeItem) {
        if let Some(entry) = self.items.iter_mut().find(|i| i.seq == seq) {
            entry.body = Body::Ready(Box::new(with_seq(item, seq)));
        }
    }

    /// Items with `seq > after`, at most `limit`, oldest first (rendering
    /// those not rendered yet). Readers take turns (the probe's render
    /// lock), so an item is still out for rendering here only when its
    /// render panicked: that item is lost, not the ones after it.
    pub fn after(&mut self, after: u64, limit: usize) -> Vec<ProbeItem> {
        let mut out = Vec::new();
        for entry in self.items.iter_mut().filter(|i| i.seq > after).take(limit) {
            let item = match std::mem::replace(&mut entry.body, Body::Rendering) {
                Body::Ready(item) => *item,
                Body::Pending(render) => with_seq(render(), entry.seq),
                Body::Rendering => continue,
            };
            entry.body = Body::Ready(Box::new(item.clone()));
            out.push(item);
        }
        out
    }

    /// Highest sequence number given out so far (0 when none).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Items pushed out because the store was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Smallest sequence number still held.
    #[cfg(test)]
    pub fn oldest_seq(&self) -> Option<u64> {
        self.items.front().map(|i| i.seq)
    }
}

/// Samples kept for percentiles; beyond it, reservoir sampling keeps a
/// uniform sample so memory stays bounded on a hot metric.
const RESERVOIR: usize = 16_384;

/// Running summary of a numeric series (histogram or duration metric).
#[derive(Debug, Clone, Default)]
pub struct Summary {
    count: u64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
    samples: Vec<f64>,
    rng: u64,
}

impl Summary {
    /// Adds one observation.
    pub fn add(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        self.min = Some(self.min.map_or(v, |m| m.min(v)));
        self.max = Some(self.max.map_or(v, |m| m.max(v)));
        if self.samples.len() < RESERVOIR {
            self.samples.push(v);
        } else {
            // xorshift: cheap, and good enough to pick a uniform slot.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            if self.rng == 0 {
                self.rng = 0x9E37_79B9_7F4A_7C15;
            }
            let slot = self.rng % self.count;
            if (slot as usize) < RESERVOIR {
                self.samples[slot as usize] = v;
            }
        }
    }

    /// Counts an observation without a value (a `count` metric).
    pub fn add_count(&mut self) {
        self.count += 1;
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The summary with percentiles.
    pub fn view(&self) -> SummaryView {
        let mut sorted = self.samples.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| -> Option<f64> {
            if sorted.is_empty() {
                return None;
            }
            let idx = ((p * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1);
            Some(sorted[idx])
        };
        let with_values = !self.samples.is_empty();
        SummaryView {
            count: self.count,
            min: self.min,
            max: self.max,
            mean: (with_values && self.count > 0).then(|| self.sum / self.count as f64),
            p50: pct(0.50),
            p90: pct(0.90),
            p99: pct(0.99),
        }
    }
}

/// Formats a time as RFC 3339 UTC with microseconds.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: String) -> ProbeItem {
        ProbeItem::Logpoint(crate::engine::items::LogpointItem {
            seq: 0,
            time: "t".into(),
            tid: 1,
            site: None,
            text,
            capture_note: None,
            held_us: None,
        })
    }

    #[test]
    fn store_drops_oldest_and_counts_them() {
        let mut s = ResultStore::new(3);
        for i in 0..5 {
            if i % 2 == 0 {
                s.push_ready(line(format!("i={i}")));
            } else {
                s.push_pending(Box::new(move || line(format!("i={i}"))));
            }
        }
        assert_eq!(s.dropped(), 2);
        assert_eq!(s.oldest_seq(), Some(3));
        let after = s.after(3, 10);
        assert_eq!(
            after.iter().map(|i| i.seq()).collect::<Vec<_>>(),
            vec![4, 5]
        );
        // Pending items are rendered when read, with their seq, and stay so.
        let want = serde_json::json!({"seq": 4, "time": "t", "tid": 1, "text": "i=3"});
        assert_eq!(serde_json::to_value(&after[0]).ok(), Some(want.clone()));
        assert_eq!(serde_json::to_value(&s.after(3, 1)[0]).ok(), Some(want));
        assert_eq!(s.after(0, 1).len(), 1);
        assert_eq!(s.last_seq(), 5);
        // A pending item rendered outside the lock comes back with its seq.
        let mut s = ResultStore::new(4);
        s.push_pending(Box::new(|| line("late".into())));
        let taken = s.take_pending(0, 4);
        assert_eq!(taken.len(), 1);
        for (seq, render) in taken {
            s.put_rendered(seq, render());
        }
        assert_eq!(s.after(0, 4)[0].seq(), 1);
        // An item whose render never came back does not hold up the rest.
        s.push_pending(Box::new(|| line("lost".into())));
        s.push_ready(line("next".into()));
        drop(s.take_pending(1, 1));
        assert_eq!(
            s.after(1, 4).iter().map(ProbeItem::seq).collect::<Vec<_>>(),
            vec![3]
        );
    }

    #[test]
    fn summary_percentiles_of_a_known_series() {
        let mut s = Summary::default();
        for v in 1..=100 {
            s.add(v as f64);
        }
        let v = s.view();
        assert_eq!(v.count, 100);
        assert_eq!(v.min, Some(1.0));
        assert_eq!(v.max, Some(100.0));
        assert_eq!(v.mean, Some(50.5));
        assert_eq!(v.p50, Some(51.0));
        assert_eq!(v.p99, Some(99.0));
    }

    #[test]
    fn summary_memory_is_bounded() {
        let mut s = Summary::default();
        for v in 0..(RESERVOIR as u64 * 3) {
            s.add(v as f64);
        }
        assert_eq!(s.samples.len(), RESERVOIR);
        assert_eq!(s.count(), RESERVOIR as u64 * 3);
    }

    #[test]
    fn rfc3339_formats_a_known_instant() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_795_737_600_123_456);
        assert_eq!(rfc3339(t), "2026-11-27T00:00:00.123456Z");
    }
}
