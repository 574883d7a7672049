//! Live types and live data: values that outlive the code that made them.
//!
//! A job scheduled under version N stores [`LiveData`]: the registered type name and
//! the value serialized with serde as MessagePack with field names (self-describing, so
//! a changed shape is detected, never misread). When the job runs under N+1, the
//! current version's type of that name restores it with [`LiveData::restore`]; a type
//! whose shape changed gives a clear [`Error`], or goes through the
//! migration closure of [`LiveData::restore_or_migrate`].

use crate::{Error, Value};
use abi_stable::type_layout::TypeLayout;
use abi_stable::StableAbi;
use serde::{de::DeserializeOwned, Serialize};

/// A value of a live type, serialized, with its type's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveData {
    /// The live type's registered name.
    pub type_name: String,
    /// The value as MessagePack with field names.
    pub bytes: Vec<u8>,
}

impl LiveData {
    /// Serializes `value` as live type `type_name`.
    pub fn new<T: Serialize>(type_name: &str, value: &T) -> Result<LiveData, Error> {
        let bytes = rmp_serde::to_vec_named(value)
            .map_err(|e| Error::msg(format!("cannot serialize live type {type_name}: {e}")))?;
        Ok(LiveData {
            type_name: type_name.to_owned(),
            bytes,
        })
    }

    /// Restores the value as the current `T` registered under `type_name`.
    ///
    /// Fails, naming the type and the cause, when the data holds another type or its
    /// shape no longer fits `T` (a missing field, a field of another type; add
    /// `#[serde(deny_unknown_fields)]` to `T` to refuse removed fields too).
    pub fn restore<T: DeserializeOwned>(&self, type_name: &str) -> Result<T, Error> {
        if self.type_name != type_name {
            return Err(Error::msg(format!(
                "live data holds a {}, not a {type_name}",
                self.type_name
            )));
        }
        rmp_serde::from_slice(&self.bytes).map_err(|e| {
            Error::msg(format!(
                "live data of type {type_name} does not fit the current {type_name}: {e} (its shape changed: provide a migration with restore_or_migrate)"
            ))
        })
    }

    /// Like [`restore`](LiveData::restore); when the shape no longer fits, `migrate`
    /// gets the old value as a [`Value`] map and builds the current `T` from it.
    pub fn restore_or_migrate<T: DeserializeOwned>(
        &self,
        type_name: &str,
        migrate: impl FnOnce(Value) -> Result<T, Error>,
    ) -> Result<T, Error> {
        match self.restore(type_name) {
            Ok(v) => Ok(v),
            Err(_) if self.type_name == type_name => migrate(self.to_old_value()?),
            Err(e) => Err(e),
        }
    }

    fn to_old_value(&self) -> Result<Value, Error> {
        let json: serde_json::Value = rmp_serde::from_slice(&self.bytes).map_err(|e| {
            Error::msg(format!(
                "live data of type {} is corrupt: {e}",
                self.type_name
            ))
        })?;
        serde_json::from_value(json).map_err(|e| Error::msg(e.to_string()))
    }

    /// As a [`Value`] (`{"live_type": name, "data": bytes}`), to hand to the host.
    pub fn to_value(&self) -> Value {
        Value::map([
            ("live_type", Value::from(self.type_name.as_str())),
            ("data", Value::from(&self.bytes[..])),
        ])
    }

    /// Back from [`to_value`](LiveData::to_value)'s form.
    pub fn from_value(v: &Value) -> Result<LiveData, Error> {
        let type_name = v
            .get("live_type")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::msg("not live data: no live_type"))?;
        match v.get("data") {
            Some(Value::Bytes(b)) => Ok(LiveData {
                type_name: type_name.to_owned(),
                bytes: b.to_vec(),
            }),
            _ => Err(Error::msg("not live data: no data bytes")),
        }
    }
}

/// Checks that `found` (a layout from another binary) describes a `T`.
pub(crate) fn check_type<T: StableAbi>(found: Option<&'static TypeLayout>) -> Result<(), Error> {
    use abi_stable::abi_stability::abi_checking::{
        check_layout_compatibility_with_globals, CheckingGlobals,
    };
    let found = found.ok_or_else(|| Error::msg("the host's extension has no layout"))?;
    // A throwaway CheckingGlobals: nothing of the host's layouts is kept here.
    check_layout_compatibility_with_globals(T::LAYOUT, found, &CheckingGlobals::new()).map_err(
        |e| {
            Error::msg(format!(
                "the host's extension is not the type asked for: {e}"
            ))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct JobV1 {
        id: u32,
        text: String,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct JobV2 {
        id: u32,
        text: String,
        priority: u8,
    }

    #[test]
    fn round_trip_and_shape_change() {
        let d = LiveData::new(
            "Live_Job",
            &JobV1 {
                id: 7,
                text: "hi".into(),
            },
        )
        .unwrap();
        let back = LiveData::from_value(&d.to_value()).unwrap();
        assert_eq!(
            back.restore::<JobV1>("Live_Job").unwrap(),
            JobV1 {
                id: 7,
                text: "hi".into()
            }
        );
        let e = back.restore::<JobV2>("Live_Job").unwrap_err().to_string();
        assert!(
            e.contains("does not fit the current Live_Job") && e.contains("priority"),
            "{e}"
        );
        let migrated = back
            .restore_or_migrate::<JobV2>("Live_Job", |old| {
                Ok(JobV2 {
                    id: old.get("id").and_then(Value::as_int).unwrap() as u32,
                    text: old.get("text").and_then(Value::as_str).unwrap().into(),
                    priority: 5,
                })
            })
            .unwrap();
        assert_eq!(migrated.priority, 5);
        assert!(back
            .restore::<JobV1>("Other")
            .unwrap_err()
            .to_string()
            .contains("not a Other"));
    }
}
