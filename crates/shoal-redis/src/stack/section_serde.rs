//! Serde for a config section whose keys are a library config type's plus a few of the
//! section's own (`[cache]` = `enabled` + the keys of [`CacheConfig`](shoal_core::CacheConfig) +
//! `bus`), with the library type read and written by its own derive, so its defaults, docs and
//! duration format stay in one place.
//!
//! `#[serde(flatten)]` cannot be used to read such a section: it buffers the values (errors
//! lose the key they are about) and ignores `deny_unknown_fields`. Here the section's
//! visitor hands the map to [`read_section`], which takes the section's own keys out as they
//! come and passes every other key on to the library type, untouched; errors keep their key.
//! Writing uses `#[serde(flatten)]` (which is fine for serializing) through
//! [`FieldsExcept`], which leaves out the library type's fields the section does not show.

use std::{fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{
        self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor,
        value::MapAccessDeserializer,
    },
    ser::SerializeStruct,
};

/// A config section made of a library config type plus keys of its own.
pub(super) trait Section: Default {
    /// What the section is, for serde's "invalid type" messages (`the [cache] settings`).
    const EXPECTING: &'static str;
    /// Every key the section accepts: its own and the library type's.
    const KEYS: &'static [&'static str];
    /// The library config type that reads every key not the section's own.
    type Library: DeserializeOwned;

    /// Reads the value of `key` from `map` if `key` is one of the section's own and returns
    /// `true`; returns `false` to leave the key to [`Section::Library`].
    fn read_own<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<bool, A::Error>;

    /// Puts the library config read from the other keys in place.
    fn set_library(&mut self, library: Self::Library);
}

/// Deserializes a [`Section`]: its own keys by [`Section::read_own`], the rest by the library
/// type's derive (see [`read_section`]).
pub(super) fn deserialize_section<'de, T: Section, D: Deserializer<'de>>(
    d: D,
) -> Result<T, D::Error> {
    struct SectionVisitor<T>(PhantomData<T>);
    impl<'de, T: Section> Visitor<'de> for SectionVisitor<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(T::EXPECTING)
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            let mut section = T::default();
            let library =
                read_section(map, T::KEYS, |key, map: &mut A| section.read_own(key, map))?;
            section.set_library(library);
            Ok(section)
        }
    }
    d.deserialize_map(SectionVisitor(PhantomData))
}

/// Reads `T` from `map` after taking out the section's own keys: `own(key, map)` reads the
/// value of a key of its own (with `map.next_value()`) and returns `true`, or returns `false`
/// to pass the key to `T`. A key not in `keys` (every key the section accepts) is refused
/// as unknown, naming `keys`.
pub(super) fn read_section<'de, A, T, F>(
    mut map: A,
    keys: &'static [&'static str],
    mut own: F,
) -> Result<T, A::Error>
where
    A: MapAccess<'de>,
    T: Deserialize<'de>,
    F: FnMut(&str, &mut A) -> Result<bool, A::Error>,
{
    T::deserialize(MapAccessDeserializer::new(OwnKeysTaken {
        map: &mut map,
        keys,
        own: &mut own,
    }))
}

/// The map of a section as the library type sees it: without the section's own keys.
struct OwnKeysTaken<'m, A, F> {
    map: &'m mut A,
    keys: &'static [&'static str],
    own: &'m mut F,
}

impl<'de, A, F> MapAccess<'de> for OwnKeysTaken<'_, A, F>
where
    A: MapAccess<'de>,
    F: FnMut(&str, &mut A) -> Result<bool, A::Error>,
{
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let Some(key) = self.map.next_key::<String>()? else {
                return Ok(None);
            };
            if !self.keys.contains(&key.as_str()) {
                return Err(de::Error::unknown_field(&key, self.keys));
            }
            if (self.own)(&key, self.map)? {
                continue;
            }
            let key: de::value::StringDeserializer<A::Error> = key.into_deserializer();
            return seed.deserialize(key).map(Some);
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// `inner`'s fields but `skip`, written into the map of the section that flattens this.
pub(super) struct FieldsExcept<'a, T> {
    /// The library config.
    pub(super) inner: &'a T,
    /// Its fields the section does not show.
    pub(super) skip: &'static [&'static str],
}

impl<T: Serialize> Serialize for FieldsExcept<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.inner.serialize(SkipFields {
            inner: s,
            skip: self.skip,
        })
    }
}

/// A serializer that forwards everything to `inner` but drops the struct fields in `skip`.
struct SkipFields<S> {
    inner: S,
    skip: &'static [&'static str],
}

/// Forwards a serializer method that takes plain arguments.
macro_rules! forward {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        $(fn $name(self, $($arg: $ty),*) -> Result<$ret, S::Error> {
            self.inner.$name($($arg),*)
        })*
    };
}

impl<S: Serializer> Serializer for SkipFields<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = S::SerializeSeq;
    type SerializeTuple = S::SerializeTuple;
    type SerializeTupleStruct = S::SerializeTupleStruct;
    type SerializeTupleVariant = S::SerializeTupleVariant;
    type SerializeMap = S::SerializeMap;
    type SerializeStruct = SkipStructFields<S::SerializeStruct>;
    type SerializeStructVariant = S::SerializeStructVariant;

    forward! {
        serialize_bool(v: bool) -> S::Ok;
        serialize_i8(v: i8) -> S::Ok;
        serialize_i16(v: i16) -> S::Ok;
        serialize_i32(v: i32) -> S::Ok;
        serialize_i64(v: i64) -> S::Ok;
        serialize_u8(v: u8) -> S::Ok;
        serialize_u16(v: u16) -> S::Ok;
        serialize_u32(v: u32) -> S::Ok;
        serialize_u64(v: u64) -> S::Ok;
        serialize_f32(v: f32) -> S::Ok;
        serialize_f64(v: f64) -> S::Ok;
        serialize_char(v: char) -> S::Ok;
        serialize_str(v: &str) -> S::Ok;
        serialize_bytes(v: &[u8]) -> S::Ok;
        serialize_none() -> S::Ok;
        serialize_unit() -> S::Ok;
        serialize_unit_struct(name: &'static str) -> S::Ok;
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str) -> S::Ok;
        serialize_seq(len: Option<usize>) -> S::SerializeSeq;
        serialize_tuple(len: usize) -> S::SerializeTuple;
        serialize_tuple_struct(name: &'static str, len: usize) -> S::SerializeTupleStruct;
        serialize_tuple_variant(
            name: &'static str, index: u32, variant: &'static str, len: usize
        ) -> S::SerializeTupleVariant;
        serialize_map(len: Option<usize>) -> S::SerializeMap;
        serialize_struct_variant(
            name: &'static str, index: u32, variant: &'static str, len: usize
        ) -> S::SerializeStructVariant;
    }

    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> Result<S::Ok, S::Error> {
        self.inner.serialize_some(v)
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.inner.serialize_newtype_struct(name, v)
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.inner
            .serialize_newtype_variant(name, index, variant, v)
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        Ok(SkipStructFields {
            inner: self.inner.serialize_struct(name, len)?,
            skip: self.skip,
        })
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// The struct writer of [`SkipFields`].
struct SkipStructFields<T> {
    inner: T,
    skip: &'static [&'static str],
}

impl<T: SerializeStruct> SerializeStruct for SkipStructFields<T> {
    type Ok = T::Ok;
    type Error = T::Error;

    fn serialize_field<V: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &V,
    ) -> Result<(), T::Error> {
        if self.skip.contains(&key) {
            self.inner.skip_field(key)
        } else {
            self.inner.serialize_field(key, value)
        }
    }

    fn end(self) -> Result<T::Ok, T::Error> {
        self.inner.end()
    }
}

/// A humantime duration read on its own (a section's own duration key).
#[derive(Deserialize)]
#[serde(transparent)]
pub(super) struct DurationText(
    #[serde(with = "shoal_core::serde_util::duration")] pub(super) std::time::Duration,
);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde::de::{MapAccess, Visitor};

    use super::*;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Library {
        a: u32,
        hidden: u32,
        #[serde(with = "shoal_core::serde_util::duration")]
        d: Duration,
    }

    #[derive(Debug, Default, PartialEq)]
    struct Section {
        on: bool,
        library: Library,
    }

    const KEYS: &[&str] = &["on", "a", "d"];

    impl<'de> Deserialize<'de> for Section {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Section;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a section")
                }
                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Section, A::Error> {
                    let mut on = false;
                    let library = read_section(map, KEYS, |key, map: &mut A| match key {
                        "on" => {
                            on = map.next_value()?;
                            Ok(true)
                        }
                        _ => Ok(false),
                    })?;
                    Ok(Section { on, library })
                }
            }
            d.deserialize_map(V)
        }
    }

    #[derive(Serialize)]
    struct SectionView<'a> {
        on: bool,
        #[serde(flatten)]
        library: FieldsExcept<'a, Library>,
    }

    #[test]
    fn own_keys_are_taken_and_the_rest_reaches_the_library_type() {
        let s: Section = serde_json::from_str(r#"{"a": 3, "on": true, "d": "2s"}"#).unwrap();
        assert!(s.on);
        assert_eq!(s.library.a, 3);
        assert_eq!(s.library.d, Duration::from_secs(2));
        let e = serde_json::from_str::<Section>(r#"{"hidden": 1}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `hidden`"), "{e}");
        assert!(e.to_string().contains("`on`, `a`, `d`"), "{e}");
        let e = serde_json::from_str::<Section>(r#"{"d": "soon"}"#).unwrap_err();
        assert!(e.to_string().contains("\"soon\" is not a duration"), "{e}");
    }

    #[test]
    fn writing_leaves_out_the_skipped_fields_in_order() {
        let library = Library {
            a: 1,
            hidden: 2,
            d: Duration::from_millis(1500),
        };
        let view = SectionView {
            on: true,
            library: FieldsExcept {
                inner: &library,
                skip: &["hidden"],
            },
        };
        assert_eq!(
            serde_json::to_string(&view).unwrap(),
            r#"{"on":true,"a":1,"d":"1s 500ms"}"#
        );
    }
}
