//! Whole numbers as JSON Schema means them: `5` and `5.0` are the same
//! integer. serde reads `5.0` as a float and refuses it for a `u64`; these
//! helpers accept any JSON number with no fractional part that a `u64`
//! holds exactly (floats beyond 2^53 are not exact, so they are refused).

use serde::{Deserialize, Deserializer, de::Error};

#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Integer(u64),
    Float(f64),
}

fn to_u64<E: Error>(number: Number) -> Result<u64, E> {
    match number {
        Number::Integer(value) => Ok(value),
        Number::Float(value) => {
            const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
            if value.fract() == 0.0 && (0.0..=EXACT).contains(&value) {
                Ok(value as u64)
            } else {
                Err(E::custom(format!(
                    "expected a whole number from 0 to 2^63-1, got {value}"
                )))
            }
        }
    }
}

pub fn whole<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    Number::deserialize(deserializer)
        .map_err(|_| D::Error::custom("expected a whole number from 0 to 2^63-1"))
        .and_then(to_u64)
}

pub fn optional_whole<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    Option::<Number>::deserialize(deserializer)
        .map_err(|_| D::Error::custom("expected a whole number from 0 to 2^63-1"))?
        .map(to_u64)
        .transpose()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct Body {
        #[serde(deserialize_with = "super::whole")]
        n: u64,
        #[serde(default, deserialize_with = "super::optional_whole")]
        m: Option<u64>,
    }

    fn parse(text: &str) -> Result<Body, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn integral_floats_are_integers() {
        assert_eq!(parse(r#"{"n": 5}"#).unwrap().n, 5);
        assert_eq!(parse(r#"{"n": 5.0}"#).unwrap().n, 5);
        assert_eq!(parse(r#"{"n": 5, "m": 7.0}"#).unwrap().m, Some(7));
        assert_eq!(parse(r#"{"n": 5, "m": null}"#).unwrap().m, None);
        assert_eq!(parse(r#"{"n": 5}"#).unwrap().m, None);
    }

    #[test]
    fn everything_else_is_refused() {
        for text in [
            r#"{"n": 1.5}"#,
            r#"{"n": -1}"#,
            r#"{"n": 1e30}"#,
            r#"{"n": "5"}"#,
            r#"{"n": true}"#,
            r#"{"n": 18446744073709551616}"#,
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }
}
