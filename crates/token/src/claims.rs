//! The claims of a Writ access token (RFC 9068), shared by the JWT and Biscuit forms.

use serde::{Deserialize, Serialize};

/// The latest NumericDate accepted: 9999-12-31T23:59:59Z. Anything later is garbage.
pub const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

/// One step of a delegation chain (RFC 8693 `act`). Nested actors record history only; they
/// never grant rights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    /// Length of the chain starting here.
    pub fn depth(&self) -> usize {
        1 + self.act.as_ref().map_or(0, |a| a.depth())
    }
}

/// The claims of an access token. `exp`, `iat` and `nbf` are integers: a string, a float, or a
/// number out of `i64` range fails to parse, and the verifier refuses the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    /// One or more audiences; serialized as a string when there is exactly one.
    #[serde(with = "audience")]
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub jti: String,
    pub client_id: String,
    /// Space-delimited scopes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    /// The grant id, shared by every token derived from one grant (a refresh family, an
    /// exchange lineage), so that one revocation cuts them all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub may_act: Option<Actor>,
    /// RFC 7800 confirmation: the key the token is bound to (a DPoP key's thumbprint, RFC
    /// 9449). A bound token is honoured only with a proof by that key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// RFC 7800 section 3.1: what a token's presenter must prove it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// RFC 9449 section 6.1: the SHA-256 JWK thumbprint (RFC 7638) of the DPoP key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
    /// RFC 8705 section 3.1: the SHA-256 thumbprint of the client's TLS certificate (DER),
    /// base64url.
    #[serde(default, rename = "x5t#S256", skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
}

/// RFC 8705 section 3.1: `x5t#S256` of a certificate (its DER): base64url of its SHA-256.
pub fn certificate_thumbprint(der: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(der))
}

mod audience {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(aud: &[String], s: S) -> Result<S::Ok, S::Error> {
        match aud {
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(a) => vec![a],
            OneOrMany::Many(a) => a,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn base() -> serde_json::Value {
        serde_json::json!({
            "iss": "https://as", "sub": "alice", "aud": "orders", "exp": 200, "iat": 100,
            "jti": "t1", "client_id": "c1"
        })
    }

    #[test]
    fn audience_is_a_string_when_single_and_an_array_otherwise() {
        let c: AccessClaims = serde_json::from_value(base()).unwrap();
        assert_eq!(c.aud, ["orders"]);
        assert_eq!(serde_json::to_value(&c).unwrap()["aud"], "orders");
        let mut v = base();
        v["aud"] = serde_json::json!(["a", "b"]);
        let c: AccessClaims = serde_json::from_value(v).unwrap();
        assert_eq!(
            serde_json::to_value(&c).unwrap()["aud"],
            serde_json::json!(["a", "b"])
        );
    }

    #[test]
    fn time_claims_must_be_integers() {
        for bad in [
            serde_json::json!("200"),
            serde_json::json!(200.5),
            serde_json::json!(1e30),
            serde_json::json!(null),
            serde_json::json!(u64::MAX),
        ] {
            let mut v = base();
            v["exp"] = bad.clone();
            assert!(
                serde_json::from_value::<AccessClaims>(v).is_err(),
                "exp = {bad}"
            );
        }
        let mut v = base();
        v["nbf"] = serde_json::json!("100");
        assert!(serde_json::from_value::<AccessClaims>(v).is_err());
    }

    #[test]
    fn missing_required_claims_fail_to_parse() {
        for field in ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"] {
            let mut v = base();
            v.as_object_mut().unwrap().remove(field);
            assert!(
                serde_json::from_value::<AccessClaims>(v).is_err(),
                "{field}"
            );
        }
    }

    #[test]
    fn duplicate_claims_fail_to_parse() {
        let json =
            r#"{"iss":"a","sub":"s","aud":"x","exp":2,"exp":3,"iat":1,"jti":"j","client_id":"c"}"#;
        assert!(serde_json::from_str::<AccessClaims>(json).is_err());
    }
}
