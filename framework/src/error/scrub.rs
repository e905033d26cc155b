//! Keeps the build machine out of error messages.
//!
//! Some of DataFusion's errors name the source line that raised them
//! (`Error serializing custom table at /home/ci/.cargo/registry/src/…/mod.rs:1534`).
//! That says nothing to a user and tells a stranger where the binary was
//! built, so every message that leaves a process goes through
//! [`scrub_source_paths`].

use std::borrow::Cow;

/// `text` without source locations (`/…/file.rs:123`, with an `at ` before
/// it when there is one).
pub fn scrub_source_paths(text: &str) -> Cow<'_, str> {
    if !text.contains(".rs:") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = find_source_location(rest) {
        let (start, end) = found;
        let mut keep = &rest[..start];
        if let Some(before) = keep.strip_suffix(" at ") {
            keep = before;
        }
        out.push_str(keep);
        rest = &rest[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The byte range of the first `<path>.rs:<line>[:<column>]` in `text`
/// whose path starts with `/` (or a drive letter).
fn find_source_location(text: &str) -> Option<(usize, usize)> {
    let mut search_from = 0;
    while let Some(offset) = text[search_from..].find(".rs:") {
        let dot = search_from + offset;
        let start = text[..dot]
            .rfind(|c: char| c.is_whitespace() || matches!(c, '(' | '[' | '"' | '\'' | '`'))
            .map_or(0, |i| i + 1);
        let path = &text[start..dot];
        let absolute =
            path.starts_with('/') || path.as_bytes().get(1) == Some(&b':') && path.contains('\\');
        let digits_end = text[dot + 4..]
            .find(|c: char| !(c.is_ascii_digit() || c == ':'))
            .map_or(text.len(), |i| dot + 4 + i);
        let has_line = text[dot + 4..digits_end]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit());
        if absolute && has_line {
            let end = if text[..digits_end].ends_with(':') {
                digits_end - 1
            } else {
                digits_end
            };
            return Some((start, end));
        }
        search_from = dot + 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_locations_are_removed() {
        let text = "Error serializing custom table at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/datafusion-proto-55.2.0/src/logical_plan/mod.rs:1534\ncaused by\nnot supported";
        assert_eq!(
            scrub_source_paths(text),
            "Error serializing custom table\ncaused by\nnot supported"
        );
        assert_eq!(
            scrub_source_paths("panicked at /x/y/src/lib.rs:10:5: boom"),
            "panicked: boom"
        );
        let plain = "file:///data/t.rs is not a table; see table.rs:3";
        assert_eq!(scrub_source_paths(plain), plain);
    }
}
