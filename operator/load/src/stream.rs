//! The fast path: a document's typed value read straight from the parser's events,
//! with no tree. It handles the plain documents almost every repo consists of; for
//! anything else — any error, anchors, aliases, merge keys, tags, repeated keys — it
//! gives up and the tree path (`yaml` + `de`), which has exact positions for every
//! diagnostic, reads the document instead. Both paths resolve scalars the same way
//! (`de::resolve`), so they agree on every document the fast path accepts.

use std::borrow::Cow;
use std::fmt;

use drover_model::{API_VERSION, Kind, Manifest};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, StrInput};

use crate::de::{Scalar, resolve};
use crate::limits::Limits;

/// The fast path declined; the tree path will read the document.
#[derive(Debug)]
pub(crate) struct Declined;

impl fmt::Display for Declined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("declined")
    }
}

impl std::error::Error for Declined {}

impl de::Error for Declined {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Declined
    }
}

/// A node-starting event, reduced to what the reader needs.
enum Node<'a> {
    Scalar(Cow<'a, str>, bool),
    SeqStart,
    MapStart,
}

/// The parser's events with one event of look-ahead; structural noise (stream and
/// document markers, comments) is skipped.
pub(crate) struct Events<'a> {
    parser: Parser<'a, StrInput<'a>>,
    peeked: Option<Event<'a>>,
    /// Line and column (from 1, within the chunk) of the first node.
    pub start: Option<(u32, u32)>,
    /// Open sequences and mappings, and the limits: past them the fast path declines,
    /// and the tree path says where.
    depth: usize,
    limits: Limits,
}

impl<'a> Events<'a> {
    pub fn new(text: &'a str) -> Self {
        Events {
            parser: Parser::new_from_str(text),
            peeked: None,
            start: None,
            depth: 0,
            limits: Limits::current(),
        }
    }

    fn pull(&mut self) -> Result<Event<'a>, Declined> {
        loop {
            let (event, span) = self
                .parser
                .next_event()
                .ok_or(Declined)?
                .map_err(|_| Declined)?;
            // Nodes, their ends and the document's end; everything else (stream and
            // document starts, comments when a dependency turns them on) is skipped.
            let wanted = matches!(
                event,
                Event::Scalar(..)
                    | Event::SequenceStart(..)
                    | Event::MappingStart(..)
                    | Event::SequenceEnd
                    | Event::MappingEnd
                    | Event::Alias(..)
                    | Event::DocumentEnd
                    | Event::StreamEnd
            );
            if !wanted {
                continue;
            }
            match &event {
                Event::Scalar(text, ..) if text.len() > self.limits.string_bytes => {
                    return Err(Declined);
                }
                Event::SequenceStart(..) | Event::MappingStart(..) => {
                    self.depth += 1;
                    if self.depth > self.limits.depth {
                        return Err(Declined);
                    }
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    self.depth = self.depth.saturating_sub(1);
                }
                _ => {}
            }
            if self.start.is_none() {
                self.start = Some((span.start.line() as u32, span.start.col() as u32 + 1));
            }
            return Ok(event);
        }
    }

    fn peek(&mut self) -> Result<&Event<'a>, Declined> {
        if self.peeked.is_none() {
            self.peeked = Some(self.pull()?);
        }
        Ok(self.peeked.as_ref().expect("just filled"))
    }

    fn next(&mut self) -> Result<Event<'a>, Declined> {
        match self.peeked.take() {
            Some(event) => Ok(event),
            None => self.pull(),
        }
    }

    /// The next node's start; anything the fast path does not handle declines.
    fn node(&mut self) -> Result<Node<'a>, Declined> {
        match self.next()? {
            Event::Scalar(text, style, 0, None) => {
                Ok(Node::Scalar(text, matches!(style, ScalarStyle::Plain)))
            }
            Event::SequenceStart(_, 0, None) => Ok(Node::SeqStart),
            Event::MappingStart(_, 0, None) => Ok(Node::MapStart),
            // Anchors, aliases, tags, or an end where a node belongs.
            _ => Err(Declined),
        }
    }

    /// Consumes one whole node.
    fn skip(&mut self) -> Result<(), Declined> {
        let mut depth = 0usize;
        loop {
            match self.next()? {
                Event::Scalar(..) | Event::Alias(..) if depth == 0 => return Ok(()),
                Event::SequenceStart(..) | Event::MappingStart(..) => depth += 1,
                Event::SequenceEnd | Event::MappingEnd => {
                    depth = depth.checked_sub(1).ok_or(Declined)?;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
    }

    /// True when only the end of the document remains.
    fn at_end(&mut self) -> bool {
        matches!(self.peek(), Ok(Event::DocumentEnd | Event::StreamEnd))
    }
}

/// Reads the header — `apiVersion` and `kind` as the first keys of the document —
/// leaving the events positioned after them. `None` declines.
pub(crate) fn header(events: &mut Events<'_>) -> Option<Kind> {
    if !matches!(events.node().ok()?, Node::MapStart) {
        return None;
    }
    let mut api_version = None;
    let mut kind = None;
    for _ in 0..2 {
        let (Node::Scalar(key, _), Node::Scalar(value, _)) =
            (events.node().ok()?, events.node().ok()?)
        else {
            return None;
        };
        match key.as_ref() {
            "apiVersion" if api_version.is_none() => api_version = Some(value),
            "kind" if kind.is_none() => kind = Some(value),
            _ => return None,
        }
    }
    if api_version.as_deref() != Some(API_VERSION) {
        return None;
    }
    Kind::of_document(kind.as_deref()?)
}

/// Reads the rest of a document whose header [`header`] consumed, as a `Manifest<S>`.
/// `None` when the fast path declines.
pub(crate) fn manifest<S: DeserializeOwned>(
    events: &mut Events<'_>,
    kind: Kind,
) -> Option<Manifest<S>> {
    let replay = vec![
        ("apiVersion", API_VERSION.to_owned()),
        ("kind", kind.as_str().to_owned()),
    ];
    let map = Map {
        events: &mut *events,
        seen: vec![Cow::Borrowed("apiVersion"), Cow::Borrowed("kind")],
        replay: replay.into_iter(),
        value: None,
    };
    let value = <Manifest<S> as serde::Deserialize>::deserialize(MapDe(map)).ok()?;
    events.at_end().then_some(value)
}

/// Keys, and the replayed header values, are plain text.
fn text(s: &str) -> de::value::StrDeserializer<'_, Declined> {
    s.into_deserializer()
}

/// Hands a prepared map to a struct visitor.
struct MapDe<'e, 'a>(Map<'e, 'a>);

impl<'de> de::Deserializer<'de> for MapDe<'_, '_> {
    type Error = Declined;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Declined> {
        visitor.visit_map(self.0)
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

struct De<'e, 'a> {
    events: &'e mut Events<'a>,
}

macro_rules! number {
    ($method:ident) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Declined> {
            match self.events.node()? {
                Node::Scalar(text, plain) => match resolve(&text, plain) {
                    Scalar::Unsigned(n) => visitor.visit_u64(n),
                    Scalar::Signed(n) => visitor.visit_i64(n),
                    _ => Err(Declined),
                },
                _ => Err(Declined),
            }
        }
    };
}

impl<'de> de::Deserializer<'de> for De<'_, '_> {
    type Error = Declined;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Declined> {
        match self.events.node()? {
            Node::Scalar(text, plain) => match resolve(&text, plain) {
                Scalar::Null => visitor.visit_unit(),
                Scalar::Bool(b) => visitor.visit_bool(b),
                Scalar::Unsigned(n) => visitor.visit_u64(n),
                Scalar::Signed(n) => visitor.visit_i64(n),
                Scalar::Float(f) => visitor.visit_f64(f),
                Scalar::Text(t) => visitor.visit_str(t),
            },
            Node::SeqStart => visitor.visit_seq(Seq {
                events: self.events,
            }),
            Node::MapStart => visitor.visit_map(Map::new(self.events)),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Declined> {
        match self.events.node()? {
            Node::Scalar(text, plain) => match resolve(&text, plain) {
                Scalar::Bool(b) => visitor.visit_bool(b),
                _ => Err(Declined),
            },
            _ => Err(Declined),
        }
    }

    number!(deserialize_i8);
    number!(deserialize_i16);
    number!(deserialize_i32);
    number!(deserialize_i64);
    number!(deserialize_u8);
    number!(deserialize_u16);
    number!(deserialize_u32);
    number!(deserialize_u64);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Declined> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Declined> {
        match self.events.node()? {
            Node::Scalar(text, plain) => match resolve(&text, plain) {
                Scalar::Float(f) => visitor.visit_f64(f),
                Scalar::Unsigned(n) => visitor.visit_f64(n as f64),
                Scalar::Signed(n) => visitor.visit_f64(n as f64),
                _ => Err(Declined),
            },
            _ => Err(Declined),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Declined> {
        match self.events.node()? {
            Node::Scalar(text, plain) if !matches!(resolve(&text, plain), Scalar::Null) => {
                visitor.visit_str(&text)
            }
            _ => Err(Declined),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Declined> {
        self.deserialize_str(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Declined> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Declined> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Declined> {
        if let Event::Scalar(text, style, 0, None) = self.events.peek()?
            && matches!(
                resolve(text, matches!(style, ScalarStyle::Plain)),
                Scalar::Null
            )
        {
            self.events.next()?;
            return visitor.visit_none();
        }
        visitor.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Declined> {
        match self.events.node()? {
            Node::SeqStart => visitor.visit_seq(Seq {
                events: self.events,
            }),
            // An empty value (`args:`) is an empty list; anything else, the tree path judges.
            Node::Scalar(text, plain) if matches!(resolve(&text, plain), Scalar::Null) => visitor
                .visit_seq(
                    de::value::SeqDeserializer::<std::iter::Empty<()>, Declined>::new(
                        std::iter::empty(),
                    ),
                ),
            _ => Err(Declined),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Declined> {
        match self.events.node()? {
            Node::MapStart => visitor.visit_map(Map::new(self.events)),
            Node::Scalar(text, plain) if matches!(resolve(&text, plain), Scalar::Null) => visitor
                .visit_map(de::value::MapDeserializer::<
                    std::iter::Empty<((), ())>,
                    Declined,
                >::new(std::iter::empty())),
            _ => Err(Declined),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Declined> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Declined> {
        match self.events.node()? {
            Node::Scalar(text, _) => {
                let variant: de::value::StrDeserializer<'_, Declined> =
                    text.as_ref().into_deserializer();
                visitor.visit_enum(variant)
            }
            _ => Err(Declined),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Declined> {
        self.events.skip()?;
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Declined> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        i128 u128 bytes byte_buf unit unit_struct tuple tuple_struct
    }
}

struct Seq<'e, 'a> {
    events: &'e mut Events<'a>,
}

impl<'de> de::SeqAccess<'de> for Seq<'_, '_> {
    type Error = Declined;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Declined> {
        if matches!(self.events.peek()?, Event::SequenceEnd) {
            self.events.next()?;
            return Ok(None);
        }
        seed.deserialize(De {
            events: self.events,
        })
        .map(Some)
    }
}

struct Map<'e, 'a> {
    events: &'e mut Events<'a>,
    /// Keys read so far: a repeated key declines (the tree path reports it).
    seen: Vec<Cow<'a, str>>,
    /// Header entries to hand over before reading events.
    replay: std::vec::IntoIter<(&'static str, String)>,
    /// The value of the header entry just handed over.
    value: Option<String>,
}

impl<'e, 'a> Map<'e, 'a> {
    fn new(events: &'e mut Events<'a>) -> Self {
        Map {
            events,
            seen: Vec::new(),
            replay: Vec::new().into_iter(),
            value: None,
        }
    }
}

impl<'de> de::MapAccess<'de> for Map<'_, '_> {
    type Error = Declined;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Declined> {
        if let Some((key, value)) = self.replay.next() {
            self.value = Some(value);
            return seed.deserialize(text(key)).map(Some);
        }
        match self.events.next()? {
            Event::MappingEnd => Ok(None),
            Event::Scalar(key, _, 0, None) if key != "<<" => {
                if self.seen.contains(&key) {
                    return Err(Declined);
                }
                let value = seed.deserialize(text(&key)).map(Some);
                self.seen.push(key);
                value
            }
            _ => Err(Declined),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Declined> {
        match self.value.take() {
            Some(value) => seed.deserialize(text(&value)),
            None => seed.deserialize(De {
                events: self.events,
            }),
        }
    }
}
