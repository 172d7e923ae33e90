//! `exclude_patterns`: shell-style wildcard patterns of log lines an agent
//! ignores, checked here for the hub (a pattern that does not compile is a
//! 422 naming it) and matched on the router by the same code.
//!
//! The syntax is the shell's (`fnmatch` without flags), which OpenWRT's
//! users write every day: `*` any run of characters, `?` one character,
//! `[abc]`, `[a-z]`, `[!0-9]` one character of (not of) a set, `\` makes
//! the next character literal. A pattern matches the whole raw line, so
//! `*from 192.168.1.*` ignores every line that mentions an address of that
//! network after `from`.
//!
//! Why not regular expressions: the edge has no regex engine, the `regex`
//! crate alone is larger than the flash the router build has left, and
//! even a small backtracking engine lets one pattern cost exponential time
//! per line. This matcher is a few hundred bytes of code, allocates nothing
//! per line, and takes at most O(line × pattern) steps: it keeps only the
//! last `*` to return to (a later `*` can always absorb what an earlier
//! one would), the classic wildcard algorithm.

use std::fmt;

/// Most patterns per agent.
pub const MAX_PATTERNS: usize = 32;
/// Longest pattern, in bytes.
pub const MAX_PATTERN_LEN: usize = 256;

/// One compiled pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The text as written, for messages and for sending on.
    text: String,
    tokens: Vec<Token>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Char(char),
    Any,
    Star,
    /// A bracket set: ranges (a single character is a range of one), negated or not.
    Set {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A pattern that does not compile, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("empty pattern")]
    Empty,
    #[error("longer than {MAX_PATTERN_LEN} bytes")]
    TooLong,
    #[error("a [ at byte {0} is never closed by a ]")]
    UnclosedSet(usize),
    #[error("the range {0}-{1} runs backwards")]
    BackwardsRange(char, char),
    #[error("a \\ at the end escapes nothing")]
    TrailingEscape,
}

impl Pattern {
    /// Compiles `text`.
    pub fn new(text: &str) -> Result<Pattern, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        if text.len() > MAX_PATTERN_LEN {
            return Err(PatternError::TooLong);
        }
        let mut tokens = Vec::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            let token = match c {
                '*' => {
                    // `**` is `*`.
                    if tokens.last() == Some(&Token::Star) {
                        continue;
                    }
                    Token::Star
                }
                '?' => Token::Any,
                '\\' => Token::Char(chars.next().ok_or(PatternError::TrailingEscape)?.1),
                '[' => {
                    let negated = chars.next_if(|&(_, c)| c == '!' || c == '^').is_some();
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let Some((_, c)) = chars.next() else { return Err(PatternError::UnclosedSet(at)) };
                        // A `]` right after `[` or `[!` is a member, as in the shell.
                        if c == ']' && !first {
                            break;
                        }
                        first = false;
                        let lo = if c == '\\' { chars.next().ok_or(PatternError::UnclosedSet(at))?.1 } else { c };
                        let hi = match chars.peek() {
                            Some(&(_, '-')) => {
                                let mut ahead = chars.clone();
                                ahead.next();
                                match ahead.next() {
                                    Some((_, ']')) | None => lo,
                                    Some((_, hi)) => {
                                        chars.next();
                                        chars.next();
                                        if hi < lo {
                                            return Err(PatternError::BackwardsRange(lo, hi));
                                        }
                                        hi
                                    }
                                }
                            }
                            _ => lo,
                        };
                        ranges.push((lo, hi));
                    }
                    Token::Set { negated, ranges }
                }
                c => Token::Char(c),
            };
            tokens.push(token);
        }
        Ok(Pattern { text: text.to_owned(), tokens })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True if the whole of `line` matches.
    pub fn matches(&self, line: &str) -> bool {
        let line: &[u8] = line.as_bytes();
        let (mut t, mut l) = (0usize, 0usize);
        // The last `*`: the token after it, and where in the line it resumes.
        let mut star: Option<(usize, usize)> = None;
        while l < line.len() {
            let step = match self.tokens.get(t) {
                Some(Token::Star) => {
                    star = Some((t + 1, l));
                    t += 1;
                    continue;
                }
                Some(tok) => one(tok, line, l),
                None => None,
            };
            match step {
                Some(len) => {
                    t += 1;
                    l += len;
                }
                None => match star {
                    // Let the last `*` take one more character and retry.
                    Some((after, from)) => {
                        let next = from + char_len(line, from);
                        star = Some((after, next));
                        t = after;
                        l = next;
                    }
                    None => return false,
                },
            }
        }
        self.tokens[t..].iter().all(|tok| *tok == Token::Star)
    }
}

/// The length of the character at `at` (the line is valid UTF-8).
fn char_len(line: &[u8], at: usize) -> usize {
    match line[at] {
        b if b < 0x80 => 1,
        b if b >= 0xF0 => 4,
        b if b >= 0xE0 => 3,
        _ => 2,
    }
    .min(line.len() - at)
}

/// Matches one non-star token at `at`; the bytes it took.
fn one(tok: &Token, line: &[u8], at: usize) -> Option<usize> {
    let len = char_len(line, at);
    let c = std::str::from_utf8(&line[at..at + len]).ok()?.chars().next()?;
    let ok = match tok {
        Token::Char(p) => *p == c,
        Token::Any => true,
        Token::Set { negated, ranges } => ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&c)) != *negated,
        Token::Star => false,
    };
    ok.then_some(len)
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.text)
    }
}

/// An agent's compiled `exclude_patterns`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Excludes(Vec<Pattern>);

impl Excludes {
    /// Compiles every pattern; the first bad one is named by its index.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Excludes, (usize, PatternError)> {
        if patterns.len() > MAX_PATTERNS {
            return Err((MAX_PATTERNS, PatternError::TooLong));
        }
        patterns
            .iter()
            .enumerate()
            .map(|(i, p)| Pattern::new(p.as_ref()).map_err(|e| (i, e)))
            .collect::<Result<_, _>>()
            .map(Excludes)
    }

    /// True if any pattern matches `line`.
    pub fn matches(&self, line: &str) -> bool {
        self.0.iter().any(|p| p.matches(line))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The patterns as written.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(Pattern::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, line: &str) -> bool {
        Pattern::new(p).unwrap().matches(line)
    }

    #[test]
    fn wildcards_match_as_the_shell_does() {
        let line = "Thu Dec  5 17:43:57 2024 authpriv.warn dropbear[1]: Bad password attempt for 'root' from 192.168.1.20:4000";
        assert!(m("*from 192.168.1.*", line));
        assert!(!m("*from 192.168.2.*", line));
        assert!(m("*dropbear\\[?\\]:*", line));
        assert!(m("*from 192.168.1.[0-9][0-9]:*", line));
        assert!(!m("*from 192.168.1.[!0-9]*", line));
        assert!(!m("dropbear*", line), "the whole line, not a part");
        assert!(m("*", ""));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
        assert!(m("*ä?", "xäö"), "characters, not bytes");
        assert!(m("[]]", "]"));
        assert!(m("[a-]", "-"));
    }

    #[test]
    fn bad_patterns_say_what_is_wrong() {
        assert_eq!(Pattern::new("*[0-9"), Err(PatternError::UnclosedSet(1)));
        assert_eq!(Pattern::new("[z-a]"), Err(PatternError::BackwardsRange('z', 'a')));
        assert_eq!(Pattern::new("x\\"), Err(PatternError::TrailingEscape));
        assert_eq!(Pattern::new(""), Err(PatternError::Empty));
        assert_eq!(Pattern::new(&"a".repeat(300)), Err(PatternError::TooLong));
        assert_eq!(Excludes::new(&["ok*", "[bad"]), Err((1, PatternError::UnclosedSet(0))));
    }

    #[test]
    fn many_stars_cost_at_most_line_times_pattern() {
        // The input that makes backtracking matchers take exponential time.
        let p = Pattern::new(&"*a".repeat(30)).unwrap();
        let line = "a".repeat(29) + &"b".repeat(5000);
        assert!(!p.matches(&line));
    }
}
