//! Where a problem is in a config file: `path:line:column`, and the line
//! itself with a caret under the part at fault, so an operator sees what to
//! change without counting lines.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A config file, and the line in it when one is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    pub line: Option<Line>,
}

/// One line of a config file and the part of it at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based.
    pub number: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// The line's text, without its line ending.
    pub text: String,
    /// How many characters the caret underlines; at least 1.
    pub width: usize,
}

impl Location {
    /// The file as a whole: no line is known.
    pub(crate) fn file(path: &Path) -> Location {
        Location {
            path: path.to_path_buf(),
            line: None,
        }
    }

    /// The line holding byte range `span` of `source` (the file's text).
    pub(crate) fn at_span(path: &Path, source: &str, span: Range<usize>) -> Location {
        Location {
            path: path.to_path_buf(),
            line: Line::of_span(source, span),
        }
    }

    /// The line that sets `field`, named as validation names fields
    /// (`server.listen`, `stores.data.url`, `credentials[0].secret_key`):
    /// its value, or its key when the value is a table. A field the file
    /// does not set points at its nearest enclosing table the file has (a
    /// required key missing from `[region]` points at `[region]`); `None`
    /// when the file has not even that.
    pub(crate) fn of_field(path: &Path, source: &str, field: &str) -> Option<Location> {
        let root = DeTable::parse(source).ok()?;
        let steps = steps(field)?;
        let span = find(root.get_ref(), &steps)?;
        Some(Location::at_span(path, source, span))
    }

    /// The line and its caret, on lines of their own; empty when no line
    /// is known.
    pub fn excerpt(&self) -> Excerpt<'_> {
        Excerpt(self.line.as_ref())
    }
}

impl Line {
    fn of_span(source: &str, span: Range<usize>) -> Option<Line> {
        let start = span.start.min(source.len());
        let before = source.get(..start)?;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let end = span.end.clamp(start, line_end);
        Some(Line {
            number: before.matches('\n').count() + 1,
            column: source[line_start..start].chars().count() + 1,
            text: source[line_start..line_end]
                .trim_end_matches('\r')
                .to_string(),
            width: source
                .get(start..end)
                .map_or(0, |s| s.chars().count())
                .max(1),
        })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = &self.line {
            write!(f, ":{}:{}", line.number, line.column)?;
        }
        Ok(())
    }
}

/// See [`Location::excerpt`].
pub struct Excerpt<'a>(Option<&'a Line>);

impl fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(line) = self.0 else {
            return Ok(());
        };
        let gutter = " ".repeat(line.number.to_string().len());
        // Tabs stay tabs under the text, so the caret lines up however
        // wide the terminal draws them.
        let indent: String = line
            .text
            .chars()
            .take(line.column - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        write!(
            f,
            "\n{gutter} |\n{} | {}\n{gutter} | {indent}{}",
            line.number,
            line.text,
            "^".repeat(line.width)
        )
    }
}

/// One step of a field's name: a key, or an index into an array.
#[derive(Debug, PartialEq)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `cluster.peers[1].address` → `cluster`, `peers`, 1, `address`.
fn steps(field: &str) -> Option<Vec<Step<'_>>> {
    let mut steps = Vec::new();
    for part in field.split('.') {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            steps.push(Step::Key(key));
        }
        while !rest.is_empty() {
            let (index, after) = rest.split_once(']')?;
            steps.push(Step::Index(index.parse().ok()?));
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    Some(steps)
}

/// The span to show for `steps` under `table`: see [`Location::of_field`].
fn find(table: &DeTable<'_>, steps: &[Step<'_>]) -> Option<Range<usize>> {
    let Some(Step::Key(_)) = steps.first() else {
        return None;
    };
    // Store and node names may hold dots (`stores.eu.west.url`), so a name
    // can span several steps: try the longest first.
    let keys = steps
        .iter()
        .take_while(|step| matches!(step, Step::Key(_)))
        .count();
    for taken in (1..=keys).rev() {
        let name = steps[..taken]
            .iter()
            .filter_map(|step| match step {
                Step::Key(key) => Some(*key),
                Step::Index(_) => None,
            })
            .collect::<Vec<_>>()
            .join(".");
        if let Some((key, value)) = table.iter().find(|(key, _)| key.get_ref() == &name) {
            return Some(descend(key, value, &steps[taken..]));
        }
    }
    None
}

fn descend(
    key: &Spanned<std::borrow::Cow<'_, str>>,
    value: &Spanned<DeValue<'_>>,
    rest: &[Step<'_>],
) -> Range<usize> {
    let here = match value.get_ref() {
        DeValue::Table(_) => key.span(),
        _ => value.span(),
    };
    match (value.get_ref(), rest.first()) {
        (_, None) => here,
        (DeValue::Table(table), Some(Step::Key(_))) => find(table, rest).unwrap_or(here),
        (DeValue::Array(array), Some(Step::Index(i))) => match array.get(*i) {
            Some(item) => match (item.get_ref(), &rest[1..]) {
                (DeValue::Table(table), more @ [Step::Key(_), ..]) => {
                    find(table, more).unwrap_or_else(|| item.span())
                }
                _ => item.span(),
            },
            None => here,
        },
        _ => here,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of(source: &str, field: &str) -> Option<Line> {
        Location::of_field(Path::new("f.toml"), source, field).and_then(|at| at.line)
    }

    #[test]
    fn a_field_points_at_its_value() {
        let source = "data_dir = \"/x\"\n[server]\nlisten = \"nowhere\"\n";
        let line = line_of(source, "server.listen").expect("found");
        assert_eq!(line.number, 3);
        assert_eq!(line.text, "listen = \"nowhere\"");
        assert_eq!(line.column, 10);
        assert_eq!(line.width, "\"nowhere\"".len());
    }

    #[test]
    fn array_entries_and_dotted_names_are_found() {
        let source = "[[credentials]]\naccess_key = \"a\"\nsecret_key = \"s1\"\n\
                      [[credentials]]\naccess_key = \"b\"\nsecret_key = \"s2\"\n\
                      [stores.\"eu.west\"]\nurl = \"s3://b\"\n\
                      [server]\ndomains = [\"ok.example\", \"bad domain\"]\n";
        assert_eq!(
            line_of(source, "credentials[1].secret_key").map(|l| l.number),
            Some(6)
        );
        assert_eq!(
            line_of(source, "stores.eu.west.url").map(|l| l.number),
            Some(8)
        );
        let domain = line_of(source, "server.domains[1]").expect("found");
        assert_eq!(domain.number, 10);
        assert_eq!(domain.width, "\"bad domain\"".len());
    }

    #[test]
    fn a_missing_field_points_at_its_table_and_an_absent_table_at_nothing() {
        let source = "[region]\nfollow = \"http://localhost:9001\"\n";
        let line = line_of(source, "region.name").expect("the table");
        assert_eq!(line.text, "[region]");
        assert_eq!(line_of(source, "cluster.secret"), None);
    }

    #[test]
    fn the_excerpt_puts_a_caret_under_the_span() {
        let source = "[server]\n\tlisten = 1\n";
        let at = Location::of_field(Path::new("f.toml"), source, "server.listen").expect("found");
        assert_eq!(at.to_string(), "f.toml:2:11");
        assert_eq!(
            at.excerpt().to_string(),
            "\n  |\n2 | \tlisten = 1\n  | \t         ^"
        );
        assert_eq!(
            Location::file(Path::new("f.toml")).excerpt().to_string(),
            ""
        );
    }
}
