//! The scalars nova's schemas take in more than one JSON shape: integers as numbers or digit
//! strings (`parameter_types.positive_integer` and kin), booleans as `true` or `"true"`
//! (`parameter_types.boolean`), ids as strings or numbers (`flavorRef: 1`).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// An integer given as a JSON number or as a string of digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int(pub i64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Int;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer or a string of digits")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Int, E> {
                Ok(Int(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Int, E> {
                i64::try_from(n)
                    .map(Int)
                    .map_err(|_| E::custom(format!("{n} is too large")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Int, E> {
                s.trim()
                    .parse()
                    .map(Int)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(s), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// A boolean given as `true`/`false` or as one of the words nova's `boolean` type takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bool(pub bool);

impl<'de> Deserialize<'de> for Bool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Bool;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean (true, false, or one of 'true', 'yes', 'on', '1', 'false', 'no', 'off', '0')")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Bool, E> {
                Ok(Bool(b))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Bool, E> {
                match s.to_ascii_lowercase().as_str() {
                    "true" | "yes" | "on" | "1" | "t" | "y" => Ok(Bool(true)),
                    "false" | "no" | "off" | "0" | "f" | "n" => Ok(Bool(false)),
                    _ => Err(E::invalid_value(de::Unexpected::Str(s), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// An id given as a string or as a number (flavor ids are often small integers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id(pub String);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Id, E> {
                Ok(Id(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Id, E> {
                Ok(Id(n.to_string()))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Id, E> {
                Ok(Id(s.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: for<'de> Deserialize<'de>>(json: &str) -> Result<T, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn integers_come_as_numbers_or_digits() {
        assert_eq!(parse::<Int>("3"), Ok(Int(3)));
        assert_eq!(parse::<Int>("-1"), Ok(Int(-1)));
        assert_eq!(parse::<Int>("\" 42 \""), Ok(Int(42)));
        assert!(parse::<Int>("\"4x\"").is_err());
        assert!(parse::<Int>("1.5").is_err());
        assert!(parse::<Int>("true").is_err());
        assert!(parse::<Int>("18446744073709551615").is_err());
    }

    #[test]
    fn booleans_come_as_booleans_or_words() {
        assert_eq!(parse::<Bool>("true"), Ok(Bool(true)));
        assert_eq!(parse::<Bool>("\"False\""), Ok(Bool(false)));
        assert_eq!(parse::<Bool>("\"on\""), Ok(Bool(true)));
        assert!(parse::<Bool>("\"maybe\"").is_err());
        assert!(parse::<Bool>("1").is_err());
    }

    #[test]
    fn ids_come_as_strings_or_numbers() {
        assert_eq!(parse::<Id>("1"), Ok(Id("1".into())));
        assert_eq!(parse::<Id>("\"m1.tiny\""), Ok(Id("m1.tiny".into())));
        assert!(parse::<Id>("null").is_err());
        assert!(parse::<Id>("[1]").is_err());
    }
}
