//! Parser for OpenWRT UCI configuration files (the text format of `/etc/config/*`).
//!
//! This module owns turning the text of one config file into a [`Package`] of sections and
//! options, following the grammar and the quirks of OpenWRT's `libuci` (`file.c`, `list.c`):
//!
//! * Commands are `config <type> [<name>]`, `option <name> <value>`, `list <name> <value>` and
//!   `package <name>` (accepted and ignored, but it closes the current section). As in libuci
//!   the one-letter forms `c`, `o`, `l` and `p` are accepted too, and `;` separates commands
//!   like a line break does.
//! * Arguments are shell-like words: bare text, `'single quoted'` (no escapes) or
//!   `"double quoted"` (a backslash makes the next character literal, so `\"` is `"` and `\n`
//!   is `n`), and adjacent pieces concatenate (`'a'"b"c` is `abc`). Outside single quotes a
//!   backslash at the end of a line joins the next line. Quoted strings may span lines; the
//!   line break is then part of the value.
//! * `#` outside quotes starts a comment that runs to the end of the line, even in the middle
//!   of a bare word (`abc#def` is `abc`).
//! * Section names and option names must match `[A-Za-z0-9_]+`; section types may use any
//!   printable ASCII character except whitespace; package names also allow `-`.
//! * Giving an `option` twice keeps the last value. A `list` entry appends; a `list` entry for
//!   a name that already holds an `option` value converts it into a list whose first element
//!   is that value (libuci's `uci_add_list`), and an `option` for a name that holds a list
//!   replaces the whole list (libuci's `uci_set`). The option keeps its original position.
//! * `option name ''` (an explicitly empty value) does not create or change the option: libuci
//!   treats an empty option value as "unset" when loading a file. An empty *list* entry is kept.
//! * A second `config` with the name of an existing section reopens that section (its options
//!   merge); redeclaring it with a different type is an error, as in libuci's strict mode.
//! * Extra arguments after a complete command are an error (libuci's strict mode, which every
//!   libuci context starts in).
//!
//! Where this parser knowingly differs from libuci:
//! * `option <name>` or `list <name>` with no value at all is an error; libuci ignores such an
//!   option (and adds an empty element for such a list), which hides typos in a config.
//! * A backslash-newline between two words only joins the lines, so `option a \` followed by
//!   an indented `b` sets `a` to `b`; libuci would see an empty value and a surplus argument.
//! * Re-setting an option keeps its position in [`Section::options`]; libuci moves it last.
//! * Anonymous sections are not given libuci's generated `cfgXXXXXX` names; they are addressed
//!   as `@type[index]` (see [`Package::label_of`] and [`Package::lookup`]).
//! * CRLF line endings are read as LF.

use std::collections::HashMap;
use std::fmt;

/// A parsed config file: its sections in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Package {
    /// Sections in the order their first `config` line appears.
    pub sections: Vec<Section>,
}

/// One `config <type> [<name>]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The section type (`hub` in `config hub 'main'`).
    pub kind: String,
    /// The section name, or `None` for an anonymous section (see [`Package::label_of`]).
    pub name: Option<String>,
    /// 1-based line of the `config` line that opened the section.
    pub line: usize,
    /// Options in first-appearance order with the 1-based line where each was defined: for a
    /// single value the line of the `option` that set it, for a list the line of its first
    /// element.
    pub options: Vec<(String, Value, usize)>,
}

/// The value of an option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Set by `option`.
    Single(String),
    /// Accumulated by one or more `list` lines.
    List(Vec<String>),
}

/// Which quote character was left open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quote {
    /// `'`
    Single,
    /// `"`
    Double,
}

impl fmt::Display for Quote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Quote::Single => "single",
            Quote::Double => "double",
        })
    }
}

/// Why a config file could not be parsed; every variant carries the 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UciError {
    /// A quoted string was still open at the end of the file.
    #[error("{}", unterminated(*.line, *.quote, *.runs_on))]
    UnterminatedQuote {
        /// Line of the opening quote.
        line: usize,
        /// Which quote was left open.
        quote: Quote,
        /// The first earlier quoted value that ran past the end of its line,
        /// with the line it ended on. Values may span lines, so a missing
        /// closing quote shows only at the end of the file; this is where
        /// the mistake usually is.
        runs_on: Option<(usize, usize)>,
    },
    /// The first word of a command is not one of the known keywords.
    #[error("line {line}: unknown command {word:?} (expected config, option, list or package)")]
    UnknownCommand {
        /// Line of the command.
        line: usize,
        /// The word found instead of a keyword.
        word: String,
    },
    /// The command keyword was quoted or escaped, which libuci does not recognise.
    #[error("line {line}: command {word:?} must be written without quotes or backslashes")]
    QuotedCommand {
        /// Line of the command.
        line: usize,
        /// The keyword after quote removal.
        word: String,
    },
    /// An `option` or `list` appeared before any `config` line (or right after `package`).
    #[error("line {line}: {keyword} outside of a config section")]
    OutsideSection {
        /// Line of the command.
        line: usize,
        /// `option` or `list`.
        keyword: &'static str,
    },
    /// `config` without a type.
    #[error("line {line}: expected a section type after config")]
    MissingSectionType {
        /// Line of the `config` command.
        line: usize,
    },
    /// The section type contains whitespace, control or non-ASCII characters.
    #[error("line {line}: invalid section type {kind:?}")]
    InvalidSectionType {
        /// Line of the `config` command.
        line: usize,
        /// The rejected type.
        kind: String,
    },
    /// The section name is not `[A-Za-z0-9_]+`.
    #[error("line {line}: invalid section name {name:?}")]
    InvalidSectionName {
        /// Line of the `config` command.
        line: usize,
        /// The rejected name.
        name: String,
    },
    /// A named section was declared again with a different type.
    #[error(
        "line {line}: section {name:?} redeclared with type {kind:?}, \
         but line {first_line} declared it with type {first_kind:?}"
    )]
    SectionTypeMismatch {
        /// Line of the second `config` command.
        line: usize,
        /// The section name.
        name: String,
        /// The type given on the second declaration.
        kind: String,
        /// The type of the existing section.
        first_kind: String,
        /// Line that first declared the section.
        first_line: usize,
    },
    /// `option` or `list` without a name.
    #[error("line {line}: expected a name after {keyword}")]
    MissingOptionName {
        /// Line of the command.
        line: usize,
        /// `option` or `list`.
        keyword: &'static str,
    },
    /// The option name is not `[A-Za-z0-9_]+`.
    #[error("line {line}: invalid {keyword} name {name:?}")]
    InvalidOptionName {
        /// Line of the command.
        line: usize,
        /// `option` or `list`.
        keyword: &'static str,
        /// The rejected name.
        name: String,
    },
    /// `option <name>` or `list <name>` without a value.
    #[error("line {line}: expected a value after {keyword} name {name:?}")]
    MissingValue {
        /// Line of the command.
        line: usize,
        /// `option` or `list`.
        keyword: &'static str,
        /// The option name.
        name: String,
    },
    /// `package` without a name.
    #[error("line {line}: expected a name after package")]
    MissingPackageName {
        /// Line of the `package` command.
        line: usize,
    },
    /// The package name is not `[A-Za-z0-9_-]+`.
    #[error("line {line}: invalid package name {name:?}")]
    InvalidPackageName {
        /// Line of the `package` command.
        line: usize,
        /// The rejected name.
        name: String,
    },
    /// A command had more arguments than it takes.
    #[error("line {line}: unexpected extra argument {extra:?} after {keyword}")]
    TooManyArguments {
        /// Line of the extra argument.
        line: usize,
        /// The command keyword.
        keyword: &'static str,
        /// The first surplus argument.
        extra: String,
    },
}

fn unterminated(line: usize, quote: Quote, runs_on: Option<(usize, usize)>) -> String {
    match runs_on {
        Some((from, to)) if from < line => format!(
            "line {from}: a quoted value opened here runs on to line {to}; is its closing quote missing? \
             (the file ends inside the {quote} quote opened on line {line})"
        ),
        _ => format!("line {line}: unterminated {quote} quote"),
    }
}

impl UciError {
    /// The 1-based line the error refers to.
    pub fn line(&self) -> usize {
        match self {
            UciError::UnterminatedQuote { runs_on: Some((from, _)), .. } => *from,
            UciError::UnterminatedQuote { line, .. }
            | UciError::UnknownCommand { line, .. }
            | UciError::QuotedCommand { line, .. }
            | UciError::OutsideSection { line, .. }
            | UciError::MissingSectionType { line }
            | UciError::InvalidSectionType { line, .. }
            | UciError::InvalidSectionName { line, .. }
            | UciError::SectionTypeMismatch { line, .. }
            | UciError::MissingOptionName { line, .. }
            | UciError::InvalidOptionName { line, .. }
            | UciError::MissingValue { line, .. }
            | UciError::MissingPackageName { line }
            | UciError::InvalidPackageName { line, .. }
            | UciError::TooManyArguments { line, .. } => *line,
        }
    }
}

/// Parses the text of a UCI config file.
pub fn parse(text: &str) -> Result<Package, UciError> {
    // libuci sees CR as whitespace outside quotes; folding CRLF up front also keeps a CR out of
    // multi-line quoted values and lets `\` + CRLF continue a line, as libuci does.
    let text = text.replace("\r\n", "\n");
    let mut lexer = Lexer { text: &text, pos: 0, line: 1, multiline_quote: None };
    let mut builder = Builder::default();
    while let Some(words) = lexer.command()? {
        builder.apply(words)?;
    }
    Ok(Package { sections: builder.sections })
}

impl Package {
    /// Sections of the given type, in file order.
    pub fn sections_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Section> {
        self.sections.iter().filter(move |s| s.kind == kind)
    }

    /// The named section of the given type.
    pub fn section(&self, kind: &str, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.kind == kind && s.name.as_deref() == Some(name))
    }

    /// How `uci` would refer to a section: its name, or `@type[index]` for an anonymous one,
    /// where the index counts all sections of that type (named ones included) from 0.
    ///
    /// `section` should come from this package; for a foreign anonymous section the result is
    /// `@type[?]`.
    pub fn label_of(&self, section: &Section) -> String {
        if let Some(name) = &section.name {
            return name.clone();
        }
        match self.sections_of(&section.kind).position(|s| std::ptr::eq(s, section)) {
            Some(index) => format!("@{}[{index}]", section.kind),
            None => format!("@{}[?]", section.kind),
        }
    }

    /// Resolves a section reference as `uci` does: a plain name, or `@type[index]` with a
    /// negative index counting from the end (`@source[-1]` is the last `source` section).
    pub fn lookup(&self, reference: &str) -> Option<&Section> {
        let Some(rest) = reference.strip_prefix('@') else {
            return self.sections.iter().find(|s| s.name.as_deref() == Some(reference));
        };
        let (kind, index) = rest.strip_suffix(']')?.split_once('[')?;
        let index: i64 = index.parse().ok()?;
        let of_kind = || self.sections.iter().filter(move |s| s.kind == kind);
        let count = of_kind().count();
        let index = if index < 0 {
            count.checked_sub(usize::try_from(index.unsigned_abs()).ok()?)?
        } else {
            usize::try_from(index).ok()?
        };
        of_kind().nth(index)
    }
}

impl Section {
    pub fn entry(&self, option: &str) -> Option<&(String, Value, usize)> {
        self.options.iter().find(|(name, _, _)| name == option)
    }

    /// The value of a single-valued option; `None` if it is absent or a list.
    pub fn get(&self, option: &str) -> Option<&str> {
        match self.entry(option) {
            Some((_, Value::Single(value), _)) => Some(value),
            _ => None,
        }
    }

    /// The elements of a list option; a single value reads as a one-element list and an
    /// absent option as an empty one.
    pub fn get_list(&self, option: &str) -> Vec<&str> {
        match self.entry(option) {
            Some((_, Value::Single(value), _)) => vec![value.as_str()],
            Some((_, Value::List(values), _)) => values.iter().map(String::as_str).collect(),
            None => Vec::new(),
        }
    }

    /// The line where the option was defined (see [`Section::options`]), for error messages.
    pub fn line_of(&self, option: &str) -> Option<usize> {
        self.entry(option).map(|(_, _, line)| *line)
    }
}

/// One argument of a command after quote removal.
#[derive(Debug)]
struct Word {
    text: String,
    line: usize,
    /// False if any part of the word was quoted or escaped; libuci only recognises command
    /// keywords written plainly.
    plain: bool,
}

/// Splits the text into commands of shell-like words.
struct Lexer<'a> {
    text: &'a str,
    /// Byte offset; only ever advanced by whole characters, so slicing at it cannot panic.
    pos: usize,
    line: usize,
    /// The first quoted value that spanned lines: (opening line, closing line).
    multiline_quote: Option<(usize, usize)>,
}

/// Whitespace between words: C's `isspace` minus the newline, which ends a command.
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\x0b' | '\x0c')
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.text.get(self.pos..).and_then(|rest| rest.chars().next())
    }

    fn peek_second(&self) -> Option<char> {
        self.text.get(self.pos..).and_then(|rest| rest.chars().nth(1))
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn skip_comment(&mut self) {
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            self.bump();
        }
    }

    /// The words of the next non-empty command, or `None` at the end of the input.
    fn command(&mut self) -> Result<Option<Vec<Word>>, UciError> {
        let mut words = Vec::new();
        loop {
            match self.peek() {
                None => return Ok((!words.is_empty()).then_some(words)),
                Some('\n' | ';') => {
                    self.bump();
                    if !words.is_empty() {
                        return Ok(Some(words));
                    }
                }
                Some('#') => self.skip_comment(),
                Some(c) if is_blank(c) => {
                    self.bump();
                }
                Some('\\') if matches!(self.peek_second(), None | Some('\n')) => {
                    // A continuation between words only joins the lines.
                    self.bump();
                    self.bump();
                }
                Some(_) => words.push(self.word()?),
            }
        }
    }

    fn word(&mut self) -> Result<Word, UciError> {
        let mut word = Word { text: String::new(), line: self.line, plain: true };
        while let Some(c) = self.peek() {
            match c {
                '\n' | ';' | '#' => break,
                c if is_blank(c) => break,
                '\'' => {
                    word.plain = false;
                    self.single_quoted(&mut word.text)?;
                }
                '"' => {
                    word.plain = false;
                    self.double_quoted(&mut word.text)?;
                }
                '\\' => {
                    word.plain = false;
                    self.bump();
                    match self.bump() {
                        None | Some('\n') => {}
                        Some(escaped) => word.text.push(escaped),
                    }
                }
                c => {
                    self.bump();
                    word.text.push(c);
                }
            }
        }
        Ok(word)
    }

    /// Notes a quoted value opened on `opened` that closed on a later line.
    fn closed(&mut self, opened: usize) {
        if self.line > opened && self.multiline_quote.is_none() {
            self.multiline_quote = Some((opened, self.line));
        }
    }

    fn unterminated(&self, line: usize, quote: Quote) -> UciError {
        UciError::UnterminatedQuote { line, quote, runs_on: self.multiline_quote }
    }

    fn single_quoted(&mut self, out: &mut String) -> Result<(), UciError> {
        let line = self.line;
        self.bump();
        loop {
            match self.bump() {
                None => return Err(self.unterminated(line, Quote::Single)),
                Some('\'') => {
                    self.closed(line);
                    return Ok(());
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quoted(&mut self, out: &mut String) -> Result<(), UciError> {
        let line = self.line;
        self.bump();
        loop {
            match self.bump() {
                None => return Err(self.unterminated(line, Quote::Double)),
                Some('"') => {
                    self.closed(line);
                    return Ok(());
                }
                Some('\\') => match self.bump() {
                    None => return Err(self.unterminated(line, Quote::Double)),
                    Some('\n') => {}
                    Some(escaped) => out.push(escaped),
                },
                Some(c) => out.push(c),
            }
        }
    }
}

fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_valid_type(kind: &str) -> bool {
    !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_graphic())
}

fn is_valid_package(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn reject_extra(keyword: &'static str, extra: Option<&Word>) -> Result<(), UciError> {
    match extra {
        Some(word) => Err(UciError::TooManyArguments { line: word.line, keyword, extra: word.text.clone() }),
        None => Ok(()),
    }
}

/// Applies commands to the sections being built.
#[derive(Default)]
struct Builder {
    sections: Vec<Section>,
    /// Index of the section that `option`/`list` lines belong to.
    current: Option<usize>,
    named: HashMap<String, usize>,
}

impl Builder {
    fn apply(&mut self, words: Vec<Word>) -> Result<(), UciError> {
        let Some((command, args)) = words.split_first() else {
            return Ok(());
        };
        let line = command.line;
        if !command.plain {
            return Err(UciError::QuotedCommand { line, word: command.text.clone() });
        }
        match command.text.as_str() {
            "config" | "c" => self.config(line, args),
            "option" | "o" => self.option(line, "option", args),
            "list" | "l" => self.option(line, "list", args),
            "package" | "p" => {
                let name = match args.first() {
                    Some(word) if !word.text.is_empty() => &word.text,
                    _ => return Err(UciError::MissingPackageName { line }),
                };
                if !is_valid_package(name) {
                    return Err(UciError::InvalidPackageName { line, name: name.clone() });
                }
                reject_extra("package", args.get(1))?;
                // libuci starts a new package here, so no section is open any more.
                self.current = None;
                Ok(())
            }
            _ => Err(UciError::UnknownCommand { line, word: command.text.clone() }),
        }
    }

    fn config(&mut self, line: usize, args: &[Word]) -> Result<(), UciError> {
        let kind = match args.first() {
            Some(word) if !word.text.is_empty() => &word.text,
            _ => return Err(UciError::MissingSectionType { line }),
        };
        if !is_valid_type(kind) {
            return Err(UciError::InvalidSectionType { line, kind: kind.clone() });
        }
        // An empty name (`config t ''`) declares an anonymous section, as in libuci.
        let name = args.get(1).map(|w| &w.text).filter(|n| !n.is_empty());
        if let Some(name) = name {
            if !is_valid_name(name) {
                return Err(UciError::InvalidSectionName { line, name: name.clone() });
            }
        }
        reject_extra("config", args.get(2))?;

        if let Some(name) = name {
            if let Some(&index) = self.named.get(name) {
                if let Some(existing) = self.sections.get(index) {
                    if existing.kind != *kind {
                        return Err(UciError::SectionTypeMismatch {
                            line,
                            name: name.clone(),
                            kind: kind.clone(),
                            first_kind: existing.kind.clone(),
                            first_line: existing.line,
                        });
                    }
                    self.current = Some(index);
                    return Ok(());
                }
            }
            self.named.insert(name.clone(), self.sections.len());
        }
        self.current = Some(self.sections.len());
        self.sections.push(Section { kind: kind.clone(), name: name.cloned(), line, options: Vec::new() });
        Ok(())
    }

    fn option(&mut self, line: usize, keyword: &'static str, args: &[Word]) -> Result<(), UciError> {
        let Some(section) = self.current.and_then(|i| self.sections.get_mut(i)) else {
            return Err(UciError::OutsideSection { line, keyword });
        };
        let name = match args.first() {
            Some(word) if !word.text.is_empty() => &word.text,
            _ => return Err(UciError::MissingOptionName { line, keyword }),
        };
        if !is_valid_name(name) {
            return Err(UciError::InvalidOptionName { line, keyword, name: name.clone() });
        }
        let Some(value) = args.get(1) else {
            return Err(UciError::MissingValue { line, keyword, name: name.clone() });
        };
        reject_extra(keyword, args.get(2))?;
        let value = value.text.clone();

        let existing = section.options.iter_mut().find(|(n, _, _)| n == name);
        if keyword == "list" {
            match existing {
                Some((_, Value::List(items), _)) => items.push(value),
                Some((_, slot, _)) => {
                    if let Value::Single(previous) = slot {
                        let previous = std::mem::take(previous);
                        *slot = Value::List(vec![previous, value]);
                    }
                }
                None => section.options.push((name.clone(), Value::List(vec![value]), line)),
            }
        } else if value.is_empty() {
            // libuci's uci_set treats an empty value as "unset" and, while loading a file,
            // leaves the option exactly as it was.
        } else {
            match existing {
                Some((_, slot, slot_line)) => {
                    *slot = Value::Single(value);
                    *slot_line = line;
                }
                None => section.options.push((name.clone(), Value::Single(value), line)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A compact, unambiguous rendering of a package for table-driven tests:
    /// `kind name@line{opt="v"@line,lst=["a","b"]@line}` with sections separated by `|`
    /// and `-` for an anonymous section's name.
    fn dump(package: &Package) -> String {
        let sections: Vec<String> = package
            .sections
            .iter()
            .map(|s| {
                let options: Vec<String> = s
                    .options
                    .iter()
                    .map(|(name, value, line)| match value {
                        Value::Single(v) => format!("{name}={v:?}@{line}"),
                        Value::List(vs) => format!("{name}={vs:?}@{line}"),
                    })
                    .collect();
                format!("{} {}@{}{{{}}}", s.kind, s.name.as_deref().unwrap_or("-"), s.line, options.join(","))
            })
            .collect();
        sections.join("|")
    }

    fn check(cases: &[(&str, &str)]) {
        for (input, expected) in cases {
            match parse(input) {
                Ok(package) => assert_eq!(dump(&package), *expected, "input: {input:?}"),
                Err(e) => panic!("input {input:?} failed: {e}"),
            }
        }
    }

    fn check_err(cases: &[(&str, &str)]) {
        for (input, expected) in cases {
            match parse(input) {
                Ok(package) => panic!("input {input:?} parsed as {}", dump(&package)),
                Err(e) => assert_eq!(e.to_string(), *expected, "input: {input:?}"),
            }
        }
    }

    #[test]
    fn quoting_forms() {
        check(&[
            ("config t\n option a bare", r#"t -@1{a="bare"@2}"#),
            ("config t\n option a 'single quoted'", r#"t -@1{a="single quoted"@2}"#),
            ("config t\n option a \"double quoted\"", r#"t -@1{a="double quoted"@2}"#),
            ("config t\n option a 'no \\escape'", r#"t -@1{a="no \\escape"@2}"#),
            ("config t\n option a \"q\\\"x\\\\y\\nz\"", r#"t -@1{a="q\"x\\ynz"@2}"#),
            ("config t\n option a 'a'\"b\"c", r#"t -@1{a="abc"@2}"#),
            ("config t\n option a x'y z'\"w\"", r#"t -@1{a="xy zw"@2}"#),
            ("config t\n option a \"it's\"", r#"t -@1{a="it's"@2}"#),
            ("config t\n option a 'say \"hi\"'", r#"t -@1{a="say \"hi\""@2}"#),
            ("config t\n option a foo\\ bar", r#"t -@1{a="foo bar"@2}"#),
            ("config t\n option a \\#x", r##"t -@1{a="#x"@2}"##),
            ("config 't' \"n\"\n option 'a' \"v\"", r#"t n@1{a="v"@2}"#),
            ("config t\n option a 'multi\nline'\n option b c", r#"t -@1{a="multi\nline"@2,b="c"@4}"#),
        ]);
    }

    #[test]
    fn comments() {
        check(&[
            ("# top\nconfig t # after type\n\toption a b # trailing", r#"t -@2{a="b"@3}"#),
            ("config t\n option a 'x # y'", r#"t -@1{a="x # y"@2}"#),
            ("config t\n option a \"x#y\"", r##"t -@1{a="x#y"@2}"##),
            ("config t\n option a abc#def", r#"t -@1{a="abc"@2}"#),
            ("config t\n# option a b\n  # indented comment\n option c d", r#"t -@1{c="d"@4}"#),
            ("config t\n option a b # comment \\\n option c d", r#"t -@1{a="b"@2,c="d"@3}"#),
        ]);
    }

    #[test]
    fn continuation_and_separators() {
        check(&[
            ("config t\n option a foo\\\nbar", r#"t -@1{a="foobar"@2}"#),
            ("config t\n option a \\\n  bar", r#"t -@1{a="bar"@2}"#),
            ("config t\n option a \"foo\\\nbar\"", r#"t -@1{a="foobar"@2}"#),
            ("config t\n option a 'foo\\\nbar'", r#"t -@1{a="foo\\\nbar"@2}"#),
            ("config t\n option \\\n a b\n option c d", r#"t -@1{a="b"@2,c="d"@4}"#),
            ("config t; option a b; list l x;list l y", r#"t -@1{a="b"@1,l=["x", "y"]@1}"#),
            ("config t\n option a 'x;y'", r#"t -@1{a="x;y"@2}"#),
            ("c t n\n o a b\n l c d\n p pkg", r#"t n@1{a="b"@2,c=["d"]@3}"#),
        ]);
    }

    #[test]
    fn sections_named_and_anonymous() {
        check(&[
            ("config a\nconfig b 'x'\nconfig a ''", "a -@1{}|b x@2{}|a -@3{}"),
            ("package opmas\n\nconfig hub 'hub'\n", "hub hub@3{}"),
            ("config t 'x'\n option a 1\nconfig u\nconfig t 'x'\n option b 2", r#"t x@1{a="1"@2,b="2"@5}|u -@3{}"#),
            ("config wifi-iface\nconfig 'a.b'", "wifi-iface -@1{}|a.b -@2{}"),
        ]);
        let pkg = parse("config s\nconfig s 'named'\nconfig other\nconfig s\n").expect("parses");
        let labels: Vec<String> = pkg.sections.iter().map(|s| pkg.label_of(s)).collect();
        assert_eq!(labels, ["@s[0]", "named", "@other[0]", "@s[2]"]);
        let by = |r: &str| pkg.lookup(r).map(|s| s.line);
        assert_eq!(by("@s[0]"), Some(1));
        assert_eq!(by("@s[1]"), Some(2));
        assert_eq!(by("@s[-1]"), Some(4));
        assert_eq!(by("@s[-3]"), Some(1));
        assert_eq!(by("@s[-4]"), None);
        assert_eq!(by("@s[3]"), None);
        assert_eq!(by("@s[x]"), None);
        assert_eq!(by("@s[9223372036854775807]"), None);
        assert_eq!(by("@s[-9223372036854775808]"), None);
        assert_eq!(by("named"), Some(2));
        assert_eq!(by("@other[0]"), Some(3));
        assert_eq!(pkg.section("s", "named").map(|s| s.line), Some(2));
        assert_eq!(pkg.section("other", "named"), None);
        assert_eq!(pkg.sections_of("s").count(), 3);
        let foreign = Section { kind: "s".into(), name: None, line: 1, options: Vec::new() };
        assert_eq!(pkg.label_of(&foreign), "@s[?]");
    }

    #[test]
    fn options_and_lists() {
        check(&[
            ("config t\n option a 1\n option a 2", r#"t -@1{a="2"@3}"#),
            ("config t\n list l 1\n list l 2\n list l 3", r#"t -@1{l=["1", "2", "3"]@2}"#),
            ("config t\n option l 1\n list l 2", r#"t -@1{l=["1", "2"]@2}"#),
            ("config t\n list l 1\n option x y\n option l 2", r#"t -@1{l="2"@4,x="y"@3}"#),
            ("config t\n option a ''\n option b \"\"", "t -@1{}"),
            ("config t\n option a x\n option a ''", r#"t -@1{a="x"@2}"#),
            ("config t\n list l ''\n list l x", r#"t -@1{l=["", "x"]@2}"#),
        ]);
        let pkg = parse("config t\n option s v\n list l a\n list l b\n option one x\n list one y").expect("parses");
        let s = &pkg.sections[0];
        assert_eq!(s.get("s"), Some("v"));
        assert_eq!(s.get("l"), None);
        assert_eq!(s.get("missing"), None);
        assert_eq!(s.get_list("l"), ["a", "b"]);
        assert_eq!(s.get_list("s"), ["v"]);
        assert!(s.get_list("missing").is_empty());
        assert_eq!(s.line_of("l"), Some(3));
        assert_eq!(s.line_of("one"), Some(5));
        assert_eq!(s.line_of("missing"), None);
    }

    #[test]
    fn whitespace_crlf_and_unicode() {
        check(&[
            ("config t\r\n\toption a b\r\n\tlist l 'x'\r\n", r#"t -@1{a="b"@2,l=["x"]@3}"#),
            ("config t\r\n option a 'x\r\ny'\r\n", r#"t -@1{a="x\ny"@2}"#),
            ("config t\r\n option a foo\\\r\nbar\r\n", r#"t -@1{a="foobar"@2}"#),
            ("  config \t t  \t\n\t \toption\t a \t  b   \n\n\n", r#"t -@1{a="b"@2}"#),
            ("config t\n option a 'héllo wörld ✓'", r#"t -@1{a="héllo wörld ✓"@2}"#),
            ("config t\n option a 日本語", r#"t -@1{a="日本語"@2}"#),
            ("", ""),
            ("\n\n# only comments\n", ""),
        ]);
    }

    #[test]
    fn errors_with_line_numbers() {
        check_err(&[
            ("config t\n option a b\n\n\n\n\n option c 'open", "line 7: unterminated single quote"),
            ("config t\n option c \"open\nmore\nlines", "line 2: unterminated double quote"),
            ("config t\n option c \"ends in escape\\", "line 2: unterminated double quote"),
            ("# c\n\n option a b", "line 3: option outside of a config section"),
            ("list a b", "line 1: list outside of a config section"),
            ("config t\npackage p\noption a b", "line 3: option outside of a config section"),
            ("\n\n\n\nconfig t 'a-b'", "line 5: invalid section name \"a-b\""),
            ("config t\n\n\n\n\n\n\n\n option url", "line 9: expected a value after option name \"url\""),
            ("config t\n list allow", "line 2: expected a value after list name \"allow\""),
            ("config t\n option", "line 2: expected a name after option"),
            ("config t\n option '' x", "line 2: expected a name after option"),
            ("config t\n option a.b x", "line 2: invalid option name \"a.b\""),
            ("config t\n list 'sp ace' x", "line 2: invalid list name \"sp ace\""),
            ("config", "line 1: expected a section type after config"),
            ("config ''", "line 1: expected a section type after config"),
            ("config 'a b'", "line 1: invalid section type \"a b\""),
            ("config tÿpe", "line 1: invalid section type \"tÿpe\""),
            ("config t n extra", "line 1: unexpected extra argument \"extra\" after config"),
            ("config t\n option a b c", "line 2: unexpected extra argument \"c\" after option"),
            ("config t\n option a b \\\n c", "line 3: unexpected extra argument \"c\" after option"),
            ("config t\n optoin a b", "line 2: unknown command \"optoin\" (expected config, option, list or package)"),
            ("'config' t", "line 1: command \"config\" must be written without quotes or backslashes"),
            ("con\\fig t", "line 1: command \"config\" must be written without quotes or backslashes"),
            ("config t\nfoo", "line 2: unknown command \"foo\" (expected config, option, list or package)"),
            ("package", "line 1: expected a name after package"),
            ("package 'a b'", "line 1: invalid package name \"a b\""),
            ("package a b", "line 1: unexpected extra argument \"b\" after package"),
            (
                "config a 'x'\nconfig b 'x'",
                r#"line 2: section "x" redeclared with type "b", but line 1 declared it with type "a""#,
            ),
        ]);
        let err = parse("config t\n option a 'x").expect_err("unterminated");
        assert_eq!(err.line(), 2);
        assert_eq!(err, UciError::UnterminatedQuote { line: 2, quote: Quote::Single, runs_on: None });
    }

    #[test]
    fn a_missing_closing_quote_is_blamed_on_its_own_line() {
        // The quote on line 2 is never closed: it swallows the line break
        // and closes on line 3's first quote, and so on, until the file ends
        // inside a quote opened on line 5.
        let text = "config hub 'hub'\n\toption url 'mqtt://h:1883\n\toption device_id 'gw'\n\n\toption secret 'x'\n";
        let err = parse(text).expect_err("unterminated");
        assert_eq!(err.line(), 2);
        assert_eq!(
            err.to_string(),
            "line 2: a quoted value opened here runs on to line 3; is its closing quote missing? \
             (the file ends inside the single quote opened on line 5)"
        );
        // A deliberate multi-line value cannot be told from a forgotten quote, so
        // it is asked about too; the message still says where the file ends.
        let err = parse("config t\n option a 'x\ny'\n option b 'z").expect_err("unterminated");
        assert!(err.to_string().ends_with("(the file ends inside the single quote opened on line 4)"), "{err}");
    }

    const OPMAS: &str = "\
# /etc/config/opmas - OPMAS edge agent
package opmas

config hub 'hub'
\toption url 'mqtt://192.168.1.10:1883'
\toption device_id \"gw-1\"
\toption secret abc123   # trailing comment
\toption enabled '1'

config source
\toption type file
\toption path '/var/log/messages'
\tlist allow '10.0.0.0/8'
\tlist allow \"192.168.0.0/16\"

config source 'kernel'
\toption type 'file'
\toption path \"/tmp/log/kern.log\"
\toption from_start 1
\tlist match 'oom-killer'
\tlist match \"segfault at\"
";

    #[test]
    fn realistic_opmas_config() {
        let pkg = parse(OPMAS).expect("parses");
        assert_eq!(pkg.sections.len(), 3);

        let hub = pkg.section("hub", "hub").expect("hub section");
        assert_eq!(hub.line, 4);
        assert_eq!(hub.get("url"), Some("mqtt://192.168.1.10:1883"));
        assert_eq!(hub.get("device_id"), Some("gw-1"));
        assert_eq!(hub.get("secret"), Some("abc123"));
        assert_eq!(hub.get("enabled"), Some("1"));
        assert_eq!(hub.line_of("secret"), Some(7));

        let sources: Vec<&Section> = pkg.sections_of("source").collect();
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[0].name, None);
        assert_eq!(pkg.label_of(sources[0]), "@source[0]");
        assert_eq!(sources[0].get("type"), Some("file"));
        assert_eq!(sources[0].get("path"), Some("/var/log/messages"));
        assert_eq!(sources[0].get_list("allow"), ["10.0.0.0/8", "192.168.0.0/16"]);
        assert_eq!(sources[0].line_of("allow"), Some(13));

        assert_eq!(pkg.label_of(sources[1]), "kernel");
        assert_eq!(sources[1].get("path"), Some("/tmp/log/kern.log"));
        assert_eq!(sources[1].get_list("match"), ["oom-killer", "segfault at"]);
        assert_eq!(pkg.lookup("@source[-1]").map(|s| s.line), Some(16));
        let names: Vec<&str> = sources[1].options.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["type", "path", "from_start", "match"]);
    }

    #[test]
    fn never_panics() {
        for (i, _) in OPMAS.char_indices().chain(std::iter::once((OPMAS.len(), ' '))) {
            let _ = parse(&OPMAS[..i]);
            let _ = parse(&OPMAS[i..]);
        }
        // A small LCG keeps the test deterministic; the alphabet is biased towards the bytes
        // the lexer treats specially, plus bytes that are not valid UTF-8.
        const ALPHABET: &[u8] = b"config option list package \t\r\n'\"\\#;@[]-_ab01\xff\xc3\xa9\xe2\x80";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            let mut bytes = Vec::new();
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let len = (state >> 56) as usize;
            for _ in 0..len {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let pick = (state >> 33) as usize;
                bytes.push(if pick.is_multiple_of(8) { (pick >> 8) as u8 } else { ALPHABET[pick % ALPHABET.len()] });
            }
            let text = String::from_utf8_lossy(&bytes);
            if let Ok(pkg) = parse(&text) {
                for section in &pkg.sections {
                    let _ = pkg.label_of(section);
                    let _ = pkg.lookup(&pkg.label_of(section));
                }
            }
        }
    }
}
