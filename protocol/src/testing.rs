//! Test-only helpers: arbitrary JSON documents shaped like the protocol's bodies.

use proptest::prelude::*;
use serde_json::Value;

/// Field names of every body, so generated objects often hit real fields with wrong values.
const KEYS: &[&str] = &[
    "seq",
    "sent_at",
    "idle_seconds",
    "session",
    "cpu_usage_ratio",
    "memory_usage_ratio",
    "uptime_seconds",
    "idle_source",
    "heartbeats",
    "enrollment_token",
    "machine_key",
    "hostname",
    "os",
    "os_version",
    "agent_version",
    "mac_addresses",
    "x",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
        Just(Value::String("2026-11-27T09:15:00Z".into())),
        Just(Value::String("9999-12-31T23:59:59.999999999+23:59".into())),
        Just(Value::String("aa:bb:cc:dd:ee:ff".into())),
    ]
}

/// Arbitrary JSON values, nested a few levels deep.
pub fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    proptest::sample::select(KEYS).prop_map(str::to_string),
                    ".{0,8}"
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
