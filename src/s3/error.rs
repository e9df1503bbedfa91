//! S3 errors: every failure a client sees is one of these codes, with its HTTP status, rendered as S3's
//! XML error document (`<Error><Code>…</Code><Message>…</Message><Resource>…</Resource>
//! <RequestId>…</RequestId></Error>`).

use hyper::StatusCode;

/// S3 error codes used by Grenier (names exactly as AWS spells them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S3ErrorCode {
    AccessDenied,
    AccessForbidden,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    BadDigest,
    BadRequest,
    BucketAlreadyExists,
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    EntityTooLarge,
    EntityTooSmall,
    IncompleteBody,
    InternalError,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidBucketName,
    InvalidDigest,
    InvalidEncryptionAlgorithmError,
    InvalidObjectState,
    InvalidPart,
    InvalidPartOrder,
    InvalidRange,
    InvalidRequest,
    InvalidTag,
    KeyTooLongError,
    MalformedACLError,
    // PostObject (s3::post_object, s3::form).
    InvalidPolicyDocument,
    MalformedPOSTRequest,
    MaxPostPreDataLengthExceeded,
    MalformedXML,
    MaxMessageLengthExceeded,
    MetadataTooLarge,
    MethodNotAllowed,
    MissingContentLength,
    MissingSecurityHeader,
    NoSuchBucket,
    NoSuchCORSConfiguration,
    NoSuchKey,
    NoSuchLifecycleConfiguration,
    NoSuchUpload,
    NoSuchWebsiteConfiguration,
    NotImplemented,
    NotModified,
    PreconditionFailed,
    RequestHeaderSectionTooLarge,
    RequestTimeout,
    RequestTimeTooSkewed,
    ServiceUnavailable,
    SignatureDoesNotMatch,
    SlowDown,
    TooManyParts,
    XAmzContentSHA256Mismatch,
}

impl S3ErrorCode {
    pub fn as_str(self) -> &'static str {
        use S3ErrorCode::*;
        match self {
            AccessDenied => "AccessDenied",
            AccessForbidden => "AccessForbidden",
            AuthorizationHeaderMalformed => "AuthorizationHeaderMalformed",
            AuthorizationQueryParametersError => "AuthorizationQueryParametersError",
            BadDigest => "BadDigest",
            BadRequest => "BadRequest",
            BucketAlreadyExists => "BucketAlreadyExists",
            BucketAlreadyOwnedByYou => "BucketAlreadyOwnedByYou",
            BucketNotEmpty => "BucketNotEmpty",
            EntityTooLarge => "EntityTooLarge",
            EntityTooSmall => "EntityTooSmall",
            IncompleteBody => "IncompleteBody",
            InternalError => "InternalError",
            InvalidAccessKeyId => "InvalidAccessKeyId",
            InvalidArgument => "InvalidArgument",
            InvalidBucketName => "InvalidBucketName",
            InvalidDigest => "InvalidDigest",
            InvalidEncryptionAlgorithmError => "InvalidEncryptionAlgorithmError",
            InvalidObjectState => "InvalidObjectState",
            InvalidPart => "InvalidPart",
            InvalidPartOrder => "InvalidPartOrder",
            InvalidRange => "InvalidRange",
            InvalidRequest => "InvalidRequest",
            InvalidTag => "InvalidTag",
            MalformedACLError => "MalformedACLError",
            InvalidPolicyDocument => "InvalidPolicyDocument",
            MalformedPOSTRequest => "MalformedPOSTRequest",
            MaxPostPreDataLengthExceeded => "MaxPostPreDataLengthExceeded",
            KeyTooLongError => "KeyTooLongError",
            MalformedXML => "MalformedXML",
            MaxMessageLengthExceeded => "MaxMessageLengthExceeded",
            MetadataTooLarge => "MetadataTooLarge",
            MethodNotAllowed => "MethodNotAllowed",
            MissingContentLength => "MissingContentLength",
            MissingSecurityHeader => "MissingSecurityHeader",
            NoSuchBucket => "NoSuchBucket",
            NoSuchCORSConfiguration => "NoSuchCORSConfiguration",
            NoSuchKey => "NoSuchKey",
            NoSuchLifecycleConfiguration => "NoSuchLifecycleConfiguration",
            NoSuchUpload => "NoSuchUpload",
            NoSuchWebsiteConfiguration => "NoSuchWebsiteConfiguration",
            NotImplemented => "NotImplemented",
            NotModified => "NotModified",
            PreconditionFailed => "PreconditionFailed",
            RequestHeaderSectionTooLarge => "RequestHeaderSectionTooLarge",
            RequestTimeout => "RequestTimeout",
            RequestTimeTooSkewed => "RequestTimeTooSkewed",
            ServiceUnavailable => "ServiceUnavailable",
            SignatureDoesNotMatch => "SignatureDoesNotMatch",
            SlowDown => "SlowDown",
            TooManyParts => "TooManyParts",
            XAmzContentSHA256Mismatch => "XAmzContentSHA256Mismatch",
        }
    }

    pub fn status(self) -> StatusCode {
        use S3ErrorCode::*;
        match self {
            // CORS (s3::cors).
            AccessForbidden => StatusCode::FORBIDDEN,
            BadRequest => StatusCode::BAD_REQUEST,
            NoSuchCORSConfiguration => StatusCode::NOT_FOUND,
            AccessDenied | InvalidAccessKeyId | RequestTimeTooSkewed | SignatureDoesNotMatch => {
                StatusCode::FORBIDDEN
            }
            NoSuchBucket
            | NoSuchKey
            | NoSuchUpload
            | NoSuchLifecycleConfiguration
            | NoSuchWebsiteConfiguration => StatusCode::NOT_FOUND,
            BucketAlreadyExists | BucketAlreadyOwnedByYou | BucketNotEmpty | InvalidObjectState => {
                StatusCode::CONFLICT
            }
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            MissingContentLength => StatusCode::LENGTH_REQUIRED,
            PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            InvalidRange => StatusCode::RANGE_NOT_SATISFIABLE,
            NotModified => StatusCode::NOT_MODIFIED,
            InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            NotImplemented => StatusCode::NOT_IMPLEMENTED,
            ServiceUnavailable | SlowDown => StatusCode::SERVICE_UNAVAILABLE,
            RequestHeaderSectionTooLarge | RequestTimeout => StatusCode::BAD_REQUEST,
            AuthorizationHeaderMalformed
            | AuthorizationQueryParametersError
            | BadDigest
            | EntityTooLarge
            | EntityTooSmall
            | IncompleteBody
            | InvalidArgument
            | InvalidBucketName
            | InvalidDigest
            | InvalidEncryptionAlgorithmError
            | InvalidPart
            | InvalidPartOrder
            | InvalidRequest
            | InvalidTag
            | KeyTooLongError
            | MalformedACLError
            | InvalidPolicyDocument
            | MalformedPOSTRequest
            | MaxPostPreDataLengthExceeded
            | MalformedXML
            | MaxMessageLengthExceeded
            | MetadataTooLarge
            | MissingSecurityHeader
            | TooManyParts
            | XAmzContentSHA256Mismatch => StatusCode::BAD_REQUEST,
        }
    }
}

/// An S3 error answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct S3Error {
    pub code: S3ErrorCode,
    /// Human message, as AWS would word it.
    pub message: String,
    /// Extra XML elements some errors carry (e.g. `("Region", "garage")` for
    /// AuthorizationHeaderMalformed, `("ActualObjectSize", "…")` for InvalidRange).
    pub extra: Vec<(&'static str, String)>,
    /// What went wrong inside, for the server's log only (logged with the request id): never sent
    /// to the client, who may be anyone (file paths, peer addresses and internal errors stay here).
    pub detail: Option<String>,
}

impl S3Error {
    pub fn new(code: S3ErrorCode, message: impl Into<String>) -> S3Error {
        S3Error {
            code,
            message: message.into(),
            extra: vec![],
            detail: None,
        }
    }

    /// A failure of the server itself: the client gets S3's generic wording for `code` (500
    /// InternalError or 503 ServiceUnavailable) and the request id; `detail` goes to the log.
    pub fn internal(code: S3ErrorCode, detail: impl Into<String>) -> S3Error {
        let message = match code {
            S3ErrorCode::ServiceUnavailable => {
                "Not enough storage nodes are reachable right now. Please retry."
            }
            _ => "We encountered an internal error. Please try again.",
        };
        S3Error {
            detail: Some(detail.into()),
            ..S3Error::new(code, message)
        }
    }

    pub fn with(mut self, element: &'static str, value: impl Into<String>) -> S3Error {
        self.extra.push((element, value.into()));
        self
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }
}

/// Shorthand: `err(S3ErrorCode::NoSuchKey, "The specified key does not exist.")`.
/// A bad request URI (or `x-amz-copy-source`) as S3 reports it.
impl From<crate::util::url::DecodeError> for S3Error {
    fn from(e: crate::util::url::DecodeError) -> S3Error {
        use crate::util::url::DecodeError;
        let message = match e {
            DecodeError::BadEscape => "Invalid percent-encoding in the request URI.",
            DecodeError::NotUtf8 => "The request URI is not valid UTF-8.",
        };
        err(S3ErrorCode::InvalidArgument, message)
    }
}

pub fn err(code: S3ErrorCode, message: impl Into<String>) -> S3Error {
    S3Error::new(code, message)
}
