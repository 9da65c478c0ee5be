//! Scalar values of the model, parsed and printed the way Compose writes
//! them: [`Bytes`] (`512m`), [`GoDuration`] (`1m30s`), [`RestartPolicy`]
//! and [`PullPolicy`].

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Serialize, Serializer};

/// A restart policy, as Compose spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(with = "String")]
pub enum RestartPolicy {
    No,
    Always,
    UnlessStopped,
    /// `on-failure` or `on-failure:N`.
    OnFailure(Option<u32>),
}

impl RestartPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "no" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => RestartPolicy::OnFailure(None),
            _ => RestartPolicy::OnFailure(Some(s.strip_prefix("on-failure:")?.parse().ok()?)),
        })
    }

    /// The policy name without a retry count, as policy rules name it.
    pub fn name(self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
            RestartPolicy::OnFailure(_) => "on-failure",
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartPolicy::OnFailure(Some(n)) => write!(f, "on-failure:{n}"),
            other => f.write_str(other.name()),
        }
    }
}

impl Serialize for RestartPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `pull_policy`.
#[derive(Debug, Clone, PartialEq, Eq, JsonSchema)]
#[schemars(with = "String")]
pub enum PullPolicy {
    Always,
    Never,
    Missing,
    Build,
    /// `daily`, `weekly` or `every_<duration>`: pulled again when the copy on
    /// the host was pulled longer ago than `period`.
    Refresh {
        /// As written (`daily`, `every_12h`), which is what Compose prints.
        written: String,
        period: Duration,
    },
}

impl PullPolicy {
    pub fn as_str(&self) -> &str {
        match self {
            PullPolicy::Always => "always",
            PullPolicy::Never => "never",
            PullPolicy::Missing => "missing",
            PullPolicy::Build => "build",
            PullPolicy::Refresh { written, .. } => written,
        }
    }

    /// Compose's refresh policies: `daily`, `weekly`, `every_<N><w|d|h|m|s>...`.
    pub fn refresh(written: &str) -> Option<PullPolicy> {
        let period = match written {
            "daily" => Duration::from_secs(86_400),
            "weekly" => Duration::from_secs(7 * 86_400),
            _ => {
                let mut rest = written.strip_prefix("every_").filter(|r| !r.is_empty())?;
                let mut secs = 0u64;
                while !rest.is_empty() {
                    let digits = rest.find(|c: char| !c.is_ascii_digit())?;
                    let n: u64 = rest[..digits].parse().ok()?;
                    let unit = match rest[digits..].chars().next()? {
                        'w' => 7 * 86_400,
                        'd' => 86_400,
                        'h' => 3_600,
                        'm' => 60,
                        's' => 1,
                        _ => return None,
                    };
                    secs = secs.checked_add(n.checked_mul(unit)?)?;
                    rest = &rest[digits + 1..];
                }
                Duration::from_secs(secs)
            }
        };
        Some(PullPolicy::Refresh {
            written: written.to_string(),
            period,
        })
    }
}

impl Serialize for PullPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A size in bytes, printed as a decimal string as Compose prints it
/// (`"268435456"`); a Compose file may write `128m`, `1g`, `512MiB` or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[schemars(with = "String")]
pub struct Bytes(pub u64);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl Bytes {
    /// Parses Docker's RAM notation (binary multiples: `k` = 1024).
    pub fn parse(s: &str) -> Option<Bytes> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let num: f64 = num.parse().ok()?;
        let unit = unit.trim().to_ascii_lowercase();
        let unit = unit.strip_suffix('b').unwrap_or(&unit);
        let unit = unit.strip_suffix('i').unwrap_or(unit);
        let mult: u64 = match unit {
            "" => 1,
            "k" => 1 << 10,
            "m" => 1 << 20,
            "g" => 1 << 30,
            "t" => 1 << 40,
            "p" => 1 << 50,
            _ => return None,
        };
        (num >= 0.0).then_some(Bytes((num * mult as f64) as u64))
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
            ("B", 1),
        ];
        for (name, size) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{} {name}", self.0 / size);
            }
        }
        write!(f, "{} B", self.0)
    }
}

/// A duration written and printed the way Go's `time.Duration` is (`1m30s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, JsonSchema)]
#[schemars(with = "String")]
pub struct GoDuration(pub Duration);

impl GoDuration {
    /// Parses Go's duration syntax: a sequence of decimal numbers with units
    /// `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`, e.g. `1m30s`, `1.5h`, `300ms`, `0`.
    pub fn parse(s: &str) -> Option<GoDuration> {
        let s = s.trim();
        if s == "0" {
            return Some(GoDuration(Duration::ZERO));
        }
        if s.is_empty() || s.starts_with('-') {
            return None;
        }
        let mut rest = s.strip_prefix('+').unwrap_or(s);
        let mut total = 0f64;
        while !rest.is_empty() {
            let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
            if num_end == 0 {
                return None;
            }
            let num: f64 = rest[..num_end].parse().ok()?;
            rest = &rest[num_end..];
            let unit_end = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let nanos = match &rest[..unit_end] {
                "ns" => 1e0,
                "us" | "µs" | "μs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                "m" => 60e9,
                "h" => 3600e9,
                _ => return None,
            };
            total += num * nanos;
            rest = &rest[unit_end..];
        }
        Some(GoDuration(Duration::from_nanos(total.round() as u64)))
    }
}

impl fmt::Display for GoDuration {
    /// Go's `Duration.String()`: `1m30s`, `1h0m0s`, `300ms`, `1.5s`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        if nanos < 1_000_000_000 {
            let (div, unit) = match nanos {
                n if n < 1_000 => (1u128, "ns"),
                n if n < 1_000_000 => (1_000, "µs"),
                _ => (1_000_000, "ms"),
            };
            return write!(f, "{}{unit}", trim_fraction(nanos, div));
        }
        let secs_total = nanos / 1_000_000_000;
        let (h, m) = (secs_total / 3600, (secs_total % 3600) / 60);
        let secs = trim_fraction(nanos % 60_000_000_000, 1_000_000_000);
        if h > 0 {
            write!(f, "{h}h{m}m{secs}s")
        } else if m > 0 {
            write!(f, "{m}m{secs}s")
        } else {
            write!(f, "{secs}s")
        }
    }
}

fn trim_fraction(value: u128, div: u128) -> String {
    let (whole, frac) = (value / div, value % div);
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let frac = format!("{frac:0width$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for GoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        GoDuration::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid duration `{s}`: use a number with a unit, like 30s, 1m30s or 500ms"
            ))
        })
    }
}
