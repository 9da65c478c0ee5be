//! Silences: a drift that someone decided to live with for a while. A
//! silenced drift is not notified and not healed until its silence expires,
//! and shows as silenced. Kept in the state directory (`silences.json`,
//! 0600); every add and remove is written to the audit log.

use serde::{Deserialize, Serialize};

use crate::plan::Action;
use crate::state::{StateDir, StateError};

/// The name of [`Silences`] in the state directory.
pub const FILE: &str = "silences.json";

/// One silence: a service's drift (all of it, or only some fields) until a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub stack: String,
    pub service: String,
    /// The field lines it covers (`memory limit`, `env FOO`, as the drift
    /// names them); empty: every drift of the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// When it expires.
    pub until: jiff::Timestamp,
    pub reason: String,
    /// Who silenced it.
    pub by: String,
    pub created: jiff::Timestamp,
}

impl Silence {
    /// Whether it is in force at `now`.
    pub fn active(&self, now: jiff::Timestamp) -> bool {
        now < self.until
    }

    /// Whether it covers a drift of `stack/service` with `reasons`: every
    /// reason is about one of its fields (a reason starts with the field's
    /// line key, `memory limit 64 MiB on the host, …`).
    pub fn covers(&self, stack: &str, service: &str, reasons: &[String]) -> bool {
        self.stack == stack
            && self.service == service
            && (self.fields.is_empty()
                || reasons.iter().all(|r| {
                    self.fields.iter().any(|f| {
                        r.strip_prefix(f.as_str())
                            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', ':']))
                    })
                }))
    }
}

/// The shortest and the longest silence the dashboard gives (a longer one
/// hides drift for too long to be a review decision).
pub const BOUNDS: (jiff::SignedDuration, jiff::SignedDuration) = (
    jiff::SignedDuration::from_secs(1),
    jiff::SignedDuration::from_hours(30 * 24),
);

/// A silence's duration that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDuration {
    #[error("`{0}` is not a duration: write e.g. 30m, 4h, 1h30m, 7d or `2 days`")]
    Unreadable(String),
    #[error("`{0}` is out of bounds: a silence lasts from 1 second to 30 days")]
    OutOfBounds(String),
}

/// Reads a silence's duration as people write it (`30s`, `90m`, `4h`,
/// `1h30m`, `7d`, `1 week`, `2 days 4 hours`; a day is 24 hours), within
/// [`BOUNDS`].
pub fn parse_duration(text: &str) -> Result<jiff::SignedDuration, InvalidDuration> {
    let text = text.trim();
    let unreadable = || InvalidDuration::Unreadable(text.chars().take(40).collect());
    let span = match text.parse::<jiff::SignedDuration>() {
        Ok(d) => d,
        Err(_) => text
            .parse::<jiff::Span>()
            .ok()
            .and_then(|s| {
                s.to_duration(jiff::SpanRelativeTo::days_are_24_hours())
                    .ok()
            })
            .ok_or_else(unreadable)?,
    };
    if span < BOUNDS.0 || span > BOUNDS.1 {
        return Err(InvalidDuration::OutOfBounds(
            text.chars().take(40).collect(),
        ));
    }
    Ok(span)
}

/// Why silences cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    #[error("reading or writing the silences")]
    State(#[source] StateError),
    #[error("writing the silence to the audit log")]
    Audit(#[source] StateError),
}

/// Every silence of a host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silences {
    pub silences: Vec<Silence>,
}

impl Silences {
    /// The silences of a state directory (none when it has no file).
    pub fn load(state: &StateDir) -> Result<Silences, SilenceError> {
        state.read_json(FILE).map_err(SilenceError::State)
    }

    /// Reads them without creating anything (a state directory that does not exist has none).
    pub fn load_at(root: &std::path::Path) -> Result<Silences, SilenceError> {
        crate::state::read_json_at(root, FILE).map_err(SilenceError::State)
    }

    fn save(&self, state: &StateDir) -> Result<(), SilenceError> {
        state.write_json(FILE, self).map_err(SilenceError::State)
    }

    /// The silence that covers an action at `now`, if one does.
    pub fn covering(&self, action: &Action, now: jiff::Timestamp) -> Option<&Silence> {
        let service = action.service.as_deref()?;
        self.silences
            .iter()
            .filter(|s| s.active(now))
            .find(|s| s.covers(&action.stack, service, &action.reasons))
    }

    /// Drops the silences expired at `now`; returns them.
    pub fn expire(&mut self, now: jiff::Timestamp) -> Vec<Silence> {
        let (keep, gone) = std::mem::take(&mut self.silences)
            .into_iter()
            .partition(|s| s.active(now));
        self.silences = keep;
        gone
    }

    /// Adds a silence (replacing one for the same service and fields),
    /// drops the expired ones, and audits it.
    pub fn add(state: &StateDir, silence: Silence) -> Result<(), SilenceError> {
        let mut all = Silences::load(state)?;
        all.expire(jiff::Timestamp::now());
        all.silences.retain(|s| {
            !(s.stack == silence.stack
                && s.service == silence.service
                && s.fields == silence.fields)
        });
        all.silences.push(silence.clone());
        all.save(state)?;
        audit(state, "silenced", &silence)
    }

    /// Removes the silences of `stack` (and `service`, when given); audits
    /// each and returns them.
    pub fn remove(
        state: &StateDir,
        stack: &str,
        service: Option<&str>,
    ) -> Result<Vec<Silence>, SilenceError> {
        let mut all = Silences::load(state)?;
        let (gone, keep): (Vec<Silence>, Vec<Silence>) = all
            .silences
            .into_iter()
            .partition(|s| s.stack == stack && service.is_none_or(|x| s.service == x));
        all.silences = keep;
        all.save(state)?;
        for s in &gone {
            audit(state, "unsilenced", s)?;
        }
        Ok(gone)
    }
}

impl Silences {
    /// The earliest end of a silence after `after`, if any.
    pub fn next_end(&self, after: jiff::Timestamp) -> Option<jiff::Timestamp> {
        self.silences
            .iter()
            .map(|s| s.until)
            .filter(|u| *u > after)
            .min()
    }

    /// The silences that ended in `(after, now]`.
    pub fn ended(&self, after: jiff::Timestamp, now: jiff::Timestamp) -> Vec<&Silence> {
        self.silences
            .iter()
            .filter(|s| s.until > after && s.until <= now)
            .collect()
    }

    /// Records in the audit log that `silence` expired (it stays in the
    /// file, inert, until the next silence is added).
    pub fn audit_expired(state: &StateDir, silence: &Silence) -> Result<(), SilenceError> {
        audit(state, "silence expired", silence)
    }
}

/// An audit record of a silence added, removed or expired (read by `plimsoll history`).
fn audit(state: &StateDir, outcome: &str, s: &Silence) -> Result<(), SilenceError> {
    let record = serde_json::json!({
        "time": crate::state::now(),
        "revision": format!("{}/{}", s.stack, s.service),
        "outcome": outcome,
        "user": crate::state::invoking_user(),
        "host": crate::state::hostname(),
        "seconds": 0.0,
        "actions": [],
        "silence": s,
    });
    state
        .audit(
            &record,
            crate::state::AUDIT_MAX_BYTES,
            crate::state::AUDIT_KEEP,
        )
        .map_err(SilenceError::Audit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn silence(fields: &[&str]) -> Silence {
        Silence {
            stack: "shop".into(),
            service: "web".into(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
            until: at("2026-01-01T12:00:00Z"),
            reason: "load test".into(),
            by: "ops".into(),
            created: at("2026-01-01T10:00:00Z"),
        }
    }

    fn action(reasons: &[&str]) -> Action {
        Action {
            action: crate::plan::ActionKind::Recreate,
            stack: "shop".into(),
            service: Some("web".into()),
            target: "shop-web-1".into(),
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            diff: None,
            replica: None,
        }
    }

    #[test]
    fn a_silence_covers_until_it_expires() {
        let all = Silences {
            silences: vec![silence(&[])],
        };
        let a = action(&["stopped by hand (exit code 0)"]);
        assert!(all.covering(&a, at("2026-01-01T11:59:59Z")).is_some());
        assert!(all.covering(&a, at("2026-01-01T12:00:00Z")).is_none());
        let mut other = a.clone();
        other.service = Some("api".into());
        assert!(all.covering(&other, at("2026-01-01T11:00:00Z")).is_none());
        let mut expiring = all.clone();
        assert_eq!(expiring.expire(at("2026-01-01T11:00:00Z")), vec![]);
        assert_eq!(expiring.expire(at("2026-01-01T12:00:01Z")).len(), 1);
        assert!(expiring.silences.is_empty());
    }

    #[test]
    fn durations_as_people_write_them_within_bounds() {
        let secs = |t: &str| parse_duration(t).map(|d| d.as_secs());
        assert_eq!(secs("3s"), Ok(3));
        assert_eq!(secs("90m"), Ok(5400));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs(" 4h "), Ok(4 * 3600));
        assert_eq!(secs("24h"), Ok(86400));
        assert_eq!(secs("7d"), Ok(7 * 86400));
        assert_eq!(secs("2 days 4 hours"), Ok(52 * 3600));
        assert_eq!(secs("1 week"), Ok(7 * 86400));
        assert_eq!(secs("30 days"), Ok(30 * 86400));
        for bad in [
            "", "soon", "-1h", "1x", "0s", "500ms", "31d", "1 year", "2 months",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was taken");
        }
        assert!(matches!(
            parse_duration("31d"),
            Err(InvalidDuration::OutOfBounds(_))
        ));
    }

    #[test]
    fn ended_silences_are_found_once_and_audited() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let mut early = silence(&[]);
        early.until = at("2026-01-01T11:00:00Z");
        let late = silence(&["memory limit"]);
        let all = Silences {
            silences: vec![late.clone(), early.clone()],
        };
        let start = at("2026-01-01T10:30:00Z");
        assert_eq!(all.next_end(start), Some(early.until));
        assert_eq!(all.next_end(early.until), Some(late.until));
        assert_eq!(all.next_end(late.until), None);
        let now = at("2026-01-01T11:00:01Z");
        assert_eq!(all.ended(start, now), vec![&early]);
        assert!(all.ended(now, now).is_empty());
        Silences::audit_expired(&state, &early).unwrap();
        let records = state.audit_records().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0]["outcome"], "silence expired");
    }

    #[test]
    fn a_silence_of_fields_covers_only_those() {
        let s = silence(&["memory limit", "env FOO"]);
        let reasons = |r: &[&str]| r.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(s.covers(
            "shop",
            "web",
            &reasons(&[
                "memory limit 64 MiB on the host, 128 MiB in git",
                "env FOO changed: 1 → 2"
            ])
        ));
        assert!(!s.covers(
            "shop",
            "web",
            &reasons(&[
                "memory limit 64 MiB on the host, none in git",
                "cpus 1 on the host, 2 in git"
            ])
        ));
        // `env FOO` is not `env FOOBAR`.
        assert!(!s.covers("shop", "web", &reasons(&["env FOOBAR added: 1"])));
    }

    #[test]
    fn adding_and_removing_is_stored_and_audited() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let mut s = silence(&[]);
        s.until = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600);
        Silences::add(&state, s.clone()).unwrap();
        Silences::add(&state, s.clone()).unwrap();
        assert_eq!(Silences::load(&state).unwrap().silences, vec![s.clone()]);
        assert_eq!(
            Silences::load_at(dir.path()).unwrap(),
            Silences::load(&state).unwrap()
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            Silences::remove(&state, "shop", Some("web")).unwrap(),
            vec![s]
        );
        assert!(Silences::load(&state).unwrap().silences.is_empty());
        let outcomes: Vec<String> = state
            .audit_records()
            .unwrap()
            .iter()
            .map(|r| r["outcome"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(outcomes, vec!["silenced", "silenced", "unsilenced"]);
    }
}
