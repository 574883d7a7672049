//! The types `hotswap-http-demo` (the host) and its `handlers` plugin agree on: what a
//! route handler hands the plugin's async functions and what they answer. Both sides
//! depend on this crate, and the host layout-checks them when it makes its handles.
//!
//! Owned fields only (`RString`, `RVec`): a request is moved into the plugin, a
//! response is copied into host memory before the host's future returns it
//! (`typed_result!` gives both what that takes).

use abi_stable::{
    std_types::{RString, RVec},
    StableAbi,
};
use hotswap_plugin_api::typed_result;

/// One HTTP request as a route hands it over.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: RString,
    /// The path, without the query.
    pub path: RString,
    /// The query string, without the `?` (empty if none).
    pub query: RString,
    /// The body.
    pub body: RVec<u8>,
}

typed_result!(Request {
    method,
    path,
    query,
    body
});

/// What a handler answers.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: RString,
    /// The body.
    pub body: RVec<u8>,
}

typed_result!(Response {
    status,
    content_type,
    body
});

impl Response {
    /// A `text/plain` answer.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            body: body.into().into_bytes().into(),
        }
    }
}
