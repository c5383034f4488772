//! Engine.IO handshakes get a request head of their own, so an idle connection does not pin
//! hyper's read buffer.
//!
//! hyper parses the URI and header values as zero-copy slices of the connection's read buffer
//! (8 KiB or more). engineioxide keeps the handshake's `http::request::Parts` for the whole life
//! of the session (`Socket::req_parts`), so without this layer every connected client holds that
//! buffer: measured with heaptrack, 16 KiB of a 31 KiB idle WebSocket connection. The URI has two
//! holders: the request and axum's `OriginalUri` extension, which engineioxide keeps as well.

use axum::extract::{OriginalUri, Request};
use axum::http::{HeaderMap, HeaderValue, Uri};

/// Replaces the URI and header values of an Engine.IO handshake (a request without `sid`) by
/// copies. Other requests pass unchanged: their heads are dropped when they are answered.
pub async fn own_handshake_head(mut req: Request) -> Request {
    if is_handshake(req.uri()) {
        copy_head(&mut req);
    }
    req
}

fn is_handshake(uri: &Uri) -> bool {
    !uri.query()
        .unwrap_or_default()
        .split('&')
        .any(|pair| pair.starts_with("sid="))
}

fn copy_head(req: &mut Request) {
    if let Ok(uri) = Uri::try_from(req.uri().to_string()) {
        *req.uri_mut() = uri;
    }
    // axum's router keeps a clone of the URI as it arrived, before route layers such as this one
    // run.
    if let Some(original) = req.extensions_mut().get_mut::<OriginalUri>()
        && let Ok(uri) = Uri::try_from(original.0.to_string())
    {
        original.0 = uri;
    }
    let mut headers = HeaderMap::with_capacity(req.headers().len());
    for (name, value) in req.headers() {
        let mut copy = HeaderValue::from_bytes(value.as_bytes())
            .expect("bytes of a valid header value are a valid header value");
        copy.set_sensitive(value.is_sensitive());
        headers.append(name.clone(), copy);
    }
    *req.headers_mut() = headers;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::body::Bytes;

    /// A request whose URI and `x-token` values are slices of one buffer, as hyper parses them.
    fn shared_buffer_request(uri: &str) -> (Bytes, Request) {
        let buffer = Bytes::from(format!("{uri} first second"));
        let n = uri.len();
        let mut req = Request::new(Body::empty());
        *req.uri_mut() = Uri::from_maybe_shared(buffer.slice(0..n)).expect("valid uri");
        let original = OriginalUri(req.uri().clone());
        req.extensions_mut().insert(original);
        for range in [n + 1..n + 6, n + 7..n + 13] {
            let value = HeaderValue::from_maybe_shared(buffer.slice(range)).expect("valid value");
            req.headers_mut().append("x-token", value);
        }
        (buffer, req)
    }

    #[tokio::test]
    async fn a_handshake_no_longer_shares_the_read_buffer() {
        let (buffer, req) = shared_buffer_request("/socket.io/?EIO=4&transport=websocket");
        let req = own_handshake_head(req).await;
        assert_eq!(req.uri(), "/socket.io/?EIO=4&transport=websocket");
        let values: Vec<_> = req.headers().get_all("x-token").iter().collect();
        assert_eq!(values, ["first", "second"]);
        let original = req.extensions().get::<OriginalUri>().expect("kept");
        assert_eq!(original.0, "/socket.io/?EIO=4&transport=websocket");
        assert!(buffer.is_unique(), "the request still shares the buffer");
    }

    #[tokio::test]
    async fn requests_of_a_session_pass_unchanged() {
        let (buffer, req) = shared_buffer_request("/socket.io/?EIO=4&transport=polling&sid=abc");
        let req = own_handshake_head(req).await;
        assert_eq!(req.uri(), "/socket.io/?EIO=4&transport=polling&sid=abc");
        assert!(!buffer.is_unique(), "the request was copied");
    }
}
