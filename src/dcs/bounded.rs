//! Bounded decoding of what a DCS endpoint sends: strings cut to a limit while they
//! are read, lists cut to a few items, unknown values skipped without being built.
//!
//! Every endpoint a tenant names may be hostile, so nothing it sends may cost more
//! memory than the operator would keep of a well-formed answer: a 16 MiB `ip`
//! string is kept as its first few KiB, a list of a million zones as its first 16.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::intern::Atom;

/// The `visit_*` methods of a bounded visitor for the shapes it does not want: each
/// answers `$value`; sequences and maps are skipped unbuilt. Groups: `scalars`
/// (string, bool, integers, float), `unit` (null), `seq`, `map`.
macro_rules! other_shapes_are {
    ($de:lifetime, $value:expr; $($group:ident),+) => {
        $( $crate::dcs::bounded::other_shapes_are!(@$group $de, $value); )+
    };
    (@scalars $de:lifetime, $value:expr) => {
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
    (@unit $de:lifetime, $value:expr) => {
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
    (@seq $de:lifetime, $value:expr) => {
        fn visit_seq<A: serde::de::SeqAccess<$de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok($value)
        }
    };
    (@map $de:lifetime, $value:expr) => {
        fn visit_map<A: serde::de::MapAccess<$de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
            Ok($value)
        }
    };
}
pub(crate) use other_shapes_are;

/// How many items of a list field (zones) are kept.
pub const MAX_LIST_ITEMS: usize = 16;

/// Cuts `text` to at most `max_chars` characters, ending in `…` when cut, so the
/// result fits a schema `maxLength` of `max_chars` (which counts characters).
pub fn clip(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_string(),
        Some(_) if max_chars == 0 => String::new(),
        Some(_) => {
            let keep = text
                .char_indices()
                .nth(max_chars - 1)
                .map(|(at, _)| at)
                .unwrap_or(text.len());
            format!("{}…", &text[..keep])
        }
    }
}

/// Cuts `text` to at most `max_bytes` bytes on a character boundary (Event notes are
/// limited in bytes).
pub fn clip_bytes(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

struct BoundedStringVisitor<const N: usize>;

impl<'de, const N: usize> Visitor<'de> for BoundedStringVisitor<N> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a string (kept up to {N} characters) or null")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Some(clip(value, N)))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

/// An optional string of at most `N` characters: longer ones are cut as they are
/// read (from a borrowed slice of the body, so the full string is never copied).
pub fn string<'de, D: Deserializer<'de>, const N: usize>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    deserializer.deserialize_option(BoundedStringVisitor::<N>)
}

/// The common bound for fields nothing in status shows.
pub fn short<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    string::<D, 256>(d)
}

/// Names, flavours: fit status's 128-character fields.
pub fn s128<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    string::<D, 128>(d)
}

/// Statuses, engine names, fault codes: fit status's 64-character fields.
pub fn s64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    string::<D, 64>(d)
}

/// [`s64`], shared with equal values ([`Atom`]): statuses, engines, versions.
pub fn atom_s64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Atom>, D::Error> {
    Ok(string::<D, 64>(d)?.map(Atom::from))
}

/// [`s128`], shared with equal values: spec codes.
pub fn atom_s128<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Atom>, D::Error> {
    Ok(string::<D, 128>(d)?.map(Atom::from))
}

/// [`short`], shared with equal values: VPC, subnet and security group ids (one
/// each for thousands of instances).
pub fn atom_short<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Atom>, D::Error> {
    Ok(string::<D, 256>(d)?.map(Atom::from))
}

/// The address list (`ip`): status allows 4096 characters.
pub fn s4096<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    string::<D, 4096>(d)
}

/// Skips any value without building it (nested arrays and objects included; the
/// JSON parser's own depth limit guards the stack).
pub fn skip<'de, D: Deserializer<'de>, T: Default>(d: D) -> Result<T, D::Error> {
    IgnoredAny::deserialize(d)?;
    Ok(T::default())
}

/// A string or a list of strings (DCS sends `available_zones` both ways): at most
/// [`MAX_LIST_ITEMS`] items of at most `N` characters each; the rest is skipped.
pub fn string_or_list<'de, D: Deserializer<'de>, const N: usize>(
    deserializer: D,
) -> Result<Option<super::model::StringOrList>, D::Error> {
    struct ListVisitor<const N: usize>(PhantomData<()>);
    impl<'de, const N: usize> Visitor<'de> for ListVisitor<N> {
        type Value = Option<super::model::StringOrList>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string, a list of strings, or null")
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
            Ok(Some(super::model::StringOrList::One(clip(value, N))))
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::new();
            let item = Text {
                max: N,
                numbers: false,
            };
            while let Some(item) = seq.next_element_seed(item)? {
                if items.len() < MAX_LIST_ITEMS
                    && let Some(item) = item
                {
                    items.push(item);
                }
            }
            Ok(Some(super::model::StringOrList::Many(items)))
        }
    }
    deserializer.deserialize_any(ListVisitor::<N>(PhantomData))
}

/// Any JSON value read as text: a string cut to `max` characters, a number written
/// out when `numbers` is set; anything else (objects, lists, booleans, null) is
/// skipped without being built and reads as None.
#[derive(Debug, Clone, Copy)]
pub struct Text {
    pub max: usize,
    pub numbers: bool,
}

impl<'de> de::DeserializeSeed<'de> for Text {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Text {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Some(clip(value, self.max)))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        Ok(self.numbers.then(|| value.to_string()))
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        Ok(self.numbers.then(|| value.to_string()))
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        Ok(self
            .numbers
            .then(|| serde_json::Number::from_f64(value).map(|n| n.to_string()))
            .flatten())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

/// The DCS instance ids the CRD accepts: a lower-case UUID. Anything else in a list
/// answer names no DcsInstance and is skipped.
pub fn is_instance_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(b),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Default, Debug)]
    #[serde(default)]
    struct Probe {
        #[serde(deserialize_with = "s64")]
        text: Option<String>,
        #[serde(deserialize_with = "string_or_list::<_, 8>")]
        zones: Option<super::super::model::StringOrList>,
        #[serde(deserialize_with = "skip")]
        ignored: (),
    }

    #[test]
    fn clips_to_characters_with_an_ellipsis() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "ab…");
        assert_eq!(clip("日本語テキスト", 4), "日本語…");
        assert_eq!(clip("日本語テキスト", 4).chars().count(), 4);
        assert_eq!(clip("", 0), "");
        assert_eq!(clip("xy", 0), "");
        assert_eq!(clip_bytes("日本語", 4), "日");
        assert_eq!(clip_bytes("abc", 10), "abc");
    }

    #[test]
    fn long_strings_and_lists_are_cut_while_reading() {
        let long = "y".repeat(100_000);
        let many: Vec<String> = (0..1000).map(|i| format!("az{i}")).collect();
        let body = serde_json::json!({"text": long, "zones": many, "ignored": [[[{"a": 1}]]]});
        let probe: Probe = serde_json::from_slice(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(probe.text.unwrap().chars().count(), 64);
        match probe.zones.unwrap() {
            super::super::model::StringOrList::Many(items) => {
                assert_eq!(items.len(), MAX_LIST_ITEMS)
            }
            other => panic!("{other:?}"),
        }
        let probe: Probe = serde_json::from_str(r#"{"text":null,"zones":"az1"}"#).unwrap();
        assert!(probe.text.is_none());
        let probe: Probe = serde_json::from_str(r#"{"zones":[1,{"x":[]},"az9",null]}"#).unwrap();
        assert!(
            matches!(probe.zones, Some(super::super::model::StringOrList::Many(v)) if v == ["az9"])
        );
    }

    #[test]
    fn instance_ids() {
        assert!(is_instance_id("68d5745e-6af2-40e4-945d-fe449be00148"));
        assert!(!is_instance_id("68D5745E-6AF2-40E4-945D-FE449BE00148"));
        assert!(!is_instance_id("68d5745e6af240e4945dfe449be00148"));
        assert!(!is_instance_id(""));
        assert!(!is_instance_id("../../etc/passwd-aaaaaaaaaaaaaaaaaaaaa"));
    }
}
