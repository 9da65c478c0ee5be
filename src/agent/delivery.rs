//! Webhook delivery ids and the bounded memory of recent ones, so that a
//! replayed delivery (a captured request sent again, or a forge's retry of one
//! that already arrived) triggers nothing the second time.
//!
//! Invariant: memory is bounded by count ([`CAPACITY`]) and age ([`TTL`]); ids
//! are kept as SHA-256 digests, so a long header costs no more than a short one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use sha2::{Digest as _, Sha256};

/// Recent deliveries remembered at most.
pub const CAPACITY: usize = 1024;
/// How long a delivery id is remembered.
pub const TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The headers naming a delivery, by provider: GitHub, Gitea, Forgejo, and
/// GitLab (`Idempotency-Key` is the same across GitLab's retries; its
/// `X-Gitlab-Event-UUID` is used when the key is absent).
const HEADERS: [&str; 5] = [
    "x-github-delivery",
    "x-gitea-delivery",
    "x-forgejo-delivery",
    "idempotency-key",
    "x-gitlab-event-uuid",
];

/// The delivery's id: the first of [`HEADERS`] present with a non-empty
/// value, as a digest of its name and value. `None`: the sender names none.
pub fn id(headers: &HeaderMap) -> Option<[u8; 32]> {
    HEADERS.iter().find_map(|name| {
        let value = headers.get(*name)?.as_bytes();
        if value.is_empty() {
            return None;
        }
        let mut digest = Sha256::new();
        digest.update(name.as_bytes());
        digest.update(b":");
        digest.update(value);
        Some(digest.finalize().into())
    })
}

/// The ids of recent deliveries, oldest first.
#[derive(Debug, Default)]
pub struct Recent {
    seen: VecDeque<([u8; 32], Instant)>,
}

impl Recent {
    /// True when `id` was seen within [`TTL`] (a duplicate); else remembers it
    /// and returns false. Forgets what expired, then the oldest beyond [`CAPACITY`].
    pub fn replayed(&mut self, id: [u8; 32], now: Instant) -> bool {
        while let Some((_, at)) = self.seen.front()
            && now.saturating_duration_since(*at) >= TTL
        {
            self.seen.pop_front();
        }
        if self.seen.iter().any(|(seen, _)| *seen == id) {
            return true;
        }
        if self.seen.len() == CAPACITY {
            self.seen.pop_front();
        }
        self.seen.push_back((id, now));
        false
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn ids_of_every_provider() {
        for name in [
            "X-GitHub-Delivery",
            "X-Gitea-Delivery",
            "X-Forgejo-Delivery",
            "Idempotency-Key",
            "X-Gitlab-Event-UUID",
        ] {
            assert!(id(&headers(&[(name, "abc")])).is_some(), "{name}");
        }
        assert_eq!(id(&headers(&[("X-GitHub-Event", "push")])), None);
        assert_eq!(id(&headers(&[("X-GitHub-Delivery", "")])), None);
        // The same value under another header is another delivery.
        assert_ne!(
            id(&headers(&[("X-GitHub-Delivery", "abc")])),
            id(&headers(&[("X-Gitea-Delivery", "abc")]))
        );
        // GitLab's retries share the Idempotency-Key, not the event UUID.
        assert_eq!(
            id(&headers(&[
                ("Idempotency-Key", "k"),
                ("X-Gitlab-Event-UUID", "1")
            ])),
            id(&headers(&[
                ("Idempotency-Key", "k"),
                ("X-Gitlab-Event-UUID", "2")
            ]))
        );
    }

    #[test]
    fn a_replay_is_seen_until_it_expires() {
        let mut recent = Recent::default();
        let t0 = Instant::now();
        let a = [1u8; 32];
        assert!(!recent.replayed(a, t0));
        assert!(recent.replayed(a, t0 + Duration::from_secs(1)));
        assert!(recent.replayed(a, t0 + TTL - Duration::from_secs(1)));
        assert!(!recent.replayed(a, t0 + TTL));
        assert_eq!(recent.len(), 1);
    }

    #[test]
    fn memory_is_bounded_oldest_forgotten_first() {
        let mut recent = Recent::default();
        let now = Instant::now();
        let key = |i: usize| {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&(i as u64).to_le_bytes());
            k
        };
        for i in 0..=CAPACITY {
            assert!(!recent.replayed(key(i), now));
        }
        assert_eq!(recent.len(), CAPACITY);
        assert!(!recent.replayed(key(0), now), "the oldest was forgotten");
        assert!(recent.replayed(key(CAPACITY), now));
    }
}
