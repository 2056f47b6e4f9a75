//! HTTP/1.1 wire handling: the incremental head parser ([`parse`]), message
//! framing and body decoding ([`body`]), the socket-free request reader
//! ([`reader`]) built from them, and the response writer ([`write`]).
//!
//! This module knows bytes and RFC 9110/9112 only; it knows nothing of routes,
//! OpenRTB or campaigns. Every error is a `Copy` value that names its cause and
//! maps to a status code, so the request path never allocates to report one.

pub mod body;
pub mod gzip;
pub mod parse;
pub mod query;
pub mod reader;
pub mod write;

pub use body::{BodyKind, ChunkedDecoder, Framing};
pub use parse::{Header, Request, Status, EMPTY_HEADER};
pub use reader::{content, Progress, ReaderLimits, Ready, RequestReader};
pub use write::Response;

/// Why a request was refused at the HTTP layer. Each maps to one status code;
/// the connection is closed after the error response is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Bad method token in the request line.
    #[error("malformed request line: bad method")]
    BadMethod,
    /// Bad request-target (empty, or a byte outside VCHAR).
    #[error("malformed request line: bad request-target")]
    BadTarget,
    /// Not `HTTP/1.x`.
    #[error("malformed request line: bad HTTP version")]
    BadVersion,
    /// Garbage where the request line should start.
    #[error("malformed request line")]
    BadRequestLine,
    /// HTTP/1.2 .. 1.9.
    #[error("HTTP version not supported")]
    VersionNotSupported,
    /// A line ended with LF alone; we require CRLF.
    #[error("malformed head: line ends in bare LF, CRLF required")]
    BareLf,
    /// A header line that is not `name: value`.
    #[error("malformed header field")]
    BadHeader,
    /// Obsolete line folding (RFC 9112 5.2).
    #[error("malformed header field: obsolete line folding")]
    ObsFold,
    /// More header fields than `limits.max_headers`.
    #[error("too many header fields")]
    TooManyHeaders,
    /// Head larger than `limits.max_header_bytes`.
    #[error("request head too large")]
    HeadTooLarge,
    /// Body (declared, received, or inflated) larger than `limits.max_body_bytes`.
    #[error("request body too large")]
    BodyTooLarge,
    /// Content-Length not a decimal number, or several that disagree.
    #[error("invalid Content-Length")]
    BadContentLength,
    /// Both Content-Length and Transfer-Encoding (a smuggling vector).
    #[error("both Content-Length and Transfer-Encoding present")]
    LengthAndChunked,
    /// A transfer coding other than `chunked`.
    #[error("unsupported Transfer-Encoding")]
    UnsupportedTransferEncoding,
    /// A content coding other than gzip or identity.
    #[error("unsupported Content-Encoding")]
    UnsupportedContentEncoding,
    /// Chunked framing that does not follow RFC 9112 7.1.
    #[error("malformed chunked body")]
    BadChunk,
    /// A gzip body that does not inflate.
    #[error("malformed gzip body")]
    BadGzip,
    /// HTTP/1.1 request without a Host header (RFC 9112 3.2).
    #[error("missing Host header")]
    MissingHost,
    /// More than one Host header (RFC 9112 3.2: a 400).
    #[error("more than one Host header")]
    DuplicateHost,
    /// The connection closed in the middle of a request.
    #[error("connection closed mid-request")]
    Truncated,
    /// The head did not arrive within `timeouts.header_read_ms`.
    #[error("timed out reading request head")]
    HeaderTimeout,
    /// The body did not arrive within `timeouts.body_read_ms`.
    #[error("timed out reading request body")]
    BodyTimeout,
}

impl HttpError {
    /// Status code for the error response.
    pub fn status(self) -> u16 {
        use HttpError::*;
        match self {
            HeadTooLarge | TooManyHeaders => 431,
            BodyTooLarge => 413,
            VersionNotSupported => 505,
            UnsupportedTransferEncoding => 501,
            UnsupportedContentEncoding => 415,
            HeaderTimeout | BodyTimeout => 408,
            _ => 400,
        }
    }

    /// Short stable label, used as a metrics label value.
    pub fn label(self) -> &'static str {
        use HttpError::*;
        match self {
            BadMethod => "bad_method",
            BadTarget => "bad_target",
            BadVersion => "bad_version",
            BadRequestLine => "bad_request_line",
            VersionNotSupported => "version_not_supported",
            BareLf => "bare_lf",
            BadHeader => "bad_header",
            ObsFold => "obs_fold",
            TooManyHeaders => "too_many_headers",
            HeadTooLarge => "head_too_large",
            BodyTooLarge => "body_too_large",
            BadContentLength => "bad_content_length",
            LengthAndChunked => "length_and_chunked",
            UnsupportedTransferEncoding => "unsupported_transfer_encoding",
            UnsupportedContentEncoding => "unsupported_content_encoding",
            BadChunk => "bad_chunk",
            BadGzip => "bad_gzip",
            MissingHost => "missing_host",
            DuplicateHost => "duplicate_host",
            Truncated => "truncated",
            HeaderTimeout => "header_timeout",
            BodyTimeout => "body_timeout",
        }
    }

    /// Every variant, for exhaustive metrics exposition and tests.
    pub const ALL: [HttpError; 22] = {
        use HttpError::*;
        [
            BadMethod,
            BadTarget,
            BadVersion,
            BadRequestLine,
            VersionNotSupported,
            BareLf,
            BadHeader,
            ObsFold,
            TooManyHeaders,
            HeadTooLarge,
            BodyTooLarge,
            BadContentLength,
            LengthAndChunked,
            UnsupportedTransferEncoding,
            UnsupportedContentEncoding,
            BadChunk,
            BadGzip,
            MissingHost,
            DuplicateHost,
            Truncated,
            HeaderTimeout,
            BodyTimeout,
        ]
    };

    /// Index into [`HttpError::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Reason phrase for the status codes this server sends.
pub fn reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        409 => "Conflict",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        _ => "Unknown",
    }
}
