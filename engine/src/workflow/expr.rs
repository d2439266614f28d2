//! The decision expression language: a small, safe, total language over the workflow context.
//!
//! ```text
//!   or      := and ( "||" and )*
//!   and     := cmp ( "&&" cmp )*
//!   cmp     := unary ( ( "==" | "!=" | "<" | "<=" | ">" | ">=" ) unary )?   -- not chained
//!   unary   := "!" unary | "-" unary | primary
//!   primary := number | string | "true" | "false" | identifier
//!            | "ctx" "[" string "]" | "(" or ")"
//!   number  := digits ( "." digits )? ( ("e"|"E") ("+"|"-")? digits )?    -- an f64
//!   string  := '"' ( any char but '"' and '\' | '\"' | '\\' | '\n' | '\t' )* '"'
//!   identifier := [A-Za-z_][A-Za-z0-9_]*    (except true, false, ctx)
//! ```
//!
//! An identifier reads the context key of the same name; `ctx["key"]` reads any key, e.g. the
//! result of node 3 stored under `"3"` (see [`super::instance`]). Context values are JSON:
//! strings, numbers (as `f64`) and booleans are usable; a key holding `null`, an array or an
//! object is an error *when read* ([`ExprError::UnsupportedValue`]) and ignored otherwise.
//!
//! Semantics: `==`/`!=` compare two values of the same type; `<`, `<=`, `>`, `>=` compare two
//! numbers or two strings (byte-wise lexicographic); `&&`, `||`, `!` take booleans and
//! short-circuit (`false && missing` is `false`, not an error). Mixing types is an error
//! ([`ExprError::TypeMismatch`]), never a coercion. A decision's result must be a boolean.
//!
//! Why not `evalexpr`: it was the suggested crate (and is in the registry cache), but it ships
//! built-in functions (string, math, and `regex` ones), assignment and sequencing operators
//! (`=`, `+=`, `;`) and an unbounded recursive evaluator, so making it safe would mean walking
//! its operator tree to forbid most of it, and depth would still be unbounded in its parser.
//! This grammar is ~300 lines, has exactly the operators a decision needs, and its limits are
//! explicit.
//!
//! Limits (invariants):
//! - the source is at most [`MAX_EXPR_LEN`] bytes, checked before tokenizing;
//! - nesting (parentheses and unary operators) is at most [`MAX_DEPTH`], checked while parsing;
//!   `&&`/`||` chains are n-ary nodes and a comparison has two operands, so the AST — and the
//!   recursion of parsing, evaluation and drop — is at most about `3 * MAX_DEPTH` deep and
//!   cannot overflow the stack;
//! - evaluation visits each AST node at most once: time is linear in the source length;
//! - no operation allocates beyond the AST and the values read from the context.

use std::fmt;

use serde_json::{Map, Value as Json};

use super::error::ExprError;

/// Longest accepted expression source, in bytes.
pub const MAX_EXPR_LEN: usize = 1024;
/// Deepest accepted nesting of parentheses and unary operators.
pub const MAX_DEPTH: usize = 64;

/// A runtime value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A string.
    Str(String),
    /// A number (JSON numbers become `f64`).
    Num(f64),
    /// A boolean.
    Bool(bool),
}

impl Value {
    fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Num(_) => "number",
            Value::Bool(_) => "boolean",
        }
    }
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        })
    }
}

/// A parsed expression. Built only by [`Expr::parse`], so its depth is at most [`MAX_DEPTH`].
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A literal.
    Lit(Value),
    /// A context key.
    Var(String),
    /// `!e`
    Not(Box<Expr>),
    /// `-e`
    Neg(Box<Expr>),
    /// `a && b && ...` (n-ary, so a long chain does not deepen the tree)
    And(Vec<Expr>),
    /// `a || b || ...` (n-ary)
    Or(Vec<Expr>),
    /// `a op b`
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Ident(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Not,
    Minus,
    And,
    Or,
    Cmp(CmpOp),
}

fn tokenize(src: &str) -> Result<Vec<(usize, Tok)>, ExprError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0usize;
    while let Some(&c) = bytes.get(i) {
        let start = i;
        let next = bytes.get(i + 1).copied();
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => Tok::LParen,
            b')' => Tok::RParen,
            b'[' => Tok::LBracket,
            b']' => Tok::RBracket,
            b'&' if next == Some(b'&') => Tok::And,
            b'|' if next == Some(b'|') => Tok::Or,
            b'=' if next == Some(b'=') => Tok::Cmp(CmpOp::Eq),
            b'!' if next == Some(b'=') => Tok::Cmp(CmpOp::Ne),
            b'<' if next == Some(b'=') => Tok::Cmp(CmpOp::Le),
            b'>' if next == Some(b'=') => Tok::Cmp(CmpOp::Ge),
            b'!' => Tok::Not,
            b'-' => Tok::Minus,
            b'<' => Tok::Cmp(CmpOp::Lt),
            b'>' => Tok::Cmp(CmpOp::Gt),
            b'"' => {
                let mut s = String::new();
                let mut j = i + 1;
                loop {
                    match bytes.get(j) {
                        None => {
                            return Err(ExprError::Syntax {
                                at: start,
                                msg: "unterminated string".into(),
                            })
                        }
                        Some(b'"') => break,
                        Some(b'\\') => {
                            let esc = match bytes.get(j + 1) {
                                Some(b'"') => '"',
                                Some(b'\\') => '\\',
                                Some(b'n') => '\n',
                                Some(b't') => '\t',
                                _ => {
                                    return Err(ExprError::Syntax {
                                        at: j,
                                        msg: "bad escape (use \\\" \\\\ \\n \\t)".into(),
                                    })
                                }
                            };
                            s.push(esc);
                            j += 2;
                        }
                        Some(_) => {
                            // Copy one whole UTF-8 character (src is a str, so boundaries exist).
                            let rest = src.get(j..).unwrap_or("");
                            let ch = rest.chars().next().unwrap_or('\u{FFFD}');
                            s.push(ch);
                            j += ch.len_utf8().max(1);
                        }
                    }
                }
                i = j + 1;
                out.push((start, Tok::Str(s)));
                continue;
            }
            b'0'..=b'9' | b'.' => {
                let mut j = i;
                while matches!(bytes.get(j), Some(b'0'..=b'9' | b'.')) {
                    j += 1;
                }
                if matches!(bytes.get(j), Some(b'e' | b'E')) {
                    j += 1;
                    if matches!(bytes.get(j), Some(b'+' | b'-')) {
                        j += 1;
                    }
                    while matches!(bytes.get(j), Some(b'0'..=b'9')) {
                        j += 1;
                    }
                }
                let text = src.get(i..j).unwrap_or("");
                let n: f64 = text.parse().map_err(|_| ExprError::Syntax {
                    at: start,
                    msg: format!("bad number {text:?}"),
                })?;
                if !n.is_finite() {
                    return Err(ExprError::Syntax {
                        at: start,
                        msg: format!("number {text:?} out of range"),
                    });
                }
                i = j;
                out.push((start, Tok::Num(n)));
                continue;
            }
            b'A'..=b'Z' | b'a'..=b'z' | b'_' => {
                let mut j = i;
                while matches!(
                    bytes.get(j),
                    Some(b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_')
                ) {
                    j += 1;
                }
                i = j;
                out.push((
                    start,
                    Tok::Ident(src.get(start..j).unwrap_or("").to_owned()),
                ));
                continue;
            }
            _ => {
                let ch = src.get(i..).and_then(|r| r.chars().next()).unwrap_or('?');
                return Err(ExprError::Syntax {
                    at: start,
                    msg: format!("unexpected character {ch:?}"),
                });
            }
        };
        i += match tok {
            Tok::And | Tok::Or | Tok::Cmp(CmpOp::Eq | CmpOp::Ne | CmpOp::Le | CmpOp::Ge) => 2,
            _ => 1,
        };
        out.push((start, tok));
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }
    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(a, _)| *a)
    }
    fn bump(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }
    fn err<T>(&self, msg: impl Into<String>) -> Result<T, ExprError> {
        Err(ExprError::Syntax {
            at: self.at(),
            msg: msg.into(),
        })
    }
    fn enter(&self, depth: usize) -> Result<usize, ExprError> {
        if depth >= MAX_DEPTH {
            return Err(ExprError::TooDeep { max: MAX_DEPTH });
        }
        Ok(depth + 1)
    }

    fn or(&mut self, depth: usize) -> Result<Expr, ExprError> {
        let first = self.and(depth)?;
        if self.peek() != Some(&Tok::Or) {
            return Ok(first);
        }
        let mut all = vec![first];
        while self.peek() == Some(&Tok::Or) {
            self.bump();
            all.push(self.and(depth)?);
        }
        Ok(Expr::Or(all))
    }
    fn and(&mut self, depth: usize) -> Result<Expr, ExprError> {
        let first = self.cmp(depth)?;
        if self.peek() != Some(&Tok::And) {
            return Ok(first);
        }
        let mut all = vec![first];
        while self.peek() == Some(&Tok::And) {
            self.bump();
            all.push(self.cmp(depth)?);
        }
        Ok(Expr::And(all))
    }
    fn cmp(&mut self, depth: usize) -> Result<Expr, ExprError> {
        let lhs = self.unary(depth)?;
        if let Some(Tok::Cmp(op)) = self.peek().cloned() {
            self.bump();
            let rhs = self.unary(depth)?;
            if let Some(Tok::Cmp(_)) = self.peek() {
                return self.err("comparisons do not chain; use && and parentheses");
            }
            return Ok(Expr::Cmp(op, Box::new(lhs), Box::new(rhs)));
        }
        Ok(lhs)
    }
    fn unary(&mut self, depth: usize) -> Result<Expr, ExprError> {
        match self.peek() {
            Some(Tok::Not) => {
                let d = self.enter(depth)?;
                self.bump();
                Ok(Expr::Not(Box::new(self.unary(d)?)))
            }
            Some(Tok::Minus) => {
                let d = self.enter(depth)?;
                self.bump();
                Ok(Expr::Neg(Box::new(self.unary(d)?)))
            }
            _ => self.primary(depth),
        }
    }
    fn primary(&mut self, depth: usize) -> Result<Expr, ExprError> {
        match self.bump() {
            Some(Tok::Num(n)) => Ok(Expr::Lit(Value::Num(n))),
            Some(Tok::Str(s)) => Ok(Expr::Lit(Value::Str(s))),
            Some(Tok::Ident(id)) => match id.as_str() {
                "true" => Ok(Expr::Lit(Value::Bool(true))),
                "false" => Ok(Expr::Lit(Value::Bool(false))),
                "ctx" => {
                    if self.bump() != Some(Tok::LBracket) {
                        self.pos = self.pos.saturating_sub(1);
                        return self.err("expected [ after ctx (ctx[\"key\"])");
                    }
                    let key = match self.bump() {
                        Some(Tok::Str(s)) => s,
                        _ => {
                            self.pos = self.pos.saturating_sub(1);
                            return self.err("expected a string key in ctx[...]");
                        }
                    };
                    if self.bump() != Some(Tok::RBracket) {
                        self.pos = self.pos.saturating_sub(1);
                        return self.err("expected ] after ctx[\"key\"");
                    }
                    Ok(Expr::Var(key))
                }
                _ => Ok(Expr::Var(id)),
            },
            Some(Tok::LParen) => {
                let d = self.enter(depth)?;
                let e = self.or(d)?;
                if self.bump() != Some(Tok::RParen) {
                    self.pos = self.pos.saturating_sub(1);
                    return self.err("expected )");
                }
                Ok(e)
            }
            Some(_) => {
                self.pos = self.pos.saturating_sub(1);
                self.err("expected a value, an identifier or (")
            }
            None => self.err("unexpected end of expression"),
        }
    }
}

impl Expr {
    /// Parses `src`. Errors: [`ExprError::TooLong`], [`ExprError::TooDeep`],
    /// [`ExprError::Syntax`] (with the byte offset).
    pub fn parse(src: &str) -> Result<Expr, ExprError> {
        if src.len() > MAX_EXPR_LEN {
            return Err(ExprError::TooLong {
                len: src.len(),
                max: MAX_EXPR_LEN,
            });
        }
        let toks = tokenize(src)?;
        let mut p = Parser {
            toks,
            pos: 0,
            end: src.len(),
        };
        let e = p.or(0)?;
        if p.pos < p.toks.len() {
            return p.err("unexpected trailing input");
        }
        Ok(e)
    }

    /// Evaluates against `ctx` (a JSON object, see the module doc for how values map).
    pub fn eval(&self, ctx: &Map<String, Json>) -> Result<Value, ExprError> {
        Ok(match self {
            Expr::Lit(v) => v.clone(),
            Expr::Var(k) => match ctx.get(k) {
                None => return Err(ExprError::UnknownIdentifier(k.clone())),
                Some(Json::String(s)) => Value::Str(s.clone()),
                Some(Json::Bool(b)) => Value::Bool(*b),
                Some(Json::Number(n)) => match n.as_f64() {
                    Some(f) => Value::Num(f),
                    None => return Err(ExprError::UnsupportedValue(k.clone())),
                },
                Some(_) => return Err(ExprError::UnsupportedValue(k.clone())),
            },
            Expr::Not(e) => Value::Bool(!e.eval(ctx)?.as_bool("!")?),
            Expr::Neg(e) => match e.eval(ctx)? {
                Value::Num(n) => Value::Num(-n),
                other => return Err(type_mismatch("-", &other, None)),
            },
            Expr::And(all) => {
                for e in all {
                    if !e.eval(ctx)?.as_bool("&&")? {
                        return Ok(Value::Bool(false));
                    }
                }
                Value::Bool(true)
            }
            Expr::Or(all) => {
                for e in all {
                    if e.eval(ctx)?.as_bool("||")? {
                        return Ok(Value::Bool(true));
                    }
                }
                Value::Bool(false)
            }
            Expr::Cmp(op, a, b) => {
                let (a, b) = (a.eval(ctx)?, b.eval(ctx)?);
                Value::Bool(compare(*op, &a, &b)?)
            }
        })
    }

    /// Evaluates and requires a boolean ([`ExprError::NotBoolean`] otherwise).
    pub fn eval_bool(&self, ctx: &Map<String, Json>) -> Result<bool, ExprError> {
        match self.eval(ctx)? {
            Value::Bool(b) => Ok(b),
            other => Err(ExprError::NotBoolean(other.type_name())),
        }
    }
}

impl Value {
    fn as_bool(&self, op: &'static str) -> Result<bool, ExprError> {
        match self {
            Value::Bool(b) => Ok(*b),
            other => Err(type_mismatch(op, other, None)),
        }
    }
}

fn type_mismatch(op: &str, a: &Value, b: Option<&Value>) -> ExprError {
    ExprError::TypeMismatch {
        op: op.to_owned(),
        left: a.type_name(),
        right: b.map(Value::type_name),
    }
}

fn compare(op: CmpOp, a: &Value, b: &Value) -> Result<bool, ExprError> {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (a, b) {
        (Value::Num(x), Value::Num(y)) => x.partial_cmp(y),
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) if matches!(op, CmpOp::Eq | CmpOp::Ne) => Some(x.cmp(y)),
        _ => return Err(type_mismatch(&op.to_string(), a, Some(b))),
    };
    // Only NaN compares unordered, and no literal or JSON number is NaN; treat it as unequal.
    Ok(match (op, ord) {
        (CmpOp::Eq, o) => o == Some(Ordering::Equal),
        (CmpOp::Ne, o) => o != Some(Ordering::Equal),
        (_, None) => false,
        (CmpOp::Lt, Some(o)) => o == Ordering::Less,
        (CmpOp::Le, Some(o)) => o != Ordering::Greater,
        (CmpOp::Gt, Some(o)) => o == Ordering::Greater,
        (CmpOp::Ge, Some(o)) => o != Ordering::Less,
    })
}
