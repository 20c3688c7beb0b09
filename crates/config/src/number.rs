//! Whole-number fields read from any integer, so an out-of-range or negative value is named in a
//! sentence ("70000 is not a port (0–65535)") the same way in JSON and YAML, not as a format's type error.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserializer;
use serde::de::{self, Visitor};

/// An unsigned field type and the words used when a value does not fit it.
pub(crate) trait Whole: TryFrom<u128> + Copy {
    const EXPECTING: &'static str;
    fn out_of_range(shown: &dyn fmt::Display) -> String;
}

/// TCP ports.
#[derive(Clone, Copy)]
pub(crate) struct Port(pub u16);

impl TryFrom<u128> for Port {
    type Error = std::num::TryFromIntError;
    fn try_from(v: u128) -> Result<Self, Self::Error> {
        u16::try_from(v).map(Port)
    }
}

impl Whole for Port {
    const EXPECTING: &'static str = "a port number (0–65535; 0 picks a free port)";
    fn out_of_range(shown: &dyn fmt::Display) -> String {
        format!("{shown} is not a port (0–65535)")
    }
}

impl Whole for u32 {
    const EXPECTING: &'static str = "a whole number from 0 to 4294967295";
    fn out_of_range(shown: &dyn fmt::Display) -> String {
        format!("{shown} is not a whole number from 0 to 4294967295")
    }
}

impl Whole for u64 {
    const EXPECTING: &'static str = "a whole number from 0 to 18446744073709551615";
    fn out_of_range(shown: &dyn fmt::Display) -> String {
        format!("{shown} is not a whole number from 0 to 18446744073709551615")
    }
}

struct WholeVisitor<T>(PhantomData<T>);

impl<T: Whole> WholeVisitor<T> {
    fn convert<E: de::Error>(v: i128) -> Result<T, E> {
        u128::try_from(v).ok().and_then(|u| T::try_from(u).ok()).ok_or_else(|| E::custom(T::out_of_range(&v)))
    }
}

impl<T: Whole> Visitor<'_> for WholeVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Self::convert(i128::from(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        Self::convert(i128::from(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::custom(T::out_of_range(&v)))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<T, E> {
        Self::convert(v)
    }
}

// deserialize_any everywhere: a typed hint (deserialize_u16, ...) lets the format refuse 70000 or -5
// with its own terse wording ("invalid u32") before the visitor can name the problem.

/// `deserialize_with` for port fields.
pub(crate) fn port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    d.deserialize_any(WholeVisitor::<Port>(PhantomData)).map(|p| p.0)
}

/// `deserialize_with` for `u32` fields.
pub(crate) fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    d.deserialize_any(WholeVisitor::<u32>(PhantomData))
}

/// `deserialize_with` for `u64` fields.
pub(crate) fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(WholeVisitor::<u64>(PhantomData))
}
