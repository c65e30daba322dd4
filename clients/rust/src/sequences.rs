//! Sequences: offer a message's number in its stream, `POST
//! /v1/namespaces/{ns}/sequences/{stream}`.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::client::{Call, Client, check_namespace, json_body, parse, protocol, refusal};
use crate::encode::encode_segment;
use crate::error::Error;

/// What an offered number answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// 200: the number was the next one (or this offerer's own, offered
    /// again); the watermark is now `last`.
    Accepted { last: u64 },
    /// 409 `duplicate`: the number is at or below the watermark `last`:
    /// the message was seen before.
    Duplicate { last: u64 },
    /// 409 `gap`: numbers are missing between the watermark `last` and the
    /// offered one; ask for redelivery from `expected`.
    Gap { last: u64, expected: u64 },
}

#[derive(Serialize)]
struct AdvanceBody<'a> {
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    offerer: Option<&'a str>,
}

#[derive(Deserialize)]
struct AdvanceAnswer {
    outcome: String,
    last: u64,
    expected: Option<u64>,
}

impl Client {
    /// Offers `seq` (1 to 2^63−1) in `stream` of `namespace`.
    ///
    /// `offerer` is your consumer id (≤ 128 bytes): offering a number this
    /// offerer already had accepted answers [`Advance::Accepted`] again
    /// (among the stream's last 64 numbers). With it, a retry after a lost
    /// answer or a 503, which this client makes within its retry budget, is
    /// safe; without it, a retry of an offer that took effect answers
    /// [`Advance::Duplicate`].
    pub async fn advance(
        &self,
        namespace: &str,
        stream: &str,
        seq: u64,
        offerer: Option<&str>,
    ) -> Result<Advance, Error> {
        check_namespace(namespace)?;
        if stream.is_empty() || stream == "." || stream == ".." {
            return Err(Error::Invalid {
                what: "stream",
                detail: format!("{stream:?} cannot be sent in a URL path"),
            });
        }
        let call = Call::Offer {
            namespace,
            stream,
            seq,
        };
        let path = format!(
            "/v1/namespaces/{}/sequences/{}",
            encode_segment(namespace),
            encode_segment(stream)
        );
        let body = json_body(&AdvanceBody { seq, offerer })?;
        let answer = self
            .call(&call, Method::POST, &path, Some(body), Duration::ZERO)
            .await?;
        match answer.status {
            StatusCode::OK | StatusCode::CONFLICT => {
                let body: AdvanceAnswer = parse(&call, &answer)?;
                match (answer.status, body.outcome.as_str(), body.expected) {
                    (StatusCode::OK, "accepted", _) => Ok(Advance::Accepted { last: body.last }),
                    (StatusCode::CONFLICT, "duplicate", _) => {
                        Ok(Advance::Duplicate { last: body.last })
                    }
                    (StatusCode::CONFLICT, "gap", Some(expected)) => Ok(Advance::Gap {
                        last: body.last,
                        expected,
                    }),
                    _ => Err(protocol(
                        &call,
                        &answer,
                        "an outcome this client does not know",
                    )),
                }
            }
            _ => Err(refusal(&call, &answer)),
        }
    }
}
