//! Looking inside a token without trusting it, for people (`writ inspect`).

use crate::error::TokenError;
use crate::verify::TokenFormat;

/// A token's contents, decoded but not verified.
#[derive(Debug, Clone)]
pub struct UnverifiedView {
    pub format: TokenFormat,
    /// The JOSE header as JSON, for a JWT.
    pub header: Option<serde_json::Value>,
    /// The claims as JSON, for a JWT.
    pub claims: Option<serde_json::Value>,
    /// The Datalog of every block, for a Biscuit.
    pub blocks: Vec<String>,
    /// The root key id, for a Biscuit.
    pub root_key_id: Option<u32>,
}

/// Decodes `token` for display. Nothing here is verified.
pub fn decode_unverified(token: &str) -> Result<UnverifiedView, TokenError> {
    let token = token.trim();
    match TokenFormat::detect(token) {
        TokenFormat::Jwt => {
            let data = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(token)
                .map_err(|_| TokenError::Malformed("not a JWT"))?;
            let header =
                serde_json::to_value(&data.header).map_err(|_| TokenError::Malformed("header"))?;
            Ok(UnverifiedView {
                format: TokenFormat::Jwt,
                header: Some(header),
                claims: Some(data.claims),
                blocks: Vec::new(),
                root_key_id: None,
            })
        }
        TokenFormat::Biscuit => {
            let b = biscuit_auth::UnverifiedBiscuit::from_base64(token)
                .map_err(|_| TokenError::Malformed("not a Biscuit"))?;
            let blocks = (0..b.block_count())
                .map(|i| b.print_block_source(i).unwrap_or_default())
                .collect();
            Ok(UnverifiedView {
                format: TokenFormat::Biscuit,
                header: None,
                claims: None,
                blocks,
                root_key_id: b.root_key_id(),
            })
        }
    }
}
