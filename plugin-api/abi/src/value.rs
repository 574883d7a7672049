//! [`Value`]: the stable, self-describing value `invoke_func` takes and returns.
//!
//! It is `#[repr(C)]` and checked by abi_stable's layout checker, so host and plugin
//! may be built by different compilers. Its allocations (strings, bytes, lists, maps)
//! carry a vtable pointing at the code of the binary that *made* them; that is why the
//! host clones every value a plugin returns before the call ends: `Clone` rebuilds every
//! allocation in the calling binary (abi_stable's `RVec::clone` goes through `Vec`), so
//! the host never keeps a pointer into a library it may unload.

use abi_stable::{
    std_types::{RString, RVec, Tuple2},
    StableAbi,
};
use serde::{de, ser::SerializeMap, ser::SerializeSeq, Deserialize, Deserializer, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// A stable value: null, bool, i64, f64, string, bytes, list or string-keyed map.
///
/// Convert with `From` (`Value::from(3)`, `Value::from("hi")`, `Value::from(vec![..])`)
/// and back with `TryFrom` (`i64::try_from(v)?`); `Value` also implements serde's
/// `Serialize`/`Deserialize`, so [`Value::from_serialize`] and [`Value::deserialize_into`]
/// carry any serde type.
#[repr(C, u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// No value.
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// A UTF-8 string.
    Str(RString),
    /// Raw bytes.
    Bytes(RVec<u8>),
    /// A list of values.
    List(RVec<Value>),
    /// A map from strings to values, in insertion order; keys are unique.
    Map(RVec<Tuple2<RString, Value>>),
}

/// The error of a failed conversion out of a [`Value`]: what was wanted and what was there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueTypeError {
    /// The type the conversion asked for.
    pub expected: &'static str,
    /// The kind of value that was found.
    pub found: &'static str,
}

impl fmt::Display for ValueTypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {}, found {}", self.expected, self.found)
    }
}

impl std::error::Error for ValueTypeError {}

impl Value {
    /// The kind of this value, for messages: "null", "bool", "int", …
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Map(_) => "map",
        }
    }

    /// Looks `key` up in a map; `None` for a missing key or a value that is not a map.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries.iter().find(|e| e.0.as_str() == key).map(|e| &e.1),
            _ => None,
        }
    }

    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s.as_str()),
            _ => None,
        }
    }

    /// The integer inside, if this is an integer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// Builds a map value from `(key, value)` pairs; a later duplicate key replaces the
    /// earlier one.
    pub fn map<K: Into<String>, V: Into<Value>>(pairs: impl IntoIterator<Item = (K, V)>) -> Value {
        let mut out: Vec<Tuple2<RString, Value>> = Vec::new();
        for (k, v) in pairs {
            let k: String = k.into();
            let v = v.into();
            match out.iter_mut().find(|e| e.0.as_str() == k) {
                Some(e) => e.1 = v,
                None => out.push(Tuple2(k.into(), v)),
            }
        }
        Value::Map(out.into())
    }

    /// Converts any serde-serializable value; fails on what JSON cannot hold (non-string
    /// map keys, integers above `i64::MAX`).
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Result<Value, String> {
        // serde_json's value is the well-trodden intermediate; this is not a hot path.
        let json = serde_json::to_value(value).map_err(|e| e.to_string())?;
        serde_json::from_value(json).map_err(|e| e.to_string())
    }

    /// Converts into any serde-deserializable type; the error says which field failed.
    pub fn deserialize_into<T: de::DeserializeOwned>(&self) -> Result<T, String> {
        let json = serde_json::to_value(self).map_err(|e| e.to_string())?;
        serde_json::from_value(json).map_err(|e| e.to_string())
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => write!(f, "{:?}", s.as_str()),
            Value::Bytes(b) => write!(f, "<{} bytes>", b.len()),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Map(entries) => {
                f.write_str("{")?;
                for (i, e) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{:?}: {}", e.0.as_str(), e.1)?;
                }
                f.write_str("}")
            }
        }
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value { Value::Int(v as i64) }
        }
        impl TryFrom<Value> for $t {
            type Error = ValueTypeError;
            fn try_from(v: Value) -> Result<$t, ValueTypeError> {
                match v {
                    Value::Int(i) => <$t>::try_from(i).map_err(|_| ValueTypeError {
                        expected: stringify!($t),
                        found: "int out of range",
                    }),
                    other => Err(ValueTypeError { expected: stringify!($t), found: other.kind() }),
                }
            }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32, isize);

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}
impl From<f32> for Value {
    fn from(v: f32) -> Value {
        Value::Float(v as f64)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Str(v.into())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(v.into())
    }
}
impl From<RString> for Value {
    fn from(v: RString) -> Value {
        Value::Str(v)
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Value {
        Value::Bytes(v.to_vec().into())
    }
}
impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Value {
        Value::List(v.into_iter().map(Into::into).collect())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}
impl<K: Into<String>, V: Into<Value>> From<BTreeMap<K, V>> for Value {
    fn from(v: BTreeMap<K, V>) -> Value {
        Value::map(v)
    }
}
impl<K: Into<String>, V: Into<Value>, S> From<HashMap<K, V, S>> for Value {
    fn from(v: HashMap<K, V, S>) -> Value {
        Value::map(v)
    }
}
impl From<()> for Value {
    fn from(_: ()) -> Value {
        Value::Null
    }
}

impl TryFrom<Value> for bool {
    type Error = ValueTypeError;
    fn try_from(v: Value) -> Result<bool, ValueTypeError> {
        match v {
            Value::Bool(b) => Ok(b),
            other => Err(ValueTypeError {
                expected: "bool",
                found: other.kind(),
            }),
        }
    }
}
impl TryFrom<Value> for f64 {
    type Error = ValueTypeError;
    fn try_from(v: Value) -> Result<f64, ValueTypeError> {
        match v {
            Value::Float(x) => Ok(x),
            Value::Int(i) => Ok(i as f64),
            other => Err(ValueTypeError {
                expected: "f64",
                found: other.kind(),
            }),
        }
    }
}
impl TryFrom<Value> for String {
    type Error = ValueTypeError;
    fn try_from(v: Value) -> Result<String, ValueTypeError> {
        match v {
            Value::Str(s) => Ok(s.into_string()),
            other => Err(ValueTypeError {
                expected: "string",
                found: other.kind(),
            }),
        }
    }
}
impl TryFrom<Value> for Vec<u8> {
    type Error = ValueTypeError;
    fn try_from(v: Value) -> Result<Vec<u8>, ValueTypeError> {
        match v {
            Value::Bytes(b) => Ok(b.into_vec()),
            other => Err(ValueTypeError {
                expected: "bytes",
                found: other.kind(),
            }),
        }
    }
}
impl TryFrom<Value> for Vec<Value> {
    type Error = ValueTypeError;
    fn try_from(v: Value) -> Result<Vec<Value>, ValueTypeError> {
        match v {
            Value::List(items) => Ok(items.into_vec()),
            other => Err(ValueTypeError {
                expected: "list",
                found: other.kind(),
            }),
        }
    }
}
impl TryFrom<Value> for BTreeMap<String, Value> {
    type Error = ValueTypeError;
    fn try_from(v: Value) -> Result<BTreeMap<String, Value>, ValueTypeError> {
        match v {
            Value::Map(entries) => Ok(entries
                .into_iter()
                .map(|Tuple2(k, v)| (k.into_string(), v))
                .collect()),
            other => Err(ValueTypeError {
                expected: "map",
                found: other.kind(),
            }),
        }
    }
}

impl Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(x) => s.serialize_f64(*x),
            Value::Str(v) => s.serialize_str(v),
            Value::Bytes(b) => s.serialize_bytes(b),
            Value::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items.iter() {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for e in entries.iter() {
                    map.serialize_entry(e.0.as_str(), &e.1)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> de::Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a null, bool, number, string, bytes, list or map")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom(format!("integer {v} does not fit in i64")))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<Value>()? {
            out.push(v);
        }
        Ok(Value::List(out.into()))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            out.push((k, v));
        }
        Ok(Value::map(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip() {
        assert_eq!(i64::try_from(Value::from(7)).unwrap(), 7);
        assert_eq!(String::try_from(Value::from("hi")).unwrap(), "hi");
        assert!(bool::try_from(Value::from(true)).unwrap());
        let err = i64::try_from(Value::from("x")).unwrap_err();
        assert_eq!(err.to_string(), "expected i64, found string");
        assert!(u8::try_from(Value::from(300)).is_err());
        let m = Value::map([("a", 1), ("b", 2), ("a", 3)]);
        assert_eq!(m.get("a"), Some(&Value::Int(3)));
        assert_eq!(m.get("zz"), None);
    }

    #[test]
    fn serde_json_round_trip() {
        let v = Value::map([
            ("name", Value::from("world")),
            ("n", Value::from(3)),
            ("xs", Value::from(vec![1.5f64, 2.0])),
            ("none", Value::Null),
        ]);
        let text = serde_json::to_string(&v).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn any_serde_type_goes_through_value() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Job {
            id: u32,
            tags: Vec<String>,
            next: Option<Box<Job>>,
        }
        let job = Job {
            id: 1,
            tags: vec!["a".into()],
            next: Some(Box::new(Job {
                id: 2,
                tags: vec![],
                next: None,
            })),
        };
        let v = Value::from_serialize(&job).unwrap();
        assert_eq!(v.get("id"), Some(&Value::Int(1)));
        let back: Job = v.deserialize_into().unwrap();
        assert_eq!(back, job);
    }
}
