//! `dedupd admin …`: the admin API from the command line.
//!
//! One request, its answer printed: the JSON body on stdout when the action
//! was done, the problem's title and detail on stderr (and exit status 1)
//! when it was not. The token comes from a file or the environment, never a
//! flag, and is never printed.

use std::time::Duration;

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::cli::{AdminArgs, AdminCommand};

/// How long the whole call may take: the service's own deadline is 10 s.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the command; the process's exit status follows from the result.
pub async fn run(args: &AdminArgs) -> anyhow::Result<()> {
    let token = admin_token(args)?;
    let base = args.url.trim_end_matches('/');
    anyhow::ensure!(
        base.starts_with("http://"),
        "--url must be an http:// address (run the command next to the service, e.g. with \
         `kubectl exec`), got {base:?}"
    );
    let (method, path, body) = request_of(&args.action);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .context("building the request")?;
    let mut authorization = HeaderValue::from_str(&format!("Bearer {token}"))
        .context("the admin token has characters a header cannot carry")?;
    authorization.set_sensitive(true);
    request.headers_mut().insert(AUTHORIZATION, authorization);
    request
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let client = Client::builder(TokioExecutor::new()).build_http();
    let call = async {
        let response = client.request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    let (status, body) = tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .with_context(|| format!("no answer from {base} within {CALL_TIMEOUT:?}"))?
        .with_context(|| format!("cannot reach dedupd at {base}"))?;
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if status.is_success() {
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    let text = |field: &str| json[field].as_str().unwrap_or_default().to_owned();
    bail!(
        "{} ({}): {}",
        text("title"),
        status.as_u16(),
        text("detail")
    )
}

/// The token, from `--token-file` or `DEDUPD_ADMIN_TOKEN`.
fn admin_token(args: &AdminArgs) -> anyhow::Result<String> {
    let token = match &args.token_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the admin token file {}", path.display()))?,
        None => std::env::var("DEDUPD_ADMIN_TOKEN").context(
            "no admin token: set DEDUPD_ADMIN_TOKEN or --token-file (DEDUPD_ADMIN_TOKEN_FILE)",
        )?,
    };
    let token = token.trim().to_owned();
    anyhow::ensure!(!token.is_empty(), "the admin token is empty");
    Ok(token)
}

/// The method, path and body of an action.
fn request_of(action: &AdminCommand) -> (hyper::Method, String, Option<String>) {
    let claim = |namespace: &str, key: &str| {
        format!(
            "/v1/admin/namespaces/{}/claims/{}",
            encode_segment(namespace),
            encode_segment(key)
        )
    };
    // Both actions are a POST to a verb under the claim, with the reason
    // for the audit log.
    let act = |namespace: &str, key: &str, verb: &str, reason: Option<&str>| {
        let body = serde_json::json!({ "reason": reason }).to_string();
        let path = format!("{}/{verb}", claim(namespace, key));
        (hyper::Method::POST, path, Some(body))
    };
    match action {
        AdminCommand::Get { namespace, key } => (hyper::Method::GET, claim(namespace, key), None),
        AdminCommand::ForceRelease {
            namespace,
            key,
            reason,
        } => act(namespace, key, "force-release", reason.as_deref()),
        AdminCommand::Forget {
            namespace,
            key,
            reason,
        } => act(namespace, key, "forget", Some(reason)),
    }
}

/// Percent-encodes one path segment: every byte but letters, digits and
/// `-_~`, so `/`, `%`, `?`, any UTF-8 and the dot segments `.` and `..`
/// (which URL normalisation would remove) stay inside the segment, and the
/// service decodes exactly the key that was typed.
fn encode_segment(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_decode_back_to_the_key() {
        for key in [
            "plain",
            "a/b",
            "100%",
            "a%2Fb",
            "emoji 🦀",
            "?#&=+",
            ".",
            "..",
        ] {
            let encoded = encode_segment(key);
            assert!(!encoded.contains('/'), "{encoded}");
            assert_eq!(
                dedupd::http::extract::decode_segment(&encoded).unwrap(),
                key
            );
        }
    }
}
