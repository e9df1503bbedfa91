//! A bucket's lifecycle configuration (PutBucketLifecycleConfiguration), stored in its
//! `BucketParams`, applied by the lifecycle worker.

use serde::{Deserialize, Serialize};

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
