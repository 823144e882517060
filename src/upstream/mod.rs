// TEMPORARY type-check shim; replaced by wip/upstream.
use bytes::Bytes;
use std::time::Duration;
pub struct UpstreamConfig {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_idle: usize,
    pub limits: crate::http1::Limits,
}
pub struct Upstream;
impl Upstream {
    pub fn new(
        _tls: bool,
        _host: &str,
        _port: u16,
        _base_path: &str,
        _ca_file: Option<&std::path::Path>,
        _cfg: UpstreamConfig,
    ) -> Result<Upstream, String> {
        todo!()
    }
    pub async fn send(&self, _req: UpstreamRequest<'_>) -> Result<UpstreamResponse, UpstreamError> {
        todo!()
    }
}
pub struct UpstreamRequest<'a> {
    pub method: &'static str,
    pub path: &'a str,
    pub authorization: Option<&'a [u8]>,
    pub forward: Option<&'a crate::http1::RequestHead>,
    pub content_type: Option<&'a [u8]>,
    pub body: &'a [Bytes],
    pub first_byte_timeout: Duration,
}
pub struct UpstreamResponse;
impl UpstreamResponse {
    pub fn status(&self) -> u16 {
        todo!()
    }
    pub fn head(&self) -> &crate::http1::ResponseHead {
        todo!()
    }
    pub async fn data(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        todo!()
    }
    pub async fn collect(&mut self, _max: usize) -> Result<Bytes, UpstreamError> {
        todo!()
    }
}
#[derive(Debug)]
pub enum UpstreamError {
    Connect(String),
}
impl UpstreamError {
    pub fn is_timeout(&self) -> bool {
        false
    }
}
impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "x")
    }
}
