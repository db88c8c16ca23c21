//! Property test of the expression parser: any text, and any soup of the
//! tokens expressions are made of, parses or is refused with an error — it
//! never panics, overflows the stack or hangs. Cases: `PROPTEST_CASES`
//! (default 256; `tools/fuzz.sh` runs it for minutes).

use proptest::prelude::*;

use super::parse::parse_with_types;

/// Pieces of C, C++ and Rust expressions, valid and not.
const PIECES: &[&str] = &[
    "x",
    "o",
    "p",
    "_",
    "T",
    "Foo",
    "std",
    "::",
    "a_b",
    "len",
    "sizeof",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ".",
    "->",
    "*",
    "&",
    "&&",
    "||",
    "!",
    "~",
    "-",
    "+",
    "/",
    "%",
    "<<",
    ">>",
    "<",
    ">",
    "<=",
    ">=",
    "==",
    "!=",
    "^",
    "|",
    "?",
    ":",
    ",",
    "=",
    "0",
    "1",
    "42",
    "0x",
    "0xffffffffffffffff",
    "18446744073709551616",
    "0b101",
    "0o17",
    "07",
    "1e308",
    "1e999",
    ".5",
    "3.",
    "1u",
    "2ULL",
    "'a'",
    "'\\n'",
    "'\\x41'",
    "'",
    "\"",
    "\"s\"",
    "\"\\u{1F600}\"",
    "\\",
    "true",
    "false",
    "as",
    "u8",
    "i64",
    "usize",
    "int",
    "unsigned",
    "long",
    "char",
    "const",
    "struct",
    "*const",
    "&mut",
    " ",
    "\t",
    "\n",
    "é",
    "\u{0}",
    "€",
    "#",
    "@",
    "$",
    "`",
];

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..64).prop_map(|pieces| pieces.concat())
}

fn nested() -> impl Strategy<Value = String> {
    (
        0usize..2000,
        prop::sample::select(&["(", "*", "-", "!", "&", "["][..]),
    )
        .prop_map(|(depth, open)| {
            let close = match open {
                "(" => ")",
                "[" => "]",
                _ => "",
            };
            format!("{}x{}", open.repeat(depth), close.repeat(depth))
        })
}

proptest! {
    #[test]
    fn the_parser_never_panics(source in prop_oneof![
        any::<String>(),
        soup(),
        nested(),
        "[ -~]{0,200}",
    ]) {
        // Upper-case names are types, so casts are exercised too.
        let mut is_type = |name: &str| name.chars().next().is_some_and(char::is_uppercase);
        let _ = parse_with_types(&source, &mut is_type);
    }
}

/// Found by the property above: unary `+` and `&&` chains recursed without
/// counting their nesting.
#[test]
fn long_prefix_chains_are_refused_not_overflowed() {
    for source in [
        format!("{}1{}", "(".repeat(127), ")".repeat(127)),
        format!("{}x", "+ ".repeat(100_000)),
        format!("{}x", "&&".repeat(100_000)),
        format!("{}x", "- ".repeat(100_000)),
    ] {
        let err = parse_with_types(&source, &mut |_| false).expect_err("too deep");
        assert!(err.to_string().contains("nested too deeply"), "{err}");
    }
}
