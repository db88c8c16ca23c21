//! Lexer and parser for the expression language of TOOLS.md: C- and
//! Rust-flavoured, side-effect free. It produces a syntax tree with 1-based
//! columns on every node, so later type errors can point at the right place.
//! It never resolves names or looks at debug info, and it refuses calls and
//! assignments here, before anything could be evaluated.

use super::EvalError;

/// A parsed expression node and the column (1-based, in characters) where it
/// starts.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Expr {
    pub kind: ExprKind,
    pub column: usize,
}

/// What an expression node is.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ExprKind {
    /// A name or a qualified path (`x`, `Cache::count`, `::global`).
    Name {
        segments: Vec<String>,
        absolute: bool,
    },
    /// An integer literal with its optional type suffix (`u8`, `ul`, …).
    Int { value: u128, suffix: Option<String> },
    /// A floating-point literal; `single` for an `f`/`f32` suffix.
    Float { value: f64, single: bool },
    /// A character literal, as its code point.
    Char(u32),
    /// A string literal's bytes (UTF-8).
    Str(Vec<u8>),
    /// `true` / `false`.
    Bool(bool),
    /// `base.field` (also `base.0` for tuple fields).
    Field { base: Box<Expr>, field: String },
    /// `base->field`.
    Arrow { base: Box<Expr>, field: String },
    /// `base[index]`.
    Index { base: Box<Expr>, index: Box<Expr> },
    /// A unary operator.
    Unary { op: UnaryOp, operand: Box<Expr> },
    /// A binary operator.
    Binary {
        op: BinaryOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// `(type) operand` or `operand as type`.
    Cast {
        target: TypeSyntax,
        operand: Box<Expr>,
    },
    /// `len(x)` or `x.len()`.
    Len(Box<Expr>),
    /// `sizeof(x)` / `sizeof(type)`.
    SizeOf(SizeOfOperand),
}

/// What `sizeof` measures.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum SizeOfOperand {
    /// The static type of an expression.
    Expr(Box<Expr>),
    /// A type named in the expression.
    Type(TypeSyntax),
}

/// A type named in a cast: base-type words, or a struct/union/enum tag, plus
/// pointer levels (`unsigned long`, `char *`, `*const u8`, `struct node *`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TypeSyntax {
    /// The words of the type, normalised with single spaces.
    pub base: String,
    /// How many `*` follow (or `*const`/`*mut` precede, in Rust).
    pub pointer_depth: u32,
    /// Column of the first word.
    pub column: usize,
}

/// Unary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UnaryOp {
    /// `-x`
    Neg,
    /// `!x`: logical not on booleans and C scalars, bitwise not on Rust integers.
    Not,
    /// `~x`: bitwise not.
    BitNot,
    /// `*x`
    Deref,
    /// `&x`
    AddrOf,
}

/// Binary operators, C precedence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinaryOp {
    Mul,
    Div,
    Rem,
    Add,
    Sub,
    Shl,
    Shr,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    BitAnd,
    BitXor,
    BitOr,
    And,
    Or,
}

impl BinaryOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Shl => "<<",
            BinaryOp::Shr => ">>",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::BitAnd => "&",
            BinaryOp::BitXor => "^",
            BinaryOp::BitOr => "|",
            BinaryOp::And => "&&",
            BinaryOp::Or => "||",
        }
    }
}

/// Words that start or continue a C base type in a cast.
const C_TYPE_WORDS: &[&str] = &[
    "void", "char", "short", "int", "long", "unsigned", "signed", "float", "double", "_Bool",
    "bool", "const", "volatile", "struct", "union", "enum", "class",
];

/// Single-word type names accepted in casts besides [`C_TYPE_WORDS`].
pub(crate) const NAMED_BASE_TYPES: &[&str] = &[
    "i8",
    "i16",
    "i32",
    "i64",
    "i128",
    "isize",
    "u8",
    "u16",
    "u32",
    "u64",
    "u128",
    "usize",
    "f32",
    "f64",
    "int8_t",
    "int16_t",
    "int32_t",
    "int64_t",
    "uint8_t",
    "uint16_t",
    "uint32_t",
    "uint64_t",
    "size_t",
    "ssize_t",
    "intptr_t",
    "uintptr_t",
    "ptrdiff_t",
    "wchar_t",
    "char16_t",
    "char32_t",
];

/// Prefix operators and parentheses (two each) deep: 32 parentheses is more
/// than any real expression, and 256 overflowed a 2 MiB thread stack in a
/// debug build at 127 parentheses (found by `parse_fuzz`).
const MAX_NESTING: usize = 64;

/// Parses one expression; the whole input must be consumed. A
/// parenthesized name is a cast only where nothing else could be meant
/// (`(sds)p`, `(T *)p`); see [`parse_with_types`].
#[cfg(test)]
pub(crate) fn parse(source: &str) -> Result<Expr, EvalError> {
    parse_with_types(source, &mut |_| false)
}

/// Parses one expression. `is_type` tells whether a (possibly qualified)
/// name names a type rather than a value: C's grammar needs it to read
/// `(T)*p` or `(T)-1` as casts rather than as `T * p` or `T - 1`.
pub(crate) fn parse_with_types(
    source: &str,
    is_type: &mut dyn FnMut(&str) -> bool,
) -> Result<Expr, EvalError> {
    let tokens = lex(source)?;
    let mut parser = Parser {
        tokens,
        position: 0,
        nesting: 0,
        is_type,
    };
    let expr = parser.expression()?;
    let next = parser.peek();
    if next.kind != TokenKind::End {
        return Err(syntax(
            next.column,
            format!(
                "unexpected {} after a complete expression",
                next.kind.describe()
            ),
        ));
    }
    Ok(expr)
}

fn syntax(column: usize, message: impl Into<String>) -> EvalError {
    EvalError::Syntax {
        column,
        message: message.into(),
    }
}

fn refused(column: usize, reason: impl Into<String>) -> EvalError {
    EvalError::Refused {
        column,
        reason: reason.into(),
    }
}

const ASSIGNMENT_REFUSED: &str =
    "assignment is not allowed: liveprobe never writes target memory (use == to compare)";

#[derive(Clone, Debug, PartialEq)]
enum TokenKind {
    Ident(String),
    Int { value: u128, suffix: Option<String> },
    Float { value: f64, single: bool },
    Char(u32),
    Str(Vec<u8>),
    Punct(&'static str),
    End,
}

impl TokenKind {
    fn describe(&self) -> String {
        match self {
            TokenKind::Ident(name) => format!("name `{name}`"),
            TokenKind::Int { .. } | TokenKind::Float { .. } => "number".to_string(),
            TokenKind::Char(_) => "character literal".to_string(),
            TokenKind::Str(_) => "string literal".to_string(),
            TokenKind::Punct(p) => format!("`{p}`"),
            TokenKind::End => "end of expression".to_string(),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    kind: TokenKind,
    column: usize,
}

/// Punctuation, longest first so that maximal munch works.
const PUNCTUATION: &[&str] = &[
    "<<=", ">>=", "::", "->", "<<", ">>", "<=", ">=", "==", "!=", "&&", "||", "++", "--", "+=",
    "-=", "*=", "/=", "%=", "&=", "|=", "^=", "(", ")", "[", "]", ".", ",", "*", "&", "-", "+",
    "!", "~", "/", "%", "<", ">", "^", "|", "=", "?", ":",
];

fn lex(source: &str) -> Result<Vec<Token>, EvalError> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token {
                kind: TokenKind::Ident(chars[start..i].iter().collect()),
                column,
            });
            continue;
        }
        if c.is_ascii_digit() {
            let after_dot = matches!(
                tokens.last(),
                Some(Token {
                    kind: TokenKind::Punct("."),
                    ..
                })
            );
            let (kind, next) = lex_number(&chars, i, after_dot)?;
            tokens.push(Token { kind, column });
            i = next;
            continue;
        }
        if c == '\'' {
            let (value, next) = lex_char(&chars, i)?;
            tokens.push(Token {
                kind: TokenKind::Char(value),
                column,
            });
            i = next;
            continue;
        }
        if c == '"' {
            let (bytes, next) = lex_string(&chars, i)?;
            tokens.push(Token {
                kind: TokenKind::Str(bytes),
                column,
            });
            i = next;
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 3)].iter().collect();
        match PUNCTUATION.iter().find(|p| rest.starts_with(**p)) {
            Some(p) => {
                tokens.push(Token {
                    kind: TokenKind::Punct(p),
                    column,
                });
                i += p.len();
            }
            None => return Err(syntax(column, format!("unexpected character `{c}`"))),
        }
    }
    tokens.push(Token {
        kind: TokenKind::End,
        column: chars.len() + 1,
    });
    Ok(tokens)
}

fn lex_number(
    chars: &[char],
    start: usize,
    after_dot: bool,
) -> Result<(TokenKind, usize), EvalError> {
    let column = start + 1;
    let mut i = start;
    let (radix, digits_start) = match (chars.get(i), chars.get(i + 1)) {
        (Some('0'), Some('x' | 'X')) => (16, i + 2),
        (Some('0'), Some('b' | 'B')) => (2, i + 2),
        (Some('0'), Some('o' | 'O')) => (8, i + 2),
        _ => (10, i),
    };
    i = digits_start;
    let mut digits = String::new();
    while let Some(&c) = chars.get(i) {
        if c == '_' {
            i += 1;
        } else if c.is_digit(radix) {
            digits.push(c);
            i += 1;
        } else {
            break;
        }
    }
    let mut is_float = false;
    // `t.0.1` is two tuple-field accesses, not the float 0.1.
    if radix == 10 && !after_dot {
        if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
            is_float = true;
            digits.push('.');
            i += 1;
            while let Some(&c) = chars.get(i) {
                if c.is_ascii_digit() {
                    digits.push(c);
                } else if c != '_' {
                    break;
                }
                i += 1;
            }
        }
        if matches!(chars.get(i), Some('e' | 'E')) {
            let sign = matches!(chars.get(i + 1), Some('+' | '-'));
            let exp_start = if sign { i + 2 } else { i + 1 };
            if chars.get(exp_start).is_some_and(|c| c.is_ascii_digit()) {
                is_float = true;
                digits.push('e');
                if sign {
                    digits.push(chars[i + 1]);
                }
                i = exp_start;
                while let Some(&c) = chars.get(i) {
                    if !c.is_ascii_digit() {
                        break;
                    }
                    digits.push(c);
                    i += 1;
                }
            }
        }
    }
    if digits.is_empty() {
        return Err(syntax(column, "a number prefix needs digits after it"));
    }
    let suffix_start = i;
    while let Some(&c) = chars.get(i) {
        if c.is_ascii_alphanumeric() || c == '_' {
            i += 1;
        } else {
            break;
        }
    }
    let suffix: String = chars[suffix_start..i]
        .iter()
        .filter(|c| **c != '_')
        .collect();
    let suffix_lower = suffix.to_ascii_lowercase();
    let float_suffix = matches!(suffix_lower.as_str(), "f" | "f32" | "f64");
    if is_float || (radix == 10 && matches!(suffix_lower.as_str(), "f32" | "f64")) {
        let value: f64 = digits
            .parse()
            .map_err(|_| syntax(column, format!("`{digits}` is not a valid number")))?;
        if !suffix.is_empty() && !float_suffix && suffix_lower != "l" {
            return Err(syntax(
                suffix_start + 1,
                format!("unknown suffix `{suffix}` on a floating-point number"),
            ));
        }
        return Ok((
            TokenKind::Float {
                value,
                single: matches!(suffix_lower.as_str(), "f" | "f32"),
            },
            i,
        ));
    }
    // A leading 0 followed by more digits is C octal (`0755`).
    let (radix, digits) = if radix == 10 && digits.len() > 1 && digits.starts_with('0') {
        if let Some(bad) = digits.chars().find(|c| !c.is_digit(8)) {
            return Err(syntax(
                column,
                format!("`{bad}` is not an octal digit (a leading 0 means octal)"),
            ));
        }
        (8, digits[1..].to_string())
    } else {
        (radix, digits)
    };
    let value = u128::from_str_radix(&digits, radix)
        .map_err(|_| syntax(column, "integer literal is too large"))?;
    let suffix = if suffix.is_empty() {
        None
    } else if is_int_suffix(&suffix_lower) {
        Some(suffix_lower)
    } else {
        return Err(syntax(
            suffix_start + 1,
            format!("unknown suffix `{suffix}` on an integer"),
        ));
    };
    Ok((TokenKind::Int { value, suffix }, i))
}

fn is_int_suffix(suffix: &str) -> bool {
    matches!(
        suffix,
        "u" | "l"
            | "ul"
            | "lu"
            | "ll"
            | "ull"
            | "llu"
            | "i8"
            | "i16"
            | "i32"
            | "i64"
            | "i128"
            | "isize"
            | "u8"
            | "u16"
            | "u32"
            | "u64"
            | "u128"
            | "usize"
    )
}

/// Decodes one escape after a backslash at `chars[i]`; returns the code point
/// and the index after it.
fn lex_escape(chars: &[char], i: usize) -> Result<(u32, usize), EvalError> {
    let column = i + 1;
    let Some(&c) = chars.get(i + 1) else {
        return Err(syntax(column, "unfinished escape sequence"));
    };
    let simple = match c {
        'n' => Some(b'\n' as u32),
        't' => Some(b'\t' as u32),
        'r' => Some(b'\r' as u32),
        '0' if !chars.get(i + 2).is_some_and(|d| d.is_digit(8)) => Some(0),
        '\\' => Some(b'\\' as u32),
        '\'' => Some(b'\'' as u32),
        '"' => Some(b'"' as u32),
        'a' => Some(7),
        'b' => Some(8),
        'f' => Some(12),
        'v' => Some(11),
        'e' => Some(27),
        _ => None,
    };
    if let Some(value) = simple {
        return Ok((value, i + 2));
    }
    match c {
        'x' => {
            let mut j = i + 2;
            let mut value: u32 = 0;
            while let Some(d) = chars.get(j).and_then(|d| d.to_digit(16)) {
                value = value.saturating_mul(16).saturating_add(d);
                j += 1;
            }
            if j == i + 2 {
                return Err(syntax(column, "`\\x` needs hex digits"));
            }
            Ok((value, j))
        }
        'u' if chars.get(i + 2) == Some(&'{') => {
            let mut j = i + 3;
            let mut value: u32 = 0;
            while let Some(d) = chars.get(j).and_then(|d| d.to_digit(16)) {
                value = value.saturating_mul(16).saturating_add(d);
                j += 1;
            }
            if chars.get(j) != Some(&'}') {
                return Err(syntax(column, "`\\u{` needs hex digits and a closing `}`"));
            }
            Ok((value, j + 1))
        }
        d if d.is_digit(8) => {
            let mut j = i + 1;
            let mut value: u32 = 0;
            while j < i + 4 {
                match chars.get(j).and_then(|d| d.to_digit(8)) {
                    Some(d) => value = value * 8 + d,
                    None => break,
                }
                j += 1;
            }
            Ok((value, j))
        }
        other => Err(syntax(column, format!("unknown escape `\\{other}`"))),
    }
}

fn lex_char(chars: &[char], start: usize) -> Result<(u32, usize), EvalError> {
    let column = start + 1;
    let (value, next) = match chars.get(start + 1) {
        Some('\\') => lex_escape(chars, start + 1)?,
        Some('\'') | None => return Err(syntax(column, "empty character literal")),
        Some(&c) => (c as u32, start + 2),
    };
    if chars.get(next) != Some(&'\'') {
        return Err(syntax(
            column,
            "character literal needs a closing `'` (strings use double quotes)",
        ));
    }
    Ok((value, next + 1))
}

fn lex_string(chars: &[char], start: usize) -> Result<(Vec<u8>, usize), EvalError> {
    let mut bytes = Vec::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => return Err(syntax(start + 1, "string literal is not closed")),
            Some('"') => return Ok((bytes, i + 1)),
            Some('\\') => {
                let (value, next) = lex_escape(chars, i)?;
                match char::from_u32(value) {
                    Some(c) if value > 0xff || c.is_ascii() => {
                        let mut buffer = [0u8; 4];
                        bytes.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
                    }
                    _ => bytes.push(value as u8),
                }
                i = next;
            }
            Some(&c) => {
                let mut buffer = [0u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
                i += 1;
            }
        }
    }
}

struct Parser<'t> {
    tokens: Vec<Token>,
    position: usize,
    nesting: usize,
    /// Whether a name is a type (for casts to typedef and class names).
    is_type: &'t mut dyn FnMut(&str) -> bool,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        let last = self.tokens.len().saturating_sub(1);
        &self.tokens[self.position.min(last)]
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        let last = self.tokens.len().saturating_sub(1);
        &self.tokens[(self.position + ahead).min(last)]
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if self.position < self.tokens.len() {
            self.position += 1;
        }
        token
    }

    fn is_punct(&self, p: &str) -> bool {
        matches!(&self.peek().kind, TokenKind::Punct(q) if *q == p)
    }

    fn is_ident(&self, word: &str) -> bool {
        matches!(&self.peek().kind, TokenKind::Ident(name) if name == word)
    }

    fn expect_punct(&mut self, p: &str, context: &str) -> Result<Token, EvalError> {
        if self.is_punct(p) {
            return Ok(self.advance());
        }
        let token = self.peek();
        Err(syntax(
            token.column,
            format!("expected `{p}` {context}, found {}", token.kind.describe()),
        ))
    }

    fn enter(&mut self, column: usize) -> Result<(), EvalError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(syntax(column, "expression is nested too deeply"));
        }
        Ok(())
    }

    fn expression(&mut self) -> Result<Expr, EvalError> {
        let column = self.peek().column;
        self.enter(column)?;
        let expr = self.binary(0)?;
        self.nesting -= 1;
        if let TokenKind::Punct(p) = self.peek().kind {
            let column = self.peek().column;
            match p {
                "=" | "+=" | "-=" | "*=" | "/=" | "%=" | "&=" | "|=" | "^=" | "<<=" | ">>=" => {
                    return Err(refused(column, ASSIGNMENT_REFUSED));
                }
                "?" => {
                    return Err(syntax(
                        column,
                        "the conditional operator `?:` is not supported; use && and ||",
                    ));
                }
                _ => {}
            }
        }
        Ok(expr)
    }

    fn binary(&mut self, min_level: u8) -> Result<Expr, EvalError> {
        let mut lhs = self.cast_as()?;
        loop {
            let Some((op, level)) = self.binary_op() else {
                return Ok(lhs);
            };
            if level < min_level {
                return Ok(lhs);
            }
            let column = lhs.column;
            self.advance();
            let rhs = self.binary(level + 1)?;
            lhs = Expr {
                kind: ExprKind::Binary {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                },
                column,
            };
        }
    }

    fn binary_op(&self) -> Option<(BinaryOp, u8)> {
        let TokenKind::Punct(p) = self.peek().kind else {
            return None;
        };
        Some(match p {
            "||" => (BinaryOp::Or, 0),
            "&&" => (BinaryOp::And, 1),
            "|" => (BinaryOp::BitOr, 2),
            "^" => (BinaryOp::BitXor, 3),
            "&" => (BinaryOp::BitAnd, 4),
            "==" => (BinaryOp::Eq, 5),
            "!=" => (BinaryOp::Ne, 5),
            "<" => (BinaryOp::Lt, 6),
            "<=" => (BinaryOp::Le, 6),
            ">" => (BinaryOp::Gt, 6),
            ">=" => (BinaryOp::Ge, 6),
            "<<" => (BinaryOp::Shl, 7),
            ">>" => (BinaryOp::Shr, 7),
            "+" => (BinaryOp::Add, 8),
            "-" => (BinaryOp::Sub, 8),
            "*" => (BinaryOp::Mul, 9),
            "/" => (BinaryOp::Div, 9),
            "%" => (BinaryOp::Rem, 9),
            _ => return None,
        })
    }

    /// Rust `as` casts bind tighter than `*` and looser than unary operators.
    fn cast_as(&mut self) -> Result<Expr, EvalError> {
        let mut expr = self.unary()?;
        while self.is_ident("as") {
            let as_column = self.advance().column;
            let target = self.rust_type().ok_or_else(|| {
                syntax(
                    self.peek().column.max(as_column),
                    "expected a type after `as` (a base type like u64, or *const T)",
                )
            })?;
            let column = expr.column;
            expr = Expr {
                kind: ExprKind::Cast {
                    target,
                    operand: Box::new(expr),
                },
                column,
            };
        }
        Ok(expr)
    }

    fn rust_type(&mut self) -> Option<TypeSyntax> {
        let column = self.peek().column;
        let mut pointer_depth = 0;
        while self.is_punct("*") {
            self.advance();
            if self.is_ident("const") || self.is_ident("mut") {
                self.advance();
            }
            pointer_depth += 1;
        }
        let mut words = Vec::new();
        while let TokenKind::Ident(name) = &self.peek().kind {
            words.push(name.clone());
            self.advance();
            if self.is_punct("::") {
                self.advance();
                words.push("::".to_string());
            } else {
                break;
            }
        }
        if words.is_empty() {
            return None;
        }
        Some(TypeSyntax {
            base: words.concat(),
            pointer_depth,
            column,
        })
    }

    fn unary(&mut self) -> Result<Expr, EvalError> {
        let token = self.peek().clone();
        let op = match token.kind {
            TokenKind::Punct("-") => Some(UnaryOp::Neg),
            TokenKind::Punct("!") => Some(UnaryOp::Not),
            TokenKind::Punct("~") => Some(UnaryOp::BitNot),
            TokenKind::Punct("*") => Some(UnaryOp::Deref),
            TokenKind::Punct("&") => Some(UnaryOp::AddrOf),
            TokenKind::Punct("+") => {
                // Counted like every prefix: `+ + + … x` must not overflow the stack.
                self.enter(token.column)?;
                self.advance();
                let operand = self.unary();
                self.nesting -= 1;
                return operand;
            }
            TokenKind::Punct("&&") => {
                // `&&x` in Rust is a reference to a reference; the value is the same.
                self.enter(token.column)?;
                self.advance();
                let operand = self.unary()?;
                self.nesting -= 1;
                return Ok(Expr {
                    kind: ExprKind::Unary {
                        op: UnaryOp::AddrOf,
                        operand: Box::new(operand),
                    },
                    column: token.column,
                });
            }
            TokenKind::Punct("++") | TokenKind::Punct("--") => {
                return Err(refused(
                    token.column,
                    "increment and decrement are not allowed: liveprobe never writes target memory",
                ));
            }
            _ => None,
        };
        if let Some(op) = op {
            self.enter(token.column)?;
            self.advance();
            let operand = self.unary()?;
            self.nesting -= 1;
            return Ok(Expr {
                kind: ExprKind::Unary {
                    op,
                    operand: Box::new(operand),
                },
                column: token.column,
            });
        }
        if self.is_punct("(")
            && let Some(target) = self.try_c_cast_type(false)
        {
            let operand = self.unary()?;
            return Ok(Expr {
                kind: ExprKind::Cast {
                    target,
                    operand: Box::new(operand),
                },
                column: token.column,
            });
        }
        self.postfix()
    }

    /// Looks for `( type-words *... )` at the cursor; consumes it only when it
    /// is a cast. Type words are C base-type keywords, a tag and its name
    /// (`struct node`), a named base type (`u8`, `size_t`) or any
    /// (qualified) name (`sds`, `ns::Widget`), with `const`/`volatile`
    /// anywhere. A bare `(name)` is a cast when what follows cannot continue
    /// an expression (`(sds)p`), or when the debug info says `name` is a type
    /// and what follows could be either (`(T)*p`, `(T)-1`).
    fn try_c_cast_type(&mut self, in_sizeof: bool) -> Option<TypeSyntax> {
        let start = self.position;
        let column = self.peek_at(1).column;
        let mut words: Vec<String> = Vec::new();
        let mut i = 1;
        let mut tagged = false;
        let mut qualified = false;
        let mut named = false;
        loop {
            match &self.peek_at(i).kind {
                TokenKind::Ident(word) if matches!(word.as_str(), "const" | "volatile") => {
                    qualified = true;
                }
                TokenKind::Ident(word) if !named && C_TYPE_WORDS.contains(&word.as_str()) => {
                    tagged |= matches!(word.as_str(), "struct" | "union" | "enum" | "class");
                    words.push(word.clone());
                }
                TokenKind::Ident(word)
                    if words.is_empty() && NAMED_BASE_TYPES.contains(&word.as_str()) =>
                {
                    words.push(word.clone());
                    named = true;
                }
                TokenKind::Ident(word)
                    if (words.is_empty() && !named)
                        || (tagged
                            && words.last().is_some_and(|w| {
                                matches!(w.as_str(), "struct" | "union" | "enum" | "class")
                            })) =>
                {
                    // A (qualified) name: a typedef, class or tag name.
                    let mut path = word.clone();
                    while matches!(self.peek_at(i + 1).kind, TokenKind::Punct("::"))
                        && let TokenKind::Ident(next) = &self.peek_at(i + 2).kind
                    {
                        path.push_str("::");
                        path.push_str(next);
                        i += 2;
                    }
                    words.push(path);
                    named = true;
                }
                _ => break,
            }
            i += 1;
        }
        if words.is_empty() {
            return None;
        }
        let mut pointer_depth = 0;
        loop {
            match &self.peek_at(i).kind {
                TokenKind::Punct("*") => pointer_depth += 1,
                TokenKind::Ident(word) if matches!(word.as_str(), "const" | "volatile") => {}
                _ => break,
            }
            i += 1;
        }
        if !matches!(self.peek_at(i).kind, TokenKind::Punct(")")) {
            return None;
        }
        let keyword_type = words.iter().any(|w| C_TYPE_WORDS.contains(&w.as_str()))
            || NAMED_BASE_TYPES.contains(&words[0].as_str());
        if !keyword_type && pointer_depth == 0 && !qualified {
            // `(name)`: a parenthesized value unless the context says cast.
            let name = words[0].clone();
            let after = &self.peek_at(i + 1).kind;
            let cast = match after {
                _ if in_sizeof => (self.is_type)(&name),
                // Only a value can follow a cast here: `(sds)p`, `(T)42`.
                TokenKind::Ident(_)
                | TokenKind::Int { .. }
                | TokenKind::Float { .. }
                | TokenKind::Char(_)
                | TokenKind::Str(_)
                | TokenKind::Punct("!" | "~") => true,
                // `(T)*p`, `(T)-1`, `(T)&x`, `(T)(x)`: both readings parse.
                TokenKind::Punct("*" | "-" | "+" | "&" | "&&" | "(") => (self.is_type)(&name),
                _ => false,
            };
            if !cast {
                return None;
            }
        }
        self.position = start + i + 1;
        Some(TypeSyntax {
            base: words.join(" "),
            pointer_depth,
            column,
        })
    }

    fn postfix(&mut self) -> Result<Expr, EvalError> {
        let mut expr = self.primary()?;
        loop {
            let token = self.peek().clone();
            match token.kind {
                TokenKind::Punct(".") => {
                    self.advance();
                    let field = self.field_name("`.`")?;
                    if field == "len"
                        && self.is_punct("(")
                        && matches!(self.peek_at(1).kind, TokenKind::Punct(")"))
                    {
                        self.advance();
                        self.advance();
                        expr = Expr {
                            column: expr.column,
                            kind: ExprKind::Len(Box::new(expr)),
                        };
                        continue;
                    }
                    expr = Expr {
                        column: expr.column,
                        kind: ExprKind::Field {
                            base: Box::new(expr),
                            field,
                        },
                    };
                }
                TokenKind::Punct("->") => {
                    self.advance();
                    let field = self.field_name("`->`")?;
                    expr = Expr {
                        column: expr.column,
                        kind: ExprKind::Arrow {
                            base: Box::new(expr),
                            field,
                        },
                    };
                }
                TokenKind::Punct("[") => {
                    self.advance();
                    let index = self.expression()?;
                    self.expect_punct("]", "to close the index")?;
                    expr = Expr {
                        column: expr.column,
                        kind: ExprKind::Index {
                            base: Box::new(expr),
                            index: Box::new(index),
                        },
                    };
                }
                TokenKind::Punct("(") => {
                    return Err(refused(
                        token.column,
                        "function calls are not allowed: liveprobe never runs code in the target \
                         (read the fields the function would compute, or use len(x))",
                    ));
                }
                TokenKind::Punct("++") | TokenKind::Punct("--") => {
                    return Err(refused(
                        token.column,
                        "increment and decrement are not allowed: liveprobe never writes target memory",
                    ));
                }
                _ => return Ok(expr),
            }
        }
    }

    fn field_name(&mut self, after: &str) -> Result<String, EvalError> {
        let token = self.advance();
        match token.kind {
            TokenKind::Ident(name) => Ok(name),
            TokenKind::Int {
                value,
                suffix: None,
            } => Ok(value.to_string()),
            other => Err(syntax(
                token.column,
                format!(
                    "expected a field name after {after}, found {}",
                    other.describe()
                ),
            )),
        }
    }

    fn primary(&mut self) -> Result<Expr, EvalError> {
        let token = self.advance();
        let column = token.column;
        let kind = match token.kind {
            TokenKind::Int { value, suffix } => ExprKind::Int { value, suffix },
            TokenKind::Float { value, single } => ExprKind::Float { value, single },
            TokenKind::Char(c) => ExprKind::Char(c),
            TokenKind::Str(bytes) => ExprKind::Str(bytes),
            TokenKind::Punct("(") => {
                self.enter(column)?;
                let inner = self.expression()?;
                self.nesting -= 1;
                self.expect_punct(")", "to close the parenthesis")?;
                return Ok(inner);
            }
            TokenKind::Punct("::") => {
                let first = self.advance();
                let TokenKind::Ident(name) = first.kind else {
                    return Err(syntax(first.column, "expected a name after `::`"));
                };
                let segments = self.path_rest(name)?;
                ExprKind::Name {
                    segments,
                    absolute: true,
                }
            }
            TokenKind::Ident(name) => match name.as_str() {
                "true" => ExprKind::Bool(true),
                "false" => ExprKind::Bool(false),
                "len" if self.is_punct("(") => {
                    self.advance();
                    let operand = self.expression()?;
                    self.expect_punct(")", "to close len(…); len takes one argument")?;
                    ExprKind::Len(Box::new(operand))
                }
                "sizeof" if self.is_punct("(") => {
                    if let Some(target) = self.try_c_cast_type(true) {
                        ExprKind::SizeOf(SizeOfOperand::Type(target))
                    } else {
                        self.advance();
                        let operand = self.expression()?;
                        self.expect_punct(")", "to close sizeof(…)")?;
                        ExprKind::SizeOf(SizeOfOperand::Expr(Box::new(operand)))
                    }
                }
                _ => ExprKind::Name {
                    segments: self.path_rest(name)?,
                    absolute: false,
                },
            },
            TokenKind::End => {
                return Err(syntax(
                    column,
                    "expression ended where a value was expected",
                ));
            }
            TokenKind::Punct("=") => return Err(refused(column, ASSIGNMENT_REFUSED)),
            other => {
                return Err(syntax(
                    column,
                    format!("expected a value, found {}", other.describe()),
                ));
            }
        };
        Ok(Expr { kind, column })
    }

    fn path_rest(&mut self, first: String) -> Result<Vec<String>, EvalError> {
        let mut segments = vec![first];
        while self.is_punct("::") {
            self.advance();
            let token = self.advance();
            match token.kind {
                TokenKind::Ident(name) => segments.push(name),
                other => {
                    return Err(syntax(
                        token.column,
                        format!("expected a name after `::`, found {}", other.describe()),
                    ));
                }
            }
        }
        Ok(segments)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(expr: &Expr) -> String {
        match &expr.kind {
            ExprKind::Name { segments, absolute } => {
                format!(
                    "{}{}",
                    if *absolute { "::" } else { "" },
                    segments.join("::")
                )
            }
            ExprKind::Int { value, suffix } => {
                format!("{value}{}", suffix.as_deref().unwrap_or(""))
            }
            ExprKind::Float { value, .. } => format!("{value:?}"),
            ExprKind::Char(c) => format!("'{}'", char::from_u32(*c).unwrap_or('?')),
            ExprKind::Str(bytes) => format!("{:?}", String::from_utf8_lossy(bytes)),
            ExprKind::Bool(b) => b.to_string(),
            ExprKind::Field { base, field } => format!("{}.{field}", show(base)),
            ExprKind::Arrow { base, field } => format!("{}->{field}", show(base)),
            ExprKind::Index { base, index } => format!("{}[{}]", show(base), show(index)),
            ExprKind::Unary { op, operand } => format!("({op:?} {})", show(operand)),
            ExprKind::Binary { op, lhs, rhs } => {
                format!("({} {} {})", show(lhs), op.symbol(), show(rhs))
            }
            ExprKind::Cast { target, operand } => {
                format!(
                    "(cast {}{} {})",
                    target.base,
                    "*".repeat(target.pointer_depth as usize),
                    show(operand)
                )
            }
            ExprKind::Len(inner) => format!("len({})", show(inner)),
            ExprKind::SizeOf(SizeOfOperand::Expr(inner)) => format!("sizeof({})", show(inner)),
            ExprKind::SizeOf(SizeOfOperand::Type(t)) => format!("sizeof(type {})", t.base),
        }
    }

    fn parsed(source: &str) -> String {
        match parse(source) {
            Ok(expr) => show(&expr),
            Err(err) => panic!("{source}: {err}"),
        }
    }

    fn error_column(source: &str) -> (usize, String) {
        match parse(source) {
            Ok(expr) => panic!("{source} parsed as {}", show(&expr)),
            Err(EvalError::Syntax { column, message }) => (column, message),
            Err(EvalError::Refused { column, reason }) => (column, reason),
            Err(other) => panic!("{source}: unexpected {other:?}"),
        }
    }

    #[test]
    fn precedence_and_postfix() {
        assert_eq!(parsed("a + b * c"), "(a + (b * c))");
        assert_eq!(parsed("a || b && c == d"), "(a || (b && (c == d)))");
        assert_eq!(parsed("x & 1 == 0"), "(x & (1 == 0))");
        assert_eq!(parsed("-a.b[2]->c"), "(Neg a.b[2]->c)");
        assert_eq!(parsed("*p->next"), "(Deref p->next)");
        assert_eq!(parsed("&arr[1]"), "(AddrOf arr[1])");
        assert_eq!(parsed("a - b - c"), "((a - b) - c)");
        assert_eq!(parsed("1 << 2 + 3"), "(1 << (2 + 3))");
        assert_eq!(parsed("t.0.1"), "t.0.1");
        assert_eq!(parsed("!(a < b)"), "(Not (a < b))");
    }

    #[test]
    fn literals() {
        assert_eq!(parsed("0x1F"), "31");
        assert_eq!(parsed("0b101"), "5");
        assert_eq!(parsed("0755"), "493");
        assert_eq!(parsed("1_000u64"), "1000u64");
        assert_eq!(parsed("10UL"), "10ul");
        assert_eq!(parsed("1.5"), "1.5");
        assert_eq!(parsed("2e3"), "2000.0");
        assert_eq!(parsed("'a'"), "'a'");
        assert_eq!(parsed("'\\n'"), "'\n'");
        assert_eq!(parsed("\"hi\\x41\""), "\"hiA\"");
        assert_eq!(parsed("true && false"), "(true && false)");
    }

    #[test]
    fn paths_casts_and_builtins() {
        assert_eq!(parsed("Cache::count"), "Cache::count");
        assert_eq!(parsed("::global + 1"), "(::global + 1)");
        assert_eq!(parsed("(unsigned long)x"), "(cast unsigned long x)");
        assert_eq!(parsed("(struct node *)p"), "(cast struct node* p)");
        assert_eq!(parsed("(x) + 1"), "(x + 1)");
        assert_eq!(parsed("x as u64 * 2"), "((cast u64 x) * 2)");
        assert_eq!(parsed("p as *const u8"), "(cast u8* p)");
        assert_eq!(parsed("len(v) > 3"), "(len(v) > 3)");
        assert_eq!(parsed("v.len()"), "len(v)");
        assert_eq!(parsed("sizeof(int)"), "sizeof(type int)");
        assert_eq!(parsed("sizeof(x)"), "sizeof(x)");
    }

    #[test]
    fn casts_to_type_names() {
        assert_eq!(parsed("(sds)p"), "(cast sds p)");
        assert_eq!(parsed("(sds)p == \"x\""), "((cast sds p) == \"x\")");
        assert_eq!(parsed("(char*)obj->ptr"), "(cast char* obj->ptr)");
        assert_eq!(parsed("(const char *)x"), "(cast char* x)");
        assert_eq!(parsed("(char const * const)x"), "(cast char* x)");
        assert_eq!(parsed("(ns::Widget *)p"), "(cast ns::Widget* p)");
        assert_eq!(parsed("(entry_t*)p"), "(cast entry_t* p)");
        assert_eq!(parsed("(const entry_t)p"), "(cast entry_t p)");
        assert_eq!(parsed("(struct node *)p"), "(cast struct node* p)");
        // Without type knowledge, `(x)*y` and `(x)-1` stay arithmetic.
        assert_eq!(parsed("(x)*y"), "(x * y)");
        assert_eq!(parsed("(x) - 1"), "(x - 1)");
        assert_eq!(parsed("(x)"), "x");
        // With it, they are casts.
        let typed = |source: &str| {
            let mut is_type = |name: &str| name == "sds";
            show(&parse_with_types(source, &mut is_type).expect(source))
        };
        assert_eq!(typed("(sds)*pp"), "(cast sds (Deref pp))");
        assert_eq!(typed("(sds)-1"), "(cast sds (Neg 1))");
        assert_eq!(typed("(x)*y"), "(x * y)");
    }

    #[test]
    fn errors_name_the_column() {
        assert_eq!(error_column("a +").0, 4);
        assert_eq!(error_column("a + * ").0, 7);
        assert_eq!(error_column("(a + b").0, 7);
        assert_eq!(error_column("a b").0, 3);
        assert_eq!(error_column("x $ 1").0, 3);
        assert_eq!(error_column("arr[1").0, 6);
        assert_eq!(error_column("'ab'").0, 1);
        assert_eq!(error_column("\"open").0, 1);
        assert_eq!(error_column("0x").0, 1);
        assert_eq!(error_column("12abc").0, 3);
        assert_eq!(error_column("a ? b : c").0, 3);
        assert_eq!(error_column("p->").0, 4);
    }

    #[test]
    fn refuses_calls_and_assignment() {
        let (column, reason) = error_column("foo(1)");
        assert_eq!(column, 4);
        assert!(reason.contains("calls are not allowed"), "{reason}");
        let (column, reason) = error_column("x = 3");
        assert_eq!(column, 3);
        assert!(reason.contains("assignment"), "{reason}");
        assert_eq!(error_column("x += 1").0, 3);
        assert_eq!(error_column("i++").0, 2);
        assert_eq!(error_column("--i").0, 1);
        assert_eq!(error_column("obj.method(2)").0, 11);
        assert_eq!(error_column("a == (b = 2)").0, 9);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let source = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(matches!(parse(&source), Err(EvalError::Syntax { .. })));
        let source = format!("{}1", "!".repeat(10_000));
        assert!(matches!(parse(&source), Err(EvalError::Syntax { .. })));
    }
}
