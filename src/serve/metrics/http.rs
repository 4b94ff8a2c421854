//! Just enough HTTP/1.1 for a scraper and a load balancer's health check.
//!
//! A request head is parsed by `httparse` (the parser under hyper): no
//! allocation, and every malformed byte refused rather than guessed at. This
//! module turns its result into what the metrics server acts on, and writes
//! responses. It reads no socket and keeps no state, so every rule here is a
//! unit test over bytes.
//!
//! What is served, and what is refused:
//!
//! - `GET` (or `HEAD`) `/metrics` and `/healthz`; other methods on them get
//!   405 with `Allow`, other paths 404.
//! - A request head (request line and headers) must fit in [`MAX_HEAD`]
//!   bytes, or it gets 431; bytes that are not HTTP get 400. Both close the
//!   connection: after garbage, where the next request starts is unknown.
//! - No request body is read: a request that announces one is answered,
//!   then the connection is closed (its body never parsed as a request).
//! - Keep-alive as HTTP/1.1 defines it (HTTP/1.0: only when asked for).

use std::io::Write;

/// The largest request head accepted (request line and headers), in bytes.
pub(crate) const MAX_HEAD: usize = 8 * 1024;

/// The most headers a request may have: more is answered as a head too
/// large (431), since no scraper sends that many.
const MAX_HEADERS: usize = 64;

/// What the bytes received so far amount to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Parsed {
    /// Not a whole request head yet: read more (if there is room).
    Partial,
    /// A whole request head, and how many bytes it took.
    Request(Request, usize),
    /// Not a request that can be answered: answer with this status, close.
    Invalid(Status),
}

/// A request, reduced to what decides the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Request {
    pub method: Method,
    pub resource: Resource,
    /// The `Accept` header, verbatim (empty when absent).
    pub accept: Vec<u8>,
    /// The client wants the connection kept open after the answer.
    pub keep_alive: bool,
    /// A body follows the head (`Content-Length` above 0, or
    /// `Transfer-Encoding`): it is never read, so the connection closes.
    pub has_body: bool,
}

/// The request's method, as far as it matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Get,
    /// As `GET`, without the body.
    Head,
    /// Anything else: 405 on a known path.
    Other,
}

/// What the request asks for (the path, without a query string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resource {
    Metrics,
    Health,
    Unknown,
}

/// The status codes the metrics server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    HeadTooLarge,
    Unavailable,
}

impl Status {
    /// Every status, in a fixed order (see [`index`](Self::index)).
    pub const ALL: [Status; 6] = [
        Status::Ok,
        Status::BadRequest,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::HeadTooLarge,
        Status::Unavailable,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::HeadTooLarge => 431,
            Status::Unavailable => 503,
        }
    }

    /// The reason phrase of the status line.
    fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::HeadTooLarge => "Request Header Fields Too Large",
            Status::Unavailable => "Service Unavailable",
        }
    }
}

/// Parses the start of `received` as a request head.
pub(super) fn parse(received: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let used = match request.parse(received) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) if received.len() >= MAX_HEAD => {
            return Parsed::Invalid(Status::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Invalid(Status::HeadTooLarge),
        Err(_) => return Parsed::Invalid(Status::BadRequest),
    };
    if used > MAX_HEAD {
        return Parsed::Invalid(Status::HeadTooLarge);
    }
    let method = match request.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        _ => Method::Other,
    };
    let path = request.path.unwrap_or_default();
    let path = path.split_once('?').map_or(path, |(path, _query)| path);
    let resource = match path {
        "/metrics" => Resource::Metrics,
        "/healthz" => Resource::Health,
        _ => Resource::Unknown,
    };
    // HTTP/1.1 keeps the connection open unless told otherwise; HTTP/1.0
    // closes it unless told otherwise.
    let mut keep_alive = request.version == Some(1);
    let mut has_body = false;
    let mut accept = Vec::new();
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            match std::str::from_utf8(header.value.trim_ascii())
                .ok()
                .and_then(|text| text.parse::<u64>().ok())
            {
                Some(0) => {}
                Some(_) => has_body = true,
                None => return Parsed::Invalid(Status::BadRequest),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            has_body = true;
        } else if name.eq_ignore_ascii_case("accept") {
            if !accept.is_empty() {
                accept.push(b',');
            }
            accept.extend_from_slice(header.value);
        }
    }
    Parsed::Request(
        Request {
            method,
            resource,
            accept,
            keep_alive,
            has_body,
        },
        used,
    )
}

/// One response, written whole into the client's outgoing bytes.
#[derive(Debug)]
pub(super) struct Response<'a> {
    pub status: Status,
    pub content_type: &'a str,
    pub body: &'a [u8],
    /// `HEAD`: the headers of the full response, without its body.
    pub head_only: bool,
    /// Say `Connection: close` (the connection ends after this response).
    pub close: bool,
}

impl Response<'_> {
    /// A short plain-text answer: `ok`, `stopping`, `not found`.
    pub fn text(status: Status, body: &'static str) -> Response<'static> {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes(),
            head_only: false,
            close: false,
        }
    }

    /// Appends the status line, headers and (unless `HEAD`) body to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        // Writing to a Vec cannot fail.
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n",
            self.status.code(),
            self.status.reason(),
            self.content_type,
            self.body.len(),
        );
        if self.status == Status::MethodNotAllowed {
            out.extend_from_slice(b"Allow: GET, HEAD\r\n");
        }
        if self.close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !self.head_only {
            out.extend_from_slice(self.body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(bytes: &[u8]) -> (Request, usize) {
        match parse(bytes) {
            Parsed::Request(request, used) => (request, used),
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn get_metrics_over_http11_keeps_alive() {
        let bytes = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\nGET";
        let (request, used) = request(bytes);
        assert_eq!(used, bytes.len() - 3, "the next request's start is left");
        assert_eq!(request.method, Method::Get);
        assert_eq!(request.resource, Resource::Metrics);
        assert_eq!(request.accept, b"text/plain");
        assert!(request.keep_alive);
        assert!(!request.has_body);
    }

    #[test]
    fn http10_closes_unless_asked_to_keep_alive() {
        assert!(!request(b"GET /healthz HTTP/1.0\r\n\r\n").0.keep_alive);
        let asked = b"GET /healthz HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
        assert!(request(asked).0.keep_alive);
        let closing = b"HEAD /healthz HTTP/1.1\r\nConnection: foo, close\r\n\r\n";
        let (closing, _) = request(closing);
        assert!(!closing.keep_alive);
        assert_eq!(closing.method, Method::Head);
        assert_eq!(closing.resource, Resource::Health);
    }

    #[test]
    fn the_query_string_is_not_part_of_the_path() {
        let (request, _) = request(b"GET /metrics?name[]=up HTTP/1.1\r\n\r\n");
        assert_eq!(request.resource, Resource::Metrics);
        let (other, _) = super::tests::request(b"GET /metricsx HTTP/1.1\r\n\r\n");
        assert_eq!(other.resource, Resource::Unknown);
    }

    #[test]
    fn a_body_is_noticed_and_a_bad_length_refused() {
        let post = b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        let (post, used) = request(post);
        assert_eq!(post.method, Method::Other);
        assert!(post.has_body);
        assert_eq!(used, 45);
        assert!(
            request(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
                .0
                .has_body
        );
        assert!(
            !request(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
                .0
                .has_body
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nContent-Length: lots\r\n\r\n"),
            Parsed::Invalid(Status::BadRequest)
        );
    }

    #[test]
    fn partial_heads_wait_for_more() {
        for bytes in [&b""[..], b"GE", b"GET /metrics HTTP/1.1\r\nHost: x\r\n"] {
            assert_eq!(parse(bytes), Parsed::Partial, "{bytes:?}");
        }
    }

    #[test]
    fn garbage_is_a_bad_request() {
        for bytes in [
            &b"\x00\x01\x02\xff\r\n\r\n"[..],
            b"GET /metrics HTTP/2.0\r\n\r\n",
            b"GET /metrics SMTP/1.1\r\n\r\n",
            b"GET\x7f/ HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(
                parse(bytes),
                Parsed::Invalid(Status::BadRequest),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn a_head_over_8_kib_is_too_large() {
        let mut big = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
        big.resize(MAX_HEAD, b'a');
        assert_eq!(parse(&big), Parsed::Invalid(Status::HeadTooLarge));
        let mut long_line = b"GET /".to_vec();
        long_line.resize(MAX_HEAD + 100, b'a');
        assert_eq!(parse(&long_line), Parsed::Invalid(Status::HeadTooLarge));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many), Parsed::Invalid(Status::HeadTooLarge));
    }

    #[test]
    fn a_head_just_under_8_kib_is_served() {
        let mut head = b"GET /healthz HTTP/1.1\r\nX-Pad: ".to_vec();
        head.resize(MAX_HEAD - 4, b'a');
        head.extend_from_slice(b"\r\n\r\n");
        assert_eq!(head.len(), MAX_HEAD);
        assert_eq!(request(&head).0.resource, Resource::Health);
    }

    #[test]
    fn responses_carry_length_and_close() {
        let mut out = Vec::new();
        Response::text(Status::Ok, "ok\n").write_to(&mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
              Content-Length: 3\r\nCache-Control: no-store\r\n\r\nok\n"
        );
        out.clear();
        Response {
            head_only: true,
            close: true,
            ..Response::text(Status::MethodNotAllowed, "method not allowed\n")
        }
        .write_to(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{text}"
        );
        assert!(text.contains("Content-Length: 19\r\n"));
        assert!(text.contains("Allow: GET, HEAD\r\n"));
        assert!(
            text.ends_with("Connection: close\r\n\r\n"),
            "no body for HEAD"
        );
    }
}
