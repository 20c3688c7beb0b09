#![allow(clippy::unwrap_used)]
//! Tool filter and overrides: the policy's answers, ToolHive's override file, and byte-exact
//! rewriting of list responses and `tools/call` requests.

use std::collections::BTreeMap;

use apiary_config::{ToolOverride, ToolsConfig};
use apiary_policy::tools::{
    Hidden, ItemFate, ListKind, ShapeError, ToolPolicy, ToolsConfigError, parse_overrides_file, shape_list,
    with_call_name,
};
use serde_json::{Value, json};

fn ov(name: Option<&str>, description: Option<&str>) -> ToolOverride {
    ToolOverride { name: name.map(Into::into), description: description.map(Into::into) }
}

fn policy(filter: &[&str], overrides: &[(&str, ToolOverride)]) -> ToolPolicy {
    let cfg = ToolsConfig {
        filter: filter.iter().map(|s| s.to_string()).collect(),
        overrides: overrides.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
    };
    ToolPolicy::new(&cfg).unwrap()
}

fn change(name: Option<&str>, description: Option<&str>) -> ItemFate {
    ItemFate::Change { name: name.map(Into::into), description: description.map(Into::into) }
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

#[test]
fn empty_policy_changes_nothing() {
    let p = policy(&[], &[]);
    assert!(p.is_empty());
    assert_eq!(p.fate("anything"), ItemFate::Keep);
    assert_eq!(p.resolve_call("anything"), Ok(None));
}

#[test]
fn filter_only() {
    let p = policy(&["fetch", "search"], &[]);
    assert!(!p.is_empty());
    assert_eq!(p.fate("fetch"), ItemFate::Keep);
    assert_eq!(p.fate("delete_repo"), ItemFate::Drop);
    assert_eq!(p.resolve_call("search"), Ok(None));
    assert_eq!(p.resolve_call("delete_repo"), Err(Hidden), "a hidden tool cannot be called");
}

#[test]
fn override_only() {
    let p = policy(&[], &[("fetch", ov(Some("web_fetch"), Some("Fetch a URL"))), ("search", ov(None, Some("Find")))]);
    assert_eq!(p.fate("fetch"), change(Some("web_fetch"), Some("Fetch a URL")));
    assert_eq!(p.fate("search"), change(None, Some("Find")));
    assert_eq!(p.fate("other"), ItemFate::Keep);
    assert_eq!(p.resolve_call("web_fetch"), Ok(Some("fetch")), "the new name resolves back");
    assert_eq!(p.resolve_call("fetch"), Err(Hidden), "the original name of a renamed tool is hidden");
    assert_eq!(p.resolve_call("search"), Ok(None), "a description-only override keeps the name");
    assert_eq!(p.resolve_call("other"), Ok(None));
}

#[test]
fn filter_and_override() {
    // ToolHive's filter names the tool as clients see it; the server's name works too.
    let p =
        policy(&["web_fetch", "search"], &[("fetch", ov(Some("web_fetch"), None)), ("search", ov(Some("find"), None))]);
    assert_eq!(p.fate("fetch"), change(Some("web_fetch"), None));
    assert_eq!(p.fate("search"), change(Some("find"), None));
    assert_eq!(p.fate("delete"), ItemFate::Drop);
    assert_eq!(p.resolve_call("web_fetch"), Ok(Some("fetch")));
    assert_eq!(p.resolve_call("find"), Ok(Some("search")));
    assert_eq!(p.resolve_call("fetch"), Err(Hidden));
    assert_eq!(p.resolve_call("search"), Err(Hidden));
    assert_eq!(p.resolve_call("delete"), Err(Hidden));

    // A renamed tool outside the filter stays hidden under both names.
    let p = policy(&["other"], &[("fetch", ov(Some("web_fetch"), None))]);
    assert_eq!(p.fate("fetch"), ItemFate::Drop);
    assert_eq!(p.resolve_call("web_fetch"), Err(Hidden));
    assert_eq!(p.resolve_call("fetch"), Err(Hidden));
}

#[test]
fn renames_onto_existing_names_and_swaps() {
    // `a` renamed to `b` while the server also has `b`: the client's `b` means `a`.
    let p = policy(&[], &[("a", ov(Some("b"), None))]);
    assert_eq!(p.fate("b"), ItemFate::Drop);
    assert_eq!(p.resolve_call("b"), Ok(Some("a")));
    // A swap is consistent both ways.
    let p = policy(&[], &[("a", ov(Some("b"), None)), ("b", ov(Some("a"), None))]);
    assert_eq!(p.fate("a"), change(Some("b"), None));
    assert_eq!(p.fate("b"), change(Some("a"), None));
    assert_eq!(p.resolve_call("a"), Ok(Some("b")));
    assert_eq!(p.resolve_call("b"), Ok(Some("a")));
    // Renaming a tool to its own name (or to "") is no rename.
    let p = policy(&[], &[("a", ov(Some("a"), Some("d"))), ("c", ov(Some(""), Some("e")))]);
    assert_eq!(p.fate("a"), change(None, Some("d")));
    assert_eq!(p.resolve_call("a"), Ok(None));
    assert_eq!(p.resolve_call("c"), Ok(None));
}

#[test]
fn bad_filter_and_override_sets_are_refused() {
    let build = |filter: &[&str], overrides: &[(&str, ToolOverride)]| {
        ToolPolicy::new(&ToolsConfig {
            filter: filter.iter().map(|s| s.to_string()).collect(),
            overrides: overrides.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<_, _>>(),
        })
    };
    assert_eq!(build(&["a", ""], &[]).unwrap_err(), ToolsConfigError::EmptyFilterName);
    assert_eq!(build(&[], &[("", ov(Some("x"), None))]).unwrap_err(), ToolsConfigError::EmptyOriginalName);
    assert!(matches!(
        build(&[], &[("a", ov(Some(""), None))]).unwrap_err(),
        ToolsConfigError::NothingOverridden { original } if original == "a"
    ));
    let err = build(&[], &[("a", ov(Some("x"), None)), ("b", ov(Some("x"), None))]).unwrap_err();
    assert_eq!(err, ToolsConfigError::DuplicateName { name: "x".into(), first: "a".into(), second: "b".into() });
    // Renaming onto a name another override keeps for its own tool is the same clash.
    let err = build(&[], &[("a", ov(Some("b"), None)), ("b", ov(None, Some("d")))]).unwrap_err();
    assert!(matches!(err, ToolsConfigError::DuplicateName { .. }), "{err}");
}

#[test]
fn toolhive_override_files_are_read() {
    let json = r#"{"toolsOverride": {"fetch": {"name": "web_fetch", "description": "Fetch a URL"},
                                      "search": {"name": "", "description": "Find things"}}}"#;
    let map = parse_overrides_file(json, "overrides.json").unwrap();
    assert_eq!(map["fetch"], ov(Some("web_fetch"), Some("Fetch a URL")));
    let p = ToolPolicy::new(&ToolsConfig { filter: vec![], overrides: map.clone() }).unwrap();
    assert_eq!(p.fate("search"), change(None, Some("Find things")));

    let yaml = "toolsOverride:\n  fetch:\n    name: web_fetch\n    description: Fetch a URL\n  search:\n    name: ''\n    description: Find things\n";
    assert_eq!(parse_overrides_file(yaml, "overrides.yaml").unwrap(), map);
}

#[test]
fn bad_override_files_give_origin_and_line() {
    let cases = [
        ("{\n  \"toolsOverride\": {\n    \"fetch\": {\"nme\": \"x\"}\n  }\n}", "o.json:3:"),
        ("{\n  \"toolsOverride\": {\n    \"fetch\": {\"name\": 3}\n  }\n}", "o.json:3:"),
        ("{\n  \"toolsOverride\": {\n    \"fetch\": {\"name\": \"x\"},\n  }\n}", "o.json:4:"),
        ("{\n  \"toolsOverride\": {\n    \"a\": {\"name\": \"x\"},\n    \"b\": {\"name\": \"x\"}\n  }\n}", "o.json:4:"),
        (
            "{\n  \"toolsOverride\": {\n    \"a\": {\"name\": \"x\"},\n    \"b\": {\"description\": \"\"}\n  }\n}",
            "o.json:4:",
        ),
        ("{\"tools_override\": {}}", "o.json:1:"),
        ("toolsOverride:\n  fetch:\n    name: [1, 2]\n", "o.json:3:"),
    ];
    for (doc, want) in cases {
        let err = parse_overrides_file(doc, "o.json").unwrap_err().to_string();
        assert!(err.contains(want), "{doc:?}: {err}");
    }
    let err = parse_overrides_file("{}", "o.json").unwrap_err().to_string();
    assert!(err.contains("o.json") && err.contains("toolsOverride"), "{err}");
}

/// A list response with odd whitespace, key order and number spellings.
const TOOLS: &str = "{ \"result\" : {\"nextCursor\":\"c1\" ,\"tools\":[\n  {\"inputSchema\":{\"type\":\"object\",\"x\":1.50},\"name\":\"fetch\",\"description\":\"Get\"},\n  {\"name\" : \"delete\", \"big\": 12345678901234567890123 },\n\t{\"annotations\":{\"readOnlyHint\":true}, \"name\":\"search\"}\n ] , \"_meta\":{\"n\":1e5}}, \"jsonrpc\":\"2.0\",\"id\":7 }";

#[test]
fn list_shaping_keeps_every_untouched_byte() {
    let p = policy(&["fetch", "find"], &[("search", ov(Some("find"), Some("Find things")))]);
    let mut seen = Vec::new();
    let out = shape_list(TOOLS.as_bytes(), ListKind::Tools, |item| {
        seen.push((item.name.unwrap().to_owned(), item.annotations.cloned()));
        p.fate(item.name.unwrap())
    })
    .unwrap()
    .unwrap();
    assert_eq!(seen[2].1, Some(json!({"readOnlyHint": true}).as_object().unwrap().clone()));
    let want = "{ \"result\" : {\"nextCursor\":\"c1\" ,\"tools\":[\n  {\"inputSchema\":{\"type\":\"object\",\"x\":1.50},\"name\":\"fetch\",\"description\":\"Get\"},\n\t{\"annotations\":{\"readOnlyHint\":true}, \"name\":\"find\",\"description\":\"Find things\"}\n ] , \"_meta\":{\"n\":1e5}}, \"jsonrpc\":\"2.0\",\"id\":7 }";
    assert_eq!(text(&out), want);

    // Dropping the first item keeps the blank after `[`, not the comma after it.
    let out = shape_list(TOOLS.as_bytes(), ListKind::Tools, |i| {
        if i.name == Some("fetch") { ItemFate::Drop } else { ItemFate::Keep }
    })
    .unwrap()
    .unwrap();
    assert!(
        text(&out).contains("\"tools\":[\n  {\"name\" : \"delete\", \"big\": 12345678901234567890123 },\n\t{\"annot"),
        "{}",
        text(&out)
    );

    // Everything dropped: an empty array, the rest untouched.
    let out = shape_list(TOOLS.as_bytes(), ListKind::Tools, |_| ItemFate::Drop).unwrap().unwrap();
    assert_eq!(
        text(&out),
        "{ \"result\" : {\"nextCursor\":\"c1\" ,\"tools\":[] , \"_meta\":{\"n\":1e5}}, \"jsonrpc\":\"2.0\",\"id\":7 }"
    );

    // A changed name is spliced in place; a changed description replaces the old one.
    let out = shape_list(TOOLS.as_bytes(), ListKind::Tools, |i| {
        if i.name == Some("fetch") { change(Some("we\"b"), Some("new")) } else { ItemFate::Keep }
    })
    .unwrap()
    .unwrap();
    assert!(
        text(&out).contains(
            "{\"inputSchema\":{\"type\":\"object\",\"x\":1.50},\"name\":\"we\\\"b\",\"description\":\"new\"},"
        )
    );
}

#[test]
fn nothing_changed_error_responses_and_other_shapes_give_none() {
    assert_eq!(shape_list(TOOLS.as_bytes(), ListKind::Tools, |_| ItemFate::Keep).unwrap(), None);
    let drop_all = |_: &apiary_policy::tools::ListItem<'_>| ItemFate::Drop;
    for msg in [
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no","data":{"tools":[{"name":"x"}]}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"tools":{"name":"x"}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":[1,2]}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":null}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#,
    ] {
        assert_eq!(shape_list(msg.as_bytes(), ListKind::Tools, drop_all).unwrap(), None, "{msg}");
    }
    // A "change" to what the item already says is no change.
    let same = shape_list(TOOLS.as_bytes(), ListKind::Tools, |i| {
        if i.name == Some("fetch") { change(Some("fetch"), Some("Get")) } else { change(None, None) }
    });
    assert_eq!(same.unwrap(), None);
    // The wrong kind is another shape too.
    assert_eq!(shape_list(TOOLS.as_bytes(), ListKind::Prompts, drop_all).unwrap(), None);
    assert!(matches!(shape_list(b"{\"result\":", ListKind::Tools, drop_all), Err(ShapeError::Invalid(_))));
}

#[test]
fn prompts_and_resources_lists() {
    let prompts = r#"{"jsonrpc":"2.0","id":"p","result":{"prompts":[{"name":"a","arguments":[]},{"name":"b"}]}}"#;
    let out = shape_list(prompts.as_bytes(), ListKind::Prompts, |i| {
        if i.name == Some("a") { ItemFate::Drop } else { ItemFate::Keep }
    })
    .unwrap()
    .unwrap();
    assert_eq!(text(&out), r#"{"jsonrpc":"2.0","id":"p","result":{"prompts":[{"name":"b"}]}}"#);

    let resources = r#"{"jsonrpc":"2.0","id":2,"result":{"resources":[{"uri":"file:///a","name":"a"}, {"uri":"file:///secret","name":"s"}]}}"#;
    let mut uris = Vec::new();
    let out = shape_list(resources.as_bytes(), ListKind::Resources, |i| {
        uris.push(i.uri.unwrap().to_owned());
        if i.uri == Some("file:///secret") { ItemFate::Drop } else { ItemFate::Keep }
    })
    .unwrap()
    .unwrap();
    assert_eq!(uris, ["file:///a", "file:///secret"]);
    assert_eq!(text(&out), r#"{"jsonrpc":"2.0","id":2,"result":{"resources":[{"uri":"file:///a","name":"a"}]}}"#);
}

#[test]
fn escaped_names_are_decoded_and_duplicates_refused() {
    let msg = r#"{"jsonrpc":"2.0","id":1,"result":{"t\u006fols":[{"n\u0061me":"se\u0063ret"}]}}"#;
    let mut names = Vec::new();
    let out = shape_list(msg.as_bytes(), ListKind::Tools, |i| {
        names.push(i.name.map(str::to_owned));
        ItemFate::Drop
    })
    .unwrap();
    assert_eq!(names, [Some("secret".to_owned())]);
    assert_eq!(text(&out.unwrap()), r#"{"jsonrpc":"2.0","id":1,"result":{"t\u006fols":[]}}"#);

    // Two `name`s could let a hidden tool pass under an allowed one: refused, not guessed.
    let twice = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"hidden","name":"ok"}]}}"#;
    assert_eq!(
        shape_list(twice.as_bytes(), ListKind::Tools, |_| ItemFate::Keep),
        Err(ShapeError::DuplicateMember("name".into()))
    );
    let two_lists = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"tools":[{"name":"x"}]}}"#;
    assert!(shape_list(two_lists.as_bytes(), ListKind::Tools, |_| ItemFate::Keep).is_err());
}

#[test]
fn description_is_appended_when_absent() {
    let msg = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"a\" , \"n\":1.0 }, {}]}}";
    let out = shape_list(msg.as_bytes(), ListKind::Tools, |_| change(Some("b"), Some("d"))).unwrap().unwrap();
    assert_eq!(
        text(&out),
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"b\" , \"n\":1.0,\"description\":\"d\" }, {\"name\":\"b\",\"description\":\"d\"}]}}"
    );
}

#[test]
fn call_name_is_replaced_in_place() {
    let msg = "{\"id\": 12345678901234567890, \"params\" : {\"arguments\":{\"x\":1.50,\"name\":\"inner\"},\n \"name\" : \"web_fetch\" ,\"_meta\":{}}, \"method\":\"tools/call\",\"jsonrpc\":\"2.0\"}";
    let out = with_call_name(msg.as_bytes(), "fetch").unwrap();
    assert_eq!(text(&out), msg.replace("\"web_fetch\"", "\"fetch\""));
    let out = with_call_name(msg.as_bytes(), "a\"b\\c\u{1}").unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["params"]["name"], "a\"b\\c\u{1}");
    assert_eq!(v["params"]["arguments"]["name"], "inner");

    for bad in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1]}"#,
    ] {
        assert_eq!(with_call_name(bad.as_bytes(), "x"), Err(ShapeError::NoToolName), "{bad}");
    }
    let twice = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#;
    assert_eq!(with_call_name(twice.as_bytes(), "x"), Err(ShapeError::DuplicateMember("name".into())));
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    const BLANKS: [&str; 4] = ["", " ", "\n  ", "\t"];
    const NUMBERS: [&str; 6] = ["1.50", "12345678901234567890123", "-0", "1e5", "0.0", "7"];
    const NAMES: [&str; 5] = ["a", "b\\\"q", "\\u00e9t\\u00E9", "long_name_x", "s p a c e"];

    /// One tool object: its text and the members it has, in a random order with random blanks.
    fn item() -> impl Strategy<Value = String> {
        (
            0..NAMES.len(),
            proptest::option::of(0..NAMES.len()),
            0..NUMBERS.len(),
            proptest::collection::vec(0..BLANKS.len(), 8),
            any::<bool>(),
        )
            .prop_map(|(n, d, num, b, flip)| {
                let w = |i: usize| BLANKS[b[i]];
                let mut members = vec![
                    format!("{}\"name\"{}:{}\"{}\"", w(0), w(1), w(2), NAMES[n]),
                    format!("{}\"x\":{}{{\"k\":[{}{}]}}", w(3), w(4), NUMBERS[num], w(5)),
                ];
                if let Some(d) = d {
                    members.push(format!("\"description\":\"{}\"", NAMES[d]));
                }
                if flip {
                    members.reverse();
                }
                format!("{{{}{}}}", members.join(","), w(6))
            })
    }

    fn fate() -> impl Strategy<Value = ItemFate> {
        prop_oneof![
            Just(ItemFate::Keep),
            Just(ItemFate::Drop),
            (proptest::option::of("[a-z\"\\\\]{1,6}"), proptest::option::of("[ -~]{0,8}"))
                .prop_map(|(name, description)| ItemFate::Change { name, description }),
        ]
    }

    proptest! {
        #[test]
        fn shaping_keeps_bytes_and_meaning(
            items in proptest::collection::vec(item(), 0..6),
            fates in proptest::collection::vec(fate(), 6),
            seps in proptest::collection::vec(0..BLANKS.len(), 8),
        ) {
            let sep = |i: usize| BLANKS[seps[i % seps.len()]];
            let list = format!("[{}{}{}]", sep(0), items.join(&format!("{},{}", sep(1), sep(2))), sep(3));
            let prefix = format!("{{\"jsonrpc\":\"2.0\",{}\"result\":{{\"n\":1.50,\"tools\":", sep(4));
            let suffix = format!(",\"z\":12345678901234567890123}},\"id\":{}9}}", sep(5));
            let msg = format!("{prefix}{list}{suffix}");

            let mut k = 0;
            let out = shape_list(msg.as_bytes(), ListKind::Tools, |_| { k += 1; fates[k - 1].clone() }).unwrap();
            let used = &fates[..items.len()];
            if used.iter().all(|f| *f == ItemFate::Keep) {
                prop_assert!(out.is_none());
                return Ok(());
            }
            let Some(out) = out else {
                // Only when no item was dropped and every change restated what the item had.
                for (i, f) in used.iter().enumerate() {
                    prop_assert!(*f != ItemFate::Drop);
                    if let ItemFate::Change { name, description } = f {
                        let mut want: Value = serde_json::from_str(&items[i]).unwrap();
                        if let Some(n) = name { want["name"] = json!(n); }
                        if let Some(d) = description { want["description"] = json!(d); }
                        prop_assert_eq!(want, serde_json::from_str::<Value>(&items[i]).unwrap());
                    }
                }
                return Ok(());
            };
            let out = String::from_utf8(out.to_vec()).unwrap();
            prop_assert!(out.starts_with(&prefix));
            prop_assert!(out.ends_with(&suffix));
            let new_list = &out[prefix.len()..out.len() - suffix.len()];
            let raws: Vec<&serde_json::value::RawValue> = serde_json::from_str(new_list).unwrap();
            let kept: Vec<(usize, &ItemFate)> = used.iter().enumerate().filter(|(_, f)| **f != ItemFate::Drop).collect();
            prop_assert_eq!(raws.len(), kept.len());
            for (raw, (i, f)) in raws.iter().zip(kept) {
                match f {
                    ItemFate::Keep => prop_assert_eq!(raw.get(), items[i].as_str()),
                    ItemFate::Change { name, description } => {
                        let mut want: Value = serde_json::from_str(&items[i]).unwrap();
                        if let Some(n) = name { want["name"] = json!(n); }
                        if let Some(d) = description { want["description"] = json!(d); }
                        let got: Value = serde_json::from_str(raw.get()).unwrap();
                        prop_assert_eq!(got, want);
                        // The untouched member keeps its spelling.
                        let x = &items[i][items[i].find("\"x\"").unwrap()..];
                        let x = &x[..x.find('}').unwrap() + 1];
                        prop_assert!(raw.get().contains(x));
                    }
                    ItemFate::Drop => unreachable!(),
                }
            }
        }

        #[test]
        fn call_name_splice_keeps_the_rest(name in "[ -~]{0,12}", blank in 0..BLANKS.len()) {
            let w = BLANKS[blank];
            let msg = format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{{\"arguments\":{{\"v\":1.50}},{w}\"name\"{w}:{w}\"old\"{w}}}}}");
            let out = with_call_name(msg.as_bytes(), &name).unwrap();
            let encoded = serde_json::to_string(&name).unwrap();
            prop_assert_eq!(String::from_utf8(out.to_vec()).unwrap(), msg.replace("\"old\"", &encoded));
        }
    }
}
