//! Tests of the YAML reader: scalars, marks, merge keys, budgets, errors.

use super::*;

fn p(src: &str) -> Result<Node, Diag> {
    parse(src, Path::new("t.yaml"))
}

#[test]
fn scalars_follow_the_core_schema() {
    let n = p("a: 1\nb: '1'\nc: true\nd: yes\ne: ~\nf: 1.5\ng: 0x10\nh: 1.0.0\ni: 0440\nj: 0\n")
        .unwrap();
    assert_eq!(n.get("i").unwrap().value, Value::Int(0o440));
    assert_eq!(n.get("j").unwrap().value, Value::Int(0));
    assert_eq!(n.get("a").unwrap().value, Value::Int(1));
    assert_eq!(n.get("b").unwrap().value, Value::Str("1".into()));
    assert_eq!(n.get("c").unwrap().value, Value::Bool(true));
    assert_eq!(n.get("d").unwrap().value, Value::Str("yes".into()));
    assert_eq!(n.get("e").unwrap().value, Value::Null);
    assert_eq!(n.get("f").unwrap().value, Value::Float(1.5));
    assert_eq!(n.get("g").unwrap().value, Value::Int(16));
    assert_eq!(n.get("h").unwrap().value, Value::Str("1.0.0".into()));
}

#[test]
fn marks_are_one_based() {
    let n = p("a:\n  b: x\n").unwrap();
    assert_eq!(n.lookup(&["a", "b"]).unwrap().mark, Mark::new(2, 6));
}

#[test]
fn merge_keys_explicit_wins_first_source_wins() {
    let n = p("x: &x {a: 1, b: 1}\ny: &y {b: 2, c: 2}\nz:\n  <<: [*x, *y]\n  a: 0\n").unwrap();
    let z = n.get("z").unwrap();
    assert_eq!(z.get("a").unwrap().value, Value::Int(0));
    assert_eq!(z.get("b").unwrap().value, Value::Int(1));
    assert_eq!(z.get("c").unwrap().value, Value::Int(2));
}

#[test]
fn duplicate_keys_are_errors() {
    let e = p("a: 1\nb: 2\na: 3\n").unwrap_err();
    assert_eq!(e.mark.line, 3);
    assert!(
        e.message
            .contains("duplicate key `a` (first defined at line 1)"),
        "{e}"
    );
}

#[test]
fn alias_bomb_is_refused_quickly() {
    let mut src = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
    for i in 0..9u8 {
        let (prev, cur) = ((b'a' + i) as char, (b'b' + i) as char);
        src.push_str(&format!("{cur}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
    }
    // Stopped by the node budget (not by time): the message names it.
    let e = p(&src).unwrap_err();
    assert!(
        e.message
            .contains("aliases expand to more than 1000000 nodes"),
        "{e}"
    );
}

#[test]
fn alias_bomb_in_bytes_is_refused() {
    // One 64 KiB scalar aliased 100,000 times: 6.4 GB of text, 100,001 nodes.
    let mut src = format!("x-big: &big \"{}\"\nx-bomb:\n", "a".repeat(64 << 10));
    for _ in 0..100_000 {
        src.push_str("  - *big\n");
    }
    let e = p(&src).unwrap_err();
    assert!(e.message.contains("more than 33554432 bytes"), "{e}");
    // The anchored scalar and 510 aliases fit in 32 MiB; the 511th does not.
    assert_eq!(e.key, "x-bomb[510]", "{e}");
    assert_eq!(e.mark.line, 3 + 510, "{e}");
}

#[test]
fn deep_nesting_is_refused_at_its_line() {
    for src in [
        "[".repeat(100_000),
        "{a: ".repeat(100_000),
        "- ".repeat(100_000) + "x",
        (0..100).map(|i| format!("{}k:\n", " ".repeat(i))).collect(),
    ] {
        let e = p(&src).unwrap_err();
        assert!(e.message.contains("nested"), "{e}");
        assert!(e.mark.line >= 1, "{e}");
    }
    // Sixty-four levels are fine.
    let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
    assert!(p(&ok).is_ok());
    // An alias does not nest a deep anchor deeper than the limit.
    let half = "[".repeat(40) + &"]".repeat(40);
    let e = p(&format!(
        "a: &a {half}\nb: {}*a{}\n",
        "[".repeat(30),
        "]".repeat(30)
    ))
    .unwrap_err();
    assert!(e.message.contains("nested"), "{e}");
    assert_eq!(e.mark.line, 2, "{e}");
}

#[test]
fn a_huge_document_is_refused_before_parsing() {
    let src = format!("a: 1\n{}", "#".repeat(MAX_YAML_BYTES));
    let e = p(&src).unwrap_err();
    assert_eq!(e.mark.line, 1, "{e}");
    assert!(e.message.contains("4 MiB"), "{e}");
}

#[test]
fn unterminated_quote_names_its_opening_line() {
    let e = p("services:\n  a:\n    image: \"nginx\n    x: 1\n    y: 2\n").unwrap_err();
    assert_eq!(e.mark.line, 3, "{e}");
}

#[test]
fn several_documents_are_refused() {
    assert!(
        p("a: 1\n---\nb: 2\n")
            .unwrap_err()
            .message
            .contains("more than one")
    );
}

#[test]
fn empty_document_is_null() {
    assert!(p("").unwrap().is_null());
    assert!(p("# only a comment\n").unwrap().is_null());
}

#[test]
fn serde_errors_carry_place() {
    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // the fields are only read through Debug
    struct T {
        a: u16,
        b: Option<Vec<String>>,
    }
    let n = p("a: 1\nb: [x, y]\n").unwrap();
    let t: T = from_node(&n).unwrap();
    assert_eq!(t.a, 1);
    let n = p("a: 1\nb:\n  - x\n  - {k: v}\n").unwrap();
    let e = from_node::<T>(&n).unwrap_err();
    assert_eq!((e.mark.line, e.path.as_str()), (4, "b[1]"));
    let n = p("a: 1\nc: 2\n").unwrap();
    let e = from_node::<T>(&n).unwrap_err();
    assert_eq!(e.mark.line, 2, "{e:?}");
    assert!(e.message.contains("unknown field `c`"));
}
