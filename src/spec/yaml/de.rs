//! serde: typed structs straight from a node ([`from_node`]), each error
//! located at the node it is about (line and key path).

use std::fmt;
use std::path::Path;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use super::{Node, Value};
use crate::spec::diag::{Diag, Mark};

/// An error while turning a node into a typed value: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeError {
    pub mark: Mark,
    pub path: String,
    pub message: String,
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            mark: Mark::default(),
            path: String::new(),
            message: msg.to_string(),
        }
    }
}

impl DeError {
    /// Turns this error into a diagnostic for `file`.
    pub fn into_diag(self, file: &Path) -> Diag {
        Diag::error(file, self.mark, self.path, self.message)
    }
}

/// Deserializes a typed value from a node; the error names the node's line and key path.
pub fn from_node<T: DeserializeOwned>(node: &Node) -> Result<T, DeError> {
    T::deserialize(NodeDe {
        node,
        path: String::new(),
    })
}

struct NodeDe<'a> {
    node: &'a Node,
    path: String,
}

impl<'a> NodeDe<'a> {
    fn locate(&self, mut e: DeError) -> DeError {
        if e.mark == Mark::default() {
            e.mark = self.node.mark;
            e.path = self.path.clone();
        }
        e
    }

    fn child(&self, node: &'a Node, key: &str) -> NodeDe<'a> {
        let path = if self.path.is_empty() {
            key.to_string()
        } else if key.starts_with('[') {
            format!("{}{key}", self.path)
        } else {
            format!("{}.{key}", self.path)
        };
        NodeDe { node, path }
    }

    fn invalid(&self, expected: &str) -> DeError {
        DeError {
            mark: self.node.mark,
            path: self.path.clone(),
            message: format!("expected {expected}, found {}", self.node.type_name()),
        }
    }
}

macro_rules! forward_scalar {
    ($($method:ident => $visit:ident : $ty:ty , $what:literal ;)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
                let v: $ty = match &self.node.value {
                    Value::Int(i) => <$ty>::try_from(*i).map_err(|_| self.invalid($what))?,
                    Value::Str(s) => s.trim().parse().map_err(|_| self.invalid($what))?,
                    _ => return Err(self.invalid($what)),
                };
                visitor.$visit(v).map_err(|e| self.locate(e))
            }
        )*
    };
}

impl<'de, 'a> de::Deserializer<'de> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_str(s),
            Value::Seq(items) => visitor.visit_seq(SeqAccess {
                de: &self,
                items: items.iter().enumerate(),
            }),
            Value::Map(entries) => visitor.visit_map(MapAccess {
                de: &self,
                entries: entries.iter(),
                value: None,
            }),
        };
        r.map_err(|e| self.locate(e))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let b = match &self.node.value {
            Value::Bool(b) => *b,
            // go-yaml v3 still reads the YAML 1.1 words into a typed bool.
            Value::Str(s) => match s.as_str() {
                "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y" => true,
                "no" | "No" | "NO" | "off" | "Off" | "OFF" | "n" | "N" => false,
                _ => return Err(self.invalid("true or false")),
            },
            _ => return Err(self.invalid("true or false")),
        };
        visitor.visit_bool(b).map_err(|e| self.locate(e))
    }

    forward_scalar! {
        deserialize_i8 => visit_i8: i8, "a whole number";
        deserialize_i16 => visit_i16: i16, "a whole number";
        deserialize_i32 => visit_i32: i32, "a whole number";
        deserialize_i64 => visit_i64: i64, "a whole number";
        deserialize_u8 => visit_u8: u8, "a whole number from 0 to 255";
        deserialize_u16 => visit_u16: u16, "a whole number from 0 to 65535";
        deserialize_u32 => visit_u32: u32, "a non-negative whole number";
        deserialize_u64 => visit_u64: u64, "a non-negative whole number";
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let f = match &self.node.value {
            Value::Int(i) => *i as f64,
            Value::Float(f) => *f,
            Value::Str(s) => s.trim().parse().map_err(|_| self.invalid("a number"))?,
            _ => return Err(self.invalid("a number")),
        };
        visitor.visit_f64(f).map_err(|e| self.locate(e))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Seq(_) | Value::Map(_) | Value::Null => Err(self.invalid("a string")),
            _ => {
                let s = self.node.scalar_string().unwrap_or_default();
                visitor.visit_string(s).map_err(|e| self.locate(e))
            }
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            visitor.visit_none().map_err(|e| self.locate(e))
        } else {
            let path = self.path.clone();
            visitor.visit_some(NodeDe {
                node: self.node,
                path,
            })
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Seq(items) => visitor
                .visit_seq(SeqAccess {
                    de: &self,
                    items: items.iter().enumerate(),
                })
                .map_err(|e| self.locate(e)),
            _ => Err(self.invalid("a list")),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Map(entries) => visitor
                .visit_map(MapAccess {
                    de: &self,
                    entries: entries.iter(),
                    value: None,
                })
                .map_err(|e| self.locate(e)),
            // An empty section (`policy:` with nothing under it) reads as an empty mapping.
            Value::Null => visitor
                .visit_map(MapAccess {
                    de: &self,
                    entries: [].iter(),
                    value: None,
                })
                .map_err(|e| self.locate(e)),
            _ => Err(self.invalid("a mapping")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Str(s) => visitor
                .visit_enum(s.as_str().into_deserializer())
                .map_err(|e: DeError| self.locate(e)),
            _ => Err(self.invalid(&format!("one of {}", variants.join(", ")))),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i128 u128 bytes byte_buf unit_struct newtype_struct tuple tuple_struct identifier
    }
}

struct SeqAccess<'a, 'b> {
    de: &'b NodeDe<'a>,
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
}

impl<'de, 'a, 'b> de::SeqAccess<'de> for SeqAccess<'a, 'b> {
    type Error = DeError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some((i, node)) => {
                let child = self.de.child(node, &format!("[{i}]"));
                let at = NodeDe {
                    node,
                    path: child.path.clone(),
                };
                seed.deserialize(child).map(Some).map_err(|e| at.locate(e))
            }
            None => Ok(None),
        }
    }
}

struct MapAccess<'a, 'b> {
    de: &'b NodeDe<'a>,
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<(&'a Node, String)>,
}

impl<'de, 'a, 'b> de::MapAccess<'de> for MapAccess<'a, 'b> {
    type Error = DeError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((k, v)) = self.entries.next() else {
            return Ok(None);
        };
        let name = k.scalar_string().unwrap_or_default();
        self.value = Some((v, name.clone()));
        let key_de = self.de.child(k, &name);
        seed.deserialize(name.as_str().into_deserializer())
            .map(Some)
            .map_err(|e: DeError| key_de.locate(e))
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DeError> {
        let (node, name) = self.value.take().expect("value after key");
        let child = self.de.child(node, &name);
        // An error a `Deserialize` impl raises after reading the value (e.g. an
        // invalid duration) carries no place yet: it belongs to this value.
        let at = NodeDe {
            node,
            path: child.path.clone(),
        };
        seed.deserialize(child).map_err(|e| at.locate(e))
    }
}
