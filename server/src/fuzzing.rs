//! Entry points for the cargo-fuzz targets in `fuzz/` (feature `fuzzing`): the decoders a
//! request's bytes and the config file's text go through, without a server. Each returns the
//! value or the error a client would see; none may panic.

pub use crate::grpc::{decode_batch, decode_space_params};

/// Decodes `bytes` as REST body `which` (0 observations, 1 space parameters, 2 recall,
/// 3 delete), as the handler does.
///
/// # Errors
/// The error body's message.
pub fn decode_rest_body(which: u8, bytes: &[u8]) -> Result<(), String> {
    crate::http::handlers::decode_body(which, bytes).map_err(|e| e.message)
}

/// Reads `text` as the config file over the defaults and validates it, as `serve --config`
/// does (without the environment).
///
/// # Errors
/// The message `serve` would print.
pub fn config(text: &str) -> Result<crate::ServerConfig, String> {
    use figment::Figment;
    use figment::providers::{Format, Serialized, Toml};
    let c: crate::ServerConfig = Figment::from(Serialized::defaults(crate::ServerConfig::default()))
        .merge(Toml::string(text))
        .extract()
        .map_err(|e| e.to_string())?;
    c.validate()?;
    Ok(c)
}
