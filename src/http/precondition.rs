//! `If-Match` and `If-None-Match` (RFC 9110 §13.1) parsed into typed values, and the
//! entity tags they compare.

use super::{Rejection, Request};

/// One entity tag: `"token"` (strong) or `W/"token"` (weak).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityTag {
    pub weak: bool,
    /// What is between the quotes.
    pub token: String,
}

impl EntityTag {
    /// The strong tag of `token`, as an `ETag` header value.
    pub fn strong(token: impl std::fmt::Display) -> String {
        use std::fmt::Write as _;
        // Room for a `u64` token and its quotes at once: `format!` would start at four
        // bytes and grow three times, on every response that carries a tag.
        let mut tag = String::with_capacity(22);
        let _ = write!(tag, "\"{token}\"");
        tag
    }
}

/// The value of an `If-Match` or `If-None-Match` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagList {
    /// `*`: any current representation.
    Any,
    Tags(Vec<EntityTag>),
}

impl TagList {
    /// The tokens `If-Match` may match: strong comparison, so weak tags never match.
    pub fn strong_tokens(&self) -> impl Iterator<Item = &str> {
        let tags = match self {
            TagList::Any => &[][..],
            TagList::Tags(tags) => tags,
        };
        tags.iter().filter(|t| !t.weak).map(|t| t.token.as_str())
    }

    /// Whether `If-None-Match` matches a current tag `token`: weak comparison.
    pub fn matches_weakly(&self, token: &str) -> bool {
        match self {
            TagList::Any => true,
            TagList::Tags(tags) => tags.iter().any(|t| t.token == token),
        }
    }
}

/// `If-Match`, when the request has it.
pub fn if_match(req: &Request) -> Result<Option<TagList>, Rejection> {
    header(req, "if-match")
}

/// `If-None-Match`, when the request has it.
pub fn if_none_match(req: &Request) -> Result<Option<TagList>, Rejection> {
    header(req, "if-none-match")
}

/// Every line of the header, joined as one list (RFC 9110 §5.3). A malformed value is a
/// 400: guessing what a client meant by a broken precondition could overwrite data.
fn header(req: &Request, name: &'static str) -> Result<Option<TagList>, Rejection> {
    let mut lines = req
        .headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .peekable();
    if lines.peek().is_none() {
        return Ok(None);
    }
    let joined = lines.collect::<Vec<_>>().join(",");
    parse(&joined).map(Some).ok_or_else(|| {
        Rejection::BadRequest(format!(
            "the {name} header is not a list of entity tags or *"
        ))
    })
}

/// `*` or `#entity-tag`; empty list elements are allowed (RFC 9110 §5.6.1). A tag may
/// hold a comma (`"a,b"` is one tag), so the list is scanned, not split.
pub fn parse(value: &str) -> Option<TagList> {
    let value = value.trim();
    if value == "*" {
        return Some(TagList::Any);
    }
    let bytes = value.as_bytes();
    let mut tags = Vec::new();
    let mut i = 0;
    loop {
        // Empty elements and the white space around them.
        while i < bytes.len() && matches!(bytes[i], b',' | b' ' | b'\t') {
            i += 1;
        }
        if i == bytes.len() {
            break;
        }
        let weak = value[i..].starts_with("W/");
        if weak {
            i += 2;
        }
        if bytes.get(i) != Some(&b'"') {
            return None;
        }
        let start = i + 1;
        // etagc: any visible ASCII but '"', or obs-text (RFC 9110 §8.8.3).
        let len = bytes[start..]
            .iter()
            .take_while(|&&b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
            .count();
        let end = start + len;
        if bytes.get(end) != Some(&b'"') {
            return None;
        }
        tags.push(EntityTag {
            weak,
            token: value[start..end].to_owned(),
        });
        i = end + 1;
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
            i += 1;
        }
        if i < bytes.len() && bytes[i] != b',' {
            return None;
        }
    }
    (!tags.is_empty()).then_some(TagList::Tags(tags))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Method;

    fn tag(weak: bool, token: &str) -> EntityTag {
        EntityTag {
            weak,
            token: token.into(),
        }
    }

    #[test]
    fn a_star_a_tag_and_a_list_of_tags_parse() {
        assert_eq!(parse("*"), Some(TagList::Any));
        assert_eq!(
            parse(" \"17\" "),
            Some(TagList::Tags(vec![tag(false, "17")]))
        );
        assert_eq!(
            parse("\"1\", W/\"2\",,\"\""),
            Some(TagList::Tags(vec![
                tag(false, "1"),
                tag(true, "2"),
                tag(false, "")
            ]))
        );
        // A comma is an etagc: inside quotes it belongs to the tag.
        assert_eq!(
            parse("\"a,b\", \"'\""),
            Some(TagList::Tags(vec![tag(false, "a,b"), tag(false, "'")]))
        );
    }

    #[test]
    fn malformed_lists_are_refused() {
        for bad in [
            "", "17", "\"17", "17\"", "w/\"1\"", "\"a\"b\"", "\"a b\"", "*, \"1\"", ",",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn if_match_compares_strongly_and_if_none_match_weakly() {
        let list = parse("W/\"1\", \"2\"").unwrap();
        assert_eq!(list.strong_tokens().collect::<Vec<_>>(), ["2"]);
        assert!(list.matches_weakly("1") && list.matches_weakly("2"));
        assert!(!list.matches_weakly("3"));
        assert!(TagList::Any.matches_weakly("anything"));
        assert_eq!(TagList::Any.strong_tokens().count(), 0);
    }

    #[test]
    fn every_header_line_counts_and_a_bad_one_is_400() {
        let req = Request::new(Method::Put, "/user/1")
            .with_header("If-Match", "\"1\"")
            .with_header("If-Match", "\"2\"");
        let list = if_match(&req).unwrap().unwrap();
        assert_eq!(list.strong_tokens().collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(if_none_match(&req).unwrap(), None);
        let req = Request::new(Method::Get, "/user/1").with_header("If-None-Match", "nope");
        assert_eq!(if_none_match(&req).unwrap_err().status(), 400);
    }
}
