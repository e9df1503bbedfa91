//! A bucket's lifecycle configuration (PutBucketLifecycleConfiguration), stored in its
//! `BucketParams`, applied by the lifecycle worker (`lifecycle_worker.rs`).
//!
//! What a rule means, as S3 defines it: an enabled rule applies to the objects its filter matches
//! (every condition present must hold); `Expiration/Days` expires an object at the first midnight
//! UTC after its creation time plus that many days, `Expiration/Date` at that date (midnight UTC);
//! `AbortIncompleteMultipartUpload/DaysAfterInitiation` aborts an upload at the first midnight UTC
//! after its initiation plus that many days (only the filter's prefix applies to uploads: their
//! size and tags are not known yet).

use serde::{Deserialize, Serialize};

/// Milliseconds in a day.
pub const DAY_MS: u64 = 24 * 3600 * 1000;

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LifecycleConfig {
    pub rules: Vec<LifecycleRule>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LifecycleRule {
    #[serde(default)]
    pub id: Option<String>,
    /// `Status`: Enabled (true) or Disabled.
    pub enabled: bool,
    #[serde(default)]
    pub filter: LifecycleFilter,
    #[serde(default)]
    pub expiration: Option<Expiration>,
    /// `AbortIncompleteMultipartUpload/DaysAfterInitiation`.
    #[serde(default)]
    pub abort_incomplete_mpu_days: Option<u32>,
    /// The rule was given with the legacy top-level `<Prefix>` instead of a `<Filter>` (it is
    /// answered the same way).
    #[serde(default)]
    pub legacy_prefix: bool,
}

/// Every condition present must hold (`And`).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LifecycleFilter {
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    #[serde(default)]
    pub size_greater_than: Option<u64>,
    #[serde(default)]
    pub size_less_than: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Expiration {
    /// Objects expire this many days after their creation (rounded up to the next midnight UTC).
    Days(u32),
    /// Objects expire at this date (milliseconds since the epoch, midnight UTC).
    Date(u64),
}

/// The first midnight UTC after `t_ms` + `days` days (S3's rounding: an object created on Jan 15 at
/// 10:30 with 3 days expires on Jan 19 at 00:00 UTC).
pub fn due_after_days(t_ms: u64, days: u32) -> u64 {
    (t_ms / DAY_MS)
        .saturating_add(days as u64)
        .saturating_add(1)
        .saturating_mul(DAY_MS)
}

impl LifecycleFilter {
    /// Whether an object (its key, size and tags) matches every condition of the filter.
    pub fn matches(&self, key: &str, size: u64, tags: &[(String, String)]) -> bool {
        self.matches_prefix(key)
            && self.size_greater_than.is_none_or(|g| size > g)
            && self.size_less_than.is_none_or(|l| size < l)
            && self
                .tags
                .iter()
                .all(|(k, v)| tags.iter().any(|(tk, tv)| tk == k && tv == v))
    }

    pub fn matches_prefix(&self, key: &str) -> bool {
        self.prefix.as_deref().is_none_or(|p| key.starts_with(p))
    }
}

impl LifecycleRule {
    /// Whether this rule expires an object created at `created_ms`, at `now_ms`.
    pub fn expires(
        &self,
        key: &str,
        size: u64,
        tags: &[(String, String)],
        created_ms: u64,
        now_ms: u64,
    ) -> bool {
        let Some(exp) = &self.expiration else {
            return false;
        };
        if !self.enabled || !self.filter.matches(key, size, tags) {
            return false;
        }
        match exp {
            Expiration::Days(d) => now_ms >= due_after_days(created_ms, *d),
            Expiration::Date(date) => now_ms >= *date,
        }
    }

    /// Whether this rule aborts a multipart upload of `key` initiated at `initiated_ms`, at `now_ms`.
    pub fn aborts_upload(&self, key: &str, initiated_ms: u64, now_ms: u64) -> bool {
        match self.abort_incomplete_mpu_days {
            Some(d) if self.enabled && self.filter.matches_prefix(key) => {
                now_ms >= due_after_days(initiated_ms, d)
            }
            _ => false,
        }
    }
}

impl LifecycleConfig {
    pub fn expires(
        &self,
        key: &str,
        size: u64,
        tags: &[(String, String)],
        created_ms: u64,
        now_ms: u64,
    ) -> bool {
        self.rules
            .iter()
            .any(|r| r.expires(key, size, tags, created_ms, now_ms))
    }

    pub fn aborts_upload(&self, key: &str, initiated_ms: u64, now_ms: u64) -> bool {
        self.rules
            .iter()
            .any(|r| r.aborts_upload(key, initiated_ms, now_ms))
    }

    /// Whether some enabled rule has an action (the worker skips buckets without one).
    pub fn has_enabled_action(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.enabled && (r.expiration.is_some() || r.abort_incomplete_mpu_days.is_some()))
    }
}

impl super::Model {
    /// Set (or with `None` remove) a bucket's lifecycle configuration (PutBucketLifecycleConfiguration,
    /// DeleteBucketLifecycle): a quorum read and write of the bucket entry, as for its ACL.
    pub async fn set_bucket_lifecycle(
        &self,
        bucket: &crate::util::hash::Hash,
        config: Option<LifecycleConfig>,
    ) -> Result<(), super::ModelError> {
        self.change_bucket(bucket, |p, node| p.set_lifecycle(node, config))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2014-01-15T10:30:00Z.
    const JAN15_1030: u64 = 1_389_781_800_000;
    /// 2014-01-19T00:00:00Z.
    const JAN19: u64 = 1_390_089_600_000;

    fn rule(exp: Expiration) -> LifecycleRule {
        LifecycleRule {
            id: Some("r".into()),
            enabled: true,
            expiration: Some(exp),
            ..LifecycleRule::default()
        }
    }

    #[test]
    fn days_round_up_to_the_next_midnight_utc() {
        assert_eq!(due_after_days(JAN15_1030, 3), JAN19);
        let r = rule(Expiration::Days(3));
        assert!(!r.expires("k", 1, &[], JAN15_1030, JAN19 - 1));
        assert!(r.expires("k", 1, &[], JAN15_1030, JAN19));
        // Created at midnight exactly: still the next midnight after created + days.
        assert_eq!(due_after_days(JAN19, 1), JAN19 + 2 * DAY_MS);
        assert_eq!(
            due_after_days(u64::MAX - 5, u32::MAX),
            u64::MAX,
            "saturates: never"
        );
    }

    #[test]
    fn dates_expire_everything_matching_once_passed() {
        let r = rule(Expiration::Date(JAN19));
        assert!(!r.expires("k", 1, &[], 0, JAN19 - 1));
        assert!(r.expires("k", 1, &[], JAN19 + 5 * DAY_MS, JAN19 + 6 * DAY_MS));
    }

    #[test]
    fn disabled_rules_and_rules_without_expiration_do_nothing() {
        let mut r = rule(Expiration::Days(1));
        r.enabled = false;
        assert!(!r.expires("k", 1, &[], 0, JAN19));
        assert!(!LifecycleRule::default().expires("k", 1, &[], 0, JAN19));
        let c = LifecycleConfig { rules: vec![r] };
        assert!(!c.has_enabled_action());
    }

    #[test]
    fn filters_need_every_condition() {
        let mut r = rule(Expiration::Days(1));
        r.filter = LifecycleFilter {
            prefix: Some("logs/".into()),
            tags: vec![("t".into(), "1".into()), ("u".into(), "2".into())],
            size_greater_than: Some(10),
            size_less_than: Some(100),
        };
        let tags = vec![
            ("u".to_string(), "2".to_string()),
            ("t".to_string(), "1".to_string()),
            ("x".to_string(), "y".to_string()),
        ];
        let now = JAN19;
        assert!(r.expires("logs/a", 50, &tags, 0, now));
        assert!(!r.expires("data/a", 50, &tags, 0, now), "prefix");
        assert!(
            !r.expires("logs/a", 10, &tags, 0, now),
            "greater than is strict"
        );
        assert!(
            !r.expires("logs/a", 100, &tags, 0, now),
            "less than is strict"
        );
        assert!(!r.expires("logs/a", 50, &tags[..1], 0, now), "every tag");
        let wrong = vec![("t".to_string(), "2".to_string()), tags[0].clone()];
        assert!(!r.expires("logs/a", 50, &wrong, 0, now), "tag values too");
    }

    #[test]
    fn uploads_are_aborted_by_prefix_and_age() {
        let r = LifecycleRule {
            enabled: true,
            abort_incomplete_mpu_days: Some(3),
            filter: LifecycleFilter {
                prefix: Some("tmp/".into()),
                ..LifecycleFilter::default()
            },
            ..LifecycleRule::default()
        };
        let c = LifecycleConfig { rules: vec![r] };
        assert!(c.has_enabled_action());
        assert!(c.aborts_upload("tmp/x", JAN15_1030, JAN19));
        assert!(!c.aborts_upload("tmp/x", JAN15_1030, JAN19 - 1));
        assert!(!c.aborts_upload("x", JAN15_1030, JAN19));
        assert!(
            !c.expires("tmp/x", 1, &[], 0, JAN19),
            "no expiration action"
        );
    }

    #[test]
    fn configs_written_before_legacy_prefix_decode() {
        #[derive(Serialize)]
        struct Old {
            id: Option<String>,
            enabled: bool,
        }
        let bytes = rmp_serde::to_vec_named(&Old {
            id: Some("a".into()),
            enabled: true,
        })
        .unwrap();
        let r: LifecycleRule = rmp_serde::from_slice(&bytes).unwrap();
        assert!(r.enabled && !r.legacy_prefix && r.expiration.is_none());
    }
}
