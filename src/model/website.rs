//! A bucket's static website configuration (PutBucketWebsite), stored in its `BucketParams`.
//! The website endpoint (`s3::web`) reads it; the S3 API (`s3::website`) turns it to and from XML.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WebsiteConfig {
    /// `IndexDocument/Suffix` (e.g. `index.html`), appended to a key ending in `/`.
    #[serde(default)]
    pub index_suffix: Option<String>,
    /// `ErrorDocument/Key`, served with the error's status.
    #[serde(default)]
    pub error_key: Option<String>,
    /// `RedirectAllRequestsTo`: every request is redirected (exclusive with the other fields).
    #[serde(default)]
    pub redirect_all: Option<RedirectAll>,
    /// `RoutingRules`, first match wins.
    #[serde(default)]
    pub routing_rules: Vec<RoutingRule>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RedirectAll {
    pub host_name: String,
    #[serde(default)]
    pub protocol: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RoutingRule {
    #[serde(default)]
    pub condition: Option<RoutingCondition>,
    pub redirect: Redirect,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RoutingCondition {
    #[serde(default)]
    pub key_prefix_equals: Option<String>,
    #[serde(default)]
    pub http_error_code_returned_equals: Option<u16>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Redirect {
    #[serde(default)]
    pub host_name: Option<String>,
    #[serde(default)]
    pub http_redirect_code: Option<u16>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub replace_key_prefix_with: Option<String>,
    #[serde(default)]
    pub replace_key_with: Option<String>,
}

impl super::Model {
    /// Set (PutBucketWebsite, `grenier bucket website --allow`) or remove (`None`) a bucket's website
    /// configuration: a register of its own in the bucket's entry, so concurrent changes of its other
    /// settings stay.
    pub async fn set_bucket_website(
        &self,
        bucket: &crate::util::hash::Hash,
        website: Option<WebsiteConfig>,
    ) -> Result<(), super::ModelError> {
        self.change_bucket(bucket, |p, node| p.set_website(node, website))
            .await
            .map(|_| ())
    }
}
