//! Small proptest strategies, so generated models stay small enough to test quickly.

use std::collections::BTreeMap;

use proptest::prelude::*;

/// A short vector of arbitrary items.
pub fn few<T: Arbitrary + 'static>() -> impl Strategy<Value = Vec<T>> {
    proptest::collection::vec(any::<T>(), 0..3)
}

/// A small map of arbitrary strings.
pub fn small_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(any::<String>(), any::<String>(), 0..3)
}

/// A ratio in [0, 1].
pub fn ratio() -> impl Strategy<Value = f64> {
    0.0..=1.0f64
}
