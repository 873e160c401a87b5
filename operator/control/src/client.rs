//! A small JSON client for the control plane's API, used by agents and the CLI.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the control plane at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("{message}")]
    Refused { status: u16, message: String },
    #[error("unexpected answer from {url}: {message}")]
    Decode { url: String, message: String },
}

/// A client of one control plane.
#[derive(Debug, Clone)]
pub struct Client {
    http: crate::http::HttpClient,
    base: String,
    token: Option<String>,
}

impl Client {
    /// `base` is like `http://127.0.0.1:7400` (or `https://…`).
    pub fn new(base: &str, token: Option<String>) -> Client {
        Client {
            http: crate::http::client(Duration::from_secs(2)),
            base: base.trim_end_matches('/').to_owned(),
            token,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None, &[]).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.post_with(path, body, &[]).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::DELETE, path, None, &[]).await
    }

    /// [`Client::post`] with more headers (such as `Idempotency-Key`).
    pub async fn post_with<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        headers: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).expect("request bodies serialize");
        self.call(Method::POST, path, Some(body), headers).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        // Who is calling, for the server's audit trail.
        let mut request = Request::builder().method(method).uri(&url).header(
            "user-agent",
            concat!("drover-cli/", env!("CARGO_PKG_VERSION")),
        );
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Unreachable {
                url: url.clone(),
                message: e.to_string(),
            })?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| ClientError::Unreachable {
                url: url.clone(),
                message: error_chain(&e),
            })?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: url.clone(),
                message: e.to_string(),
            })?
            .to_bytes();
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("{status}: {}", String::from_utf8_lossy(&bytes)));
            return Err(ClientError::Refused {
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url,
            message: e.to_string(),
        })
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
