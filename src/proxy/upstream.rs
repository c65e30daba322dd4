//! Talking to the upstream: one pooled HTTP/1.1 client, requests rebuilt
//! for the hop, and response bodies read up to a cap.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, Request, Version, header, request};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::config::Upstream;

pub type UpstreamClient = Client<HttpConnector, Body>;

/// A pooled client: connections to the upstream are kept alive and reused,
/// as a sidecar's should be.
pub fn client() -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// Headers that belong to one hop (RFC 9110, section 7.6.1), never
/// forwarded in either direction, with the ones `Connection` names.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
}

/// The client's request, aimed at the upstream: same method, path, query,
/// headers (the `Host` the client sent included) and body.
pub fn upstream_request(
    upstream: &Upstream,
    parts: &request::Parts,
    body: Body,
) -> Result<Request<Body>, axum::http::Error> {
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|path| path.as_str())
        .unwrap_or("/");
    let mut request = Request::builder()
        .method(parts.method.clone())
        .uri(upstream.uri_for(path_and_query)?)
        .version(Version::HTTP_11)
        .body(body)?;
    let headers = request.headers_mut();
    headers.extend(parts.headers.clone());
    strip_hop_by_hop(headers);
    // The client's `Expect: 100-continue` was answered by this server when
    // it read the body; the upstream gets the body at once.
    headers.remove(header::EXPECT);
    Ok(request)
}

/// A response body, read up to a cap.
pub enum ReadBody {
    Whole(Bytes),
    /// Over the cap: what was read, and the rest, not read yet.
    TooLarge {
        read: Vec<Bytes>,
        rest: Body,
    },
    Failed(String),
}

/// Reads `body` whole if it is at most `cap` bytes; stops at the first
/// chunk past it, so memory stays bounded whatever the upstream sends.
pub async fn read_up_to(mut body: Body, cap: usize) -> ReadBody {
    let mut read = Vec::new();
    let mut length = 0;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => return ReadBody::Failed(error.to_string()),
        };
        let Ok(data) = frame.into_data() else {
            // Trailers: not part of what is stored.
            continue;
        };
        length += data.len();
        read.push(data);
        if length > cap {
            return ReadBody::TooLarge { read, rest: body };
        }
    }
    let mut whole = Vec::with_capacity(length);
    for chunk in read {
        whole.extend_from_slice(&chunk);
    }
    ReadBody::Whole(Bytes::from(whole))
}

/// A body of chunks already read followed by the rest, streamed.
pub fn read_then_rest(read: Vec<Bytes>, rest: Body) -> Body {
    let read = futures::stream::iter(read.into_iter().map(Ok::<_, axum::Error>));
    Body::from_stream(read.chain(rest.into_data_stream()))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", HeaderValue::from_static("keep-alive, x-hop"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-hop", HeaderValue::from_static("1"));
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut headers);
        let names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["content-type"]);
    }

    #[tokio::test]
    async fn bodies_are_read_whole_up_to_the_cap_and_streamed_on_past_it() {
        let ReadBody::Whole(bytes) = read_up_to(Body::from("0123456789"), 10).await else {
            panic!("ten bytes fit a cap of ten");
        };
        assert_eq!(bytes, "0123456789");
        let chunks = futures::stream::iter(
            ["01234", "56789", "abcde"].map(|chunk| Ok::<_, axum::Error>(Bytes::from(chunk))),
        );
        let ReadBody::TooLarge { read, rest } = read_up_to(Body::from_stream(chunks), 7).await
        else {
            panic!("fifteen bytes do not fit a cap of seven");
        };
        assert_eq!(
            read.len(),
            2,
            "reading stops at the first chunk past the cap"
        );
        let whole = read_then_rest(read, rest)
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(whole, "0123456789abcde");
    }
}
