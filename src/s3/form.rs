//! A streaming `multipart/form-data` reader (RFC 7578) for browser form uploads (PostObject): the
//! fields before the `file` part are read into memory, bounded ([`MAX_FIELD`] each,
//! [`MAX_PRE_DATA`] for everything before the file), and the file's content is handed on as a
//! stream that ends at the part's closing delimiter, never buffered whole. Fields after the file are
//! not read (S3 ignores them). Every malformation is a 400, never a panic.

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;

use super::ctx::ReqBody;
use super::error::{S3Error, S3ErrorCode, err};

/// Largest value of one form field before the file.
pub const MAX_FIELD: usize = 20 << 10;
/// Largest size of everything before the file's content (preamble, part headers, field values).
pub const MAX_PRE_DATA: usize = 64 << 10;
/// Largest header section of one part.
const MAX_PART_HEADERS: usize = 8 << 10;
/// Longest boundary (RFC 2046).
const MAX_BOUNDARY: usize = 70;

/// The fields of a form, in order (names lowercased: S3 matches them case-insensitively), and the
/// file part's own headers.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Form {
    pub fields: Vec<(String, String)>,
    /// The `filename` of the file part's Content-Disposition (without any directory), if given.
    pub filename: Option<String>,
}

pub fn malformed() -> S3Error {
    err(
        S3ErrorCode::MalformedPOSTRequest,
        "The body of your POST request is not well-formed multipart/form-data.",
    )
}

fn too_large() -> S3Error {
    err(
        S3ErrorCode::MaxPostPreDataLengthExceeded,
        "Your POST request fields preceeding the upload file was too large.",
    )
}

/// The boundary of a `multipart/form-data` Content-Type. Another type is `PreconditionFailed`, as
/// AWS answers it; a missing or bad boundary is `MalformedPOSTRequest`.
pub fn boundary(content_type: &str) -> Result<String, S3Error> {
    let mut params = content_type.split(';');
    let mime = params.next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return Err(err(
            S3ErrorCode::PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold",
        )
        .with(
            "Condition",
            "Bucket POST must be of the enclosure-type multipart/form-data",
        ));
    }
    let rest = content_type.split_once(';').map_or("", |(_, r)| r);
    let b = parse_params(rest)
        .into_iter()
        .find(|(k, _)| k == "boundary")
        .map(|(_, v)| v)
        .ok_or_else(malformed)?;
    let ok = !b.is_empty()
        && b.len() <= MAX_BOUNDARY
        && b.bytes().all(|c| c.is_ascii_graphic() || c == b' ');
    if !ok {
        return Err(malformed());
    }
    Ok(b)
}

/// `; name=value; name="quoted \" value"` → lowercase names and unquoted values.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b';' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b';' {
            i += 1;
        }
        let name = s[start..i].trim().to_ascii_lowercase();
        let mut value = String::new();
        if i < b.len() && b[i] == b'=' {
            i += 1;
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = vec![];
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    v.push(b[i]);
                    i += 1;
                }
                i += 1; // closing quote
                value = String::from_utf8_lossy(&v).into_owned();
            } else {
                let vs = i;
                while i < b.len() && b[i] != b';' {
                    i += 1;
                }
                value = s[vs..i].trim().to_string();
            }
        }
        if !name.is_empty() {
            out.push((name, value));
        }
    }
    out
}

/// Position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while from + needle.len() <= hay.len() {
        let i = from + hay[from..].iter().position(|&c| c == first)?;
        if hay.get(i..i + needle.len())? == needle {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

struct Reader {
    body: ReqBody,
    buf: BytesMut,
    /// `\r\n--boundary`.
    delim: Vec<u8>,
}

impl Reader {
    /// Read one more chunk; an early end of the body is malformed.
    async fn fill(&mut self) -> Result<(), S3Error> {
        match self.body.next().await {
            Some(Ok(c)) => {
                self.buf.extend_from_slice(&c);
                Ok(())
            }
            Some(Err(e)) => Err(e),
            None => Err(malformed()),
        }
    }

    /// The content up to the next delimiter (consumed), at most `limit` bytes.
    async fn until_delim(&mut self, limit: usize) -> Result<Bytes, S3Error> {
        loop {
            if let Some(i) = find(&self.buf, &self.delim) {
                if i > limit {
                    return Err(too_large());
                }
                let out = self.buf.split_to(i).freeze();
                self.buf.advance(self.delim.len());
                return Ok(out);
            }
            if self.buf.len() > limit + self.delim.len() {
                return Err(too_large());
            }
            self.fill().await?;
        }
    }

    /// After a delimiter: `--` (the end of the form, false) or a line end (another part, true),
    /// allowing the transport padding (spaces and tabs) RFC 2046 allows before it.
    async fn more_parts(&mut self) -> Result<bool, S3Error> {
        loop {
            let pad = self
                .buf
                .iter()
                .take_while(|&&c| c == b' ' || c == b'\t')
                .count();
            if pad > 64 {
                return Err(malformed());
            }
            if self.buf.starts_with(b"--") {
                return Ok(false);
            }
            let rest = &self.buf[pad..];
            if rest.starts_with(b"\r\n") {
                self.buf.advance(pad + 2);
                return Ok(true);
            }
            let partial = rest.is_empty() || rest == b"\r" || (pad == 0 && rest == b"-");
            if !partial {
                return Err(malformed());
            }
            self.fill().await?;
        }
    }

    /// A part's header section (consumed with its blank line), as (lowercase name, value) pairs.
    async fn part_headers(&mut self) -> Result<(Vec<(String, String)>, usize), S3Error> {
        let end = loop {
            if self.buf.starts_with(b"\r\n") {
                break 0;
            }
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 2;
            }
            if self.buf.len() > MAX_PART_HEADERS {
                return Err(too_large());
            }
            self.fill().await?;
        };
        if end > MAX_PART_HEADERS {
            return Err(too_large());
        }
        let block = self.buf.split_to(end + 2);
        let text = String::from_utf8_lossy(&block[..end]);
        let mut headers = vec![];
        for line in text.split("\r\n").filter(|l| !l.is_empty()) {
            let (n, v) = line.split_once(':').ok_or_else(malformed)?;
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        Ok((headers, block.len()))
    }

    /// The rest of the current part as a stream: bytes are passed on as they arrive, except the last
    /// few that could be the start of the delimiter; the stream ends at the delimiter, and fails if
    /// the body ends before it.
    fn into_part_stream(self) -> ReqBody {
        Box::pin(futures::stream::unfold(Some(self), |state| async move {
            let mut r = state?;
            loop {
                if let Some(i) = find(&r.buf, &r.delim) {
                    let out = r.buf.split_to(i).freeze();
                    return Some((Ok(out), None));
                }
                let keep = r.delim.len() - 1;
                if r.buf.len() > keep {
                    let out = r.buf.split_to(r.buf.len() - keep).freeze();
                    return Some((Ok(out), Some(r)));
                }
                if let Err(e) = r.fill().await {
                    return Some((Err(e), None));
                }
            }
        }))
    }
}

/// Read a form up to its `file` part: the fields before it, and a stream of the file's content.
/// `Ok((form, None))` when the form ends without a file.
pub async fn read(body: ReqBody, boundary: &str) -> Result<(Form, Option<ReqBody>), S3Error> {
    let mut delim = b"\r\n--".to_vec();
    delim.extend_from_slice(boundary.as_bytes());
    // The first delimiter may open the body: seen as one after an empty preamble line.
    let mut r = Reader {
        body,
        buf: BytesMut::from(&b"\r\n"[..]),
        delim,
    };
    let preamble = r.until_delim(MAX_PRE_DATA).await?;
    let mut used = preamble.len();
    let mut form = Form::default();
    while r.more_parts().await? {
        let (headers, len) = r.part_headers().await?;
        used += len;
        if used > MAX_PRE_DATA {
            return Err(too_large());
        }
        let disposition = headers
            .iter()
            .find(|(n, _)| n == "content-disposition")
            .map(|(_, v)| v.as_str())
            .ok_or_else(malformed)?;
        let (kind, params) = disposition.split_once(';').unwrap_or((disposition, ""));
        if !kind.trim().eq_ignore_ascii_case("form-data") {
            return Err(malformed());
        }
        let params = parse_params(params);
        let param = |p: &str| params.iter().find(|(k, _)| k == p).map(|(_, v)| v.clone());
        let name = param("name").ok_or_else(malformed)?.to_ascii_lowercase();
        if name == "file" {
            // Browsers send a bare name; older ones sent a full path.
            form.filename =
                param("filename").map(|f| f.rsplit(['/', '\\']).next().unwrap_or("").to_string());
            return Ok((form, Some(r.into_part_stream())));
        }
        let value = r.until_delim(MAX_FIELD).await?;
        used += value.len();
        if used > MAX_PRE_DATA {
            return Err(too_large());
        }
        form.fields
            .push((name, String::from_utf8_lossy(&value).into_owned()));
    }
    Ok((form, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(chunks: Vec<Vec<u8>>) -> ReqBody {
        Box::pin(futures::stream::iter(
            chunks.into_iter().map(|c| Ok(Bytes::from(c))),
        ))
    }

    /// Feed `raw` in chunks of `n` bytes and read the form and the whole file.
    fn parse(raw: &[u8], n: usize) -> Result<(Form, Option<Vec<u8>>), S3Error> {
        let chunks = raw.chunks(n).map(<[u8]>::to_vec).collect();
        futures::executor::block_on(async {
            let (form, file) = read(body(chunks), "XyZ").await?;
            let Some(mut file) = file else {
                return Ok((form, None));
            };
            let mut out = vec![];
            while let Some(c) = file.next().await {
                out.extend_from_slice(&c?);
            }
            Ok((form, Some(out)))
        })
    }

    fn sample(content: &[u8]) -> Vec<u8> {
        let mut v = b"--XyZ\r\nContent-Disposition: form-data; name=\"Key\"\r\n\r\nuploads/${filename}\r\n\
            --XyZ\r\ncontent-disposition: form-data; name=\"x-amz-meta-a\"\r\n\r\nline1\r\nline2\r\n\
            --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"C:\\\\dir\\\\p \\\"q\\\".txt\"\r\n\
            Content-Type: text/plain\r\n\r\n"
            .to_vec();
        v.extend_from_slice(content);
        v.extend_from_slice(
            b"\r\n--XyZ\r\nContent-Disposition: form-data; name=\"after\"\r\n\r\nx\r\n--XyZ--\r\n",
        );
        v
    }

    #[test]
    fn fields_and_file_whatever_the_chunking() {
        // Content with near-delimiters: CRLF, "--XyZ" without CRLF, "\r\n--XY".
        let content = b"a\r\nb--XyZ\r\n--XYc\r\n-\r\n--Xy".repeat(50);
        let raw = sample(&content);
        for n in [1, 2, 3, 5, 7, 64, 1000, raw.len()] {
            let (form, file) = parse(&raw, n).unwrap();
            assert_eq!(
                form.fields,
                vec![
                    ("key".to_string(), "uploads/${filename}".to_string()),
                    ("x-amz-meta-a".to_string(), "line1\r\nline2".to_string()),
                ],
                "chunks of {n}"
            );
            assert_eq!(form.filename.as_deref(), Some("p \"q\".txt"));
            assert_eq!(file.unwrap(), content, "chunks of {n}");
        }
        // An empty file, a preamble, no part headers besides the disposition.
        let raw =
            b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=file\r\n\r\n\r\n--XyZ--";
        let (form, file) = parse(raw, 4).unwrap();
        assert_eq!(form.filename, None);
        assert_eq!(file.unwrap(), b"");
    }

    #[test]
    fn a_form_without_file() {
        let raw = b"--XyZ\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk\r\n--XyZ--\r\n";
        for n in 1..=raw.len() {
            let (form, file) = parse(raw, n).unwrap();
            assert_eq!(form.fields.len(), 1, "chunks of {n}");
            assert!(file.is_none());
        }
        // Transport padding after a delimiter.
        let raw = b"--XyZ \t\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--XyZ--";
        for n in 1..=raw.len() {
            assert_eq!(parse(raw, n).unwrap().0.fields.len(), 1, "chunks of {n}");
        }
    }

    #[test]
    fn truncated_and_malformed_bodies_are_400() {
        let raw = sample(b"some content");
        // Cut anywhere before the file's closing delimiter is complete: an error, never a panic (a
        // cut inside the file fails its stream).
        let file_end = find(&raw, b"some content").unwrap() + b"some content\r\n--XyZ".len();
        for cut in 0..file_end {
            let r = parse(&raw[..cut], 7);
            let e = r.expect_err(&format!("cut at {cut}"));
            assert_eq!(e.status(), hyper::StatusCode::BAD_REQUEST, "cut at {cut}");
        }
        for bad in [
            &b"--XyZ\r\nContent-Disposition: form-data\r\n\r\nv\r\n--XyZ--"[..],
            b"--XyZ\r\nContent-Disposition: attachment; name=a\r\n\r\nv\r\n--XyZ--",
            b"--XyZ\r\nno colon here\r\n\r\nv\r\n--XyZ--",
            b"--XyZ\r\n\r\nv\r\n--XyZ--",
            b"--XyZjunk\r\n",
            b"",
        ] {
            let e = parse(bad, 5).unwrap_err();
            assert_eq!(e.code, S3ErrorCode::MalformedPOSTRequest);
        }
    }

    #[test]
    fn limits() {
        let big = vec![b'v'; MAX_FIELD + 1];
        let mut raw = b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n".to_vec();
        raw.extend_from_slice(&big);
        raw.extend_from_slice(b"\r\n--XyZ--");
        let e = parse(&raw, 4096).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::MaxPostPreDataLengthExceeded);
        // Many fields each under the limit, too many in total.
        let mut raw = vec![];
        for i in 0..10 {
            raw.extend_from_slice(
                format!("--XyZ\r\nContent-Disposition: form-data; name=f{i}\r\n\r\n").as_bytes(),
            );
            raw.extend_from_slice(&vec![b'v'; MAX_FIELD - 10]);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"--XyZ--");
        let e = parse(&raw, 4096).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::MaxPostPreDataLengthExceeded);
        // An endless header section.
        let mut raw = b"--XyZ\r\nX: ".to_vec();
        raw.extend_from_slice(&vec![b'h'; MAX_PART_HEADERS + 10]);
        let e = parse(&raw, 4096).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::MaxPostPreDataLengthExceeded);
    }

    #[test]
    fn content_type_and_boundary() {
        assert_eq!(
            boundary("multipart/form-data; boundary=----abc").unwrap(),
            "----abc"
        );
        assert_eq!(
            boundary("Multipart/Form-Data; charset=utf-8; boundary=\"a b\"").unwrap(),
            "a b"
        );
        let e = boundary("application/x-www-form-urlencoded").unwrap_err();
        assert_eq!(e.code, S3ErrorCode::PreconditionFailed);
        assert_eq!(e.status(), hyper::StatusCode::PRECONDITION_FAILED);
        for bad in [
            "multipart/form-data",
            "multipart/form-data; boundary=",
            &format!("multipart/form-data; boundary={}", "b".repeat(71)),
        ] {
            assert_eq!(
                boundary(bad).unwrap_err().code,
                S3ErrorCode::MalformedPOSTRequest
            );
        }
    }
}
