//! The decision expression language, including hostile input.

use ferrojob::workflow::expr::{Expr, Value, MAX_DEPTH, MAX_EXPR_LEN};
use ferrojob::workflow::ExprError;
use proptest::prelude::*;
use serde_json::{json, Map, Value as Json};

fn ctx() -> Map<String, Json> {
    match json!({"go": "left", "tries": 2, "ok": true, "ratio": 0.5, "nothing": null, "list": [1], "3": 42})
    {
        Json::Object(m) => m,
        _ => unreachable!(),
    }
}

fn eval(src: &str) -> Result<bool, ExprError> {
    Expr::parse(src)?.eval_bool(&ctx())
}

#[test]
fn evaluates() {
    let yes = [
        r#"go == "left" && tries < 3"#,
        r#"go != "right""#,
        "tries >= 2 && tries <= 2 && tries > 1.5",
        "ok",
        "!(!ok)",
        "ok || missing",
        "!ok || tries == 2",
        "ratio < 1e0 && -ratio == -0.5",
        r#"ctx["3"] == 42"#,
        r#""a" < "b""#,
        "true == ok",
        "(((tries == 2)))",
        "ok && ok && ok && ok || false",
        "\"\\\"q\\\"\" == \"\\\"q\\\"\"",
    ];
    for src in yes {
        assert_eq!(eval(src), Ok(true), "{src}");
    }
    let no = [
        r#"go == "right""#,
        "tries > 2",
        "false && missing",
        "!ok",
        "ok && tries == 3",
    ];
    for src in no {
        assert_eq!(eval(src), Ok(false), "{src}");
    }
}

#[test]
fn errors_are_typed() {
    assert_eq!(
        eval("missing"),
        Err(ExprError::UnknownIdentifier("missing".into()))
    );
    assert_eq!(
        eval("ok && missing"),
        Err(ExprError::UnknownIdentifier("missing".into()))
    );
    assert_eq!(
        eval("nothing == 1"),
        Err(ExprError::UnsupportedValue("nothing".into()))
    );
    assert_eq!(
        eval("list == 1"),
        Err(ExprError::UnsupportedValue("list".into()))
    );
    assert!(matches!(
        eval("go < 3"),
        Err(ExprError::TypeMismatch { .. })
    ));
    assert!(matches!(
        eval("ok < true"),
        Err(ExprError::TypeMismatch { .. })
    ));
    assert!(matches!(
        eval("tries && ok"),
        Err(ExprError::TypeMismatch { .. })
    ));
    assert!(matches!(eval("!go"), Err(ExprError::TypeMismatch { .. })));
    assert!(matches!(eval("-ok"), Err(ExprError::TypeMismatch { .. })));
    assert_eq!(eval("tries"), Err(ExprError::NotBoolean("number")));
    assert_eq!(eval("go"), Err(ExprError::NotBoolean("string")));
    for bad in [
        "",
        "a ==",
        "(a",
        "a)",
        "a = 1",
        "a += 1",
        "f(x)",
        "1 < 2 < 3",
        "\"open",
        "a; b",
        "1..2",
        "1e999",
        "ctx[3]",
        "ctx",
        "ctx[\"a\"",
        "'single'",
        "a & b",
        "a | b",
        "\"\\x\"",
        "é",
    ] {
        match Expr::parse(bad) {
            Err(ExprError::Syntax { .. }) => {}
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn hostile_input_is_bounded() {
    let long = format!("ok{}", " ".repeat(MAX_EXPR_LEN));
    assert!(matches!(Expr::parse(&long), Err(ExprError::TooLong { .. })));
    let mb = "(".repeat(1 << 20);
    assert!(matches!(Expr::parse(&mb), Err(ExprError::TooLong { .. })));
    let deep = format!(
        "{}ok{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    assert_eq!(
        Expr::parse(&deep),
        Err(ExprError::TooDeep { max: MAX_DEPTH })
    );
    let ok_deep = format!(
        "{}ok{}",
        "(".repeat(MAX_DEPTH - 1),
        ")".repeat(MAX_DEPTH - 1)
    );
    assert_eq!(Expr::parse(&ok_deep).unwrap().eval_bool(&ctx()), Ok(true));
    let nots = format!("{}ok", "!".repeat(500));
    assert_eq!(
        Expr::parse(&nots),
        Err(ExprError::TooDeep { max: MAX_DEPTH })
    );
    let negs = format!("{}1 == 1", "-".repeat(500));
    assert_eq!(
        Expr::parse(&negs),
        Err(ExprError::TooDeep { max: MAX_DEPTH })
    );
    // A long flat chain is fine (n-ary, not deep).
    let chain = vec!["ok"; 250].join("&&");
    assert!(chain.len() <= MAX_EXPR_LEN);
    assert_eq!(eval(&chain), Ok(true));
    // Unclosed deep parentheses just under the length limit.
    let open = "(".repeat(MAX_EXPR_LEN);
    assert!(Expr::parse(&open).is_err());
}

#[test]
fn literal_values() {
    assert_eq!(
        Expr::parse("1.5").unwrap().eval(&Map::new()),
        Ok(Value::Num(1.5))
    );
    assert_eq!(
        Expr::parse("\"é\"").unwrap().eval(&Map::new()),
        Ok(Value::Str("é".into()))
    );
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_text(src in ".{0,300}") {
        if let Ok(e) = Expr::parse(&src) {
            let _ = e.eval(&ctx());
        }
    }

    #[test]
    fn never_panics_on_expression_like_text(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("("), Just(")"), Just("!"), Just("-"), Just("&&"), Just("||"), Just("=="),
                Just("<"), Just(">="), Just("ok"), Just("go"), Just("tries"), Just("\"left\""),
                Just("3"), Just("true"), Just("missing"), Just("ctx[\"3\"]"), Just(" "),
            ],
            0..200,
        )
    ) {
        let src: String = parts.concat();
        if let Ok(e) = Expr::parse(&src) {
            let _ = e.eval_bool(&ctx());
        }
    }
}
