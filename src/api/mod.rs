//! The wire contract every layer shares (docs/wire.md): the endpoints
//! chat2api serves, the OpenAI-shaped error each failure answers with, and
//! the answer a service hands the connection driver.
//!
//! It sits below `server/`, `config/` and `gateway/` and imports none of
//! them: the server writes these answers without knowing which service made
//! them, and the config names endpoints without reaching into the gateway.

pub mod endpoint;
pub mod error;
pub mod request_id;
pub mod response;

pub use endpoint::{Endpoint, ENDPOINTS};
pub use error::ApiError;
pub use response::{Body, EventSource, NoStream, Response};
