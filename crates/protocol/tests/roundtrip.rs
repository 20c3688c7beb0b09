//! Property tests: rewriting an id and restoring it gives back the exact bytes, whatever
//! the id and whatever else the message carries.

use apiary_protocol::{Body, Message, RequestId, parse_body};
use bytes::Bytes;
use proptest::prelude::*;

fn id_strategy() -> impl Strategy<Value = RequestId> {
    prop_oneof![any::<i64>().prop_map(RequestId::Int), ".{0,16}".prop_map(|s| RequestId::Str(s.into())),]
}

fn extra_strategy() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i32>().prop_map(serde_json::Value::from),
        ".{0,8}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z]{1,5}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn id_rewrite_round_trips(id in id_strategy(), new in 0..i64::MAX, params in extra_strategy(), method in "[a-z/]{1,12}") {
        let text = format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":{},"params":{{"x":{}}}}}"#,
            id.to_json(),
            serde_json::to_string(&method).unwrap(),
            params
        );
        let original = Bytes::from(text);
        let m = Message::parse(original.clone()).unwrap();
        prop_assert_eq!(m.id(), Some(id.clone()));
        prop_assert_eq!(m.method(), Some(method.as_str()));
        let rewritten = Message::parse(m.with_id(&new.to_string())).unwrap();
        prop_assert_eq!(rewritten.id(), Some(RequestId::Int(new)));
        prop_assert_eq!(rewritten.params_raw(), m.params_raw());
        let restored = rewritten.with_id(m.id_raw().unwrap());
        prop_assert_eq!(restored, original);
    }

    #[test]
    fn batches_keep_member_bytes(ids in prop::collection::vec(id_strategy(), 1..6)) {
        let members: Vec<String> = ids
            .iter()
            .map(|id| format!(r#"{{"jsonrpc":"2.0","id":{},"method":"m"}}"#, id.to_json()))
            .collect();
        let body = Bytes::from(format!("[{}]", members.join(" , ")));
        let Body::Batch(parsed) = parse_body(body).unwrap() else { panic!("expected a batch") };
        prop_assert_eq!(parsed.len(), members.len());
        for (p, text) in parsed.iter().zip(&members) {
            let p = p.as_ref().unwrap();
            prop_assert_eq!(&p.bytes()[..], text.as_bytes());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_body(Bytes::from(data));
    }
}
