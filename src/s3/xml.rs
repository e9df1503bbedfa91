//! Every XML document the S3 API reads or writes.
//!
//! **Responses** are plain structs with one `to_xml()` each (or a free function for the trivial ones),
//! written by hand so that element names and order follow what Amazon S3 itself sends (its documented
//! examples): a `<?xml version="1.0" encoding="UTF-8"?>` declaration, a newline, then the root element
//! carrying `xmlns="http://s3.amazonaws.com/doc/2006-03-01/"` (except `<Error>`, which S3 sends without
//! a namespace). Booleans are `true`/`false`, timestamps ISO 8601 with milliseconds
//! ([`timefmt::iso8601`]), ETags quoted (the quotes written as `&quot;`).
//!
//! Text is escaped with [`xml_escape`]: `& < > " '` as entities, TAB/LF/CR as character references (so
//! that no parser normalizes them away), and the characters XML 1.0 cannot carry at all (most C0
//! controls, U+FFFE, U+FFFF) replaced by U+FFFD — the document always stays well-formed, and a client
//! that needs such keys exactly asks for `encoding-type=url` ([`url::encode`] with [`Encode::Path`]).
//!
//! **Requests** (`CompleteMultipartUpload`, `Delete`, `CreateBucketConfiguration`) are parsed from bytes
//! with quick-xml into a small element tree and validated; anything malformed or unexpected is an
//! [`S3ErrorCode::MalformedXML`] error. Namespaces are ignored (elements match on their local name), so
//! documents with or without `xmlns` are accepted. Key text is kept exactly as sent: entities and
//! character references are decoded, nothing is trimmed and line ends are not normalized.
//!
//! The tree is bounded **while parsing**, before an element is added to it (the caller has already
//! capped the body at `[s3_api] xml_body_max`): the root must be the expected one, every element
//! name must belong to the document's schema, the root has at most [`MAX_DELETE_OBJECTS`] objects
//! (+ `Quiet`) or [`MAX_COMPLETE_PARTS`] parts (as AWS: more is `MalformedXML`), any other element
//! at most [`MAX_CHILDREN`] children, nesting is at most [`MAX_DEPTH`] deep, an element has at most
//! [`MAX_ATTRIBUTES`] attributes and [`MAX_TEXT`] bytes of text (whitespace between elements is
//! counted, not kept). So a hostile body costs at most a few thousand small nodes, never one per
//! byte.

use std::fmt::Write as _;

use quick_xml::events::Event;
use quick_xml::reader::Reader;

use crate::s3::error::{S3Error, S3ErrorCode};
use crate::util::timefmt;
use crate::util::url::{self, Encode};

/// The namespace of every S3 response root element.
pub const S3_XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// The declaration that starts every document we send.
const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// AWS's limit on the number of keys in one DeleteObjects request.
pub const MAX_DELETE_OBJECTS: usize = 1000;

/// The only storage class Grenier reports.
const STORAGE_CLASS: &str = "STANDARD";

// ---------------------------------------------------------------------------------------------------
// Escaping, encoding, dates
// ---------------------------------------------------------------------------------------------------

/// Whether `c` may appear in an XML 1.0 document at all (production `Char`).
fn is_xml10_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if is_xml10_char(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
}

/// Escapes `s` for XML 1.0 text or attribute content. Never produces an ill-formed document:
/// characters XML 1.0 cannot represent (even as references) become U+FFFD.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    push_escaped(&mut out, s);
    out
}

/// An ETag as S3 shows it: in double quotes (added unless already there).
fn quoted_etag(etag: &str) -> String {
    if etag.len() >= 2 && etag.starts_with('"') && etag.ends_with('"') {
        etag.to_string()
    } else {
        format!("\"{etag}\"")
    }
}

// ---------------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------------

/// A minimal XML writer: compact output, escaped text, element names trusted (they are ours).
struct XmlWriter {
    out: String,
}

impl XmlWriter {
    /// Starts a document whose root element is `root` (with the S3 namespace when `ns`).
    fn document(root: &str, ns: bool) -> XmlWriter {
        let mut out = String::with_capacity(512);
        out.push_str(XML_DECL);
        out.push('<');
        out.push_str(root);
        if ns {
            out.push_str(" xmlns=\"");
            out.push_str(S3_XMLNS);
            out.push('"');
        }
        out.push('>');
        XmlWriter { out }
    }

    fn open(&mut self, name: &str) {
        debug_assert!(is_valid_name(name), "bad element name {name:?}");
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
    }

    fn close(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    /// `<name>escaped value</name>`.
    fn elem(&mut self, name: &str, value: &str) {
        self.open(name);
        push_escaped(&mut self.out, value);
        self.close(name);
    }

    fn elem_opt(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.elem(name, v);
        }
    }

    fn elem_display(&mut self, name: &str, value: impl std::fmt::Display) {
        self.open(name);
        let _ = write!(self.out, "{value}");
        self.close(name);
    }

    fn elem_bool(&mut self, name: &str, value: bool) {
        self.elem(name, if value { "true" } else { "false" });
    }

    /// A key-like value: percent-encoded first when the listing asked for `encoding-type=url`.
    fn elem_key(&mut self, name: &str, value: &str, url: bool) {
        if url {
            self.elem(name, &url::encode(value, Encode::Path));
        } else {
            self.elem(name, value);
        }
    }

    fn elem_time(&mut self, name: &str, msec: u64) {
        self.elem(name, &timefmt::iso8601(msec));
    }

    fn elem_etag(&mut self, name: &str, etag: &str) {
        self.elem(name, &quoted_etag(etag));
    }

    fn owner(&mut self, name: &str, owner: &Owner) {
        self.open(name);
        self.elem("ID", &owner.id);
        self.elem("DisplayName", &owner.display_name);
        self.close(name);
    }

    fn extra(&mut self, elements: &[(String, String)]) {
        for (name, value) in elements {
            self.elem(name, value);
        }
    }

    fn common_prefixes(&mut self, prefixes: &[String], url: bool) {
        for p in prefixes {
            self.open("CommonPrefixes");
            self.elem_key("Prefix", p, url);
            self.close("CommonPrefixes");
        }
    }

    fn finish(mut self, root: &str) -> String {
        self.close(root);
        self.out
    }
}

/// A conservative check of element names given by callers (ASCII letters, digits, `-_.`).
fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A root element that is empty or holds only text: `<Root xmlns="…"/>` or `<Root xmlns="…">text</Root>`.
fn simple_document(root: &str, text: &str) -> String {
    if text.is_empty() {
        format!("{XML_DECL}<{root} xmlns=\"{S3_XMLNS}\"/>")
    } else {
        format!(
            "{XML_DECL}<{root} xmlns=\"{S3_XMLNS}\">{}</{root}>",
            xml_escape(text)
        )
    }
}

// ---------------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------------

/// S3's error document: `<Error><Code/><Message/>{extra elements}<Resource/><RequestId/></Error>`
/// (no namespace, like S3).
pub fn error_xml(e: &S3Error, resource: &str, request_id: &str) -> String {
    let mut w = XmlWriter::document("Error", false);
    w.elem("Code", e.code.as_str());
    w.elem("Message", &e.message);
    for (name, value) in &e.extra {
        w.elem(name, value);
    }
    w.elem("Resource", resource);
    w.elem("RequestId", request_id);
    w.finish("Error")
}

/// `Owner` / `Initiator`: `<ID/><DisplayName/>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    pub id: String,
    pub display_name: String,
}

/// One bucket in [`ListAllMyBucketsResult`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketSummary {
    pub name: String,
    /// Milliseconds since the Unix epoch.
    pub creation_date_msec: u64,
}

/// ListBuckets: `<ListAllMyBucketsResult><Owner/><Buckets><Bucket><Name/><CreationDate/>
/// <BucketRegion/></Bucket>…</Buckets><ContinuationToken/>?<Prefix/>?</ListAllMyBucketsResult>`.
/// `ContinuationToken` is the token of the *next* page (present only when the list is truncated),
/// `Prefix` echoes the request's prefix, as on AWS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListAllMyBucketsResult {
    pub owner: Owner,
    pub buckets: Vec<BucketSummary>,
    /// Every bucket's `BucketRegion` (a Grenier cluster is one region).
    pub region: String,
    pub continuation_token: Option<String>,
    pub prefix: Option<String>,
}

impl ListAllMyBucketsResult {
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::document("ListAllMyBucketsResult", true);
        w.owner("Owner", &self.owner);
        w.open("Buckets");
        for b in &self.buckets {
            w.open("Bucket");
            w.elem("Name", &b.name);
            w.elem_time("CreationDate", b.creation_date_msec);
            w.elem("BucketRegion", &self.region);
            w.close("Bucket");
        }
        w.close("Buckets");
        w.elem_opt("ContinuationToken", self.continuation_token.as_deref());
        w.elem_opt("Prefix", self.prefix.as_deref());
        w.finish("ListAllMyBucketsResult")
    }
}

/// One `<Contents>` entry of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectSummary {
    pub key: String,
    /// Milliseconds since the Unix epoch.
    pub last_modified_msec: u64,
    /// With or without the surrounding quotes (they are added when missing).
    pub etag: String,
    pub size: u64,
    /// Written when set: always for ListObjects (v1), only with `fetch-owner=true` for v2.
    pub owner: Option<Owner>,
    /// `ChecksumAlgorithm`, e.g. `CRC64NVME`, when the object has a full checksum.
    pub checksum_algorithm: Option<String>,
    /// `ChecksumType`: `FULL_OBJECT` or `COMPOSITE`.
    pub checksum_type: Option<String>,
}

impl XmlWriter {
    /// `<Contents><Key/><LastModified/><ETag/>[<ChecksumAlgorithm/><ChecksumType/>]<Size/>[<Owner/>]
    /// <StorageClass/></Contents>` (the order S3 sends).
    fn contents(&mut self, o: &ObjectSummary, url: bool) {
        self.open("Contents");
        self.elem_key("Key", &o.key, url);
        self.elem_time("LastModified", o.last_modified_msec);
        self.elem_etag("ETag", &o.etag);
        self.elem_opt("ChecksumAlgorithm", o.checksum_algorithm.as_deref());
        self.elem_opt("ChecksumType", o.checksum_type.as_deref());
        self.elem_display("Size", o.size);
        if let Some(owner) = &o.owner {
            self.owner("Owner", owner);
        }
        self.elem("StorageClass", STORAGE_CLASS);
        self.close("Contents");
    }
}

/// ListObjects (v1) answer. Values are written as given (the caller decides them); with
/// `url_encoding`, `<EncodingType>url</EncodingType>` is added and Prefix, Marker, NextMarker,
/// Delimiter, every Key and every CommonPrefixes/Prefix are percent-encoded ([`url::encode`] with
/// [`Encode::Path`]).
///
/// Order: Name, Prefix, Marker, NextMarker?, MaxKeys, Delimiter?, EncodingType?, IsTruncated,
/// Contents*, CommonPrefixes*. S3 sends NextMarker only when the listing is truncated and a
/// delimiter was given; `Marker` is always present (empty when none was sent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListBucketResultV1 {
    pub name: String,
    pub prefix: String,
    pub marker: String,
    pub next_marker: Option<String>,
    pub max_keys: u32,
    pub delimiter: Option<String>,
    pub url_encoding: bool,
    pub is_truncated: bool,
    pub contents: Vec<ObjectSummary>,
    pub common_prefixes: Vec<String>,
}

impl ListBucketResultV1 {
    pub fn to_xml(&self) -> String {
        let url = self.url_encoding;
        let mut w = XmlWriter::document("ListBucketResult", true);
        w.elem("Name", &self.name);
        w.elem_key("Prefix", &self.prefix, url);
        w.elem_key("Marker", &self.marker, url);
        if let Some(m) = &self.next_marker {
            w.elem_key("NextMarker", m, url);
        }
        w.elem_display("MaxKeys", self.max_keys);
        if let Some(d) = &self.delimiter {
            w.elem_key("Delimiter", d, url);
        }
        if url {
            w.elem("EncodingType", "url");
        }
        w.elem_bool("IsTruncated", self.is_truncated);
        for o in &self.contents {
            w.contents(o, url);
        }
        w.common_prefixes(&self.common_prefixes, url);
        w.finish("ListBucketResult")
    }
}

/// ListObjectsV2 answer. `KeyCount` is computed (contents + common prefixes). With `url_encoding`,
/// `<EncodingType>url</EncodingType>` is added and Prefix, StartAfter, Delimiter, every Key and every
/// CommonPrefixes/Prefix are percent-encoded; continuation tokens are opaque and written as they are.
///
/// Order (as in S3's examples): Name, Prefix, StartAfter?, ContinuationToken?, NextContinuationToken?,
/// KeyCount, MaxKeys, Delimiter?, EncodingType?, IsTruncated, Contents*, CommonPrefixes*.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListBucketResultV2 {
    pub name: String,
    pub prefix: String,
    pub start_after: Option<String>,
    pub continuation_token: Option<String>,
    pub next_continuation_token: Option<String>,
    pub max_keys: u32,
    pub delimiter: Option<String>,
    pub url_encoding: bool,
    pub is_truncated: bool,
    pub contents: Vec<ObjectSummary>,
    pub common_prefixes: Vec<String>,
}

impl ListBucketResultV2 {
    pub fn to_xml(&self) -> String {
        let url = self.url_encoding;
        let mut w = XmlWriter::document("ListBucketResult", true);
        w.elem("Name", &self.name);
        w.elem_key("Prefix", &self.prefix, url);
        if let Some(s) = &self.start_after {
            w.elem_key("StartAfter", s, url);
        }
        w.elem_opt("ContinuationToken", self.continuation_token.as_deref());
        w.elem_opt(
            "NextContinuationToken",
            self.next_continuation_token.as_deref(),
        );
        w.elem_display("KeyCount", self.contents.len() + self.common_prefixes.len());
        w.elem_display("MaxKeys", self.max_keys);
        if let Some(d) = &self.delimiter {
            w.elem_key("Delimiter", d, url);
        }
        if url {
            w.elem("EncodingType", "url");
        }
        w.elem_bool("IsTruncated", self.is_truncated);
        for o in &self.contents {
            w.contents(o, url);
        }
        w.common_prefixes(&self.common_prefixes, url);
        w.finish("ListBucketResult")
    }
}

/// One `<Upload>` of [`ListMultipartUploadsResult`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadSummary {
    pub key: String,
    pub upload_id: String,
    pub initiator: Owner,
    pub owner: Owner,
    /// Milliseconds since the Unix epoch.
    pub initiated_msec: u64,
}

/// ListMultipartUploads answer. With `url_encoding`, `<EncodingType>url</EncodingType>` is added and
/// KeyMarker, NextKeyMarker, Prefix, Delimiter, every Key and every CommonPrefixes/Prefix are
/// percent-encoded.
///
/// Order (as in S3's examples): Bucket, KeyMarker, UploadIdMarker, NextKeyMarker?,
/// NextUploadIdMarker?, Delimiter?, Prefix, EncodingType?, MaxUploads, IsTruncated, Upload*,
/// CommonPrefixes*.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListMultipartUploadsResult {
    pub bucket: String,
    pub key_marker: String,
    pub upload_id_marker: String,
    pub next_key_marker: Option<String>,
    pub next_upload_id_marker: Option<String>,
    pub delimiter: Option<String>,
    pub prefix: String,
    pub max_uploads: u32,
    pub url_encoding: bool,
    pub is_truncated: bool,
    pub uploads: Vec<UploadSummary>,
    pub common_prefixes: Vec<String>,
}

impl ListMultipartUploadsResult {
    pub fn to_xml(&self) -> String {
        let url = self.url_encoding;
        let mut w = XmlWriter::document("ListMultipartUploadsResult", true);
        w.elem("Bucket", &self.bucket);
        w.elem_key("KeyMarker", &self.key_marker, url);
        w.elem("UploadIdMarker", &self.upload_id_marker);
        if let Some(m) = &self.next_key_marker {
            w.elem_key("NextKeyMarker", m, url);
        }
        w.elem_opt("NextUploadIdMarker", self.next_upload_id_marker.as_deref());
        if let Some(d) = &self.delimiter {
            w.elem_key("Delimiter", d, url);
        }
        w.elem_key("Prefix", &self.prefix, url);
        if url {
            w.elem("EncodingType", "url");
        }
        w.elem_display("MaxUploads", self.max_uploads);
        w.elem_bool("IsTruncated", self.is_truncated);
        for u in &self.uploads {
            w.open("Upload");
            w.elem_key("Key", &u.key, url);
            w.elem("UploadId", &u.upload_id);
            w.owner("Initiator", &u.initiator);
            w.owner("Owner", &u.owner);
            w.elem("StorageClass", STORAGE_CLASS);
            w.elem_time("Initiated", u.initiated_msec);
            w.close("Upload");
        }
        w.common_prefixes(&self.common_prefixes, url);
        w.finish("ListMultipartUploadsResult")
    }
}

/// One `<Part>` of [`ListPartsResult`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartSummary {
    pub part_number: u32,
    /// Milliseconds since the Unix epoch.
    pub last_modified_msec: u64,
    /// With or without the surrounding quotes (they are added when missing).
    pub etag: String,
    pub size: u64,
    /// `(element, value)` pairs written after Size, e.g. `("ChecksumCRC32", "AAAAAA==")`.
    pub checksums: Vec<(String, String)>,
}

/// ListParts answer.
///
/// Order (as in S3's example): Bucket, Key, UploadId, Initiator, Owner, StorageClass,
/// ChecksumAlgorithm?, ChecksumType?, PartNumberMarker, NextPartNumberMarker?, MaxParts,
/// IsTruncated, Part*.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPartsResult {
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    pub initiator: Owner,
    pub owner: Owner,
    pub checksum_algorithm: Option<String>,
    pub checksum_type: Option<String>,
    pub part_number_marker: u32,
    pub next_part_number_marker: Option<u32>,
    pub max_parts: u32,
    pub is_truncated: bool,
    pub parts: Vec<PartSummary>,
}

impl ListPartsResult {
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::document("ListPartsResult", true);
        w.elem("Bucket", &self.bucket);
        w.elem("Key", &self.key);
        w.elem("UploadId", &self.upload_id);
        w.owner("Initiator", &self.initiator);
        w.owner("Owner", &self.owner);
        w.elem("StorageClass", STORAGE_CLASS);
        w.elem_opt("ChecksumAlgorithm", self.checksum_algorithm.as_deref());
        w.elem_opt("ChecksumType", self.checksum_type.as_deref());
        w.elem_display("PartNumberMarker", self.part_number_marker);
        if let Some(n) = self.next_part_number_marker {
            w.elem_display("NextPartNumberMarker", n);
        }
        w.elem_display("MaxParts", self.max_parts);
        w.elem_bool("IsTruncated", self.is_truncated);
        for p in &self.parts {
            w.open("Part");
            w.elem_display("PartNumber", p.part_number);
            w.elem_time("LastModified", p.last_modified_msec);
            w.elem_etag("ETag", &p.etag);
            w.elem_display("Size", p.size);
            w.extra(&p.checksums);
            w.close("Part");
        }
        w.finish("ListPartsResult")
    }
}

/// CreateMultipartUpload answer: Bucket, Key, UploadId.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitiateMultipartUploadResult {
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
}

impl InitiateMultipartUploadResult {
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::document("InitiateMultipartUploadResult", true);
        w.elem("Bucket", &self.bucket);
        w.elem("Key", &self.key);
        w.elem("UploadId", &self.upload_id);
        w.finish("InitiateMultipartUploadResult")
    }
}

/// CompleteMultipartUpload answer: Location, Bucket, Key, ETag, then the `checksums` pairs (e.g.
/// `("ChecksumCRC32", "…-3")`, `("ChecksumType", "COMPOSITE")`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompleteMultipartUploadResult {
    pub location: String,
    pub bucket: String,
    pub key: String,
    /// With or without the surrounding quotes (they are added when missing).
    pub etag: String,
    pub checksums: Vec<(String, String)>,
}

impl CompleteMultipartUploadResult {
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::document("CompleteMultipartUploadResult", true);
        w.elem("Location", &self.location);
        w.elem("Bucket", &self.bucket);
        w.elem("Key", &self.key);
        w.elem_etag("ETag", &self.etag);
        w.extra(&self.checksums);
        w.finish("CompleteMultipartUploadResult")
    }
}

/// GetObjectAttributes answer; each part is present when the request asked for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GetObjectAttributesResponse {
    /// Without quotes (as S3 answers here).
    pub etag: Option<String>,
    /// `Checksum<ALG>` and `ChecksumType` elements; `None` or empty: no `<Checksum>`.
    pub checksum: Option<Vec<(String, String)>>,
    pub object_parts: Option<ObjectParts>,
    pub storage_class: bool,
    pub object_size: Option<u64>,
}

/// `<ObjectParts>` of GetObjectAttributes: `parts` are (part number, size).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectParts {
    pub parts_count: u32,
    pub part_number_marker: u32,
    pub next_part_number_marker: Option<u32>,
    pub max_parts: u32,
    pub is_truncated: bool,
    pub parts: Vec<(u32, u64)>,
}

impl GetObjectAttributesResponse {
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::document("GetObjectAttributesResponse", true);
        w.elem_opt("ETag", self.etag.as_deref().map(|e| e.trim_matches('"')));
        if let Some(c) = self.checksum.as_ref().filter(|c| !c.is_empty()) {
            w.open("Checksum");
            w.extra(c);
            w.close("Checksum");
        }
        if let Some(p) = &self.object_parts {
            w.open("ObjectParts");
            w.elem_display("PartsCount", p.parts_count);
            w.elem_display("PartNumberMarker", p.part_number_marker);
            if let Some(n) = p.next_part_number_marker {
                w.elem_display("NextPartNumberMarker", n);
            }
            w.elem_display("MaxParts", p.max_parts);
            w.elem_bool("IsTruncated", p.is_truncated);
            for (n, size) in &p.parts {
                w.open("Part");
                w.elem_display("PartNumber", n);
                w.elem_display("Size", size);
                w.close("Part");
            }
            w.close("ObjectParts");
        }
        if self.storage_class {
            w.elem("StorageClass", STORAGE_CLASS);
        }
        if let Some(size) = self.object_size {
            w.elem_display("ObjectSize", size);
        }
        w.finish("GetObjectAttributesResponse")
    }
}

/// CopyObject answer: `<CopyObjectResult><LastModified/><ETag/>{checksums}</CopyObjectResult>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyObjectResult {
    /// With or without the surrounding quotes (they are added when missing).
    pub etag: String,
    /// Milliseconds since the Unix epoch.
    pub last_modified_msec: u64,
    pub checksums: Vec<(String, String)>,
}

impl CopyObjectResult {
    pub fn to_xml(&self) -> String {
        copy_result(
            "CopyObjectResult",
            self.last_modified_msec,
            &self.etag,
            &self.checksums,
        )
    }
}

/// UploadPartCopy answer: `<CopyPartResult><LastModified/><ETag/>{checksums}</CopyPartResult>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyPartResult {
    /// With or without the surrounding quotes (they are added when missing).
    pub etag: String,
    /// Milliseconds since the Unix epoch.
    pub last_modified_msec: u64,
    pub checksums: Vec<(String, String)>,
}

impl CopyPartResult {
    pub fn to_xml(&self) -> String {
        copy_result(
            "CopyPartResult",
            self.last_modified_msec,
            &self.etag,
            &self.checksums,
        )
    }
}

fn copy_result(
    root: &str,
    last_modified: u64,
    etag: &str,
    checksums: &[(String, String)],
) -> String {
    let mut w = XmlWriter::document(root, true);
    w.elem_time("LastModified", last_modified);
    w.elem_etag("ETag", etag);
    w.extra(checksums);
    w.finish(root)
}

/// A `<Deleted>` entry of [`DeleteResult`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletedObject {
    pub key: String,
    pub version_id: Option<String>,
    pub delete_marker: Option<bool>,
    pub delete_marker_version_id: Option<String>,
}

/// An `<Error>` entry of [`DeleteResult`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteError {
    pub key: String,
    pub version_id: Option<String>,
    pub code: S3ErrorCode,
    pub message: String,
}

/// DeleteObjects answer: every `<Deleted>` (none in quiet mode), then every `<Error>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteResult {
    pub deleted: Vec<DeletedObject>,
    pub errors: Vec<DeleteError>,
}

impl DeleteResult {
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::document("DeleteResult", true);
        for d in &self.deleted {
            w.open("Deleted");
            w.elem("Key", &d.key);
            w.elem_opt("VersionId", d.version_id.as_deref());
            if let Some(m) = d.delete_marker {
                w.elem_bool("DeleteMarker", m);
            }
            w.elem_opt(
                "DeleteMarkerVersionId",
                d.delete_marker_version_id.as_deref(),
            );
            w.close("Deleted");
        }
        for e in &self.errors {
            w.open("Error");
            w.elem("Key", &e.key);
            w.elem_opt("VersionId", e.version_id.as_deref());
            w.elem("Code", e.code.as_str());
            w.elem("Message", &e.message);
            w.close("Error");
        }
        w.finish("DeleteResult")
    }
}

/// GetBucketLocation answer: `<LocationConstraint xmlns="…">region</LocationConstraint>`; empty for
/// `us-east-1` (and for an empty region), as S3 does.
pub fn location_constraint_xml(region: &str) -> String {
    let region = if region == "us-east-1" { "" } else { region };
    simple_document("LocationConstraint", region)
}

/// GetBucketVersioning answer for a bucket that never had versioning: an empty
/// `<VersioningConfiguration xmlns="…"/>`.
pub fn versioning_configuration_xml() -> String {
    simple_document("VersioningConfiguration", "")
}

// ---------------------------------------------------------------------------------------------------
// Request parsing
// ---------------------------------------------------------------------------------------------------

pub(super) fn malformed() -> S3Error {
    S3Error::new(
        S3ErrorCode::MalformedXML,
        "The XML you provided was not well-formed or did not validate against our published schema",
    )
}

fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// What a request document may hold, checked while it is parsed: the tree is built only from
/// elements that fit, so a body can never cost more than a few times its (capped) size, whatever
/// its content.
struct Shape {
    /// The root element's local name (checked on the first start tag).
    root: &'static str,
    /// Local names allowed below the root (anything else is refused on its start tag); empty =
    /// any (only for reading our own responses back in tests).
    names: &'static [&'static str],
    /// Most child elements of the root (e.g. 1000 `<Object>` plus one `<Quiet>`).
    max_root_children: usize,
    /// Most child elements of any other element ([`MAX_CHILDREN`] for requests).
    max_children: usize,
    /// Deepest nesting, the root being at depth 1 ([`MAX_DEPTH`] for requests).
    max_depth: usize,
}

/// Deepest element nesting accepted in a request document (all of ours need exactly 3).
pub const MAX_DEPTH: usize = 3;

/// Most child elements of an element below the root (a `<Part>` has at most 7: PartNumber, ETag
/// and five checksums; an `<Object>` 5).
pub const MAX_CHILDREN: usize = 8;

/// Most attributes on one element (only namespace declarations are expected).
pub const MAX_ATTRIBUTES: usize = 16;

/// Most bytes of character data (entities decoded) in one element, beyond whitespace: keys are at
/// most 1024 bytes, every other value is shorter. Whitespace-only runs (indentation between
/// elements) are counted but not kept beyond this.
pub const MAX_TEXT: usize = 4096;

/// Most parts in one CompleteMultipartUpload request (AWS's limit: part numbers are 1..=10000).
pub const MAX_COMPLETE_PARTS: usize = 10_000;

const DELETE_SHAPE: Shape = Shape {
    root: "Delete",
    names: &[
        "Quiet",
        "Object",
        "Key",
        "VersionId",
        "ETag",
        "LastModifiedTime",
        "Size",
    ],
    max_root_children: MAX_DELETE_OBJECTS + 1,
    max_children: MAX_CHILDREN,
    max_depth: MAX_DEPTH,
};

const COMPLETE_SHAPE: Shape = Shape {
    root: "CompleteMultipartUpload",
    names: &[
        "Part",
        "PartNumber",
        "ETag",
        "ChecksumCRC32",
        "ChecksumCRC32C",
        "ChecksumCRC64NVME",
        "ChecksumSHA1",
        "ChecksumSHA256",
    ],
    max_root_children: MAX_COMPLETE_PARTS,
    max_children: MAX_CHILDREN,
    max_depth: MAX_DEPTH,
};

const CREATE_BUCKET_SHAPE: Shape = Shape {
    root: "CreateBucketConfiguration",
    names: &["LocationConstraint"],
    max_root_children: 1,
    max_children: MAX_CHILDREN,
    max_depth: MAX_DEPTH,
};

/// An element of a parsed request: local name, concatenated character data, child elements.
#[derive(Debug)]
struct Node {
    name: String,
    text: String,
    /// Whitespace-only text longer than [`MAX_TEXT`] was dropped: fine for a container, not for a
    /// leaf (whose text must be kept exactly).
    text_dropped: bool,
    children: Vec<Node>,
}

impl Node {
    /// The element only holds child elements (and whitespace between them).
    fn container(&self) -> Result<&[Node], S3Error> {
        if self.text.chars().all(is_xml_space) {
            Ok(&self.children)
        } else {
            Err(malformed())
        }
    }

    /// The element only holds text (returned exactly, entities decoded).
    fn leaf(&self) -> Result<&str, S3Error> {
        if self.children.is_empty() && !self.text_dropped {
            Ok(&self.text)
        } else {
            Err(malformed())
        }
    }

    /// Appends character data, within [`MAX_TEXT`] (see there).
    fn push_text(&mut self, s: &str) -> Result<(), S3Error> {
        if self.text.len() + s.len() <= MAX_TEXT {
            self.text.push_str(s);
            return Ok(());
        }
        if self.text.chars().all(is_xml_space) && s.chars().all(is_xml_space) {
            self.text.clear();
            self.text_dropped = true;
            return Ok(());
        }
        Err(malformed())
    }
}

/// Decodes a general reference (`amp`, `#10`, `#x1F600`…) met in character data (shared by the
/// XML readers of `cors`, `lifecycle` and `website`).
pub(super) fn resolve_ref(name: &str) -> Result<char, S3Error> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix('x') {
            Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                u32::from_str_radix(hex, 16).ok()
            }
            Some(_) => None,
            None if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) => num.parse().ok(),
            None => None,
        };
        // Any scalar value but NUL: clients encode control characters of keys as references.
        return code
            .filter(|&c| c != 0)
            .and_then(char::from_u32)
            .ok_or_else(malformed);
    }
    match name {
        "amp" => Ok('&'),
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "quot" => Ok('"'),
        "apos" => Ok('\''),
        _ => Err(malformed()),
    }
}

/// Parses a whole document into its root element; `Ok(None)` when there is no element at all (empty
/// or whitespace-only body). DTDs are refused; comments, processing instructions and the declaration
/// are skipped; attributes (namespace declarations included) are checked for syntax and ignored.
///
/// Every limit of `shape` (root name, allowed names, children per element, depth, attributes, text
/// per element) is checked as each event is read, before anything is added to the tree.
fn parse_document(body: &[u8], shape: &Shape) -> Result<Option<Node>, S3Error> {
    let text = std::str::from_utf8(body).map_err(|_| malformed())?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;

    fn start(
        stack: &mut Vec<Node>,
        root: &Option<Node>,
        shape: &Shape,
        e: &quick_xml::events::BytesStart,
    ) -> Result<(), S3Error> {
        if root.is_some() || stack.len() >= shape.max_depth {
            return Err(malformed());
        }
        let name = e.local_name();
        let name: &str = name.as_ref();
        let (allowed, room) = match (stack.len(), stack.last()) {
            (_, None) => (shape.root.is_empty() || name == shape.root, true),
            (depth, Some(parent)) => (
                shape.names.is_empty() || shape.names.contains(&name),
                parent.children.len()
                    < if depth == 1 {
                        shape.max_root_children
                    } else {
                        shape.max_children
                    },
            ),
        };
        if name.is_empty() || !allowed || !room {
            return Err(malformed());
        }
        for (i, attr) in e.attributes().enumerate() {
            if i >= MAX_ATTRIBUTES {
                return Err(malformed());
            }
            attr.map_err(|_| malformed())?;
        }
        #[cfg(test)]
        NODES_BUILT.with(|n| n.set(n.get() + 1));
        stack.push(Node {
            name: name.to_string(),
            text: String::new(),
            text_dropped: false,
            children: Vec::new(),
        });
        Ok(())
    }

    fn end(stack: &mut Vec<Node>, root: &mut Option<Node>) -> Result<(), S3Error> {
        let node = stack.pop().ok_or_else(malformed)?;
        match stack.last_mut() {
            Some(parent) => parent.children.push(node),
            None => *root = Some(node),
        }
        Ok(())
    }

    loop {
        match reader.read_event().map_err(|_| malformed())? {
            Event::Start(e) => start(&mut stack, &root, shape, &e)?,
            Event::Empty(e) => {
                start(&mut stack, &root, shape, &e)?;
                end(&mut stack, &mut root)?;
            }
            Event::End(_) => end(&mut stack, &mut root)?,
            Event::Text(t) => match stack.last_mut() {
                Some(top) => top.push_text(&t)?,
                None if t.chars().all(is_xml_space) => {}
                None => return Err(malformed()),
            },
            Event::CData(t) => match stack.last_mut() {
                Some(top) => top.push_text(&t)?,
                None => return Err(malformed()),
            },
            Event::GeneralRef(r) => match stack.last_mut() {
                Some(top) => top.push_text(resolve_ref(&r)?.encode_utf8(&mut [0; 4]))?,
                None => return Err(malformed()),
            },
            Event::Comment(_) | Event::PI(_) | Event::Decl(_) => {}
            Event::DocType(_) => return Err(malformed()),
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(malformed());
    }
    Ok(root)
}

#[cfg(test)]
thread_local! {
    /// Elements added to a tree by [`parse_document`] on this thread (tests check the limits with it).
    static NODES_BUILT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Parses a request body that must be one element of `shape`.
fn parse_root(body: &[u8], shape: &Shape) -> Result<Node, S3Error> {
    parse_document(body, shape)?.ok_or_else(malformed)
}

/// Stores the text of a leaf element that may appear at most once.
fn set_once(slot: &mut Option<String>, node: &Node) -> Result<(), S3Error> {
    if slot.is_some() {
        return Err(malformed());
    }
    *slot = Some(node.leaf()?.to_string());
    Ok(())
}

/// A `<Part>` of a CompleteMultipartUpload request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletedPart {
    pub part_number: u32,
    /// As sent, surrounding whitespace and double quotes removed.
    pub etag: String,
    /// `(element, value)` for each `ChecksumCRC32`, `ChecksumCRC32C`, `ChecksumCRC64NVME`,
    /// `ChecksumSHA1`, `ChecksumSHA256` sent, in document order, values trimmed.
    pub checksums: Vec<(String, String)>,
}

const CHECKSUM_ELEMENTS: [&str; 5] = [
    "ChecksumCRC32",
    "ChecksumCRC32C",
    "ChecksumCRC64NVME",
    "ChecksumSHA1",
    "ChecksumSHA256",
];

/// Parses `<CompleteMultipartUpload><Part><PartNumber/><ETag/>[Checksum…]</Part>…
/// </CompleteMultipartUpload>`. At least one part; every part has exactly one PartNumber (decimal)
/// and one ETag. Part numbers and their order are the caller's to validate.
pub fn parse_complete_multipart_upload(body: &[u8]) -> Result<Vec<CompletedPart>, S3Error> {
    let root = parse_root(body, &COMPLETE_SHAPE)?;
    let mut parts = Vec::new();
    for part in root.container()? {
        if part.name != "Part" {
            return Err(malformed());
        }
        let mut number: Option<String> = None;
        let mut etag: Option<String> = None;
        let mut checksums: Vec<(String, String)> = Vec::new();
        for field in part.container()? {
            match field.name.as_str() {
                "PartNumber" => set_once(&mut number, field)?,
                "ETag" => set_once(&mut etag, field)?,
                name if CHECKSUM_ELEMENTS.contains(&name) => {
                    if checksums.iter().any(|(n, _)| n == name) {
                        return Err(malformed());
                    }
                    let value = field.leaf()?.trim_matches(is_xml_space);
                    checksums.push((name.to_string(), value.to_string()));
                }
                _ => return Err(malformed()),
            }
        }
        let number = number.ok_or_else(malformed)?;
        let number = number.trim_matches(is_xml_space);
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        let part_number: u32 = number.parse().map_err(|_| malformed())?;
        let etag = etag.ok_or_else(malformed)?;
        let etag = etag.trim_matches(is_xml_space);
        let etag = etag.strip_prefix('"').unwrap_or(etag);
        let etag = etag.strip_suffix('"').unwrap_or(etag);
        parts.push(CompletedPart {
            part_number,
            etag: etag.to_string(),
            checksums,
        });
    }
    if parts.is_empty() {
        return Err(malformed());
    }
    Ok(parts)
}

/// An `<Object>` of a DeleteObjects request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectIdentifier {
    /// Exactly as sent (entities decoded, nothing trimmed); may be empty (the caller reports it).
    pub key: String,
    /// `None` when absent or empty.
    pub version_id: Option<String>,
}

/// A parsed DeleteObjects request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteRequest {
    pub quiet: bool,
    pub objects: Vec<ObjectIdentifier>,
}

/// Parses `<Delete>[<Quiet>true|false</Quiet>]<Object><Key/>[<VersionId/>]</Object>…</Delete>`:
/// 1 to [`MAX_DELETE_OBJECTS`] objects, each with exactly one Key. Conditional deletes (`ETag`,
/// `LastModifiedTime`, `Size` in an Object) are answered `NotImplemented` rather than ignored.
pub fn parse_delete(body: &[u8]) -> Result<DeleteRequest, S3Error> {
    let root = parse_root(body, &DELETE_SHAPE)?;
    let mut quiet: Option<String> = None;
    let mut objects = Vec::new();
    for child in root.container()? {
        match child.name.as_str() {
            "Quiet" => set_once(&mut quiet, child)?,
            "Object" => {
                if objects.len() >= MAX_DELETE_OBJECTS {
                    return Err(malformed());
                }
                objects.push(parse_object_identifier(child)?);
            }
            _ => return Err(malformed()),
        }
    }
    let quiet = match quiet.as_deref().map(|q| q.trim_matches(is_xml_space)) {
        None => false,
        Some(q) if q.eq_ignore_ascii_case("true") => true,
        Some(q) if q.eq_ignore_ascii_case("false") => false,
        Some(_) => return Err(malformed()),
    };
    if objects.is_empty() {
        return Err(malformed());
    }
    Ok(DeleteRequest { quiet, objects })
}

fn parse_object_identifier(object: &Node) -> Result<ObjectIdentifier, S3Error> {
    let mut key: Option<String> = None;
    let mut version_id: Option<String> = None;
    for field in object.container()? {
        match field.name.as_str() {
            "Key" => set_once(&mut key, field)?,
            "VersionId" => set_once(&mut version_id, field)?,
            "ETag" | "LastModifiedTime" | "Size" => {
                return Err(S3Error::new(
                    S3ErrorCode::NotImplemented,
                    "Conditional deletes (ETag, LastModifiedTime, Size) in DeleteObjects are not implemented",
                ));
            }
            _ => return Err(malformed()),
        }
    }
    Ok(ObjectIdentifier {
        key: key.ok_or_else(malformed)?,
        version_id: version_id.filter(|v| !v.is_empty()),
    })
}

/// Parses a CreateBucket body: `None` for an empty body, an empty `<CreateBucketConfiguration/>` or
/// an empty `<LocationConstraint/>`; otherwise the (trimmed) location constraint.
pub fn parse_create_bucket_configuration(body: &[u8]) -> Result<Option<String>, S3Error> {
    let Some(root) = parse_document(body, &CREATE_BUCKET_SHAPE)? else {
        return Ok(None);
    };
    let mut location: Option<String> = None;
    for child in root.container()? {
        match child.name.as_str() {
            "LocationConstraint" => set_once(&mut location, child)?,
            _ => return Err(malformed()),
        }
    }
    Ok(location
        .map(|l| l.trim_matches(is_xml_space).to_string())
        .filter(|l| !l.is_empty()))
}

// ---------------------------------------------------------------------------------------------------
// Object tagging and ACLs (GetObjectTagging, PutObjectTagging, Get/Put Object/Bucket Acl)
// ---------------------------------------------------------------------------------------------------

/// `<Tagging><TagSet><Tag><Key/><Value/></Tag>…</TagSet></Tagging>` (GetObjectTagging).
pub fn tagging_xml(tags: &[(String, String)]) -> String {
    let mut w = XmlWriter::document("Tagging", true);
    w.open("TagSet");
    for (k, v) in tags {
        w.open("Tag");
        w.elem("Key", k);
        w.elem("Value", v);
        w.close("Tag");
    }
    w.close("TagSet");
    w.finish("Tagging")
}

/// Most `<Tag>` elements read from a PutObjectTagging body: more than S3's 10 tags, so that a few too
/// many get `InvalidTag` (the caller checks the count), while a flood stays `MalformedXML`.
pub const MAX_TAGS_PARSED: usize = 50;

const TAGGING_SHAPE: Shape = Shape {
    root: "Tagging",
    names: &["TagSet", "Tag", "Key", "Value"],
    max_root_children: 1,
    max_children: MAX_TAGS_PARSED,
    max_depth: 4,
};

/// Parses a PutObjectTagging body: `<Tagging><TagSet>[<Tag><Key/><Value/></Tag>…]</TagSet></Tagging>`,
/// each Tag with exactly one Key and one Value (texts exactly as sent). The tags' rules (count,
/// lengths, duplicates) are the caller's to check.
pub fn parse_tagging(body: &[u8]) -> Result<Vec<(String, String)>, S3Error> {
    let root = parse_root(body, &TAGGING_SHAPE)?;
    let [set] = root.container()? else {
        return Err(malformed());
    };
    if set.name != "TagSet" {
        return Err(malformed());
    }
    let mut tags = Vec::new();
    for tag in set.container()? {
        if tag.name != "Tag" {
            return Err(malformed());
        }
        let (mut key, mut value) = (None, None);
        for field in tag.container()? {
            match field.name.as_str() {
                "Key" => set_once(&mut key, field)?,
                "Value" => set_once(&mut value, field)?,
                _ => return Err(malformed()),
            }
        }
        tags.push((key.ok_or_else(malformed)?, value.ok_or_else(malformed)?));
    }
    Ok(tags)
}

/// The group of everyone (anonymous requests included), as AWS names it.
pub const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";

/// An `AccessControlPolicy` as Grenier answers it: the owner has FULL_CONTROL, and with
/// `public_read` everyone (AllUsers) may READ.
pub struct AccessControlPolicy {
    pub owner: Owner,
    pub public_read: bool,
}

impl AccessControlPolicy {
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::document("AccessControlPolicy", true);
        w.owner("Owner", &self.owner);
        w.open("AccessControlList");
        w.open("Grant");
        w.grantee("CanonicalUser");
        w.elem("ID", &self.owner.id);
        w.elem("DisplayName", &self.owner.display_name);
        w.close("Grantee");
        w.elem("Permission", "FULL_CONTROL");
        w.close("Grant");
        if self.public_read {
            w.open("Grant");
            w.grantee("Group");
            w.elem("URI", ALL_USERS);
            w.close("Grantee");
            w.elem("Permission", "READ");
            w.close("Grant");
        }
        w.close("AccessControlList");
        w.finish("AccessControlPolicy")
    }
}

impl XmlWriter {
    /// `<Grantee xmlns:xsi="…" xsi:type="{kind}">` (the type is one of ours).
    fn grantee(&mut self, kind: &str) {
        debug_assert!(is_valid_name(kind));
        let _ = write!(
            self.out,
            "<Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"{kind}\">"
        );
    }
}

/// Who a grant of a PutObjectAcl / PutBucketAcl body is for (told apart by the element it holds,
/// not by the `xsi:type` attribute, which says the same).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grantee {
    CanonicalUser(String),
    Group(String),
    Email(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub grantee: Grantee,
    /// As sent, trimmed (FULL_CONTROL, READ, WRITE, READ_ACP, WRITE_ACP).
    pub permission: String,
}

/// A parsed PutObjectAcl / PutBucketAcl body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclRequest {
    /// The `<Owner><ID>` sent, if any.
    pub owner: Option<String>,
    pub grants: Vec<Grant>,
}

/// Most grants in an ACL (AWS's limit).
pub const MAX_GRANTS: usize = 100;

const ACL_SHAPE: Shape = Shape {
    root: "AccessControlPolicy",
    names: &[
        "Owner",
        "ID",
        "DisplayName",
        "AccessControlList",
        "Grant",
        "Grantee",
        "URI",
        "EmailAddress",
        "Permission",
    ],
    max_root_children: 2,
    max_children: MAX_GRANTS,
    max_depth: 5,
};

fn malformed_acl() -> S3Error {
    S3Error::new(
        S3ErrorCode::MalformedACLError,
        "The XML you provided was not well-formed or did not validate against our published schema",
    )
}

/// Parses `<AccessControlPolicy>[<Owner><ID/>[<DisplayName/>]</Owner>]<AccessControlList>
/// [<Grant><Grantee><ID/>|<URI/>|<EmailAddress/>[<DisplayName/>]</Grantee><Permission/></Grant>…]
/// </AccessControlList></AccessControlPolicy>`. A document of the wrong shape is `MalformedACLError`
/// (beyond the size limits, `MalformedXML` like every request document).
pub fn parse_access_control_policy(body: &[u8]) -> Result<AclRequest, S3Error> {
    let root = parse_root(body, &ACL_SHAPE)?;
    let bad = malformed_acl;
    let (mut owner, mut list) = (None, None);
    for child in root.container().map_err(|_| bad())? {
        match child.name.as_str() {
            "Owner" if owner.is_none() => {
                let mut id = None;
                for f in child.container().map_err(|_| bad())? {
                    match f.name.as_str() {
                        "ID" => set_once(&mut id, f).map_err(|_| bad())?,
                        "DisplayName" => (),
                        _ => return Err(bad()),
                    }
                }
                owner = Some(id.ok_or_else(bad)?);
            }
            "AccessControlList" if list.is_none() => list = Some(child),
            _ => return Err(bad()),
        }
    }
    let mut grants = Vec::new();
    for grant in list.ok_or_else(bad)?.container().map_err(|_| bad())? {
        if grant.name != "Grant" {
            return Err(bad());
        }
        let (mut grantee, mut permission) = (None, None);
        for f in grant.container().map_err(|_| bad())? {
            match f.name.as_str() {
                "Grantee" if grantee.is_none() => {
                    let mut who = None;
                    for g in f.container().map_err(|_| bad())? {
                        let text = || g.leaf().map(|t| t.trim_matches(is_xml_space).to_string());
                        let found = match g.name.as_str() {
                            "ID" => Grantee::CanonicalUser(text().map_err(|_| bad())?),
                            "URI" => Grantee::Group(text().map_err(|_| bad())?),
                            "EmailAddress" => Grantee::Email(text().map_err(|_| bad())?),
                            "DisplayName" => continue,
                            _ => return Err(bad()),
                        };
                        if who.replace(found).is_some() {
                            return Err(bad());
                        }
                    }
                    grantee = Some(who.ok_or_else(bad)?);
                }
                "Permission" => set_once(&mut permission, f).map_err(|_| bad())?,
                _ => return Err(bad()),
            }
        }
        grants.push(Grant {
            grantee: grantee.ok_or_else(bad)?,
            permission: permission
                .ok_or_else(bad)?
                .trim_matches(is_xml_space)
                .to_string(),
        });
    }
    Ok(AclRequest {
        owner: owner.map(|o| o.trim_matches(is_xml_space).to_string()),
        grants,
    })
}

// ---------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    const NS: &str = "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"";

    /// 2009-10-12T17:50:30.000Z, the date of S3's documentation examples.
    const T: u64 = 1_255_369_830_000;

    fn owner() -> Owner {
        Owner {
            id: "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a".into(),
            display_name: "mtd@amazon.com".into(),
        }
    }

    /// Strips the layout whitespace of a hand-written expected document.
    fn compact(s: &str) -> String {
        s.lines().map(str::trim).collect()
    }

    fn doc(body: &str) -> String {
        format!("{DECL}{}", compact(body))
    }

    /// Any well-formed document (to read our own responses back).
    const ANY_SHAPE: Shape = Shape {
        root: "",
        names: &[],
        max_root_children: usize::MAX,
        max_children: usize::MAX,
        max_depth: 16,
    };

    fn code(r: Result<impl std::fmt::Debug, S3Error>) -> S3ErrorCode {
        r.expect_err("expected an error").code
    }

    /// Every response must be well-formed: re-read it with quick-xml down to EOF.
    fn assert_well_formed(xml: &str) {
        let root = parse_document(xml.as_bytes(), &ANY_SHAPE)
            .expect("well-formed")
            .expect("a root");
        assert!(!root.name.is_empty());
    }

    // ----- dates, escaping, encoding ----------------------------------------------------------------

    #[test]
    fn escaping() {
        assert_eq!(xml_escape("a<b>&\"c'd"), "a&lt;b&gt;&amp;&quot;c&apos;d");
        assert_eq!(xml_escape("été 日本 😀"), "été 日本 😀");
        assert_eq!(xml_escape("a\tb\nc\rd"), "a&#9;b&#10;c&#13;d");
        assert_eq!(
            xml_escape("\u{0}\u{1}x\u{1F}\u{FFFE}\u{FFFF}"),
            "\u{FFFD}\u{FFFD}x\u{FFFD}\u{FFFD}\u{FFFD}"
        );
    }

    // ----- responses --------------------------------------------------------------------------------

    #[test]
    fn error_document() {
        let e = S3Error::new(
            S3ErrorCode::NoSuchKey,
            "The resource you requested does not exist",
        )
        .with("Key", "my<foto>.jpg");
        assert_eq!(
            error_xml(&e, "/mybucket/my<foto>.jpg", "4442587FB7D0A2F9"),
            doc("<Error>
                   <Code>NoSuchKey</Code>
                   <Message>The resource you requested does not exist</Message>
                   <Key>my&lt;foto&gt;.jpg</Key>
                   <Resource>/mybucket/my&lt;foto&gt;.jpg</Resource>
                   <RequestId>4442587FB7D0A2F9</RequestId>
                 </Error>")
        );
        let e = S3Error::new(S3ErrorCode::AuthorizationHeaderMalformed, "bad region")
            .with("Region", "garage")
            .with("HostId", "x&y");
        let xml = error_xml(&e, "", "");
        assert!(xml.contains("<Message>bad region</Message><Region>garage</Region><HostId>x&amp;y</HostId><Resource></Resource>"));
        assert_well_formed(&xml);
    }

    #[test]
    fn list_buckets() {
        let r = ListAllMyBucketsResult {
            owner: Owner {
                id: "bcaf1ffd86f461ca5fb16fd081034f".into(),
                display_name: "webfile".into(),
            },
            buckets: vec![
                BucketSummary {
                    name: "quotes".into(),
                    creation_date_msec: 1_139_253_713_000,
                },
                BucketSummary {
                    name: "samples".into(),
                    creation_date_msec: 1_139_253_713_000,
                },
            ],
            region: "garage".into(),
            ..Default::default()
        };
        assert_eq!(
            r.to_xml(),
            doc(&format!(
                "<ListAllMyBucketsResult {NS}>
                   <Owner><ID>bcaf1ffd86f461ca5fb16fd081034f</ID><DisplayName>webfile</DisplayName></Owner>
                   <Buckets>
                     <Bucket><Name>quotes</Name><CreationDate>2006-02-06T19:21:53.000Z</CreationDate><BucketRegion>garage</BucketRegion></Bucket>
                     <Bucket><Name>samples</Name><CreationDate>2006-02-06T19:21:53.000Z</CreationDate><BucketRegion>garage</BucketRegion></Bucket>
                   </Buckets>
                 </ListAllMyBucketsResult>"
            ))
        );
        let empty = ListAllMyBucketsResult::default();
        assert!(
            empty
                .to_xml()
                .ends_with("</Owner><Buckets></Buckets></ListAllMyBucketsResult>")
        );
        // A page: the next page's token and the prefix asked for follow the buckets.
        let page = ListAllMyBucketsResult {
            continuation_token: Some("a&b".into()),
            prefix: Some("q".into()),
            ..Default::default()
        };
        assert!(page.to_xml().ends_with(
            "<Buckets></Buckets><ContinuationToken>a&amp;b</ContinuationToken>\
             <Prefix>q</Prefix></ListAllMyBucketsResult>"
        ));
    }

    fn object(key: &str, owner: Option<Owner>) -> ObjectSummary {
        ObjectSummary {
            key: key.into(),
            last_modified_msec: T,
            etag: "fba9dede5f27731c9771645a39863328".into(),
            size: 434_234,
            owner,
            checksum_algorithm: None,
            checksum_type: None,
        }
    }

    #[test]
    fn list_objects_v1() {
        let r = ListBucketResultV1 {
            name: "bucket".into(),
            max_keys: 1000,
            contents: vec![object("my-image.jpg", Some(owner()))],
            ..Default::default()
        };
        assert_eq!(
            r.to_xml(),
            doc(&format!(
                "<ListBucketResult {NS}>
                   <Name>bucket</Name>
                   <Prefix></Prefix>
                   <Marker></Marker>
                   <MaxKeys>1000</MaxKeys>
                   <IsTruncated>false</IsTruncated>
                   <Contents>
                     <Key>my-image.jpg</Key>
                     <LastModified>2009-10-12T17:50:30.000Z</LastModified>
                     <ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag>
                     <Size>434234</Size>
                     <Owner>
                       <ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID>
                       <DisplayName>mtd@amazon.com</DisplayName>
                     </Owner>
                     <StorageClass>STANDARD</StorageClass>
                   </Contents>
                 </ListBucketResult>"
            ))
        );

        // Delimiter, truncation, common prefixes, already-quoted ETag, checksum fields.
        let mut o = object("photos/a\"b", Some(owner()));
        o.etag = "\"abc-2\"".into();
        o.checksum_algorithm = Some("CRC64NVME".into());
        o.checksum_type = Some("FULL_OBJECT".into());
        let r = ListBucketResultV1 {
            name: "example-bucket".into(),
            prefix: "photos/".into(),
            marker: "photos/0".into(),
            next_marker: Some("photos/2006/".into()),
            max_keys: 2,
            delimiter: Some("/".into()),
            is_truncated: true,
            contents: vec![o],
            common_prefixes: vec!["photos/2006/".into()],
            ..Default::default()
        };
        assert_eq!(
            r.to_xml(),
            doc(&format!(
                "<ListBucketResult {NS}>
                   <Name>example-bucket</Name>
                   <Prefix>photos/</Prefix>
                   <Marker>photos/0</Marker>
                   <NextMarker>photos/2006/</NextMarker>
                   <MaxKeys>2</MaxKeys>
                   <Delimiter>/</Delimiter>
                   <IsTruncated>true</IsTruncated>
                   <Contents>
                     <Key>photos/a&quot;b</Key>
                     <LastModified>2009-10-12T17:50:30.000Z</LastModified>
                     <ETag>&quot;abc-2&quot;</ETag>
                     <ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm>
                     <ChecksumType>FULL_OBJECT</ChecksumType>
                     <Size>434234</Size>
                     <Owner>
                       <ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID>
                       <DisplayName>mtd@amazon.com</DisplayName>
                     </Owner>
                     <StorageClass>STANDARD</StorageClass>
                   </Contents>
                   <CommonPrefixes><Prefix>photos/2006/</Prefix></CommonPrefixes>
                 </ListBucketResult>"
            ))
        );
    }

    #[test]
    fn list_objects_v1_url_encoding() {
        let r = ListBucketResultV1 {
            name: "b".into(),
            prefix: "a b/".into(),
            marker: "a b/+".into(),
            next_marker: Some("a b/c\u{1}".into()),
            max_keys: 1000,
            delimiter: Some("&".into()),
            url_encoding: true,
            is_truncated: true,
            contents: vec![object("a b/\u{1}<x>", None)],
            common_prefixes: vec!["a b/é&".into()],
        };
        let xml = r.to_xml();
        assert!(xml.contains(
            "<Prefix>a%20b/</Prefix><Marker>a%20b/%2B</Marker><NextMarker>a%20b/c%01</NextMarker>\
             <MaxKeys>1000</MaxKeys><Delimiter>%26</Delimiter><EncodingType>url</EncodingType>\
             <IsTruncated>true</IsTruncated><Contents><Key>a%20b/%01%3Cx%3E</Key>"
        ), "{xml}");
        assert!(xml.contains("<CommonPrefixes><Prefix>a%20b/%C3%A9%26</Prefix></CommonPrefixes>"));
        assert!(!xml.contains("<Owner>"));
        assert_well_formed(&xml);
    }

    #[test]
    fn list_objects_v2() {
        let r = ListBucketResultV2 {
            name: "quotes".into(),
            prefix: "E".into(),
            start_after: Some("ExampleGuide.pdf".into()),
            max_keys: 3,
            contents: vec![ObjectSummary {
                key: "ExampleObject.txt".into(),
                last_modified_msec: 1_484_668_812_000,
                etag: "599bab3ed2c697f1d26842727561fd94".into(),
                size: 857,
                owner: None,
                checksum_algorithm: None,
                checksum_type: None,
            }],
            ..Default::default()
        };
        assert_eq!(
            r.to_xml(),
            doc(&format!(
                "<ListBucketResult {NS}>
                   <Name>quotes</Name>
                   <Prefix>E</Prefix>
                   <StartAfter>ExampleGuide.pdf</StartAfter>
                   <KeyCount>1</KeyCount>
                   <MaxKeys>3</MaxKeys>
                   <IsTruncated>false</IsTruncated>
                   <Contents>
                     <Key>ExampleObject.txt</Key>
                     <LastModified>2017-01-17T16:00:12.000Z</LastModified>
                     <ETag>&quot;599bab3ed2c697f1d26842727561fd94&quot;</ETag>
                     <Size>857</Size>
                     <StorageClass>STANDARD</StorageClass>
                   </Contents>
                 </ListBucketResult>"
            ))
        );

        let r = ListBucketResultV2 {
            name: "bucket".into(),
            prefix: "".into(),
            continuation_token: Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=".into()),
            next_continuation_token: Some("tok&2".into()),
            max_keys: 2,
            delimiter: Some("/".into()),
            is_truncated: true,
            contents: vec![object("sample.jpg", Some(owner()))],
            common_prefixes: vec!["photos/".into()],
            ..Default::default()
        };
        assert_eq!(
            r.to_xml(),
            doc(&format!(
                "<ListBucketResult {NS}>
                   <Name>bucket</Name>
                   <Prefix></Prefix>
                   <ContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</ContinuationToken>
                   <NextContinuationToken>tok&amp;2</NextContinuationToken>
                   <KeyCount>2</KeyCount>
                   <MaxKeys>2</MaxKeys>
                   <Delimiter>/</Delimiter>
                   <IsTruncated>true</IsTruncated>
                   <Contents>
                     <Key>sample.jpg</Key>
                     <LastModified>2009-10-12T17:50:30.000Z</LastModified>
                     <ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag>
                     <Size>434234</Size>
                     <Owner>
                       <ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID>
                       <DisplayName>mtd@amazon.com</DisplayName>
                     </Owner>
                     <StorageClass>STANDARD</StorageClass>
                   </Contents>
                   <CommonPrefixes><Prefix>photos/</Prefix></CommonPrefixes>
                 </ListBucketResult>"
            ))
        );
    }

    #[test]
    fn list_objects_v2_url_encoding() {
        let r = ListBucketResultV2 {
            name: "b".into(),
            prefix: "quux ab/".into(),
            start_after: Some("foo+1/".into()),
            continuation_token: Some("a+b=".into()),
            max_keys: 1000,
            delimiter: Some("/".into()),
            url_encoding: true,
            contents: vec![object("asdf+b", None)],
            common_prefixes: vec!["foo+1/".into(), "quux ab/".into()],
            ..Default::default()
        };
        let xml = r.to_xml();
        assert!(
            xml.contains(
                "<Prefix>quux%20ab/</Prefix><StartAfter>foo%2B1/</StartAfter>\
             <ContinuationToken>a+b=</ContinuationToken><KeyCount>3</KeyCount>\
             <MaxKeys>1000</MaxKeys><Delimiter>/</Delimiter><EncodingType>url</EncodingType>"
            ),
            "{xml}"
        );
        assert!(xml.contains("<Key>asdf%2Bb</Key>"));
        assert!(xml.contains(
            "<CommonPrefixes><Prefix>foo%2B1/</Prefix></CommonPrefixes>\
             <CommonPrefixes><Prefix>quux%20ab/</Prefix></CommonPrefixes>"
        ));
    }

    #[test]
    fn list_multipart_uploads() {
        let initiator = Owner {
            id: "arn:aws:iam::111122223333:user/user1".into(),
            display_name: "user1".into(),
        };
        let r = ListMultipartUploadsResult {
            bucket: "bucket".into(),
            next_key_marker: Some("my-movie.m2ts".into()),
            next_upload_id_marker: Some("YW55IGlkZWEgd2h5".into()),
            max_uploads: 3,
            is_truncated: true,
            uploads: vec![UploadSummary {
                key: "my-divisor".into(),
                upload_id: "XMgbGlrZSBlbHZpbmcncyBub3QgaGF2aW5nIG11Y2ggbHVjaw".into(),
                initiator: initiator.clone(),
                owner: owner(),
                initiated_msec: 1_289_422_113_000,
            }],
            ..Default::default()
        };
        assert_eq!(
            r.to_xml(),
            doc(&format!(
                "<ListMultipartUploadsResult {NS}>
                   <Bucket>bucket</Bucket>
                   <KeyMarker></KeyMarker>
                   <UploadIdMarker></UploadIdMarker>
                   <NextKeyMarker>my-movie.m2ts</NextKeyMarker>
                   <NextUploadIdMarker>YW55IGlkZWEgd2h5</NextUploadIdMarker>
                   <Prefix></Prefix>
                   <MaxUploads>3</MaxUploads>
                   <IsTruncated>true</IsTruncated>
                   <Upload>
                     <Key>my-divisor</Key>
                     <UploadId>XMgbGlrZSBlbHZpbmcncyBub3QgaGF2aW5nIG11Y2ggbHVjaw</UploadId>
                     <Initiator>
                       <ID>arn:aws:iam::111122223333:user/user1</ID>
                       <DisplayName>user1</DisplayName>
                     </Initiator>
                     <Owner>
                       <ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID>
                       <DisplayName>mtd@amazon.com</DisplayName>
                     </Owner>
                     <StorageClass>STANDARD</StorageClass>
                     <Initiated>2010-11-10T20:48:33.000Z</Initiated>
                   </Upload>
                 </ListMultipartUploadsResult>"
            ))
        );

        let r = ListMultipartUploadsResult {
            bucket: "example-bucket".into(),
            key_marker: "a b".into(),
            upload_id_marker: "u+1".into(),
            delimiter: Some("/".into()),
            prefix: "photos/".into(),
            max_uploads: 1000,
            url_encoding: true,
            common_prefixes: vec!["photos/2006 x/".into()],
            ..Default::default()
        };
        assert_eq!(
            r.to_xml(),
            doc(&format!(
                "<ListMultipartUploadsResult {NS}>
                   <Bucket>example-bucket</Bucket>
                   <KeyMarker>a%20b</KeyMarker>
                   <UploadIdMarker>u+1</UploadIdMarker>
                   <Delimiter>/</Delimiter>
                   <Prefix>photos/</Prefix>
                   <EncodingType>url</EncodingType>
                   <MaxUploads>1000</MaxUploads>
                   <IsTruncated>false</IsTruncated>
                   <CommonPrefixes><Prefix>photos/2006%20x/</Prefix></CommonPrefixes>
                 </ListMultipartUploadsResult>"
            ))
        );
    }

    #[test]
    fn list_parts() {
        let r = ListPartsResult {
            bucket: "example-bucket".into(),
            key: "example-object".into(),
            upload_id: "XXBsb2FkIElEIGZvciBlbHZpbmcncyVcdS1tb3ZpZS5tMnRzEEEwbG9hZA".into(),
            initiator: Owner {
                id: "arn:aws:iam::111122223333:user/some-user".into(),
                display_name: "umat-user".into(),
            },
            owner: Owner {
                id: "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a".into(),
                display_name: "someName".into(),
            },
            checksum_algorithm: None,
            checksum_type: None,
            part_number_marker: 1,
            next_part_number_marker: Some(3),
            max_parts: 2,
            is_truncated: true,
            parts: vec![
                PartSummary {
                    part_number: 2,
                    last_modified_msec: 1_289_422_114_000,
                    etag: "7778aef83f66abc1fa1e8477f296d394".into(),
                    size: 10_485_760,
                    checksums: vec![],
                },
                PartSummary {
                    part_number: 3,
                    last_modified_msec: 1_289_422_115_000,
                    etag: "aaaa18db4cc2f85cedef654fccc4a4x8".into(),
                    size: 10_485_760,
                    checksums: vec![("ChecksumCRC32".into(), "AAAAAA==".into())],
                },
            ],
        };
        assert_eq!(
            r.to_xml(),
            doc(&format!(
                "<ListPartsResult {NS}>
                   <Bucket>example-bucket</Bucket>
                   <Key>example-object</Key>
                   <UploadId>XXBsb2FkIElEIGZvciBlbHZpbmcncyVcdS1tb3ZpZS5tMnRzEEEwbG9hZA</UploadId>
                   <Initiator>
                     <ID>arn:aws:iam::111122223333:user/some-user</ID>
                     <DisplayName>umat-user</DisplayName>
                   </Initiator>
                   <Owner>
                     <ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID>
                     <DisplayName>someName</DisplayName>
                   </Owner>
                   <StorageClass>STANDARD</StorageClass>
                   <PartNumberMarker>1</PartNumberMarker>
                   <NextPartNumberMarker>3</NextPartNumberMarker>
                   <MaxParts>2</MaxParts>
                   <IsTruncated>true</IsTruncated>
                   <Part>
                     <PartNumber>2</PartNumber>
                     <LastModified>2010-11-10T20:48:34.000Z</LastModified>
                     <ETag>&quot;7778aef83f66abc1fa1e8477f296d394&quot;</ETag>
                     <Size>10485760</Size>
                   </Part>
                   <Part>
                     <PartNumber>3</PartNumber>
                     <LastModified>2010-11-10T20:48:35.000Z</LastModified>
                     <ETag>&quot;aaaa18db4cc2f85cedef654fccc4a4x8&quot;</ETag>
                     <Size>10485760</Size>
                     <ChecksumCRC32>AAAAAA==</ChecksumCRC32>
                   </Part>
                 </ListPartsResult>"
            ))
        );
    }

    #[test]
    fn small_results() {
        let r = InitiateMultipartUploadResult {
            bucket: "example-bucket".into(),
            key: "example-object".into(),
            upload_id: "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA".into(),
        };
        assert_eq!(
            r.to_xml(),
            doc(&format!(
                "<InitiateMultipartUploadResult {NS}>
                   <Bucket>example-bucket</Bucket>
                   <Key>example-object</Key>
                   <UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>
                 </InitiateMultipartUploadResult>"
            ))
        );

        let r = CompleteMultipartUploadResult {
            location: "http://Example-Bucket.s3.region.amazonaws.com/Example-Object".into(),
            bucket: "Example-Bucket".into(),
            key: "Example-Object".into(),
            etag: "3858f62230ac3c915f300c664312c11f-9".into(),
            checksums: vec![
                ("ChecksumCRC32".into(), "ZXhhbXBsZQ==-9".into()),
                ("ChecksumType".into(), "COMPOSITE".into()),
            ],
        };
        assert_eq!(
            r.to_xml(),
            doc(&format!(
                "<CompleteMultipartUploadResult {NS}>
                   <Location>http://Example-Bucket.s3.region.amazonaws.com/Example-Object</Location>
                   <Bucket>Example-Bucket</Bucket>
                   <Key>Example-Object</Key>
                   <ETag>&quot;3858f62230ac3c915f300c664312c11f-9&quot;</ETag>
                   <ChecksumCRC32>ZXhhbXBsZQ==-9</ChecksumCRC32>
                   <ChecksumType>COMPOSITE</ChecksumType>
                 </CompleteMultipartUploadResult>"
            ))
        );

        let r = CopyObjectResult {
            etag: "9b2cf535f27731c974343645a3985328".into(),
            last_modified_msec: T,
            checksums: vec![],
        };
        assert_eq!(
            r.to_xml(),
            doc(&format!(
                "<CopyObjectResult {NS}>
                   <LastModified>2009-10-12T17:50:30.000Z</LastModified>
                   <ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag>
                 </CopyObjectResult>"
            ))
        );
        let r = CopyPartResult {
            etag: "\"9b2cf535f27731c974343645a3985328\"".into(),
            last_modified_msec: 1_302_554_096_000,
            checksums: vec![("ChecksumSHA256".into(), "x+y/=".into())],
        };
        assert_eq!(
            r.to_xml(),
            doc(&format!(
                "<CopyPartResult {NS}>
                   <LastModified>2011-04-11T20:34:56.000Z</LastModified>
                   <ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag>
                   <ChecksumSHA256>x+y/=</ChecksumSHA256>
                 </CopyPartResult>"
            ))
        );

        assert_eq!(
            location_constraint_xml("us-east-1"),
            format!("{DECL}<LocationConstraint {NS}/>")
        );
        assert_eq!(
            location_constraint_xml(""),
            format!("{DECL}<LocationConstraint {NS}/>")
        );
        assert_eq!(
            location_constraint_xml("garage"),
            format!("{DECL}<LocationConstraint {NS}>garage</LocationConstraint>")
        );
        assert_eq!(
            versioning_configuration_xml(),
            format!("{DECL}<VersioningConfiguration {NS}/>")
        );
        for xml in [
            location_constraint_xml("eu-west-1"),
            versioning_configuration_xml(),
        ] {
            assert_well_formed(&xml);
        }
    }

    #[test]
    fn delete_result() {
        let r = DeleteResult {
            deleted: vec![
                DeletedObject {
                    key: "sample1.txt".into(),
                    version_id: None,
                    delete_marker: None,
                    delete_marker_version_id: None,
                },
                DeletedObject {
                    key: "a&b".into(),
                    version_id: Some("v1".into()),
                    delete_marker: Some(true),
                    delete_marker_version_id: Some("v2".into()),
                },
            ],
            errors: vec![DeleteError {
                key: "sample2.txt".into(),
                version_id: None,
                code: S3ErrorCode::AccessDenied,
                message: "Access Denied".into(),
            }],
        };
        assert_eq!(
            r.to_xml(),
            doc(&format!(
                "<DeleteResult {NS}>
                   <Deleted><Key>sample1.txt</Key></Deleted>
                   <Deleted>
                     <Key>a&amp;b</Key>
                     <VersionId>v1</VersionId>
                     <DeleteMarker>true</DeleteMarker>
                     <DeleteMarkerVersionId>v2</DeleteMarkerVersionId>
                   </Deleted>
                   <Error>
                     <Key>sample2.txt</Key>
                     <Code>AccessDenied</Code>
                     <Message>Access Denied</Message>
                   </Error>
                 </DeleteResult>"
            ))
        );
        assert_eq!(
            DeleteResult::default().to_xml(),
            format!("{DECL}<DeleteResult {NS}></DeleteResult>")
        );
    }

    #[test]
    fn keys_are_escaped_everywhere() {
        let nasty = "<a>&\"b'\r\n\t\u{1}é😀";
        let r = ListBucketResultV2 {
            name: "b".into(),
            prefix: nasty.into(),
            contents: vec![object(nasty, Some(owner()))],
            common_prefixes: vec![nasty.into()],
            ..Default::default()
        };
        let xml = r.to_xml();
        assert_well_formed(&xml);
        assert!(xml.contains("<Key>&lt;a&gt;&amp;&quot;b&apos;&#13;&#10;&#9;\u{FFFD}é😀</Key>"));
        // Re-parse: the key comes back exactly, except the unrepresentable U+0001.
        let root = parse_document(xml.as_bytes(), &ANY_SHAPE).unwrap().unwrap();
        let contents = root.children.iter().find(|n| n.name == "Contents").unwrap();
        let key = contents.children.iter().find(|n| n.name == "Key").unwrap();
        assert_eq!(key.text, "<a>&\"b'\r\n\t\u{FFFD}é😀");
        for xml in [
            ListAllMyBucketsResult {
                owner: Owner {
                    id: nasty.into(),
                    display_name: nasty.into(),
                },
                prefix: Some(nasty.into()),
                ..Default::default()
            }
            .to_xml(),
            InitiateMultipartUploadResult {
                bucket: "b".into(),
                key: nasty.into(),
                upload_id: "u".into(),
            }
            .to_xml(),
            error_xml(
                &S3Error::new(S3ErrorCode::InvalidArgument, nasty),
                nasty,
                nasty,
            ),
        ] {
            assert_well_formed(&xml);
        }
    }

    // ----- requests ---------------------------------------------------------------------------------

    #[test]
    fn complete_multipart_upload() {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>
             <CompleteMultipartUpload {NS}>
               <Part>
                 <PartNumber>1</PartNumber>
                 <ETag>\"a54357aff0632cce46d942af68356b38\"</ETag>
               </Part>
               <Part>
                 <ETag>&quot;0c78aef83f66abc1fa1e8477f296d394&quot;</ETag>
                 <PartNumber> 2 </PartNumber>
                 <ChecksumCRC32>AAAAAA==</ChecksumCRC32>
                 <ChecksumSHA256>\n  abc=  \n</ChecksumSHA256>
               </Part>
               <Part><PartNumber>3</PartNumber><ETag>acbd18db4cc2f85cedef654fccc4a4d8</ETag></Part>
             </CompleteMultipartUpload>"
        );
        let parts = parse_complete_multipart_upload(body.as_bytes()).unwrap();
        assert_eq!(
            parts,
            vec![
                CompletedPart {
                    part_number: 1,
                    etag: "a54357aff0632cce46d942af68356b38".into(),
                    checksums: vec![],
                },
                CompletedPart {
                    part_number: 2,
                    etag: "0c78aef83f66abc1fa1e8477f296d394".into(),
                    checksums: vec![
                        ("ChecksumCRC32".into(), "AAAAAA==".into()),
                        ("ChecksumSHA256".into(), "abc=".into()),
                    ],
                },
                CompletedPart {
                    part_number: 3,
                    etag: "acbd18db4cc2f85cedef654fccc4a4d8".into(),
                    checksums: vec![],
                },
            ]
        );
        // Without namespace, with a prefixed one, with comments, CDATA and a BOM.
        for body in [
            "<CompleteMultipartUpload><Part><PartNumber>7</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>",
            "<s3:CompleteMultipartUpload xmlns:s3=\"http://s3.amazonaws.com/doc/2006-03-01/\"><s3:Part><s3:PartNumber>7</s3:PartNumber><s3:ETag>e</s3:ETag></s3:Part></s3:CompleteMultipartUpload>",
            "\u{FEFF}<!-- c --><CompleteMultipartUpload><Part><!-- x --><PartNumber>7</PartNumber><ETag><![CDATA[\"e\"]]></ETag></Part></CompleteMultipartUpload>",
        ] {
            let parts = parse_complete_multipart_upload(body.as_bytes()).unwrap();
            assert_eq!(
                parts,
                vec![CompletedPart {
                    part_number: 7,
                    etag: "e".into(),
                    checksums: vec![]
                }],
                "{body}"
            );
        }
        // Part number 0 and out-of-order parts are the caller's business.
        let parts = parse_complete_multipart_upload(
            b"<CompleteMultipartUpload><Part><PartNumber>0</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>",
        )
        .unwrap();
        assert_eq!(parts[0].part_number, 0);
    }

    #[test]
    fn complete_multipart_upload_malformed() {
        let bad: &[&[u8]] = &[
            b"",
            b"   ",
            b"<CompleteMultipartUpload></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload/>",
            b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part>",
            b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUploa",
            b"<Complete><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></Complete>",
            b"<CompleteMultipartUpload><Part><PartNumber>one</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part><PartNumber>-1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part><PartNumber>+1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part><PartNumber></PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part><PartNumber>99999999999</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part><ETag>x</ETag></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><PartNumber>1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag><Foo/></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag><ChecksumCRC32>a</ChecksumCRC32><ChecksumCRC32>a</ChecksumCRC32></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part><PartNumber><X>1</X></PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload>text<Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload><X/>",
            b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>junk",
            b"<CompleteMultipartUpload><Other/></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&bogus;</ETag></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>a & b</ETag></Part></CompleteMultipartUpload>",
            b"<!DOCTYPE x [<!ENTITY e \"x\">]><CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&e;</ETag></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\xff</ETag></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload a=><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></Wrong>",
        ];
        for body in bad {
            assert_eq!(
                code(parse_complete_multipart_upload(body)),
                S3ErrorCode::MalformedXML,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn delete_request() {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>
             <Delete {NS}>
               <Quiet>true</Quiet>
               <Object><Key>sample1.txt</Key></Object>
               <Object><Key>sample2.txt</Key><VersionId>OYcLXagmS.WaD..oyH4KRguB95_YhLs7</VersionId></Object>
               <Object><Key> spaced key \n</Key></Object>
               <Object><Key>a&amp;b&lt;c&gt;&quot;d&apos;&#10;&#x1F600;&#13;&#x1;</Key><VersionId></VersionId></Object>
               <Object><Key><![CDATA[<raw>&amp;]]></Key></Object>
               <Object><Key></Key></Object>
               <Object><Key>line1\r\nline2</Key></Object>
             </Delete>"
        );
        let d = parse_delete(body.as_bytes()).unwrap();
        assert!(d.quiet);
        let keys: Vec<&str> = d.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "sample1.txt",
                "sample2.txt",
                " spaced key \n",
                "a&b<c>\"d'\n😀\r\u{1}",
                "<raw>&amp;",
                "",
                "line1\r\nline2",
            ]
        );
        assert_eq!(d.objects[0].version_id, None);
        assert_eq!(
            d.objects[1].version_id.as_deref(),
            Some("OYcLXagmS.WaD..oyH4KRguB95_YhLs7")
        );
        assert_eq!(d.objects[3].version_id, None);

        let d = parse_delete(b"<Delete><Object><Key>k</Key></Object></Delete>").unwrap();
        assert!(!d.quiet);
        assert_eq!(
            d.objects,
            vec![ObjectIdentifier {
                key: "k".into(),
                version_id: None
            }]
        );
        let d =
            parse_delete(b"<Delete><Object><Key>k</Key></Object><Quiet> False </Quiet></Delete>")
                .unwrap();
        assert!(!d.quiet);

        // 1000 objects are fine, 1001 are not.
        let many = |n: usize| {
            let mut s = String::from("<Delete>");
            for i in 0..n {
                s.push_str(&format!("<Object><Key>k{i}</Key></Object>"));
            }
            s.push_str("</Delete>");
            s
        };
        assert_eq!(
            parse_delete(many(1000).as_bytes()).unwrap().objects.len(),
            1000
        );
        assert_eq!(
            code(parse_delete(many(1001).as_bytes())),
            S3ErrorCode::MalformedXML
        );

        // Raw control characters (what some clients send, although XML 1.0 forbids them) are
        // taken as they are, like whitespace-only keys.
        let d = parse_delete(
            "<Delete><Object><Key>\u{1}a\u{1F}</Key></Object><Object><Key>\n</Key></Object></Delete>"
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(d.objects[0].key, "\u{1}a\u{1F}");
        assert_eq!(d.objects[1].key, "\n");

        // Conditional deletes are refused, not ignored.
        assert_eq!(
            code(parse_delete(
                b"<Delete><Object><Key>k</Key><ETag>\"x\"</ETag></Object></Delete>"
            )),
            S3ErrorCode::NotImplemented
        );
    }

    #[test]
    fn delete_request_malformed() {
        let bad: &[&[u8]] = &[
            b"",
            b"<Delete></Delete>",
            b"<Delete><Quiet>true</Quiet></Delete>",
            b"<Delete><Object></Object></Delete>",
            b"<Delete><Object><VersionId>v</VersionId></Object></Delete>",
            b"<Delete><Object><Key>a</Key><Key>b</Key></Object></Delete>",
            b"<Delete><Object><Key>a</Key></Object><Quiet>yes</Quiet></Delete>",
            b"<Delete><Object><Key>a</Key></Object><Quiet>true</Quiet><Quiet>true</Quiet></Delete>",
            b"<Delete><Object><Key>a</Key><Other/></Object></Delete>",
            b"<Delete><Object><Key>a<b/></Key></Object></Delete>",
            b"<Delete><Object><Key>a</Key></Object>",
            b"<Delete><Object><Key>a</Key></Object></Delete",
            b"<Delete><Object><Key>a</Object></Delete>",
            b"<Remove><Object><Key>a</Key></Object></Remove>",
            b"<Delete><Object><Key>&#0;</Key></Object></Delete>",
            b"<Delete><Object><Key>&#xD800;</Key></Object></Delete>",
            b"<Delete><Object><Key>&#x;</Key></Object></Delete>",
            b"<Delete><Object><Key>&#12a;</Key></Object></Delete>",
            b"<Delete><Object><Key>&nbsp;</Key></Object></Delete>",
            b"<Delete><Object>x<Key>a</Key></Object></Delete>",
            b"<Delete><Object><Key>a</Key></Object></Delete><Delete><Object><Key>a</Key></Object></Delete>",
            b"x<Delete><Object><Key>a</Key></Object></Delete>",
        ];
        for body in bad {
            assert_eq!(
                code(parse_delete(body)),
                S3ErrorCode::MalformedXML,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // Deep nesting is refused before it costs anything.
        let deep = format!(
            "<Delete>{}{}</Delete>",
            "<a>".repeat(100_000),
            "</a>".repeat(100_000)
        );
        assert_eq!(
            code(parse_delete(deep.as_bytes())),
            S3ErrorCode::MalformedXML
        );
    }

    /// Parses `body` with `parse`, returning the error code and how many elements were built.
    fn cost<T: std::fmt::Debug>(
        parse: fn(&[u8]) -> Result<T, S3Error>,
        body: &str,
    ) -> (Option<S3ErrorCode>, usize) {
        NODES_BUILT.with(|n| n.set(0));
        let code = parse(body.as_bytes()).err().map(|e| e.code);
        (code, NODES_BUILT.with(|n| n.get()))
    }

    /// Issue 9, point 6: counts are enforced while parsing, so a hostile body is refused after at
    /// most a few thousand elements, never turned into a tree of millions first.
    #[test]
    fn request_limits_are_enforced_while_parsing() {
        let malformed = Some(S3ErrorCode::MalformedXML);
        // 8 MiB of empty elements: refused at the 1002nd child of the root.
        let wide = format!("<Delete>{}</Delete>", "<Object/>".repeat((8 << 20) / 9));
        let (got, built) = cost(parse_delete, &wide);
        assert_eq!(got, malformed);
        assert!(built <= MAX_DELETE_OBJECTS + 2, "{built} elements built");
        // Unknown elements are refused on their start tag, wherever they are.
        for body in [
            format!("<Delete>{}</Delete>", "<x/>".repeat(100_000)),
            format!(
                "<Delete><Object>{}</Object></Delete>",
                "<y/>".repeat(100_000)
            ),
            format!("<Nope>{}</Nope>", "<Object/>".repeat(100_000)),
        ] {
            let (got, built) = cost(parse_delete, &body);
            assert_eq!(got, malformed);
            assert!(built <= 2, "{built} elements built");
        }
        // Children of a non-root element, depth, attributes.
        let (got, built) = cost(
            parse_delete,
            &format!(
                "<Delete><Object>{}</Object></Delete>",
                "<Key>k</Key>".repeat(100_000)
            ),
        );
        assert_eq!(got, malformed);
        assert!(built <= MAX_CHILDREN + 2, "{built} elements built");
        let (got, built) = cost(
            parse_delete,
            &format!("<Delete>{}</Delete>", "<Object>".repeat(100_000)),
        );
        assert_eq!(got, malformed);
        assert!(built <= MAX_DEPTH, "{built} elements built");
        let attrs = |n: usize| (0..n).map(|i| format!(" a{i}=\"v\"")).collect::<String>();
        let ok = format!(
            "<Delete{}><Object><Key>k</Key></Object></Delete>",
            attrs(MAX_ATTRIBUTES)
        );
        assert_eq!(parse_delete(ok.as_bytes()).unwrap().objects.len(), 1);
        let bad = format!(
            "<Delete{}><Object><Key>k</Key></Object></Delete>",
            attrs(1_000_000)
        );
        assert_eq!(cost(parse_delete, &bad), (malformed, 0));

        // CompleteMultipartUpload: 10000 parts are fine, the 10001st is refused as it starts.
        let parts = |n: usize| {
            let part = "<Part><PartNumber>1</PartNumber><ETag>e</ETag></Part>";
            format!(
                "<CompleteMultipartUpload>{}</CompleteMultipartUpload>",
                part.repeat(n)
            )
        };
        assert_eq!(
            parse_complete_multipart_upload(parts(MAX_COMPLETE_PARTS).as_bytes())
                .unwrap()
                .len(),
            MAX_COMPLETE_PARTS
        );
        let (got, built) = cost(parse_complete_multipart_upload, &parts(50_000));
        assert_eq!(got, malformed);
        assert!(
            built <= 1 + 3 * MAX_COMPLETE_PARTS + 1,
            "{built} elements built"
        );
        let (got, built) = cost(
            parse_complete_multipart_upload,
            &format!(
                "<CompleteMultipartUpload>{}</CompleteMultipartUpload>",
                "<Part/>".repeat(1_000_000)
            ),
        );
        assert_eq!(got, malformed);
        assert!(built <= MAX_COMPLETE_PARTS + 2, "{built} elements built");
        let (got, built) = cost(
            parse_create_bucket_configuration,
            &format!(
                "<CreateBucketConfiguration>{}</CreateBucketConfiguration>",
                "<LocationConstraint/>".repeat(100_000)
            ),
        );
        assert_eq!(got, malformed);
        assert!(built <= 2, "{built} elements built");

        // Text: up to MAX_TEXT bytes per element (a 1024-byte key is far below), whitespace between
        // elements is never a problem, and a whitespace-only value too long is refused, not cut.
        let key = |k: &str| format!("<Delete><Object><Key>{k}</Key></Object></Delete>");
        let long = "é".repeat(MAX_TEXT / 2);
        assert_eq!(
            parse_delete(key(&long).as_bytes()).unwrap().objects[0].key,
            long
        );
        assert_eq!(
            code(parse_delete(key(&format!("{long}x")).as_bytes())),
            S3ErrorCode::MalformedXML
        );
        assert_eq!(
            code(parse_delete(key(&"&amp;".repeat(MAX_TEXT + 1)).as_bytes())),
            S3ErrorCode::MalformedXML
        );
        assert_eq!(
            code(parse_delete(key(&" ".repeat(MAX_TEXT + 1)).as_bytes())),
            S3ErrorCode::MalformedXML
        );
        let indented = format!(
            "<Delete>{0}<Object>{0}<Key>k</Key>{0}</Object>{0}</Delete>",
            " \n\t".repeat(10_000)
        );
        assert_eq!(
            parse_delete(indented.as_bytes()).unwrap().objects[0].key,
            "k"
        );
    }

    #[test]
    fn create_bucket_configuration() {
        assert_eq!(parse_create_bucket_configuration(b"").unwrap(), None);
        assert_eq!(parse_create_bucket_configuration(b" \r\n ").unwrap(), None);
        assert_eq!(
            parse_create_bucket_configuration(
                b"<?xml version=\"1.0\"?><CreateBucketConfiguration/>"
            )
            .unwrap(),
            None
        );
        assert_eq!(
            parse_create_bucket_configuration(
                format!("<CreateBucketConfiguration {NS}><LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>").as_bytes()
            )
            .unwrap()
            .as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            parse_create_bucket_configuration(
                b"<CreateBucketConfiguration>\n  <LocationConstraint> garage </LocationConstraint>\n</CreateBucketConfiguration>\n"
            )
            .unwrap()
            .as_deref(),
            Some("garage")
        );
        assert_eq!(
            parse_create_bucket_configuration(
                b"<CreateBucketConfiguration><LocationConstraint/></CreateBucketConfiguration>"
            )
            .unwrap(),
            None
        );
        for body in [
            &b"<CreateBucketConfiguration>"[..],
            b"<LocationConstraint>x</LocationConstraint>",
            b"<CreateBucketConfiguration><Location><Name>x</Name></Location></CreateBucketConfiguration>",
            b"<CreateBucketConfiguration><LocationConstraint>a</LocationConstraint><LocationConstraint>b</LocationConstraint></CreateBucketConfiguration>",
            b"not xml",
        ] {
            assert_eq!(
                code(parse_create_bucket_configuration(body)),
                S3ErrorCode::MalformedXML,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// Builds a Delete request the way a client would, with our escaping.
    fn delete_doc(keys: &[String], escape: fn(&str) -> String) -> String {
        let mut s = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Delete {NS}><Quiet>false</Quiet>"
        );
        for k in keys {
            s.push_str(&format!("<Object><Key>{}</Key></Object>", escape(k)));
        }
        s.push_str("</Delete>");
        s
    }

    /// What SDKs do for characters XML 1.0 cannot carry: character references (XML 1.1 style).
    fn escape_with_char_refs(s: &str) -> String {
        let mut out = String::new();
        for c in s.chars() {
            if is_xml10_char(c) {
                push_escaped(&mut out, c.encode_utf8(&mut [0; 4]));
            } else {
                out.push_str(&format!("&#x{:X};", c as u32));
            }
        }
        out
    }

    fn xmlish() -> impl Strategy<Value = Vec<u8>> {
        let atoms = prop::sample::select(vec![
            "<",
            ">",
            "</",
            "/>",
            "&",
            ";",
            "&amp;",
            "&#",
            "&#x",
            "<![CDATA[",
            "]]>",
            "<!--",
            "-->",
            "<?",
            "?>",
            "<!DOCTYPE",
            "=",
            "\"",
            "'",
            " ",
            "\n",
            "Delete",
            "Object",
            "Key",
            "Quiet",
            "VersionId",
            "CompleteMultipartUpload",
            "Part",
            "PartNumber",
            "ETag",
            "ChecksumCRC32",
            "CreateBucketConfiguration",
            "LocationConstraint",
            "xmlns",
            "s3:",
            "true",
            "1",
            "x",
            "\u{1}",
            "é",
            "\u{FEFF}",
        ]);
        prop::collection::vec(atoms, 0..64).prop_map(|v| v.concat().into_bytes())
    }

    /// Property-based fuzzing of the request parsers (case count: `PROPTEST_CASES`, default 256;
    /// `script/fuzz` runs them for a given time).
    mod fuzz {
        use super::*;

        proptest! {
            #[test]
            fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
                let _ = parse_delete(&bytes);
                let _ = parse_complete_multipart_upload(&bytes);
                let _ = parse_create_bucket_configuration(&bytes);
                let _ = parse_tagging(&bytes);
                let _ = parse_access_control_policy(&bytes);
            }

            #[test]
            fn parsers_never_panic_on_xmlish(bytes in xmlish()) {
                let _ = parse_delete(&bytes);
                let _ = parse_complete_multipart_upload(&bytes);
                let _ = parse_create_bucket_configuration(&bytes);
                let _ = parse_tagging(&bytes);
                let _ = parse_access_control_policy(&bytes);
            }

            /// Any key made of characters XML 1.0 allows round-trips through our escaping, exactly.
            #[test]
            fn delete_keys_round_trip(keys in prop::collection::vec(
                "[^\u{0}-\u{8}\u{B}\u{C}\u{E}-\u{1F}\u{FFFE}\u{FFFF}]{0,40}", 1..8)
            ) {
                let body = delete_doc(&keys, xml_escape);
                let d = parse_delete(body.as_bytes()).unwrap();
                let got: Vec<String> = d.objects.into_iter().map(|o| o.key).collect();
                prop_assert_eq!(got, keys);
            }

            /// Any key at all (but NUL) round-trips when the client writes forbidden characters as
            /// character references, as SDKs do.
            #[test]
            fn delete_any_keys_round_trip(keys in prop::collection::vec("[^\u{0}]{0,40}", 1..8)) {
                let body = delete_doc(&keys, escape_with_char_refs);
                let d = parse_delete(body.as_bytes()).unwrap();
                let got: Vec<String> = d.objects.into_iter().map(|o| o.key).collect();
                prop_assert_eq!(got, keys);
            }

            /// Listings stay well-formed whatever the keys, and with encoding-type=url they are exact.
            #[test]
            fn listings_always_well_formed(keys in prop::collection::vec(any::<String>(), 0..6), url in any::<bool>()) {
                let r = ListBucketResultV2 {
                    name: "b".into(),
                    prefix: keys.first().cloned().unwrap_or_default(),
                    url_encoding: url,
                    contents: keys.iter().map(|k| object(k, None)).collect(),
                    common_prefixes: keys.clone(),
                    ..Default::default()
                };
                let xml = r.to_xml();
                let root = parse_document(xml.as_bytes(), &ANY_SHAPE).unwrap().unwrap();
                let got: Vec<String> = root
                    .children
                    .iter()
                    .filter(|n| n.name == "Contents")
                    .map(|c| c.children.iter().find(|n| n.name == "Key").unwrap().text.clone())
                    .collect();
                let expected: Vec<String> = keys
                    .iter()
                    .map(|k| if url { url::encode(k, Encode::Path) } else { xml_escape_roundtrip(k) })
                    .collect();
                prop_assert_eq!(got, expected);
            }
        }

        /// A CompleteMultipartUpload body for `parts`, formatted one of several ways clients do.
        fn complete_doc(parts: &[CompletedPart], style: u8) -> String {
            let (p, ns) = match style % 3 {
                0 => ("", format!(" {NS}")),
                1 => (
                    "s3:",
                    " xmlns:s3=\"http://s3.amazonaws.com/doc/2006-03-01/\"".into(),
                ),
                _ => ("", String::new()),
            };
            let sep = if style & 4 != 0 { "\n  " } else { "" };
            let mut s = format!("{DECL}<{p}CompleteMultipartUpload{ns}>");
            for part in parts {
                let etag = if style & 8 != 0 {
                    format!("&quot;{}&quot;", xml_escape(&part.etag))
                } else {
                    format!("\"{}\"", xml_escape(&part.etag))
                };
                s.push_str(&format!(
                    "{sep}<{p}Part>{sep}<{p}PartNumber>{}</{p}PartNumber>{sep}<{p}ETag>{etag}</{p}ETag>",
                    part.part_number
                ));
                for (name, value) in &part.checksums {
                    s.push_str(&format!(
                        "{sep}<{p}{name}>{}</{p}{name}>",
                        xml_escape(value)
                    ));
                }
                s.push_str(&format!("{sep}</{p}Part>"));
            }
            s.push_str(&format!("{sep}</{p}CompleteMultipartUpload>"));
            s
        }

        fn any_part() -> impl Strategy<Value = CompletedPart> {
            let etag = "\\PC{0,40}".prop_filter("no surrounding spaces or quotes", |e| {
                !e.starts_with(|c: char| is_xml_space(c) || c == '"')
                    && !e.ends_with(|c: char| is_xml_space(c) || c == '"')
            });
            let checksums = prop::sample::subsequence(CHECKSUM_ELEMENTS.to_vec(), 0..=5)
                .prop_flat_map(|names| {
                    let n = names.len();
                    (
                        Just(names),
                        prop::collection::vec("[A-Za-z0-9+/=]{1,20}", n),
                    )
                })
                .prop_map(|(names, values)| {
                    names
                        .into_iter()
                        .map(String::from)
                        .zip(values)
                        .collect::<Vec<_>>()
                });
            (any::<u32>(), etag, checksums).prop_map(|(part_number, etag, checksums)| {
                CompletedPart {
                    part_number,
                    etag,
                    checksums,
                }
            })
        }

        /// Applies byte edits (overwrite, insert, delete) to `doc`.
        fn mutate(doc: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
            let mut out = doc.to_vec();
            for &(at, op, byte) in edits {
                let at = at % (out.len() + 1);
                match op % 3 {
                    0 if at < out.len() => out[at] = byte,
                    1 => out.insert(at, byte),
                    _ if at < out.len() => {
                        out.remove(at);
                    }
                    _ => {}
                }
            }
            out
        }

        /// Whatever a parser accepts satisfies the limits its callers rely on.
        fn check_invariants(body: &[u8]) -> Result<(), TestCaseError> {
            if let Ok(d) = parse_delete(body) {
                prop_assert!((1..=MAX_DELETE_OBJECTS).contains(&d.objects.len()));
                prop_assert!(d.objects.iter().all(|o| o.key.len() <= MAX_TEXT));
            }
            if let Ok(parts) = parse_complete_multipart_upload(body) {
                prop_assert!((1..=MAX_COMPLETE_PARTS).contains(&parts.len()));
                prop_assert!(
                    parts
                        .iter()
                        .all(|p| p.checksums.len() <= CHECKSUM_ELEMENTS.len())
                );
            }
            if let Ok(Some(l)) = parse_create_bucket_configuration(body) {
                prop_assert!(l.len() <= MAX_TEXT);
            }
            Ok(())
        }

        proptest! {
            /// Any parts, formatted any usual way, come back exactly.
            #[test]
            fn complete_round_trip(parts in prop::collection::vec(any_part(), 1..12), style in any::<u8>()) {
                let body = complete_doc(&parts, style);
                prop_assert_eq!(parse_complete_multipart_upload(body.as_bytes()).unwrap(), parts);
            }

            /// Any Delete request (quiet flag, keys, version ids), indented or not, with or without
            /// a namespace prefix, keys as text or CDATA, comes back exactly.
            #[test]
            fn delete_round_trip(
                objects in prop::collection::vec(("\\PC{0,40}", prop::option::of("[A-Za-z0-9._-]{1,32}"), any::<bool>()), 1..12),
                quiet in any::<bool>(), pretty in any::<bool>(), prefixed in any::<bool>(),
            ) {
                let (p, ns) = if prefixed {
                    ("s3:", " xmlns:s3=\"http://s3.amazonaws.com/doc/2006-03-01/\"")
                } else {
                    ("", "")
                };
                let sep = if pretty { "\n    " } else { "" };
                let mut s = format!("{DECL}<{p}Delete{ns}>{sep}<{p}Quiet>{quiet}</{p}Quiet>");
                for (key, version, cdata) in &objects {
                    let key = if *cdata && !key.contains("]]>") {
                        format!("<![CDATA[{key}]]>")
                    } else {
                        xml_escape(key)
                    };
                    s.push_str(&format!("{sep}<{p}Object>{sep}<{p}Key>{key}</{p}Key>"));
                    if let Some(v) = version {
                        s.push_str(&format!("{sep}<{p}VersionId>{v}</{p}VersionId>"));
                    }
                    s.push_str(&format!("{sep}</{p}Object>"));
                }
                s.push_str(&format!("{sep}</{p}Delete>{sep}"));
                let d = parse_delete(s.as_bytes()).unwrap();
                prop_assert_eq!(d.quiet, quiet);
                let expected: Vec<ObjectIdentifier> = objects
                    .into_iter()
                    .map(|(key, version_id, _)| ObjectIdentifier { key, version_id })
                    .collect();
                prop_assert_eq!(d.objects, expected);
            }

            /// Valid documents with random byte edits: an error or a result within the limits,
            /// never a panic.
            #[test]
            fn mutated_documents_never_panic(
                parts in prop::collection::vec(any_part(), 1..4),
                keys in prop::collection::vec("\\PC{0,12}", 1..4),
                edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
                style in any::<u8>(),
            ) {
                let docs = [
                    complete_doc(&parts, style),
                    delete_doc(&keys, xml_escape),
                    format!("<CreateBucketConfiguration {NS}><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>", xml_escape(&keys[0])),
                ];
                for doc in docs {
                    check_invariants(&mutate(doc.as_bytes(), &edits))?;
                }
            }

            /// Documents made of many repeated fragments (wide, deep, long text, many attributes)
            /// stay within the limits.
            #[test]
            fn repeated_fragments_stay_within_limits(
                root in prop::sample::select(vec!["Delete", "CompleteMultipartUpload", "CreateBucketConfiguration"]),
                fragment in prop::sample::select(vec![
                    "<Object><Key>k</Key></Object>", "<Object/>", "<Part><PartNumber>1</PartNumber><ETag>e</ETag></Part>",
                    "<Part>", "</Part>", "<Key>", "x", " ", "&amp;", "<![CDATA[y]]>", "<!-- c -->",
                    "<LocationConstraint>a</LocationConstraint>", "<Object a=\"1\" b=\"2\">", "</Object>",
                ]),
                count in 0usize..12_000,
            ) {
                let body = format!("<{root}>{}</{root}>", fragment.repeat(count));
                check_invariants(body.as_bytes())?;
            }
        }
    }

    /// What a key becomes after escaping and parsing (unrepresentable characters → U+FFFD).
    fn xml_escape_roundtrip(k: &str) -> String {
        k.chars()
            .map(|c| if is_xml10_char(c) { c } else { '\u{FFFD}' })
            .collect()
    }
}
