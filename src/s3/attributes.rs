//! GetObjectAttributes (`GET /key?attributes`): the attributes named by `x-amz-object-attributes`
//! (`ETag`, `Checksum`, `ObjectParts`, `StorageClass`, `ObjectSize`) in one XML document, without
//! the body. Needs read permission and, for an SSE-C object, its key (as HEAD does).

use hyper::HeaderMap;

use super::ctx::{Ctx, ResBody, internal, xml_response};
use super::error::{S3Error, S3ErrorCode, err};
use super::mpu_checksum;
use super::object::current;
use super::sse::{self, KeyFor};
use super::xml;
use crate::util::timefmt;

/// Most parts listed in one answer (as S3).
const MAX_PARTS: u32 = 1000;

/// What `x-amz-object-attributes` asks for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Wanted {
    etag: bool,
    checksum: bool,
    parts: bool,
    storage_class: bool,
    size: bool,
}

fn invalid_argument(msg: &str, name: &str) -> S3Error {
    err(S3ErrorCode::InvalidArgument, msg).with("ArgumentName", name.to_string())
}

fn wanted(headers: &HeaderMap) -> Result<Wanted, S3Error> {
    let missing = || {
        invalid_argument(
            "The x-amz-object-attributes header specifying the attributes to be retrieved is either missing or empty",
            "x-amz-object-attributes",
        )
    };
    let mut w = Wanted::default();
    let mut any = false;
    // The header may be repeated, each a comma-separated list.
    for v in headers.get_all("x-amz-object-attributes") {
        let v = v.to_str().map_err(|_| missing())?;
        for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            any = true;
            let flag = match name {
                "ETag" => &mut w.etag,
                "Checksum" => &mut w.checksum,
                "ObjectParts" => &mut w.parts,
                "StorageClass" => &mut w.storage_class,
                "ObjectSize" => &mut w.size,
                _ => {
                    return Err(invalid_argument(
                        "Invalid attribute name specified.",
                        "x-amz-object-attributes",
                    ));
                }
            };
            *flag = true;
        }
    }
    if any { Ok(w) } else { Err(missing()) }
}

fn number_header(headers: &HeaderMap, name: &str) -> Result<Option<u32>, S3Error> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .ok_or_else(|| invalid_argument(&format!("Provided {name} not an integer"), name))
        })
        .transpose()
}

pub async fn get_object_attributes(ctx: &mut Ctx) -> Result<hyper::Response<ResBody>, S3Error> {
    if ctx.route.query.contains_key("versionId") {
        // Buckets are unversioned: a version cannot be chosen, so it is refused, not ignored.
        return Err(err(
            S3ErrorCode::NotImplemented,
            "GetObjectAttributes with versionId is not implemented by Grenier.",
        ));
    }
    let want = wanted(&ctx.headers)?;
    let max = number_header(&ctx.headers, "x-amz-max-parts")?
        .unwrap_or(MAX_PARTS)
        .min(MAX_PARTS);
    let marker = number_header(&ctx.headers, "x-amz-part-number-marker")?.unwrap_or(0);
    let (version, meta) = current(ctx).await?;
    let sse_key = sse::customer_key(&ctx.headers, KeyFor::Target)?;
    sse::check_read(meta.encryption.as_ref(), sse_key.as_ref())?;
    let object_parts = match meta.parts {
        Some(count) if want.parts => {
            // Parts are listed only for an object with a checksum (as S3).
            let all = if meta.checksum.is_some() {
                ctx.model().part_sizes(&version).await.map_err(internal)?
            } else {
                vec![]
            };
            let after: Vec<(u32, u64)> = all.into_iter().filter(|(n, _)| *n > marker).collect();
            let truncated = after.len() > max as usize;
            let parts: Vec<(u32, u64)> = after.into_iter().take(max as usize).collect();
            Some(xml::ObjectParts {
                parts_count: count,
                part_number_marker: marker,
                next_part_number_marker: if truncated {
                    parts.last().map(|(n, _)| *n)
                } else {
                    None
                },
                max_parts: max,
                is_truncated: truncated,
                parts,
            })
        }
        _ => None,
    };
    let doc = xml::GetObjectAttributesResponse {
        etag: want.etag.then(|| meta.etag.clone()),
        checksum: want
            .checksum
            .then(|| mpu_checksum::elements(meta.checksum.as_ref())),
        object_parts,
        storage_class: want.storage_class,
        object_size: want.size.then_some(meta.size),
    };
    let mut r = xml_response(doc.to_xml());
    if let Ok(v) = timefmt::http_date(version.timestamp.msec).parse() {
        r.headers_mut().insert("last-modified", v);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn attrs(values: &[&str]) -> Result<Wanted, S3Error> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-amz-object-attributes", HeaderValue::from_str(v).unwrap());
        }
        wanted(&h)
    }

    #[test]
    fn attribute_names() {
        let w = attrs(&["ETag, ObjectSize", "Checksum"]).unwrap();
        assert_eq!(
            w,
            Wanted {
                etag: true,
                checksum: true,
                size: true,
                ..Default::default()
            }
        );
        let w = attrs(&["ETag,Checksum,ObjectParts,StorageClass,ObjectSize"]).unwrap();
        assert!(w.etag && w.checksum && w.parts && w.storage_class && w.size);
        for bad in [&[][..], &[""], &[" , "], &["Etag"], &["ETag,Owner"]] {
            assert_eq!(
                attrs(bad).unwrap_err().code,
                S3ErrorCode::InvalidArgument,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn document() {
        let doc = xml::GetObjectAttributesResponse {
            etag: Some("\"abc-2\"".into()),
            checksum: Some(mpu_checksum::elements(Some(&(
                "CRC32".into(),
                "AAAAAA==-2".into(),
            )))),
            object_parts: Some(xml::ObjectParts {
                parts_count: 2,
                part_number_marker: 0,
                next_part_number_marker: Some(1),
                max_parts: 1,
                is_truncated: true,
                parts: vec![(1, 5)],
            }),
            storage_class: true,
            object_size: Some(7),
        }
        .to_xml();
        let body = doc.split_once("?>").unwrap().1.trim_start();
        assert_eq!(
            body,
            "<GetObjectAttributesResponse xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <ETag>abc-2</ETag><Checksum><ChecksumCRC32>AAAAAA==-2</ChecksumCRC32>\
             <ChecksumType>COMPOSITE</ChecksumType></Checksum><ObjectParts><PartsCount>2</PartsCount>\
             <PartNumberMarker>0</PartNumberMarker><NextPartNumberMarker>1</NextPartNumberMarker>\
             <MaxParts>1</MaxParts><IsTruncated>true</IsTruncated><Part><PartNumber>1</PartNumber>\
             <Size>5</Size></Part></ObjectParts><StorageClass>STANDARD</StorageClass>\
             <ObjectSize>7</ObjectSize></GetObjectAttributesResponse>"
        );
    }
}
